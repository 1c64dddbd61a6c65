//! The router: HTTP for an app's hostnames to its web dynos, with Heroku's error codes and a router log line per
//! request in the app's stream.
//!
//! A Host names an app through the [routing table](Routes): `<app>.<base domain>` or a custom domain. Requests go
//! to the app's web dynos that are up, over the in-process connections of each dyno's listener
//! ([`crate::runtime::net::Listener`]), to the dyno with the fewest requests in flight. A dyno takes at most
//! [`Settings::max_in_flight`] requests at once; past that, requests wait in a queue of at most
//! [`Settings::max_queue`] per app. A dyno that stops, or whose instance goes away, before it took a connection
//! sends that request on to another dyno: nothing of it was sent. Client connections are HTTP/1.1 with
//! keep-alive, independent of the dyno's; `Upgrade` requests (WebSocket) are relayed both ways once the dyno
//! answers 101. A request head (request line and headers) over 8 KiB is refused with 431.
//!
//! Failures answer a plain error page, status 503, and log `at=error code=H.. desc="..."`, as Heroku's router:
//!
//! | code | when |
//! |---|---|
//! | H10 App crashed | no web dyno is up and one has crashed |
//! | H11 Backlog too deep | every dyno has `max_in_flight` requests and the app's queue is full |
//! | H12 Request timeout | the dyno did not start its response within `request_timeout`, or its `wasi:http` handler missed its deadline first (or a queued request waited that long) |
//! | H13 Connection closed without response | the dyno closed the connection without answering |
//! | H14 No web processes running | no web dyno is up or starting |
//! | H15 Idle connection | the response body sent nothing for `idle_timeout`; the response is cut |
//! | H18 Server Request Interrupted | the dyno closed the connection while the request body was still being sent, or cut its response mid-body |
//! | H20 App boot timeout | the only web dynos were starting and none came up within `boot_timeout` |
//! | H27 Client Request Interrupted | the client went away before the response ended (`at=info`, status 499) |
//! | H80 Maintenance mode | (`at=info`) |
//! | H81 Blank app | the app has no release with a slug yet (`at=info`) |
//! | H99 Platform error | anything unexpected in the router |
//!
//! A request body over [`Settings::max_body`] gets 413. Unknown hosts get 404.
//!
//! The log line is Heroku's: `at=info method=GET path="/" host=app.localhost request_id=... fwd="127.0.0.1"
//! dyno=web.1 connect=0ms service=2ms status=200 bytes=13 protocol=http`, written when the response has ended:
//! `connect` is the time until the dyno took the connection, `service` the time from then to the end.
//!
//! The rooms, along a request: `admission` (who may hold a connection) → `client` (the connection and its head)
//! → this file (accept, route by Host) → `balance` (which dyno, or the queue) → `forward` (to the dyno, `pool`
//! keeping connections to listener dynos) → `codes` (the log line and H codes); `headers`, `body` and `settings`
//! serve them; `routes` is the routing table.

mod admission;
mod balance;
mod body;
mod client;
mod codes;
mod forward;
mod headers;
mod peers;
mod pool;
mod routes;
mod settings;

use admission::Admission;
pub use admission::ConnectionLimits;
#[cfg(feature = "platform")]
pub(crate) use admission::{
    Admission as ConnectionAdmission, Permit as ConnectionPermit, raise_open_file_limit,
    refuse as refuse_connection,
};
use pool::{Conn, ConnPool, PeerPool, Task, Upstream};

use balance::*;
pub use body::Body;
use client::*;
pub(crate) use codes::Entry;
use codes::*;
use forward::*;
use headers::*;
pub use peers::{FORWARDED_BY, Peers};
#[cfg(feature = "platform")]
pub use routes::DomainInfo;
pub use routes::Routes;
pub use settings::Settings;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::dyno::{Manager, State, WebDyno};
use crate::logs::{LogLine, Logplex, Source as LogSource};
use crate::metrics::Metrics;
use body::{RequestBody, ResponseBody, Sent, empty, full};

/// The largest request head (request line and headers) the router reads: Heroku's 8 KiB.
pub const MAX_HEAD: usize = 8 * 1024;

/// How often a request waiting for a starting dyno looks again.
const BOOT_POLL: Duration = Duration::from_millis(20);
/// How often a queued request looks for new dynos (it also wakes whenever a request ends).
const QUEUE_POLL: Duration = Duration::from_millis(100);
/// The pause before a request that every dyno turned away tries them again.
const RETRY_PAUSE: Duration = Duration::from_millis(5);

