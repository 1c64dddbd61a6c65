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
//! | H12 Request timeout | the dyno did not start its response within `request_timeout` (or a queued request waited that long) |
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

mod admission;
mod body;
mod pool;
mod routes;

use admission::Admission;
pub use admission::ConnectionLimits;
#[cfg(feature = "platform")]
pub(crate) use admission::{
    Admission as ConnectionAdmission, Permit as ConnectionPermit, raise_open_file_limit,
    refuse as refuse_connection,
};
use pool::{Conn, ConnPool, Task, Upstream};

pub use body::Body;
#[cfg(feature = "platform")]
pub use routes::DomainInfo;
pub use routes::Routes;

use std::collections::HashMap;
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
use crate::logplex::{LogLine, Logplex};
use body::{RequestBody, ResponseBody, empty, full};

/// The largest request head (request line and headers) the router reads: Heroku's 8 KiB.
pub const MAX_HEAD: usize = 8 * 1024;

/// How often a request waiting for a starting dyno looks again.
const BOOT_POLL: Duration = Duration::from_millis(20);
/// How often a queued request looks for new dynos (it also wakes whenever a request ends).
const QUEUE_POLL: Duration = Duration::from_millis(100);
/// The pause before a request that every dyno turned away tries them again.
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// The app feature (Heroku's name) that turns keep-alive connections to the app's dynos off.
pub(crate) const NO_KEEPALIVE_FEATURE: &str = "http-disable-keepalive-to-dyno";

/// How long a new connection to a dyno with idle keep-alive connections may wait to be accepted before those are
/// closed (the guest may serve one connection at a time).
const POOL_RELEASE_AFTER: Duration = Duration::from_millis(20);

/// Router timers and limits. Every one is a setting, so tests provoke each code in milliseconds.
///
/// ```
/// use std::time::Duration;
///
/// let mut settings = wasmdyno::RouterSettings::default();
/// settings.request_timeout = Duration::from_secs(10);
/// settings.base_domain = "apps.example.com".into();
/// assert_eq!(settings.max_body, None);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// H12: the dyno must start its response within this time (`WASMDYNO_ROUTER_TIMEOUT_MS`, 30 s).
    pub request_timeout: Duration,
    /// H15: a response body that sends nothing for this long is cut (`WASMDYNO_ROUTER_IDLE_TIMEOUT_MS`, 55 s).
    pub idle_timeout: Duration,
    /// H20: how long a request waits for a starting web dyno to come up (`WASMDYNO_ROUTER_BOOT_TIMEOUT_MS`,
    /// 75 s).
    pub boot_timeout: Duration,
    /// H11: requests a dyno takes at once before more wait in the app's queue (`WASMDYNO_ROUTER_MAX_IN_FLIGHT`,
    /// 50).
    pub max_in_flight: usize,
    /// H11: requests waiting per app for a dyno; one more is refused (`WASMDYNO_ROUTER_MAX_QUEUE`, 200).
    pub max_queue: usize,
    /// 413: the largest request body, in bytes (`WASMDYNO_ROUTER_MAX_BODY`; unlimited by default).
    pub max_body: Option<u64>,
    /// The domain apps live under: `<app>.<base_domain>` (`WASMDYNO_BASE_DOMAIN`, `localhost`).
    pub base_domain: String,
    /// A client must send a whole request head within this time of connecting or of its previous response, or
    /// its connection is closed: slow heads and idle keep-alive connections both end
    /// (`WASMDYNO_ROUTER_HEADER_TIMEOUT_MS`, 30 s, as Heroku's router).
    pub header_timeout: Duration,
    /// Open client connections, in all (`WASMDYNO_ROUTER_MAX_CONNECTIONS`, 10,000) and per client address
    /// (`WASMDYNO_ROUTER_MAX_CONNECTIONS_PER_CLIENT`, 512); one more is answered 503 and closed.
    pub connections: ConnectionLimits,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(55),
            boot_timeout: Duration::from_secs(75),
            max_in_flight: 50,
            max_queue: 200,
            max_body: None,
            base_domain: "localhost".into(),
            header_timeout: Duration::from_secs(30),
            connections: ConnectionLimits {
                total: 10_000,
                per_client: 512,
            },
        }
    }
}

