//! Router log lines and H codes: one line per request, written once; the error pages clients see.

#[allow(unused_imports)]
use super::*;

thread_local! {
    /// Where a router line is formatted before it is copied into the text it keeps.
    static LINE: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512));
}

/// The dyno name of every router line, shared.
static ROUTER: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();

/// One request's router log line, written once: when the response ends, when the router answers an error, or
/// (dropped unwritten) as H27 when the client went away first.
pub(crate) struct Entry {
    pub(super) logplex: Logplex,
    pub(super) metrics: Metrics,
    pub(super) app: String,
    /// `method=... path="..." host=... request_id=... fwd="..."`.
    pub(super) request: String,
    pub(super) dyno: String,
    pub(super) started: Instant,
    /// When the dyno took the connection.
    pub(super) accepted: Option<Instant>,
    /// Response bytes sent, for the H27 line.
    pub(super) bytes: u64,
    pub(super) done: bool,
}

impl Entry {
    /// Writes the line, once: `tag` is what goes after `at=...` (` code=H12 desc="Request timeout"`).
    pub(super) fn write(&mut self, at: &str, tag: &str, status: u16, bytes: u64) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let now = Instant::now();
        let wall = std::time::SystemTime::now();
        let (connect, service) = match self.accepted {
            Some(accepted) => (accepted - self.started, now - accepted),
            None => (Duration::ZERO, now - self.started),
        };
        // The process type of the dyno that served (`web.1` → `web`); `router` when none took the request.
        let kind = match self.dyno.split_once('.') {
            Some((kind, _)) => kind,
            None => "router",
        };
        let code = (!tag.is_empty())
            .then(|| tag.split_once("code="))
            .flatten()
            .map(|(_, rest)| rest.split(' ').next().unwrap_or(rest));
        self.metrics.request(
            &self.app,
            kind,
            status,
            code,
            now - self.started,
            crate::clock::unix_seconds(wall),
        );
        // Formatted in a buffer of the thread's, so that an `at=info` line costs one allocation: the text it keeps.
        // (An entry dropped while its thread exits, when that buffer is gone, formats in one of its own.)
        let compose = |line: &mut String| {
            let (mut connect_ms, mut service_ms, mut status_text, mut bytes_text) = (
                itoa::Buffer::new(),
                itoa::Buffer::new(),
                itoa::Buffer::new(),
                itoa::Buffer::new(),
            );
            line.clear();
            for part in [
                "at=",
                at,
                tag,
                " ",
                &self.request,
                " dyno=",
                &self.dyno,
                " connect=",
                connect_ms.format(connect.as_millis() as u64),
                "ms service=",
                service_ms.format(service.as_millis() as u64),
                "ms status=",
                status_text.format(status),
                " bytes=",
                bytes_text.format(bytes),
                " protocol=http",
            ] {
                line.push_str(part);
            }
            Arc::<str>::from(line.as_str())
        };
        let text = LINE
            .try_with(|line| compose(&mut line.borrow_mut()))
            .unwrap_or_else(|_| compose(&mut String::new()));
        let router = ROUTER.get_or_init(|| Arc::from("router")).clone();
        self.logplex.publish(
            &self.app,
            LogLine::new(wall, LogSource::Platform, router, text),
        );
    }

    pub(super) fn is_done(&self) -> bool {
        self.done
    }

    /// The response ended as the dyno sent it.
    pub(super) fn ok(&mut self, status: u16, bytes: u64) {
        self.write("info", "", status, bytes);
    }

    /// The router cut the response (the client has its head already).
    pub(super) fn error(&mut self, code: &str, desc: &str, bytes: u64) {
        self.write(
            "error",
            &format!(" code={code} desc=\"{desc}\""),
            503,
            bytes,
        );
    }

    /// The router answers with an error page.
    pub(super) fn fail(&mut self, code: &str, desc: &str) -> Response<Body> {
        self.error(code, desc, 0);
        error_page(code, desc)
    }

    /// An error page that is the app's state rather than a failure (H80, H81).
    pub(super) fn fail_info(&mut self, code: &str, desc: &str) -> Response<Body> {
        self.write("info", &format!(" code={code} desc=\"{desc}\""), 503, 0);
        error_page(code, desc)
    }

    pub(super) fn too_large(&mut self) -> Response<Body> {
        self.write("error", " desc=\"Request body too large\"", 413, 0);
        page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large",
            "The request body is larger than this platform accepts.",
        )
    }

    /// H27: the client went away before the response ended.
    pub(super) fn client_gone(&mut self) {
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

/// The error page of a router code.
pub(super) fn error_page(code: &str, desc: &str) -> Response<Body> {
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

pub(super) fn page(status: StatusCode, title: &str, text: &str) -> Response<Body> {
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
