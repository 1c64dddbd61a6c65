//! The router: HTTP for `<app>.localhost` to the app's web dynos, with Heroku's error codes and a router log line
//! per request in the app's stream.
//!
//! Requests are forwarded over the in-process connections of each web dyno's listener
//! ([`crate::runtime::net::Listener`]), balanced by outstanding requests. Failures answer a plain error page with
//! status 503 and a code, as Heroku's router does: H10 (app crashed), H12 (request timeout), H13 (connection closed
//! without response), H14 (no web dynos running), H80 (maintenance mode), H81 (no release yet).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::dyno::{Manager, WebDyno};
use crate::logplex::{LogLine, Logplex};
use crate::store::Store;

/// Router timers. Every one is a setting, so tests provoke each code in milliseconds.
#[derive(Debug, Clone)]
pub struct Settings {
    /// H12: the dyno must start its response within this time.
    pub request_timeout: Duration,
    /// The domain apps live under: `<app>.<base_domain>`.
    pub base_domain: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            request_timeout: Duration::from_secs(30),
            base_domain: "localhost".into(),
        }
    }
}

impl Settings {
    /// The defaults, overridden by `WASMDYNO_ROUTER_TIMEOUT_MS` and `WASMDYNO_BASE_DOMAIN`.
    pub fn from_env() -> Result<Settings, String> {
        let mut settings = Settings::default();
        if let Ok(ms) = std::env::var("WASMDYNO_ROUTER_TIMEOUT_MS") {
            let ms: u64 = ms
                .parse()
                .map_err(|_| format!("WASMDYNO_ROUTER_TIMEOUT_MS={ms:?} is not a number"))?;
            settings.request_timeout = Duration::from_millis(ms);
        }
        if let Ok(domain) = std::env::var("WASMDYNO_BASE_DOMAIN") {
            settings.base_domain = domain.trim_matches('.').to_lowercase();
        }
        Ok(settings)
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

/// The router of one server.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    manager: Manager,
    store: Arc<dyn Store>,
    logplex: Logplex,
    settings: Settings,
    /// Requests in flight per dyno (`app/web.1`), for balancing.
    outstanding: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

impl Router {
    pub fn new(
        manager: Manager,
        store: Arc<dyn Store>,
        logplex: Logplex,
        settings: Settings,
    ) -> Router {
        Router {
            inner: Arc::new(Inner {
                manager,
                store,
                logplex,
                settings,
                outstanding: Mutex::default(),
            }),
        }
    }

    /// Accepts connections on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
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
            let router = self.clone();
            let port = listener.local_addr().map_or(0, |a| a.port());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let router = router.clone();
                    async move { Ok::<_, Infallible>(router.route(req, peer, port).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .max_buf_size(64 * 1024)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    tracing::debug!("router connection from {peer}: {e}");
                }
            });
        }
    }

    async fn route(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        port: u16,
    ) -> Response<Body> {
        let started = Instant::now();
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| {
                h.rsplit_once(':')
                    .map_or(h, |(name, _)| name)
                    .to_lowercase()
            })
            .unwrap_or_default();
        let request_id = request_id(&req);
        let method = req.method().to_string();
        let path = req
            .uri()
            .path_and_query()
            .map_or("/".to_string(), |p| p.to_string());
        let Some(app) = self.app_for(&host) else {
            return page(
                StatusCode::NOT_FOUND,
                "No such app",
                &format!("There is no app at {host}."),
            );
        };
        let log = |code: Option<&str>, dyno: &str, status: u16, desc: &str| {
            let at = if code.is_some() { "error" } else { "info" };
            let code = code
                .map(|c| format!(" code={c} desc=\"{desc}\""))
                .unwrap_or_default();
            self.inner.logplex.publish(
                &app,
                LogLine::platform(
                    "router",
                    format!(
                        "at={at}{code} method={method} path=\"{path}\" host={host} request_id={request_id} fwd=\"{}\" dyno={dyno} connect=0ms service={}ms status={status} protocol=http",
                        peer.ip(),
                        started.elapsed().as_millis()
                    ),
                ),
            );
        };
        let fail = |code: &str, desc: &str| {
            log(Some(code), "", 503, desc);
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Application error",
                &format!("{desc} ({code})"),
            )
        };
        match self.inner.store.app(&app) {
            Ok(found) if found.maintenance => return fail("H80", "Maintenance mode"),
            Ok(_) => {}
            Err(_) => {
                return page(
                    StatusCode::NOT_FOUND,
                    "No such app",
                    &format!("There is no app at {host}."),
                );
            }
        }
        if matches!(self.inner.store.current_release(&app), Ok(None) | Err(_))
            || self
                .inner
                .store
                .current_release(&app)
                .ok()
                .flatten()
                .and_then(|r| r.slug)
                .is_none()
        {
            return fail("H81", "Blank app");
        }
        let dynos = self.inner.manager.web_dynos(&app);
        if dynos.is_empty() {
            let crashed = self
                .inner
                .manager
                .dynos(&app)
                .iter()
                .any(|d| d.kind == "web" && d.state == crate::dyno::State::Crashed);
            return if crashed {
                fail("H10", "App crashed")
            } else {
                fail("H14", "No web processes running")
            };
        }
        let (dyno, in_flight) = self.pick(&app, dynos);
        in_flight.fetch_add(1, Ordering::Relaxed);
        let _done = Decrement(in_flight);

        let headers = req.headers_mut();
        set(headers, "x-request-id", &request_id);
        let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        set(headers, "x-forwarded-for", &forwarded_for);
        set(headers, "x-forwarded-proto", "http");
        set(headers, "x-forwarded-port", &port.to_string());
        set(headers, "via", "1.1 wasmdyno");

        let forward = async {
            let conn = dyno.listener.connect().await.map_err(|_| "H13")?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(conn))
                    .await
                    .map_err(|_| "H13")?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            sender.send_request(req).await.map_err(|_| "H13")
        };
        match tokio::time::timeout(self.inner.settings.request_timeout, forward).await {
            Err(_) => fail("H12", "Request timeout"),
            Ok(Err(code)) => fail(code, "Connection closed without response"),
            Ok(Ok(response)) => {
                log(None, &dyno.name, response.status().as_u16(), "");
                response.map(|body| body.boxed())
            }
        }
    }

    /// `<app>.<base domain>` → app.
    fn app_for(&self, host: &str) -> Option<String> {
        let suffix = format!(".{}", self.inner.settings.base_domain);
        host.strip_suffix(&suffix)
            .filter(|name| !name.is_empty() && !name.contains('.'))
            .map(str::to_string)
    }

    /// The web dyno with the fewest requests in flight.
    fn pick(&self, app: &str, dynos: Vec<WebDyno>) -> (WebDyno, Arc<AtomicUsize>) {
        let mut outstanding = self.inner.outstanding.lock().expect("outstanding");
        dynos
            .into_iter()
            .map(|dyno| {
                let count = outstanding
                    .entry(format!("{app}/{}", dyno.name))
                    .or_default()
                    .clone();
                (dyno, count)
            })
            .min_by_key(|(_, count)| count.load(Ordering::Relaxed))
            .expect("at least one dyno")
    }
}

struct Decrement(Arc<AtomicUsize>);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn set(headers: &mut hyper::HeaderMap, name: &'static str, value: &str) {
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
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
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
        .body(
            Full::new(Bytes::from(html))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("a valid response")
}