impl Settings {
    /// The defaults, overridden by `WASMDYNO_ROUTER_TIMEOUT_MS`, `WASMDYNO_ROUTER_IDLE_TIMEOUT_MS`,
    /// `WASMDYNO_ROUTER_BOOT_TIMEOUT_MS`, `WASMDYNO_ROUTER_MAX_IN_FLIGHT`, `WASMDYNO_ROUTER_MAX_QUEUE`,
    /// `WASMDYNO_ROUTER_MAX_BODY` (bytes), `WASMDYNO_ROUTER_HEADER_TIMEOUT_MS`, `WASMDYNO_ROUTER_MAX_CONNECTIONS`,
    /// `WASMDYNO_ROUTER_MAX_CONNECTIONS_PER_CLIENT` and `WASMDYNO_BASE_DOMAIN`. An error names a variable whose value is not
    /// a number.
    ///
    /// ```
    /// // `WASMDYNO_BASE_DOMAIN=apps.example.com wasmdyno serve` serves apps at `<app>.apps.example.com`.
    /// let settings = wasmdyno::RouterSettings::from_env()?;
    /// println!("apps live under {}", settings.base_domain);
    /// # Ok::<(), String>(())
    /// ```
    pub fn from_env() -> Result<Settings, String> {
        let mut settings = Settings::default();
        let number = |var: &str| -> Result<Option<u64>, String> {
            match std::env::var(var) {
                Ok(value) => value
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{var}={value:?} is not a number")),
                Err(_) => Ok(None),
            }
        };
        for (var, field) in [
            ("WASMDYNO_ROUTER_TIMEOUT_MS", &mut settings.request_timeout),
            (
                "WASMDYNO_ROUTER_IDLE_TIMEOUT_MS",
                &mut settings.idle_timeout,
            ),
            (
                "WASMDYNO_ROUTER_BOOT_TIMEOUT_MS",
                &mut settings.boot_timeout,
            ),
            (
                "WASMDYNO_ROUTER_HEADER_TIMEOUT_MS",
                &mut settings.header_timeout,
            ),
        ] {
            if let Some(ms) = number(var)? {
                *field = Duration::from_millis(ms);
            }
        }
        for (var, field) in [
            ("WASMDYNO_ROUTER_MAX_IN_FLIGHT", &mut settings.max_in_flight),
            ("WASMDYNO_ROUTER_MAX_QUEUE", &mut settings.max_queue),
            (
                "WASMDYNO_ROUTER_MAX_CONNECTIONS",
                &mut settings.connections.total,
            ),
            (
                "WASMDYNO_ROUTER_MAX_CONNECTIONS_PER_CLIENT",
                &mut settings.connections.per_client,
            ),
        ] {
            if let Some(n) = number(var)? {
                *field = usize::try_from(n).unwrap_or(usize::MAX);
            }
        }
        settings.max_in_flight = settings.max_in_flight.max(1);
        settings.max_body = number("WASMDYNO_ROUTER_MAX_BODY")?.or(settings.max_body);
        if let Ok(domain) = std::env::var("WASMDYNO_BASE_DOMAIN") {
            settings.base_domain = domain.trim_matches('.').to_lowercase();
        }
        Ok(settings)
    }
}

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
/// use wasmdyno::{Edge, EdgeSettings, Router, Runtime, RuntimeConfig};
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
    settings: Settings,
    /// Requests in flight and queued, per app.
    loads: Mutex<HashMap<String, Arc<AppLoad>>>,
    /// Idle keep-alive connections to listener dynos.
    pool: ConnPool,
    /// Client connections open, against [`Settings::connections`].
    admission: Admission,
}

/// One app's requests: in flight per dyno, and waiting for one.
#[derive(Default)]
struct AppLoad {
    /// Listener id → requests in flight on that dyno. Only ever incremented under this lock.
    in_flight: Mutex<HashMap<usize, Arc<AtomicUsize>>>,
    queued: AtomicUsize,
    /// Signalled whenever a request of the app ends.
    freed: Notify,
}

