//! CGI web dynos (RFC 3875): `web: cgi app.wasm` runs the command once per request, with the request in its
//! environment and on its stdin, and its stdout parsed as the response. Go's `net/http/cgi.Serve` works unchanged.
//!
//! Each request runs in a fresh instance over the dyno's image (its writes vanish with it); config vars are in
//! the environment beside the CGI meta-variables; stderr goes to the dyno's log stream. A pre-initialized command
//! (what the Go buildpack builds: [`super::preinit`]) runs its initialization once, at the dyno's first request,
//! and every request starts from the state it left.
//!
//! Bounded: at most `concurrency` runs at once, each holding its permit from before its request body is read
//! until it ends; all runs share the dyno's one quota; and stdout reaches the client through a window of
//! `RESPONSE_WINDOW` bytes, so a slow client slows the command, never grows the server.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame};
use hyper::{Request, Response, StatusCode};
use tokio::sync::{Semaphore, mpsc};

use super::body::{AbortOnDrop, Body as ResponseBody, BoxError};
use super::http::HttpFailure;
use super::preinit::{self, Snapshot};
use super::stdio::{Credit, Input, Output};
use super::vfs::{Image, Quota};
use super::{DynoSize, Exit, Guest, RunSpec, Runtime};

/// Largest response head (status and header lines) a CGI command may write.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body buffered when the client sent none `Content-Length` (CGI needs one). Buffered bytes
/// count against the dyno's quota until the run ends.
const MAX_BUFFERED_BODY: usize = 64 * 1024 * 1024;
/// Response bytes that may wait between the command and a slow client; past them, the command's writes wait.
const RESPONSE_WINDOW: usize = 256 * 1024;

/// One CGI web dyno: the command and what each run of it gets.
pub struct CgiDyno {
    runtime: Arc<Runtime>,
    guest: Guest,
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    image: Arc<Image>,
    size: DynoSize,
    stderr: Output,
    /// Hears the platform's lines about a run (R14 when the shared quota refuses one's memory).
    platform: super::Report,
    /// The dyno's log rate, shared by its runs' stderr.
    stderr_credit: Option<Credit>,
    /// The dyno's CPU time, sampled across its runs.
    cpu: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Runs at once: a permit is held from before the request body is read until the run ends.
    permits: Arc<Semaphore>,
    concurrency: u32,
    /// One quota for all of the dyno's runs, as one dyno has one memory budget.
    quota: Arc<Quota>,
    deadline: Duration,
    closed: AtomicBool,
    /// A pre-initialized command's snapshot, taken at the first request ([`super::preinit`]), with its memory's
    /// charge to the quota; `None` inside when it cannot be taken.
    snapshot: tokio::sync::OnceCell<Option<(Arc<Snapshot>, Charge)>>,
}

impl CgiDyno {
    /// A CGI dyno running `guest` with the spec's argv, environment, image, size, stderr and platform report; at most
    /// `concurrency` requests run at once, each for at most `deadline`.
    pub fn new(
        runtime: Arc<Runtime>,
        guest: Guest,
        spec: RunSpec,
        concurrency: usize,
        deadline: Duration,
    ) -> CgiDyno {
        CgiDyno {
            runtime,
            guest,
            argv: spec.argv,
            env: spec.env,
            image: spec.image,
            size: spec.size,
            stderr: spec.stderr,
            platform: spec.platform,
            stderr_credit: spec.stderr_credit,
            cpu: spec.cpu,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            quota: spec
                .quota
                .clone()
                .unwrap_or_else(|| Arc::new(Quota::new(spec.size.memory() as u64))),
            concurrency: concurrency.max(1) as u32,
            deadline,
            closed: AtomicBool::new(false),
            snapshot: tokio::sync::OnceCell::new(),
        }
    }