/// How long a new connection to a dyno with idle keep-alive connections may wait to be accepted before those are
/// closed (the guest may serve one connection at a time).
const POOL_RELEASE_AFTER: Duration = Duration::from_millis(20);

/// The router of one server: sends each request to a web dyno of the app its Host names (`<app>.<base domain>`
/// or a custom domain), queues it while every dyno is busy or booting, and logs Heroku's `at=info` router lines
/// and H codes into the app's stream. Cheap to clone: clones share their state.
///
/// An edge host gets one from its [`Edge`](crate::Edge); serve it with [`serve`](Router::serve) or mount
/// [`service`](Router::service) in its own hyper server.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use wasmdyno::{Edge, edge::EdgeSettings, Router, Runtime, RuntimeConfig};
///
/// let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
/// tokio.block_on(async {
///     let work = tempfile::tempdir()?;
///     let edge = Edge::new(Arc::new(Runtime::new(RuntimeConfig::default())?), work.path(), EdgeSettings::default());
///     let router: Router = edge.router().clone();
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
///     let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
///     let serving = tokio::spawn(router.serve(listener, async { stopped.await.ok(); }));
///     stop.send(()).ok();
///     serving.await?;
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    manager: Manager,
    routes: Routes,
    logplex: Logplex,
    /// Each request's status, response time and code, per app and process type.
    metrics: Metrics,
    settings: Settings,
    /// Requests in flight and queued, per app.
    loads: Mutex<crate::fastmap::FastMap<String, Arc<AppLoad>>>,
    /// Idle keep-alive connections to listener dynos.
    pool: ConnPool,
    /// Keep-alive connections to other cluster hosts' routers.
    peer_pool: PeerPool,
    /// Client connections open, against [`Settings::connections`].
    admission: Admission,
    /// The other hosts of a cluster, for apps with no web dyno here.
    peers: std::sync::OnceLock<Arc<dyn Peers>>,
    /// Which of several hosts the next forwarded request goes to.
    next_peer: AtomicUsize,
}

impl Router {
    /// A router sending the requests of the apps in `routes` to `manager`'s web dynos, writing its log lines
    /// into `logplex`. Serve it with [`serve`](Self::serve), or mount [`service`](Self::service) in your own
    /// hyper server.
    ///
    /// ```no_run
    /// # fn build(manager: wasmdyno::Manager, source: std::sync::Arc<wasmdyno::edge::MemorySource>) -> wasmdyno::Router {
    /// use wasmdyno::{Logplex, Router, router::Settings as RouterSettings, router::Routes};
    ///
    /// let routes = Routes::from_source(source, "apps.example.com");
    /// Router::new(manager, routes, Logplex::new(), RouterSettings::default())
    /// # }
    /// ```
    pub fn new(manager: Manager, routes: Routes, logplex: Logplex, settings: Settings) -> Router {
        Router::measured(manager, routes, logplex, settings, Metrics::new())
    }

    /// [`Router::new`], recording every request's status, response time and error code in `metrics` (per app and
    /// process type, as `wasmdyno metrics` shows them).
    pub fn measured(
        manager: Manager,
        routes: Routes,
        logplex: Logplex,
        settings: Settings,
        metrics: Metrics,
    ) -> Router {
        Router {
            inner: Arc::new(Inner {
                manager,
                routes,
                logplex,
                metrics,
                admission: Admission::new(settings.connections),
                settings,
                loads: Mutex::default(),
                pool: ConnPool::default(),
                peer_pool: PeerPool::default(),
                peers: std::sync::OnceLock::new(),
                next_peer: AtomicUsize::new(0),
            }),
        }
    }

    /// The router as a hyper [`Service`](hyper::service::Service) for one client connection from `peer`, accepted
    /// on local port `port` (`X-Forwarded-Port`). Give it to `hyper::server::conn::http1::Builder::serve_connection`
    /// (with `.with_upgrades()` for WebSockets); one service per connection.
    ///
    /// ```no_run
    /// # async fn host(router: wasmdyno::Router) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// loop {
    ///     let (stream, peer) = listener.accept().await?;
    ///     let service = router.service(peer, 8080);
    ///     tokio::spawn(async move {
    ///         let io = hyper_util::rt::TokioIo::new(stream);
    ///         let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    ///         let _ = conn.with_upgrades().await;
    ///     });
    /// }
    /// # }
    /// ```
    pub fn service(&self, peer: SocketAddr, port: u16) -> RouterService {
        RouterService {
            router: self.clone(),
            client: Arc::new(Client::new(peer, port)),
        }
    }