/// A request's place on a dyno: released (and a queued request woken) when dropped.
pub(crate) struct Slot {
    load: Arc<AppLoad>,
    count: Arc<AtomicUsize>,
    dyno: WebDyno,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.load.freed.notify_waiters();
    }
}

/// A request's place in its app's queue.
struct Queued(Arc<AppLoad>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request with the same head as `req` and no body (for one whose body is empty).
fn bodiless_copy(req: &Request<Body>) -> Request<Body> {
    let mut copy = Request::new(empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// What a dyno answered over `upstream`.
fn forwarded(response: Response<Incoming>, upstream: Upstream) -> Forwarded {
    Forwarded {
        response: response.map(|body| body.map_err(Into::into).boxed_unsync()),
        upstream: Some(upstream),
    }
}

/// What a dyno answered: the response head and a body still to come.
struct Forwarded {
    response: Response<Body>,
    upstream: Option<Upstream>,
}

/// Why forwarding to a dyno failed.
enum Failure {
    /// The dyno never took the connection (it is stopping, or its instance went away): nothing was sent, and
    /// here is the request back, for another dyno.
    NotTaken(Box<Request<Body>>),
    /// The dyno closed the connection before its response head (H13, or H18 while the body was being sent).
    Closed,
    /// Something that should not happen (H99).
    Platform(String),
}

/// The key of a dyno in the per-dyno counts.
fn key(dyno: &WebDyno) -> usize {
    dyno.listener.id()
}

impl Router {
    /// A router sending the requests of the apps in `routes` to `manager`'s web dynos, writing its log lines
    /// into `logplex`. Serve it with [`serve`](Self::serve), or mount [`service`](Self::service) in your own
    /// hyper server.
    ///
    /// ```no_run
    /// # fn build(manager: wasmdyno::Manager, source: std::sync::Arc<wasmdyno::MemorySource>) -> wasmdyno::Router {
    /// use wasmdyno::{Logplex, Router, RouterSettings, Routes};
    ///
    /// let routes = Routes::from_source(source, "apps.example.com");
    /// Router::new(manager, routes, Logplex::new(), RouterSettings::default())
    /// # }
    /// ```
    pub fn new(manager: Manager, routes: Routes, logplex: Logplex, settings: Settings) -> Router {
        Router {
            inner: Arc::new(Inner {
                manager,
                routes,
                logplex,
                admission: Admission::new(settings.connections),
                settings,
                loads: Mutex::default(),
                pool: ConnPool::default(),
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
        let path = req
            .uri()
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().replace('"', "%22"));
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
                tracing::error!(host, "H99: the routing table cannot be read: {e}");
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Application error",
                    "Platform error (H99)",
                );
            }
        };
        let mut entry = Entry {
            logplex: self.inner.logplex.clone(),
            app: app.name.clone(),
            request: format!(
                "method={} path=\"{path}\" host={} request_id={request_id} fwd=\"{}\"",
                req.method(),
                logfmt_value(&host),
                client.peer.ip()
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
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
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
        set(headers, "x-request-id", &request_id);
        let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {}", client.peer.ip()),
            None => client.peer.ip().to_string(),
        };
        set(headers, "x-forwarded-for", &forwarded_for);
        set(headers, "x-forwarded-proto", "http");
        set(headers, "x-forwarded-port", &client.port.to_string());
        set(headers, "via", "1.1 wasmdyno");
        let (mut parts, incoming) = req.into_parts();
        // A dyno gets the origin form (`/path?query`), whatever form the client used.
        if let Some(origin) = parts.uri.path_and_query().map(|p| p.as_str().to_string()) {
            parts.uri = origin
                .parse()
                .unwrap_or_else(|_| hyper::Uri::from_static("/"));
        }
        let has_body = !incoming.is_end_stream();
        let (body, sent) = RequestBody::new(incoming, settings.max_body);
        let mut req = Request::from_parts(parts, body.boxed_unsync());

        // Find a dyno that takes the request; one that turns it away untouched is tried no more.
        let mut tried = Vec::new();
        let mut deadline = None;
        let (slot, forwarded) = loop {
            let slot = match self.acquire(&app.name, &mut tried, started).await {
                Ok(slot) => slot,
                Err((code, desc)) => return entry.fail(code, desc),
            };
            entry.dyno = slot.dyno.name.clone();
            let deadline = *deadline
                .get_or_insert_with(|| tokio::time::Instant::now() + settings.request_timeout);
            let forwarding = self.forward(&slot.dyno, req, app.keep_alive, &mut entry);
            match tokio::time::timeout_at(deadline, forwarding).await {
                Err(_) => return entry.fail("H12", "Request timeout"),
                Ok(Ok(forwarded)) => break (slot, forwarded),
                Ok(Err(Failure::NotTaken(back))) => {
                    tried.push(key(&slot.dyno));
                    req = *back;
                }
                Ok(Err(Failure::Closed)) => {
                    return if sent.too_large.load(Ordering::Acquire) {
                        entry.too_large()
                    } else if sent.client_gone.load(Ordering::Acquire) {
                        entry.client_gone();
                        page(
                            StatusCode::BAD_REQUEST,
                            "Bad request",
                            "The request was interrupted.",
                        )
                    } else if has_body && !sent.done.load(Ordering::Acquire) {
                        entry.fail("H18", "Server Request Interrupted")
                    } else {
                        entry.fail("H13", "Connection closed without response")
                    };
                }
                Ok(Err(Failure::Platform(why))) => {
                    tracing::error!(app = app.name, "H99: {why}");
                    return entry.fail("H99", "Platform error");
                }
            }
        };

        let Forwarded {
            mut response,
            upstream,
        } = forwarded;
        let status = response.status();
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        strip_hop_by_hop(response.headers_mut(), switching);
        if switching {
            if let Some(client_upgrade) = client_upgrade {
                let dyno_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    if let (Ok(client), Ok(dyno)) = tokio::join!(client_upgrade, dyno_upgrade) {
                        let (mut client, mut dyno) = (TokioIo::new(client), TokioIo::new(dyno));
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut dyno).await;
                    }
                });
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
            settings.idle_timeout,
            entry,
            slot,
            upstream,
        );
        Response::from_parts(parts, body.boxed_unsync())
    }

    /// Sends the request to one dyno and returns its response head. This is the one place that talks to a dyno.
    async fn forward(
        &self,
        dyno: &WebDyno,
        req: Request<Body>,
        keep_alive: bool,
        entry: &mut Entry,
    ) -> Result<Forwarded, Failure> {
        if let Some(handler) = &dyno.handler {
            // A `wasi:http` handler or a CGI command: called in-process, no connection.
            entry.accepted = Some(Instant::now());
            return match handler.handle(req).await {
                Ok(response) => Ok(Forwarded {
                    response,
                    upstream: None,
                }),
                Err(crate::runtime::http::HttpFailure::Instantiate(e)) => Err(Failure::Platform(e)),
                Err(_) => Err(Failure::Closed),
            };
        }
        let listener = &dyno.listener;
        let mut req = req;
        // A request without a body (and no upgrade) goes on an idle keep-alive connection if there is one. The
        // dyno may have closed that meanwhile (a server may close an idle connection without saying so): if it
        // read none of the request, the request goes on the next one, and finally on a new connection. Once the
        // dyno has read any of it, a failure is the dyno's answer (H13): nothing is sent twice.
        let reusable = keep_alive
            && req.body().is_end_stream()
            && !req.headers().contains_key(header::UPGRADE);
        while reusable && let Some(mut conn) = self.inner.pool.take(listener).await {
            entry.accepted = Some(Instant::now());
            let again = bodiless_copy(&req);
            let read_before = conn.reads.count();
            match conn.sender.try_send_request(req).await {
                Ok(response) => {
                    let upstream =
                        Upstream::Pooled(conn, self.inner.pool.clone(), listener.clone());
                    return Ok(forwarded(response, upstream));
                }
                Err(mut e) => match e.take_message() {
                    Some(never_sent) => req = never_sent,
                    None if conn.reads.count() == read_before => req = again,
                    None => return Err(Failure::Closed),
                },
            }
        }
        let conn = match listener.connect().await {
            Ok(conn) => conn,
            Err(_) => return Err(Failure::NotTaken(Box::new(req))),
        };
        // A guest serving one connection at a time may be waiting on an idle keep-alive connection of ours:
        // if the new one is not taken promptly, close those.
        let taken = {
            let accepted = conn.accepted(listener);
            tokio::pin!(accepted);
            match tokio::time::timeout(POOL_RELEASE_AFTER, accepted.as_mut()).await {
                Ok(taken) => taken,
                Err(_) => {
                    self.inner.pool.release(listener);
                    accepted.await
                }
            }
        };
        if taken.is_err() {
            return Err(Failure::NotTaken(Box::new(req)));
        }
        entry.accepted = Some(Instant::now());
        let reads = conn.guest_reads();
        let (mut sender, connection) =
            match hyper::client::conn::http1::handshake(TokioIo::new(conn)).await {
                Ok(handshake) => handshake,
                Err(e) => return Err(Failure::Platform(format!("handshake with a dyno: {e}"))),
            };
        let task = Task::new(tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        }));
        match sender.send_request(req).await {
            // A connection that carried a body or an upgrade is not reused: the dyno may answer before it has
            // read all of a body, and an upgraded one is no longer HTTP.
            Ok(response) if reusable => {
                let conn = Conn {
                    sender,
                    task,
                    reads,
                };
                let upstream = Upstream::Pooled(conn, self.inner.pool.clone(), listener.clone());
                Ok(forwarded(response, upstream))
            }
            Ok(response) => Ok(forwarded(response, Upstream::Closing(task))),
            Err(_) => Err(Failure::Closed),
        }
    }

    fn load(&self, app: &str) -> Arc<AppLoad> {
        let mut loads = self.inner.loads.lock().expect("router loads");
        if loads.len() > 1024 {
            // Forget apps with nothing in flight (destroyed ones, mostly).
            loads.retain(|_, load| Arc::strong_count(load) > 1);
        }
        loads.entry(app.to_string()).or_default().clone()
    }

    /// A place on the up web dyno of `app` with the fewest requests in flight, not one of `tried`. Waits for a
    /// starting dyno (H20 past the boot timeout), and in the app's queue while every dyno is at its limit (H11
    /// when the queue is full, H12 past the request timeout).
    async fn acquire(
        &self,
        app: &str,
        tried: &mut Vec<usize>,
        started: Instant,
    ) -> Result<Slot, (&'static str, &'static str)> {
        let settings = &self.inner.settings;
        let load = self.load(app);
        self.inner.manager.touch(app);
        let boot_deadline = started + settings.boot_timeout;
        let retry_deadline = started + settings.request_timeout;
        let mut queued: Option<(Queued, tokio::time::Instant)> = None;
        loop {
            let freed = load.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let mut dynos = self.inner.manager.web_dynos(app);
            if dynos.is_empty() {
                let states: Vec<State> = self
                    .inner
                    .manager
                    .dynos(app)
                    .into_iter()
                    .filter(|d| d.kind == "web")
                    .map(|d| d.state)
                    .collect();
                // A sleeping app's idle dynos wake for this request, and it waits for them as for any boot.
                if states.contains(&State::Idle) {
                    self.inner.manager.wake(app);
                }
                if states.contains(&State::Starting) || states.contains(&State::Idle) {
                    let now = Instant::now();
                    if now >= boot_deadline {
                        return Err(("H20", "App boot timeout"));
                    }
                    tokio::time::sleep(BOOT_POLL.min(boot_deadline - now)).await;
                    continue;
                }
                return Err(if states.contains(&State::Crashed) {
                    ("H10", "App crashed")
                } else {
                    ("H14", "No web processes running")
                });
            }
            dynos.retain(|d| !tried.contains(&key(d)));
            if dynos.is_empty() {
                // Every dyno that is up turned the request away: give the dyno manager a moment to catch up
                // (a dyno whose instance went away is about to be marked crashed), then try them all again.
                if Instant::now() >= retry_deadline {
                    return Err(("H12", "Request timeout"));
                }
                tried.clear();
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            {
                let mut counts = load.in_flight.lock().expect("in flight");
                let live: Vec<usize> = dynos.iter().map(key).collect();
                counts.retain(|id, count| count.load(Ordering::Acquire) > 0 || live.contains(id));
                let (dyno, count) = dynos
                    .into_iter()
                    .map(|dyno| {
                        let count = counts.entry(key(&dyno)).or_default().clone();
                        (dyno, count)
                    })
                    .min_by_key(|(_, count)| count.load(Ordering::Acquire))
                    .expect("at least one dyno");
                if count.load(Ordering::Acquire) < settings.max_in_flight {
                    count.fetch_add(1, Ordering::AcqRel);
                    return Ok(Slot {
                        load: load.clone(),
                        count,
                        dyno,
                    });
                }
            }
            // Every dyno is at its limit: wait in the app's queue, if there is room.
            if queued.is_none() {
                if load.queued.fetch_add(1, Ordering::AcqRel) >= settings.max_queue {
                    load.queued.fetch_sub(1, Ordering::AcqRel);
                    return Err(("H11", "Backlog too deep"));
                }
                let deadline = tokio::time::Instant::now() + settings.request_timeout;
                queued = Some((Queued(load.clone()), deadline));
            }
            let deadline = queued.as_ref().expect("queued").1;
            tokio::select! {
                () = &mut freed => {}
                () = tokio::time::sleep(QUEUE_POLL) => {}
                () = tokio::time::sleep_until(deadline) => return Err(("H12", "Request timeout")),
            }
        }
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
                    .then(|| host_name(value.trim()))
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

/// One request's router log line, written once: when the response ends, when the router answers an error, or
/// (dropped unwritten) as H27 when the client went away first.
pub(crate) struct Entry {
    logplex: Logplex,
    app: String,
    /// `method=... path="..." host=... request_id=... fwd="..."`.
    request: String,
    dyno: String,
    started: Instant,
    /// When the dyno took the connection.
    accepted: Option<Instant>,
    /// Response bytes sent, for the H27 line.
    bytes: u64,
    done: bool,
}

impl Entry {
    /// Writes the line, once: `tag` is what goes after `at=...` (` code=H12 desc="Request timeout"`).
    fn write(&mut self, at: &str, tag: &str, status: u16, bytes: u64) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let now = Instant::now();
        let (connect, service) = match self.accepted {
            Some(accepted) => (accepted - self.started, now - accepted),
            None => (Duration::ZERO, now - self.started),
        };
        self.logplex.publish(
            &self.app,
            LogLine::platform(
                "router",
                format!(
                    "at={at}{tag} {} dyno={} connect={}ms service={}ms status={status} bytes={bytes} protocol=http",
                    self.request,
                    self.dyno,
                    connect.as_millis(),
                    service.as_millis(),
                ),
            ),
        );
    }

    fn is_done(&self) -> bool {
        self.done
    }

    /// The response ended as the dyno sent it.
    fn ok(&mut self, status: u16, bytes: u64) {
        self.write("info", "", status, bytes);
    }

    /// The router cut the response (the client has its head already).
    fn error(&mut self, code: &str, desc: &str, bytes: u64) {
        self.write(
            "error",
            &format!(" code={code} desc=\"{desc}\""),
            503,
            bytes,
        );
    }

    /// The router answers with an error page.
    fn fail(&mut self, code: &str, desc: &str) -> Response<Body> {
        self.error(code, desc, 0);
        error_page(code, desc)
    }

    /// An error page that is the app's state rather than a failure (H80, H81).
    fn fail_info(&mut self, code: &str, desc: &str) -> Response<Body> {
        self.write("info", &format!(" code={code} desc=\"{desc}\""), 503, 0);
        error_page(code, desc)
    }

    fn too_large(&mut self) -> Response<Body> {
        self.write("error", " desc=\"Request body too large\"", 413, 0);
        page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large",
            "The request body is larger than this platform accepts.",
        )
    }

    /// H27: the client went away before the response ended.
    fn client_gone(&mut self) {
        let bytes = self.bytes;
        self.write(
            "info",
            " code=H27 desc=\"Client Request Interrupted\"",
            499,
            bytes,
        );
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.client_gone();
    }
}