    /// The snapshot each run starts from, if the command is pre-initialized: taken once, by the first request,
    /// with the dyno's argv, environment, filesystem and limits. Its stdout goes to the log, as no request is
    /// there to answer. The platform's log says whether it was taken, and if not why.
    async fn snapshot(&self) -> Option<Arc<Snapshot>> {
        let Guest::Module(module) = &self.guest else {
            return None;
        };
        if !self.runtime.preinit || !preinit::is_preinitialized(module) {
            return None;
        }
        let taken = self.snapshot.get_or_init(|| async {
            let mut spec = RunSpec::new(self.argv.clone(), self.env.clone(), self.size)
                .with_image(self.image.clone());
            spec.stdout = self.stderr.clone();
            spec.stderr = self.stderr.clone();
            spec.platform = self.platform.clone();
            spec.stderr_credit = self.stderr_credit.clone();
            spec.cpu = self.cpu.clone();
            spec.quota = Some(self.quota.clone());
            spec.deadline = Some(self.deadline);
            let started = std::time::Instant::now();
            let snapshot = match self.runtime.preinitialize(&self.guest, spec).await {
                Ok(snapshot) => snapshot,
                Err(why) => {
                    (self.platform)(&format!(
                        "Cannot pre-initialize the command ({why}): each request runs its initialization"
                    ));
                    return None;
                }
            };
            let mut charge = Charge::new(self.quota.clone());
            if !charge.take(snapshot.bytes() as u64) {
                (self.platform)(
                    "Cannot pre-initialize the command (its snapshot does not fit in the dyno's memory): each \
                     request runs its initialization",
                );
                return None;
            }
            (self.platform)(&format!(
                "Pre-initialized in {:.1} ms ({} KiB of memory): each request starts from there",
                started.elapsed().as_secs_f64() * 1e3,
                snapshot.bytes().div_ceil(1024)
            ));
            Some((Arc::new(snapshot), charge))
        });
        taken.await.as_ref().map(|(snapshot, _)| snapshot.clone())
    }

    /// Runs the command for one request; the response body streams from its stdout.
    pub async fn handle<B>(
        self: &Arc<Self>,
        request: Request<B>,
    ) -> Result<Response<ResponseBody>, HttpFailure>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(HttpFailure::Closed);
        }
        // The permit first: nothing of a request is buffered before it may run.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HttpFailure::Closed)?;
        let snapshot = self.snapshot().await;
        let (parts, body) = request.into_parts();
        let mut env = self.env.clone();
        let length = parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let (stdin_tx, stdin_rx) = mpsc::channel::<Vec<u8>>(4);
        let stdin = Input::from_channel(stdin_rx);
        let mut buffered = Charge::new(self.quota.clone());
        match length {
            Some(length) => {
                env.insert("CONTENT_LENGTH".into(), length.to_string());
                tokio::spawn(pump_body(body, stdin_tx));
            }
            None => {
                // CGI needs the length up front: a chunked body is read whole first, within the quota.
                let data = read_limited(body, &mut buffered)
                    .await
                    .map_err(|e| HttpFailure::Trap(format!("cannot read the request body: {e}")))?;
                if !data.is_empty() {
                    env.insert("CONTENT_LENGTH".into(), data.len().to_string());
                    let _ = stdin_tx.send(data).await;
                }
            }
        }
        meta_variables(&parts, &mut env);

        // Stdout flows to the client through a window: the command waits while the client is slow.
        let credit = Credit::new(RESPONSE_WINDOW);
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
        let stdout: Output = Arc::new(move |data: &[u8]| {
            let _ = out_tx.send(Bytes::copy_from_slice(data));
        });
        let mut spec =
            RunSpec::new(self.argv.clone(), env, self.size).with_image(self.image.clone());
        spec.stdin = stdin;
        spec.stdout = stdout;
        spec.stderr = self.stderr.clone();
        spec.platform = self.platform.clone();
        spec.stderr_credit = self.stderr_credit.clone();
        spec.cpu = self.cpu.clone();
        spec.stdout_credit = Some(credit.clone());
        spec.quota = Some(self.quota.clone());
        spec.snapshot = snapshot;

        let dyno = self.clone();
        spec.deadline = Some(self.deadline);
        let run = tokio::spawn(async move {
            // Held until the run ends, with the buffered body's share of the quota.
            let _running = (permit, buffered);
            dyno.runtime
                .run(&dyno.guest, spec)
                .await
                .map_err(|e| HttpFailure::Instantiate(e.to_string()))
        });
        let guard = AbortOnDrop::new(run.abort_handle());

        // The head: lines up to the first empty one.
        let mut head = Vec::new();
        let body_start = loop {
            if let Some(end) = head_end(&head) {
                break end;
            }
            if head.len() > MAX_HEAD {
                return Err(HttpFailure::Trap(format!(
                    "the CGI response head is over {MAX_HEAD} bytes"
                )));
            }
            match out_rx.recv().await {
                Some(chunk) => {
                    credit.give_back(chunk.len());
                    head.extend_from_slice(&chunk);
                }
                None => {
                    guard.disarm();
                    return Err(match run.await {
                        Ok(Ok(Exit::Trap(trap))) => {
                            HttpFailure::Trap(super::trap_cause(&trap).to_string())
                        }
                        Ok(Ok(Exit::Status(code))) => HttpFailure::Trap(format!(
                            "the CGI command exited with status {code} without a complete response head"
                        )),
                        Ok(Err(failure)) => failure,
                        Err(e) => HttpFailure::Trap(e.to_string()),
                    });
                }
            }
        };
        guard.disarm();
        let (head_bytes, rest) = head.split_at(body_start.0);
        let rest = Bytes::copy_from_slice(&rest[body_start.1 - body_start.0..]);
        let mut response = parse_head(head_bytes)?;
        let stream = CgiBody {
            first: (!rest.is_empty()).then_some(rest),
            chunks: out_rx,
            credit,
        };
        *response.body_mut() = stream.boxed_unsync();
        Ok(response)
    }

    /// Stops taking requests and waits up to `timeout` for those running.
    pub async fn close(&self, timeout: Duration) -> bool {
        self.closed.store(true, Ordering::Release);
        let drained = tokio::time::timeout(timeout, self.permits.acquire_many(self.concurrency))
            .await
            .is_ok();
        self.permits.close();
        drained
    }
}

