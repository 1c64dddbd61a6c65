//! Outgoing `wasi:http` requests under the dyno's network policy: the host resolves the name once, checks every
//! address, and connects to those very addresses, keeping the name for `Host` and TLS (SNI and the certificate).
//! Resolving again to connect would let a name that answers a public address first and a private one next
//! (DNS rebinding) reach the control API, the router or another app.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::NetworkPolicy;
use super::policy::Refusal;

/// The longest the first byte of a response, or the time between two, may take when the guest sets no timeout
/// of its own (opening the connection has the policy's [`connect_timeout`](NetworkPolicy::connect_timeout)).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Outgoing `wasi:http` requests: to the app's allowed destinations on public addresses, nothing else.
pub(crate) struct Outgoing {
    policy: Arc<NetworkPolicy>,
}

impl Outgoing {
    pub(crate) fn new(policy: Arc<NetworkPolicy>) -> Outgoing {
        Outgoing { policy }
    }
}

type IoFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;
type SendResult = wasmtime_wasi_http::Result<(hyper::Response<WasiBody>, IoFuture)>;

/// wasi:http's default forbidden headers, made once.
static FORBIDDEN_HEADERS: [hyper::header::HeaderName; 9] =
    wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS;

impl WasiHttpHooks for Outgoing {
    /// The default list, without the default's closure: that costs an allocation per header of every request and
    /// response a guest sees.
    fn is_forbidden_header(&mut self, name: &hyper::header::HeaderName) -> bool {
        FORBIDDEN_HEADERS.contains(name)
    }

    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let policy = self.policy.clone();
        Box::new(async move {
            let uri = request.uri();
            let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_string();
            let tls = uri.scheme() == Some(&hyper::http::uri::Scheme::HTTPS);
            let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
            let addrs = match policy.resolve(&host, port).await {
                Ok(addrs) => addrs,
                Err(Refusal::NotAllowed(_)) => return Err(Error::HttpRequestDenied),
                Err(Refusal::NotPublic { .. }) => return Err(Error::DestinationIpProhibited),
                Err(Refusal::Unresolved(_)) => {
                    return Err(Error::DnsError {
                        rcode: None,
                        info_code: None,
                    });
                }
            };
            let connect_timeout = policy.connect_timeout;
            send(request, options, connect_timeout, &addrs, &host, tls).await
        })
    }
}

/// Sends `request` over a connection to one of `addrs` (already vetted), as `host`.
async fn send(
    mut request: hyper::Request<WasiBody>,
    options: Option<RequestOptions>,
    default_connect_timeout: Duration,
    addrs: &[SocketAddr],
    host: &str,
    tls: bool,
) -> SendResult {
    let timeout = |pick: fn(&RequestOptions) -> Option<Duration>| {
        options.as_ref().and_then(pick).unwrap_or(DEFAULT_TIMEOUT)
    };
    let connect_timeout = options
        .as_ref()
        .and_then(|o| o.connect_timeout)
        .unwrap_or(default_connect_timeout);
    let first_byte_timeout = timeout(|o| o.first_byte_timeout);
    let between_bytes = timeout(|o| o.between_bytes_timeout).max(Duration::from_nanos(1));

    let stream = tokio::time::timeout(connect_timeout, connect(addrs))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let stream: Box<dyn Stream> = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']))
            .map_err(|_| Error::HttpRequestUriInvalid)?
            .to_owned();
        let connector = tokio_rustls::TlsConnector::from(crate::tls::web_pki());
        let stream = tokio::time::timeout(connect_timeout, connector.connect(name, stream))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(Error::Tls)?;
        Box::new(stream)
    } else {
        Box::new(stream)
    };
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    // The request line carries the path only; the name stays in `Host`.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;

    // Drive the connection while waiting for the response head; then hand the rest of its work to the caller.
    let mut conn = Box::pin(conn);
    let mut conn_ended = None;
    let response = {
        let waiting = tokio::time::timeout(first_byte_timeout, sender.send_request(request));
        tokio::pin!(waiting);
        loop {
            tokio::select! {
                response = &mut waiting => break response.map_err(|_| Error::ConnectionReadTimeout)??,
                ended = &mut conn, if conn_ended.is_none() => conn_ended = Some(ended),
            }
        }
    };
    let response = response.map(|incoming| {
        Timed {
            incoming,
            idle: Box::pin(tokio::time::sleep(between_bytes)),
            between_bytes,
        }
        .boxed_unsync()
    });
    let io: IoFuture = Box::new(async move {
        match conn_ended {
            Some(ended) => ended.map_err(Error::from),
            None => conn.await.map_err(Error::from),
        }
    });
    Ok((response, io))
}

/// A stream a request may go over: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Connects to the first of `addrs` that answers.
async fn connect(addrs: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to connect to")))
}

/// A response body that fails when nothing arrives for `between_bytes`.
struct Timed {
    incoming: hyper::body::Incoming,
    idle: Pin<Box<tokio::time::Sleep>>,
    between_bytes: Duration,
}

impl Body for Timed {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.between_bytes;
                self.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::runtime::policy::tests::STAND_IN;

    /// A name that answers a public address first and the loopback listener next (DNS rebinding): the request
    /// goes to the address that was checked, or nowhere, and the listener never sees a connection.
    #[tokio::test]
    async fn a_name_that_rebinds_to_loopback_never_reaches_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        let answers = Arc::new(AtomicUsize::new(0));
        let asked = answers.clone();
        *STAND_IN.lock().unwrap() = Some(Box::new(move |host: &str, port: u16| {
            (host == "rebind.test").then(|| {
                // A public address first (unreachable offline), then loopback.
                let first = asked.fetch_add(1, Ordering::SeqCst) == 0;
                let ip = if first { "203.0.114.1" } else { "127.0.0.1" };
                vec![SocketAddr::new(ip.parse().unwrap(), port)]
            })
        }));
        let mut outgoing = Outgoing::new(Arc::new(NetworkPolicy::new([format!(
            "rebind.test:{port}"
        )])));
        let request = || {
            hyper::Request::get(format!("http://rebind.test:{port}/"))
                .header("host", format!("rebind.test:{port}"))
                .body(
                    http_body_util::Empty::new()
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                )
                .unwrap()
        };
        let options = RequestOptions {
            connect_timeout: Some(Duration::from_millis(500)),
            ..Default::default()
        };
        let first =
            Pin::from(outgoing.send_request(request(), Some(options), Box::new(async { Ok(()) })))
                .await;
        assert!(first.is_err(), "the public address is unreachable here");
        // The second lookup answers loopback: refused by the policy, before any connection.
        let second =
            Pin::from(outgoing.send_request(request(), Some(options), Box::new(async { Ok(()) })))
                .await;
        assert!(matches!(second, Err(Error::DestinationIpProhibited)));
        *STAND_IN.lock().unwrap() = None;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(answers.load(Ordering::SeqCst), 2, "one lookup per request");
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
    }
}
