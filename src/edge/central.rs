//! A client of a central `wasmdyno serve`: current releases and slugs, over http or https, with a token.

#[allow(unused_imports)]
use super::*;

/// A client of a central `wasmdyno serve`'s API, for [`Edge::follow`]: `http://HOST:PORT` or `https://HOST[:PORT]`
/// (the server behind a TLS proxy), and a token: the follower token (`$WASMDYNO_HOME/follower-token`), which
/// reads releases and slugs and nothing else, is the one an edge box should hold.
///
/// ```
/// let central = wasmdyno::edge::Central::new("http://127.0.0.1:5001", "TOKEN").unwrap();
/// assert_eq!(central.url(), "http://127.0.0.1:5001");
/// ```
#[derive(Debug, Clone)]
pub struct Central {
    host: String,
    port: u16,
    /// TLS to the server (`https://`), trusting the Mozilla roots and any CA given.
    tls: Option<Arc<rustls::ClientConfig>>,
    token: String,
}

impl Central {
    /// The server at `url`: `http://HOST:PORT` (as `wasmdyno serve` announces it) or `https://HOST[:PORT]`.
    ///
    /// ```
    /// use wasmdyno::edge::Central;
    /// assert!(Central::new("http://127.0.0.1:5001/", "TOKEN").is_ok());
    /// assert_eq!(Central::new("https://central.example.com", "T").unwrap().url(), "https://central.example.com:443");
    /// assert!(Central::new("ftp://central.example.com", "TOKEN").is_err());
    /// ```
    pub fn new(url: &str, token: impl Into<String>) -> Result<Central, EdgeError> {
        let bad = || {
            EdgeError::Central(format!(
                "{url:?} is not http://HOST:PORT or https://HOST[:PORT]"
            ))
        };
        let (tls, rest) = match url.split_once("://") {
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            Some(_) => return Err(bad()),
            None => (false, url),
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
            return Err(bad());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse::<u16>().map_err(|_| bad())?)
            }
            _ if tls => (authority, 443),
            _ => return Err(bad()),
        };
        Ok(Central {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            tls: tls.then(crate::tls::web_pki),
            token: token.into(),
        })
    }

    /// Trusts the certificates in the PEM file `ca_file` too (a private CA), for `https://`.
    ///
    /// ```no_run
    /// let central = wasmdyno::edge::Central::new("https://central.internal", "TOKEN")?
    ///     .with_ca_file("/etc/wasmdyno/ca.pem".as_ref())?;
    /// # Ok::<(), wasmdyno::EdgeError>(())
    /// ```
    pub fn with_ca_file(mut self, ca_file: &Path) -> Result<Central, EdgeError> {
        if self.tls.is_none() {
            return Err(EdgeError::Central(
                "a CA file is for https:// servers".into(),
            ));
        }
        self.tls = Some(crate::tls::client_config(Some(ca_file)).map_err(EdgeError::Central)?);
        Ok(self)
    }

    /// The server's URL.
    ///
    /// ```
    /// let central = wasmdyno::edge::Central::new("10.0.0.1:5001", "TOKEN").unwrap();
    /// assert_eq!(central.url(), "http://10.0.0.1:5001");
    /// ```
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    /// The app and its current release (with formation) as the server has them; `None` if it has no such app.
    ///
    /// ```no_run
    /// # async fn pull(central: wasmdyno::edge::Central) -> Result<(), wasmdyno::EdgeError> {
    /// if let Some((app, Some(release))) = central.current("hello").await? {
    ///     println!("{} runs v{} of slug {:?}", app.name, release.version, release.slug);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn current(
        &self,
        app: &str,
    ) -> Result<Option<(AppSpec, Option<ReleaseSpec>)>, EdgeError> {
        let (status, body) = self.get(&format!("/apps/{app}/current-release")).await?;
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(EdgeError::Central(format!(
                "GET current release of {app}: {status} {}",
                String::from_utf8_lossy(&body)
            )));
        }
        let current: crate::wire::CurrentRelease = serde_json::from_slice(&body)
            .map_err(|e| EdgeError::Central(format!("current release of {app}: {e}")))?;
        Ok(Some(current.into_specs()))
    }

    /// The slug `sha256` of `app`, as bytes (verify them: [`MemorySource::add_slug`]).
    ///
    /// ```no_run
    /// # async fn pull(central: wasmdyno::edge::Central, source: wasmdyno::edge::MemorySource) -> Result<(), wasmdyno::EdgeError> {
    /// let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    /// let bytes = central.slug("hello", sha).await?;
    /// source.add_slug(&bytes, Some(sha), Default::default())?;
    /// # Ok(()) }
    /// ```
    pub async fn slug(&self, app: &str, sha256: &str) -> Result<Vec<u8>, EdgeError> {
        let (status, body) = self.get(&format!("/apps/{app}/slugs/{sha256}")).await?;
        if status != 200 {
            return Err(EdgeError::Central(format!(
                "GET slug {sha256} of {app}: {status} {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), EdgeError> {
        let failed = |e: &dyn std::fmt::Display| {
            EdgeError::Central(format!("GET {}{path}: {e}", self.url()))
        };
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| failed(&e))?;
        let io: Box<dyn CentralStream> = match &self.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| failed(&e))?;
                let connector = tokio_rustls::TlsConnector::from(tls.clone());
                Box::new(
                    connector
                        .connect(name, stream)
                        .await
                        .map_err(|e| failed(&e))?,
                )
            }
            None => Box::new(stream),
        };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| failed(&e))?;
        let driver = tokio::spawn(conn);
        let authority = self.url();
        let authority = authority.split_once("://").map_or("", |(_, a)| a);
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| failed(&e))?;
        let response = sender.send_request(req).await.map_err(|e| failed(&e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(&e))?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok((status, body))
    }
}

/// A connection to the central server: TCP, or TLS over TCP.
trait CentralStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> CentralStream for T {}