async fn pump_body<B>(mut body: B, stdin: mpsc::Sender<Vec<u8>>)
where
    B: Body<Data = Bytes> + Unpin,
{
    loop {
        let data = match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            _ => return,
        };
        if stdin.send(data.to_vec()).await.is_err() {
            return;
        }
    }
}

async fn read_limited<B>(mut body: B, charge: &mut Charge) -> Result<Vec<u8>, String>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut data = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.into().to_string())?;
        if let Ok(chunk) = frame.into_data() {
            if data.len() + chunk.len() > MAX_BUFFERED_BODY {
                return Err(format!(
                    "a body without Content-Length over {MAX_BUFFERED_BODY} bytes"
                ));
            }
            if !charge.take(chunk.len() as u64) {
                return Err("the body does not fit in the dyno's memory quota".into());
            }
            data.extend_from_slice(&chunk);
        }
    }
    Ok(data)
}

/// Bytes taken from a quota, given back when dropped.
struct Charge {
    quota: Arc<Quota>,
    bytes: u64,
}

impl Charge {
    fn new(quota: Arc<Quota>) -> Charge {
        Charge { quota, bytes: 0 }
    }

    fn take(&mut self, bytes: u64) -> bool {
        let taken = self.quota.try_take(bytes);
        if taken {
            self.bytes += bytes;
        }
        taken
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.quota.give_back(self.bytes);
    }
}

