//! The typed API client the CLI uses: finds the server through `$WASMDYNO_HOME`, sends the token, and turns
//! error bodies into errors that say what the server said.

use std::path::Path;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Announcement, ErrorBody, TOKEN_FILE};

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no wasmdyno server is running for {home} (start one with `wasmdyno serve`, or set WASMDYNO_API)"
    )]
    NoServer { home: String },
    #[error("cannot reach the wasmdyno API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{message}")]
    Api {
        status: u16,
        id: String,
        message: String,
    },
    #[error("unexpected response from the API ({status}): {body}")]
    Unexpected { status: u16, body: String },
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// An API client bound to one server.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// The server at `api`, or else the one announced in `home`; with `token`, or else the one in `home`.
    pub fn discover(home: &Path, api: Option<String>, token: Option<String>) -> Result<Client> {
        let no_server = || ClientError::NoServer {
            home: home.display().to_string(),
        };
        let base = match api.filter(|v| !v.is_empty()) {
            Some(url) => url,
            None => Announcement::read(home).ok_or_else(no_server)?.api,
        };
        let token = match token.filter(|v| !v.is_empty()) {
            Some(token) => token,
            None => std::fs::read_to_string(home.join(TOKEN_FILE))
                .map_err(|_| no_server())?
                .trim()
                .to_string(),
        };
        Ok(Client::new(base, token))
    }

    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Client {
        Client {
            base: base.into().trim_end_matches('/').to_string(),
            token: token.into(),
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; returns the response once its status is known (the body may still stream).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let url = format!("{}{}", self.base, path);
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .header("accept", "application/json")
            .body(Full::new(body))
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: error_chain(&e),
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(error_of(response).await)
    }

    /// A JSON request and its JSON response, with the response's headers.
    pub async fn json_with_headers<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(T, hyper::HeaderMap)> {
        let bytes = match body {
            Some(body) => Bytes::from(serde_json::to_vec(body).expect("request bodies serialize")),
            None => Bytes::new(),
        };
        let response = self.send(method, path, "application/json", bytes).await?;
        let (parts, body) = response.into_parts();
        let status = parts.status;
        let bytes = body
            .collect()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: e.to_string(),
            })?
            .to_bytes();
        let value = serde_json::from_slice(&bytes).map_err(|_| ClientError::Unexpected {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
        })?;
        Ok((value, parts.headers))
    }

    /// A POST whose connection the server upgrades to `protocol`; returns the response's headers and the
    /// upgraded connection.
    pub async fn upgrade(
        &self,
        path: &str,
        protocol: &str,
        body: &impl Serialize,
    ) -> Result<(hyper::HeaderMap, hyper::upgrade::Upgraded)> {
        let url = format!("{}{}", self.base, path);
        let unreachable = |reason: String| ClientError::Unreachable {
            url: url.clone(),
            reason,
        };
        let uri: hyper::Uri = url.parse().map_err(|e| unreachable(format!("{e}")))?;
        let authority = uri
            .authority()
            .ok_or_else(|| unreachable("the API address has no host".into()))?
            .clone();
        let stream = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
        tokio::spawn(connection.with_upgrades());
        let body = Bytes::from(serde_json::to_vec(body).expect("request bodies serialize"));
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header("host", authority.as_str())
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .header("connection", "upgrade")
            .header("upgrade", protocol)
            .body(Full::new(body))
            .map_err(|e| unreachable(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(error_of(response).await);
        }
        let headers = response.headers().clone();
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        Ok((headers, upgraded))
    }

    /// Sends a source tarball to a builds path (`/apps/{app}/builds?...`) and reads the streamed build: `line` gets
    /// each output line as it arrives. Ends with the release, or the server's error message, or `None` when the
    /// stream closed without either.
    pub async fn build(
        &self,
        path: &str,
        tarball: Vec<u8>,
        mut line: impl FnMut(&str),
    ) -> Result<Option<std::result::Result<crate::store::Release, String>>> {
        let response = self
            .send(Method::POST, path, "application/gzip", Bytes::from(tarball))
            .await?;
        let mut result = None;
        for_each_line(response.into_body(), |text| {
            match serde_json::from_slice::<super::BuildEvent>(text) {
                Ok(super::BuildEvent::Line(text)) => line(&text),
                Ok(super::BuildEvent::Release(release)) => result = Some(Ok(release)),
                Ok(super::BuildEvent::Error(e)) => result = Some(Err(e.message)),
                Err(_) => {}
            }
            true
        })
        .await;
        Ok(result)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(self
            .json_with_headers(Method::GET, path, None::<&()>)
            .await?
            .0)
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        Ok(self
            .json_with_headers(Method::POST, path, Some(body))
            .await?
            .0)
    }

    pub async fn patch<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        Ok(self
            .json_with_headers(Method::PATCH, path, Some(body))
            .await?
            .0)
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(self
            .json_with_headers(Method::DELETE, path, None::<&()>)
            .await?
            .0)
    }
}

/// Reads a streamed response body a line at a time (NDJSON builds and log sessions), calling `each` with every
/// complete line, newline included, until the body ends or `each` returns false.
pub async fn for_each_line(mut body: hyper::body::Incoming, mut each: impl FnMut(&[u8]) -> bool) {
    let mut pending = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if !each(&line) {
                return;
            }
        }
    }
}

/// The error an unsuccessful response carries in its body.
async fn error_of(response: hyper::Response<hyper::body::Incoming>) -> ClientError {
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    error_from(status, &bytes)
}

fn error_from(status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => ClientError::Api {
            status: status.as_u16(),
            id: body.id,
            message: body.message,
        },
        Err(_) => ClientError::Unexpected {
            status: status.as_u16(),
            body: String::from_utf8_lossy(bytes).chars().take(500).collect(),
        },
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