/// [`Router::service`]: the router for one client connection, as a hyper service.
///
/// ```no_run
/// # async fn host(router: wasmdyno::Router) -> std::io::Result<()> {
/// use wasmdyno::RouterService;
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

/// What the router knows about one client connection: who, and enough of its first request head to log a head
/// that was too large to parse.
struct Client {
    peer: SocketAddr,
    port: u16,
    /// The bytes of the first request head, kept until it is parsed (at most [`MAX_HEAD`] + 1).
    head: Mutex<Vec<u8>>,
    capturing: AtomicBool,
    /// The Host of the latest request on this connection.
    last_host: Mutex<Option<String>>,
    /// The app of a listener of its own ([`Router::app_service`]).
    app: Option<String>,
}

impl Client {
    fn new(peer: SocketAddr, port: u16) -> Client {
        Client {
            peer,
            port,
            head: Mutex::default(),
            capturing: AtomicBool::new(true),
            last_host: Mutex::default(),
            app: None,
        }
    }

    fn request_started(&self) {
        if self.capturing.swap(false, Ordering::AcqRel) {
            *self.head.lock().expect("head") = Vec::new();
        }
    }

    fn set_host(&self, host: &str) {
        *self.last_host.lock().expect("host") = Some(host.to_string());
    }
}