/// The CGI/1.1 meta-variables for a request (RFC 3875 section 4.1), with headers as `HTTP_*`.
fn meta_variables(parts: &hyper::http::request::Parts, env: &mut BTreeMap<String, String>) {
    let uri = &parts.uri;
    let host = parts
        .headers
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let (server_name, server_port) = match host.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => (name, port.to_string()),
        _ => (
            host,
            parts
                .headers
                .get("x-forwarded-port")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("80")
                .to_string(),
        ),
    };
    let remote = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let vars = [
        ("GATEWAY_INTERFACE", "CGI/1.1".to_string()),
        ("SERVER_SOFTWARE", "wasmdyno".to_string()),
        ("SERVER_PROTOCOL", format!("{:?}", parts.version)),
        ("SERVER_NAME", server_name.to_string()),
        ("SERVER_PORT", server_port),
        ("REQUEST_METHOD", parts.method.to_string()),
        ("SCRIPT_NAME", String::new()),
        ("PATH_INFO", uri.path().to_string()),
        ("QUERY_STRING", uri.query().unwrap_or("").to_string()),
        (
            "REQUEST_URI",
            uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        ),
        ("REMOTE_ADDR", remote.clone()),
        ("REMOTE_HOST", remote),
    ];
    for (key, value) in vars {
        env.insert(key.into(), value);
    }
    if let Some(kind) = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        env.insert("CONTENT_TYPE".into(), kind.to_string());
    }
    for (name, value) in &parts.headers {
        let name = name.as_str();
        // Content type and length have their own variables; `Proxy` must never become HTTP_PROXY (httpoxy).
        if matches!(name, "content-type" | "content-length" | "proxy") {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        let key = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        env.entry(key)
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.to_string());
    }
}

/// Where the head ends: (end of the header lines, start of the body).
fn head_end(data: &[u8]) -> Option<(usize, usize)> {
    // The head may use LF or CRLF line ends; the first empty line ends it.
    let mut line_start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            let line = &data[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some((line_start, i + 1));
            }
            line_start = i + 1;
        }
    }
    None
}

/// The status and headers of a CGI response head (RFC 3875 section 6).
fn parse_head(head: &[u8]) -> Result<Response<ResponseBody>, HttpFailure> {
    let bad = |why: String| HttpFailure::Trap(format!("malformed CGI response: {why}"));
    let text = std::str::from_utf8(head).map_err(|_| bad("the head is not UTF-8".into()))?;
    let mut response = Response::new(ResponseBody::default());
    let mut status = None;
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("header line {line:?} has no colon")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| bad(format!("Status {value:?}")))?;
            status = Some(code);
            continue;
        }
        let name = hyper::header::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| bad(format!("header name {name:?}")))?;
        let value = hyper::header::HeaderValue::from_str(value)
            .map_err(|_| bad(format!("header value {value:?}")))?;
        response.headers_mut().append(name, value);
    }
    let redirect = response.headers().contains_key(hyper::header::LOCATION);
    *response.status_mut() = status.unwrap_or(if redirect {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    Ok(response)
}

/// The rest of the command's stdout, as the response body. Each chunk handed on gives its credit back, so the
/// command writes only as fast as the client reads; dropped (the client gone), it closes the credit and the
/// command's writes fail as on a broken pipe.
struct CgiBody {
    first: Option<Bytes>,
    chunks: mpsc::UnboundedReceiver<Bytes>,
    credit: Credit,
}

impl Drop for CgiBody {
    fn drop(&mut self) {
        self.credit.close();
    }
}

impl Body for CgiBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        let this = &mut *self;
        this.chunks.poll_recv(cx).map(|chunk| {
            chunk.map(|data| {
                this.credit.give_back(data.len());
                Ok(Frame::data(data))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_end_at_the_first_empty_line_with_either_line_end() {
        assert_eq!(head_end(b"Status: 200\r\n\r\nbody"), Some((13, 15)));
        assert_eq!(head_end(b"A: b\n\nbody"), Some((5, 6)));
        assert_eq!(head_end(b"A: b\r\n"), None);
    }

    #[test]
    fn status_location_and_headers_are_parsed() {
        let r = parse_head(
            b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nX-A: 1\r\nX-A: 2\r\n",
        )
        .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers().get_all("x-a").iter().count(), 2);
        let r = parse_head(b"Location: /elsewhere\n").unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        let r = parse_head(b"Content-Type: text/html\n").unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(parse_head(b"no colon here\n").is_err());
        assert!(parse_head(b"Status: abc\n").is_err());
    }
}