    /// Like [`service`](Self::service), for a listener of `app`'s own: every request goes to `app`, whatever its
    /// Host (which the app still sees as sent).
    ///
    /// ```no_run
    /// # async fn host(router: wasmdyno::Router) -> std::io::Result<()> {
    /// // `hello` on a port of its own.
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:8081").await?;
    /// let (stream, peer) = listener.accept().await?;
    /// let service = router.app_service("hello", peer, 8081);
    /// let io = hyper_util::rt::TokioIo::new(stream);
    /// let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades().await;
    /// # Ok(()) }
    /// ```
    pub fn app_service(&self, app: &str, peer: SocketAddr, port: u16) -> RouterService {
        let mut client = Client::new(peer, port);
        client.app = Some(app.to_string());
        RouterService {
            router: self.clone(),
            client: Arc::new(client),
        }
    }

    /// Routes one request from `peer` (a host with its own server and no connection state to share).
    ///
    /// ```no_run
    /// # async fn host(router: wasmdyno::Router, stream: tokio::net::TcpStream) {
    /// let peer = stream.peer_addr().unwrap();
    /// let service = hyper::service::service_fn(move |req| {
    ///     let router = router.clone();
    ///     async move { Ok::<_, std::convert::Infallible>(router.handle(req, peer, 80).await) }
    /// });
    /// let io = hyper_util::rt::TokioIo::new(stream);
    /// let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
    /// # }
    /// ```
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        port: u16,
    ) -> Response<Body> {
        let client = Client::new(peer, port);
        self.route(req, &client).await
    }

    /// Accepts connections on `listener` until `shutdown` resolves.
    ///
    /// ```no_run
    /// # async fn host(router: wasmdyno::Router) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:80").await?;
    /// router.serve(listener, async { tokio::signal::ctrl_c().await.ok(); }).await;
    /// # Ok(()) }
    /// ```
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let port = listener.local_addr().map_or(0, |a| a.port());
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("router accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => return,
            };
            let permit = match self.inner.admission.admit(peer.ip()) {
                Ok(permit) => permit,
                Err(why) => {
                    admission::refuse(stream, why);
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let router = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let client = Arc::new(Client::new(peer, port));
                let io = Recorder {
                    stream,
                    client: client.clone(),
                };
                let service = {
                    let client = client.clone();
                    let router = router.clone();
                    hyper::service::service_fn(move |req| {
                        let router = router.clone();
                        let client = client.clone();
                        async move { Ok::<_, Infallible>(router.route(req, &client).await) }
                    })
                };
                let conn = hyper::server::conn::http1::Builder::new()
                    .max_buf_size(MAX_HEAD)
                    .keep_alive(true)
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(router.inner.settings.header_timeout)
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    if e.is_parse_too_large() {
                        router.head_too_large(&client);
                    } else {
                        tracing::debug!("router connection from {peer}: {e}");
                    }
                }
            });
        }
    }

    async fn route(&self, mut req: Request<Incoming>, client: &Client) -> Response<Body> {
        // Background dynos step aside until this request has its response's head.
        let _serving = crate::runtime::share::Serving::start();
        let started = Instant::now();
        client.request_started();
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
            .map(host_name)
            .unwrap_or_default();
        client.set_host(&host);
        let request_id = request_id(&req);
        let request_id_text = request_id.to_str().unwrap_or_default();
        let looked_up = match &client.app {
            Some(app) => self
                .inner
                .routes
                .lookup(&self.inner.routes.default_host(app)),
            None => self.inner.routes.lookup(&host),
        };
        let app = match looked_up {
            Ok(Some(app)) => app,
            Ok(None) => {
                return page(
                    StatusCode::NOT_FOUND,
                    "No such app",
                    &format!("There is no app at {host}."),
                );
            }
            Err(e) => {
                tracing::error!(host = &*host, "H99: the routing table cannot be read: {e}");
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Application error",
                    "Platform error (H99)",
                );
            }
        };
        let mut entry = Entry {
            logplex: self.inner.logplex.clone(),
            metrics: self.inner.metrics.clone(),
            app: app.name,
            request: request_fields(
                req.method(),
                req.uri().path_and_query().map_or("/", |p| p.as_str()),
                &host,
                request_id_text,
                client.ip_text(),
            ),
            dyno: String::new(),
            started,
            accepted: None,
            bytes: 0,
            done: false,
        };
        if app.maintenance {
            return entry.fail_info("H80", "Maintenance mode");
        }
        if !app.released {
            return entry.fail_info("H81", "Blank app");
        }
        let settings = &self.inner.settings;
        let declared = declared_length(req.headers());
        if let (Some(max), Some(length)) = (settings.max_body, declared)
            && length > max
        {
            return entry.too_large();
        }

        let upgrade = wants_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let headers = req.headers_mut();
        strip_hop_by_hop(headers, upgrade);
        headers.remove(header::EXPECT);
        // Room for the five headers added here, at once.
        headers.reserve(5);
        headers.insert(X_REQUEST_ID, request_id);
        match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prior) => {
                let forwarded_for = format!("{prior}, {}", client.ip_text());
                set(headers, X_FORWARDED_FOR, &forwarded_for);
            }
            None => {
                headers.insert(X_FORWARDED_FOR, client.ip_header.clone());
            }
        }
        headers.insert(X_FORWARDED_PROTO, HTTP);
        headers.insert(X_FORWARDED_PORT, client.port_header.clone());
        headers.insert(header::VIA, VIA_WASMDYNO);
        let (mut parts, incoming) = req.into_parts();
        // A dyno gets the origin form (`/path?query`), whatever form the client used (only the absolute form
        // has a scheme; the authority form of CONNECT has no path to give).
        if parts.uri.scheme().is_some()
            && let Some(origin) = parts.uri.path_and_query().map(|p| p.as_str().to_string())
        {
            parts.uri = origin
                .parse()
                .unwrap_or_else(|_| hyper::Uri::from_static("/"));
        }
        let has_body = !incoming.is_end_stream();
        // A request without a body gives the dyno an empty one (a box of nothing, no allocation).
        let (body, sent) = if has_body {
            let (body, sent) = RequestBody::new(incoming, settings.max_body);
            (body.boxed_unsync(), Some(sent))
        } else {
            (empty(), None)
        };
        let sent_says = |what: fn(&Sent) -> &AtomicBool| {
            sent.as_ref()
                .is_some_and(|sent| what(sent).load(Ordering::Acquire))
        };
        let mut req = Request::from_parts(parts, body);
        // On a cluster, an app whose web dynos all run on other hosts is served through theirs.
        if let Some(peer) = self.peer_for(&entry.app, &req) {
            return self.forward_to_host(req, peer, entry, client_upgrade).await;
        }

        // Find a dyno that takes the request; one that turns it away untouched is tried no more.
        let mut tried = Vec::new();
        let mut deadline = None;
        let (slot, forwarded) = loop {
            let mut slot = match self.acquire(&entry.app, &mut tried, started).await {
                Ok(slot) => slot,
                Err((code, desc)) => return entry.fail(code, desc),
            };
            // The name is the line's from here on (the slot's copy was made for this request).
            entry.dyno = std::mem::take(&mut slot.dyno.name);
            let deadline = *deadline
                .get_or_insert_with(|| tokio::time::Instant::now() + settings.request_timeout);
            let forwarding = self.forward(&slot.dyno, req, app.keep_alive, &mut entry);
            match tokio::time::timeout_at(deadline, forwarding).await {
                Err(_) | Ok(Err(Failure::Timeout)) => return entry.fail("H12", "Request timeout"),
                Ok(Ok(forwarded)) => break (slot, forwarded),
                Ok(Err(Failure::NotTaken(back))) => {
                    tried.push(key(&slot.dyno));
                    req = *back;
                }
                Ok(Err(Failure::Closed)) => {
                    return if sent_says(|s| &s.too_large) {
                        entry.too_large()
                    } else if sent_says(|s| &s.client_gone) {
                        entry.client_gone();
                        page(
                            StatusCode::BAD_REQUEST,
                            "Bad request",
                            "The request was interrupted.",
                        )
                    } else if has_body && !sent_says(|s| &s.done) {
                        entry.fail("H18", "Server Request Interrupted")
                    } else {
                        entry.fail("H13", "Connection closed without response")
                    };
                }
                Ok(Err(Failure::Platform(why))) => {
                    tracing::error!(app = entry.app, "H99: {why}");
                    return entry.fail("H99", "Platform error");
                }
            }
        };

        let Forwarded { response, upstream } = forwarded;
        self.pass_on(response, upstream, entry, Some(slot), client_upgrade)
    }

    /// Passes a response on to the client, from a dyno (holding its request `slot`) or from another host: an
    /// upgrade relayed both ways, or the body with the router's handling of its end (the router line, H15, H18,
    /// H27).
    pub(super) fn pass_on(
        &self,
        mut response: Response<Body>,
        upstream: Option<Upstream>,
        mut entry: Entry,
        slot: Option<Slot>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<Body> {
        let status = response.status();
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        strip_hop_by_hop(response.headers_mut(), switching);
        if switching {
            if let Some(client_upgrade) = client_upgrade {
                relay_upgraded(client_upgrade, hyper::upgrade::on(&mut response));
            }
            if let Some(upstream) = upstream {
                upstream.detach();
            }
            entry.ok(status.as_u16(), 0);
            drop(slot);
            return response.map(|_| empty());
        }
        let (parts, body) = response.into_parts();
        let body = ResponseBody::new(
            body,
            status.as_u16(),
            declared_length(&parts.headers),
            self.inner.settings.idle_timeout,
            entry,
            slot,
            upstream,
        );
        Response::from_parts(parts, body.boxed_unsync())
    }

    /// Logs a request refused because its head was over [`MAX_HEAD`] (hyper answers 431 and closes), in the
    /// stream of the app its Host names, if it can be told.
    fn head_too_large(&self, client: &Client) {
        let head = std::mem::take(&mut *client.head.lock().expect("head"));
        let text = String::from_utf8_lossy(&head);
        let mut lines = text.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_string();
        let mut path: String = first.next().unwrap_or_default().chars().take(200).collect();
        path = path.replace('"', "%22");
        let host = lines
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("host")
                    .then(|| host_name(value.trim()).into_owned())
            })
            .or_else(|| client.last_host.lock().expect("host").clone())
            .unwrap_or_default();
        tracing::info!(host, "refused a request head over {MAX_HEAD} bytes");
        if let Ok(Some(app)) = self.inner.routes.lookup(&host) {
            self.inner.logplex.publish(
                &app.name,
                LogLine::platform(
                    "router",
                    format!(
                        "at=error desc=\"Request header too large\" method={method} path=\"{path}\" host={} request_id= fwd=\"{}\" dyno= connect=0ms service=0ms status=431 bytes=0 protocol=http",
                        logfmt_value(&host),
                        client.peer.ip()
                    ),
                ),
            );
        }
    }
}