/// The client's TCP stream, recording the first request head as it is read.
struct Recorder {
    stream: tokio::net::TcpStream,
    client: Arc<Client>,
}

impl AsyncRead for Recorder {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if this.client.capturing.load(Ordering::Acquire) {
            let mut head = this.client.head.lock().expect("head");
            let room = (MAX_HEAD + 1).saturating_sub(head.len());
            let new = &buf.filled()[before..];
            head.extend_from_slice(&new[..new.len().min(room)]);
            if head.len() > MAX_HEAD {
                this.client.capturing.store(false, Ordering::Release);
            }
        }
        polled
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A Host header's name: lowercase, without port or trailing dot.
fn host_name(host: &str) -> String {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A logfmt value: bare when it is one plain word (as Heroku logs `host=app.herokuapp.com`), else quoted with
/// `"` and `\` escaped and control characters shown escaped, so that a crafted `Host` cannot add fields or lines.
fn logfmt_value(value: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| c.is_ascii_graphic() && !matches!(c, '"' | '=' | '\\');
    if !value.is_empty() && value.chars().all(plain) {
        return value.into();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_control() => quoted.extend(c.escape_debug()),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted.into()
}

/// Does the request ask to switch protocols (`Connection: upgrade` and an `Upgrade` header)?
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes the headers that concern one connection only (RFC 9110 §7.6.1), keeping `Connection: upgrade` and
/// `Upgrade` when the connection is being upgraded.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| !(upgrade && name == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// The client's `X-Request-Id` if it is a sensible one (20 to 200 characters of `[A-Za-z0-9+=/-]`), else a new one.
fn request_id(req: &Request<Incoming>) -> String {
    if let Some(given) = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        && (20..=200).contains(&given.len())
        && given
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=/-".contains(&b))
    {
        return given.to_string();
    }
    // Without randomness (never on the systems wasmdyno runs on) a request still gets an id, the nil UUID.
    crate::ids::uuid_v4().unwrap_or_else(|_| "00000000-0000-0000-0000-000000000000".into())
}

/// The error page of a router code.
fn error_page(code: &str, desc: &str) -> Response<Body> {
    let title = if code == "H80" {
        "Offline for maintenance"
    } else {
        "Application error"
    };
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        title,
        &format!("{desc} ({code})"),
    )
}

fn page(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    let html = format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{text}</p></body></html>\n"
    );
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-cache, no-store")
        .body(full(html))
        .expect("a valid response")
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
