//! Web dynos that listen: preview-1 programs accepting on the listener at fd 4, driven in-process through the
//! library the way the router drives them: `Listener::connect`, raw HTTP/1.1 over the connection. The guests are
//! `sample-apps/go-web` (Go's `net/http` on `net.FileListener`) and `tests/guests/listener-rust` (Rust's
//! `TcpListener::from_raw_fd`), each built once per run through the real buildpacks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use wasmdyno::runtime::Image;
use wasmdyno::{
    Runtime, RuntimeConfig, RuntimeError, runtime::DynoSize, runtime::Exit, runtime::RunSpec,
    runtime::resolve_module,
};
use wasmdyno::{Slug, slug::Limits};
use wasmdyno::{runtime::net::Connection, runtime::net::Listener, runtime::net::NetError};

use crate::support::*;

/// The bound on every step of a test: a connection, a request, a response, an exit.
const STEP: Duration = Duration::from_secs(30);

/// Builds `dir` into a slug once per test run.
fn built(
    cell: &'static OnceLock<(tempfile::TempDir, PathBuf)>,
    dir: &Path,
    name: &str,
) -> &'static Path {
    &cell
        .get_or_init(|| {
            let env = TestEnv::new();
            let slug = env.path(name);
            env.run(&["build", dir.to_str().unwrap(), "-o", slug.to_str().unwrap()])
                .ok();
            (env.dir, slug)
        })
        .1
}

fn go_web() -> &'static Path {
    static SLUG: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    built(&SLUG, &repo().join("sample-apps/go-web"), "go-web.slug")
}

fn rust_listener() -> &'static Path {
    static SLUG: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    built(
        &SLUG,
        &repo().join("tests/guests/listener-rust"),
        "listener-rust.slug",
    )
}

/// A web dyno running in this process.
struct WebDyno {
    listener: Listener,
    task: JoinHandle<Result<Exit, RuntimeError>>,
    /// Its stdout and stderr.
    logs: Arc<Mutex<Vec<u8>>>,
}

impl WebDyno {
    /// Boots the slug's `web` process as `web.1` and waits until it accepts.
    async fn boot(slug: &Path) -> WebDyno {
        let slug = Slug::open(slug, Limits::default()).unwrap();
        let command = slug.manifest().process_types["web"].clone();
        let word = command.split_whitespace().next().unwrap();
        let (module, wasm) = resolve_module(&slug, word).unwrap();
        let runtime = Arc::new(
            Runtime::new(RuntimeConfig::default().with_cache_dir(Some(shared_cache()))).unwrap(),
        );
        let loading = runtime.clone();
        let (guest, _) = tokio::task::spawn_blocking(move || loading.load(&wasm))
            .await
            .unwrap()
            .unwrap();

        let listener = Listener::new(16);
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let output: wasmdyno::runtime::stdio::Output =
            Arc::new(move |data: &[u8]| sink.lock().unwrap().extend_from_slice(data));
        let env = BTreeMap::from([
            ("DYNO".to_string(), "web.1".to_string()),
            ("PORT".to_string(), "5000".to_string()),
        ]);
        let mut spec = RunSpec::new(vec![module], env, DynoSize::default())
            .with_image(Arc::new(Image::from_slug(&slug)))
            .with_listener(listener.clone());
        spec.stdout = output.clone();
        spec.stderr = output;
        let task = tokio::spawn(async move { runtime.run(&guest, spec).await });
        let dyno = WebDyno {
            listener,
            task,
            logs,
        };
        // What the dyno manager watches for R10: the guest has started accepting.
        if timeout(STEP, dyno.listener.accepting()).await.is_err() {
            panic!("the dyno does not accept:\n{}", dyno.logs());
        }
        dyno
    }

    fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.lock().unwrap()).into_owned()
    }

    async fn connect(&self) -> Connection {
        timeout(STEP, self.listener.connect())
            .await
            .expect("connect in time")
            .expect("the listener is open")
    }

    /// Sends one request on a new connection (which it asks to close) and reads the response to its end.
    async fn request(&self, method: &str, path: &str, body: &[u8]) -> Response {
        let mut conn = self.connect().await;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: app.example\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        timeout(STEP, async {
            conn.write_all(head.as_bytes()).await?;
            conn.write_all(body).await
        })
        .await
        .expect("request sent in time")
        .unwrap();
        let mut raw = Vec::new();
        timeout(STEP, conn.read_to_end(&mut raw))
            .await
            .unwrap_or_else(|_| panic!("no response in time to {method} {path}:\n{}", self.logs()))
            .unwrap();
        Response::parse(&raw).unwrap_or_else(|| {
            panic!(
                "bad response to {method} {path}: {:?}\n{}",
                String::from_utf8_lossy(&raw),
                self.logs()
            )
        })
    }

    /// Closes the listener and waits for the dyno to exit.
    async fn stop(self) -> (Exit, String) {
        self.listener.close();
        let logs = self.logs.clone();
        let exit = timeout(STEP, self.task)
            .await
            .expect("the dyno exits once its listener is closed")
            .unwrap()
            .unwrap();
        let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        (exit, logs)
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Response {
    fn parse(raw: &[u8]) -> Option<Response> {
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let headers = String::from_utf8(raw[..split].to_vec()).ok()?;
        let status = headers.split(' ').nth(1)?.parse().ok()?;
        Some(Response {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn content_length(&self) -> Option<usize> {
        self.headers.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
    }
}

/// Reads one response with a Content-Length from a connection that stays open (keep-alive).
async fn read_response(conn: &mut (impl AsyncRead + Unpin)) -> Response {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(conn.read(&mut byte).await.unwrap(), 1, "{raw:?}");
        raw.push(byte[0]);
    }
    let mut response = Response::parse(&raw).unwrap();
    let mut body = vec![0u8; response.content_length().expect("a Content-Length")];
    conn.read_exact(&mut body).await.unwrap();
    response.body = body;
    response
}

fn go_says(path: &str) -> String {
    format!("Hello from Go on wasmdyno (web.1)\nGET {path}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_net_http_serves_sequential_concurrent_and_keep_alive_requests() {
    let dyno = Arc::new(WebDyno::boot(go_web()).await);
    for i in 0..5 {
        let path = format!("/seq/{i}");
        let response = dyno.request("GET", &path, b"").await;
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.text(), go_says(&path));
    }

    let requests: Vec<_> = (0..8)
        .map(|i| {
            let dyno = dyno.clone();
            tokio::spawn(async move {
                let path = format!("/concurrent/{i}");
                (dyno.request("GET", &path, b"").await, path)
            })
        })
        .collect();
    for request in requests {
        let (response, path) = request.await.unwrap();
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.text(), go_says(&path));
    }

    // Two requests on one connection: between them Go's poller waits on the idle socket.
    let mut conn = dyno.connect().await;
    for path in ["/kept/1", "/kept/2"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: app.example\r\n\r\n");
        let response = timeout(STEP, async {
            conn.write_all(request.as_bytes()).await.unwrap();
            read_response(&mut conn).await
        })
        .await
        .expect("a keep-alive response in time");
        assert_eq!(response.text(), go_says(path));
    }
    drop(conn);
    assert!(!dyno.task.is_finished(), "{}", dyno.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_net_http_returns_when_the_listener_closes() {
    let dyno = WebDyno::boot(go_web()).await;
    assert_eq!(dyno.request("GET", "/", b"").await.status, 200);
    let listener = dyno.listener.clone();
    let (exit, logs) = dyno.stop().await;
    // http.Serve returns the accept error; the sample exits through log.Fatal.
    assert_eq!(exit, Exit::Status(1), "{logs}");
    assert!(logs.contains("accept"), "{logs}");
    assert_eq!(listener.connect().await.unwrap_err(), NetError::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_survives_clients_that_hang_up() {
    let dyno = WebDyno::boot(go_web()).await;
    // One hangs up halfway through its request, one right after sending it (the reply meets a closed peer).
    let mut half = dyno.connect().await;
    half.write_all(b"GET /half HTTP/1.1\r\nHost: a")
        .await
        .unwrap();
    drop(half);
    let mut gone = dyno.connect().await;
    gone.write_all(b"GET /gone HTTP/1.1\r\nHost: app.example\r\n\r\n")
        .await
        .unwrap();
    drop(gone);
    let response = dyno.request("GET", "/after", b"").await;
    assert_eq!(response.text(), go_says("/after"));
    assert!(!dyno.task.is_finished(), "{}", dyno.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_server_serves_a_file_from_its_slug_its_env_and_echoes_posts() {
    let dyno = Arc::new(WebDyno::boot(rust_listener()).await);
    let file = dyno.request("GET", "/file", b"").await;
    assert_eq!(
        (file.status, file.text().as_str()),
        (200, "hello from the slug\n")
    );
    let env = dyno.request("GET", "/env/DYNO", b"").await;
    assert_eq!(env.text(), "web.1");
    let fd = dyno.request("GET", "/env/WASMDYNO_LISTEN_FD", b"").await;
    assert_eq!(fd.text(), "4");
    assert_eq!(dyno.request("GET", "/nothing", b"").await.status, 404);

    // Larger than the connection's buffers in both directions, so both sides wait on each other.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let echo = dyno.request("POST", "/echo", &body).await;
    assert_eq!(echo.status, 200);
    assert!(echo.body == body, "the echo differs");

    // A few at once: the server accepts one at a time, the others wait in the backlog.
    let requests: Vec<_> = (0..4)
        .map(|i| {
            let dyno = dyno.clone();
            tokio::spawn(async move {
                let body = format!("request {i}");
                (dyno.request("POST", "/echo", body.as_bytes()).await, body)
            })
        })
        .collect();
    for request in requests {
        let (response, body) = request.await.unwrap();
        assert_eq!(response.text(), body);
    }
    assert!(!dyno.task.is_finished(), "{}", dyno.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_server_sees_accept_fail_when_the_listener_closes() {
    let dyno = WebDyno::boot(rust_listener()).await;
    assert_eq!(dyno.request("GET", "/file", b"").await.status, 200);
    let (exit, logs) = dyno.stop().await;
    assert_eq!(exit, Exit::Status(0), "{logs}");
    assert!(logs.contains("accept failed after 1 connections"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_server_survives_a_client_that_hangs_up_mid_response() {
    let dyno = WebDyno::boot(rust_listener()).await;
    let mut conn = dyno.connect().await;
    conn.write_all(b"GET /big/1000000 HTTP/1.1\r\nHost: app.example\r\n\r\n")
        .await
        .unwrap();
    // Read a little of the megabyte, then hang up while the server is still writing.
    let mut start = [0u8; 1024];
    timeout(STEP, conn.read_exact(&mut start))
        .await
        .expect("the response starts in time")
        .unwrap();
    assert!(start.starts_with(b"HTTP/1.1 200 OK\r\n"));
    drop(conn);
    let file = dyno.request("GET", "/file", b"").await;
    assert_eq!(file.text(), "hello from the slug\n");
    let (exit, logs) = dyno.stop().await;
    assert_eq!(exit, Exit::Status(0), "{logs}");
    assert!(logs.contains("connection 1: Broken pipe"), "{logs}");
}