/// [`Router::service`]: the router for one client connection, as a hyper service.
///
/// ```no_run
/// # async fn host(router: wasmdyno::Router) -> std::io::Result<()> {
/// use wasmdyno::router::RouterService;
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let (stream, peer) = listener.accept().await?;
/// let service: RouterService = router.service(peer, 8080);
/// let io = hyper_util::rt::TokioIo::new(stream);
/// let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RouterService {
    router: Router,
    client: Arc<Client>,
}

impl hyper::service::Service<Request<Incoming>> for RouterService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let (router, client) = (self.router.clone(), self.client.clone());
        Box::pin(async move { Ok(router.route(req, &client).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_except_for_an_upgrade() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let mut plain = headers.clone();
        strip_hop_by_hop(&mut plain, false);
        let names: Vec<&str> = plain.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-length"]);

        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, x-private"),
        );
        assert!(wants_upgrade(&headers));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers[header::CONNECTION], "upgrade");
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert!(!headers.contains_key("x-private"));
    }

    #[test]
    fn request_fields_quote_the_path_and_a_crafted_host() {
        assert_eq!(
            request_fields(
                &hyper::Method::GET,
                "/a\"b?c=\"",
                "app.localhost",
                "id-1",
                "127.0.0.1"
            ),
            "method=GET path=\"/a%22b?c=%22\" host=app.localhost request_id=id-1 fwd=\"127.0.0.1\""
        );
        assert_eq!(
            request_fields(&hyper::Method::POST, "/", "x status=200", "id-2", "::1"),
            "method=POST path=\"/\" host=\"x status=200\" request_id=id-2 fwd=\"::1\""
        );
    }

    #[test]
    fn logfmt_values_are_bare_words_or_quoted() {
        assert_eq!(logfmt_value("app.localhost"), "app.localhost");
        assert_eq!(
            logfmt_value("x status=200 dyno=web.9"),
            "\"x status=200 dyno=web.9\""
        );
        assert_eq!(logfmt_value("a\"b\\c\r"), "\"a\\\"b\\\\c\\r\"");
        assert_eq!(logfmt_value(""), "\"\"");
    }

    #[test]
    fn host_names_lose_port_case_and_trailing_dot() {
        assert_eq!(host_name("App.LocalHost:5000"), "app.localhost");
        assert_eq!(host_name("www.example.com."), "www.example.com");
        assert_eq!(host_name("[::1]:80"), "[::1]");
    }

    #[test]
    fn defaults_are_herokus() {
        let defaults = Settings::default();
        assert_eq!(defaults.request_timeout, Duration::from_secs(30));
        assert_eq!(defaults.idle_timeout, Duration::from_secs(55));
        assert_eq!(defaults.boot_timeout, Duration::from_secs(75));
        assert_eq!((defaults.max_in_flight, defaults.max_queue), (50, 200));
        assert_eq!(defaults.max_body, None);
    }
}
