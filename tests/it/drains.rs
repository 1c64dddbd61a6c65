//! Log drains end to end: `drains`, `drains:add`, `drains:remove`; a real rsyslog receiving a syslog drain; HTTP
//! and TLS drains received by servers in the test; drains that die, stall or refuse, and come back.
//!
//! The syslog test needs `rsyslogd` (Debian's `rsyslog`, which `scripts/test` installs). Without it the test is
//! skipped, except in CI (`CI=true`), where it fails saying so.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;

use crate::support::*;

/// Long enough never to fire on a slow machine: the tests assert outcomes, not timings.
const PATIENCE: Duration = Duration::from_secs(60);

/// Short drain timeouts and backoff, so that a test's outage and recovery take a second, not minutes.
const FAST_DRAINS: &[(&str, &str)] = &[
    ("WASMDYNO_DRAIN_TIMEOUT_MS", "1000"),
    ("WASMDYNO_DRAIN_BACKOFF_BASE_MS", "20"),
    ("WASMDYNO_DRAIN_BACKOFF_CAP_MS", "200"),
];

/// Polls `check` until it gives something, or fails after [`PATIENCE`] saying what it waited for.
#[track_caller]
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn deploy(server: &Server, app: &str, procfile: &str) {
    let dir = server.env.path(&format!("{app}-src"));
    probe_app(&dir, procfile);
    server
        .cli(&["deploy", "-a", app, dir.to_str().unwrap()])
        .ok();
}

/// The app's log history as JSON lines.
fn history(server: &Server, app: &str) -> Vec<serde_json::Value> {
    server
        .cli(&["logs", "-a", app, "-n", "1500", "--json"])
        .ok()
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn history_text(server: &Server, app: &str) -> String {
    server.cli(&["logs", "-a", app, "-n", "1500"]).ok().stdout
}

/// Starts a detached one-off dyno; returns its name (`run.N`).
fn run_detached(server: &Server, app: &str, args: &[&str]) -> String {
    let mut argv = vec!["run:detached", "-a", app];
    argv.extend_from_slice(args);
    server.cli(&argv).ok().stdout.trim().to_string()
}

/// The PRI Logplex gives a line.
fn priority(source: &str, dyno: &str) -> u32 {
    match (source, dyno) {
        ("app", "api") => 13,
        ("app", _) => 190,
        ("wasmdyno", "router") => 158,
        ("wasmdyno", "logplex") => 172,
        _ => 45,
    }
}

/// The RFC 5424 message a drain sends for a line of `logs --json`.
fn expected_message(line: &serde_json::Value, hostname: &str) -> String {
    let field = |key: &str| line[key].as_str().unwrap();
    format!(
        "<{}>1 {} {hostname} {} {} - {}",
        priority(field("source"), field("dyno")),
        field("timestamp"),
        field("source"),
        field("dyno"),
        field("text")
    )
}

/// The messages of octet-counted frames (`LEN SP MSG`), or a description of what is wrong with the framing.
fn parse_frames(mut bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut messages = Vec::new();
    while !bytes.is_empty() {
        let space = bytes
            .iter()
            .position(|&b| b == b' ')
            .ok_or("a frame without its length")?;
        let len: usize = std::str::from_utf8(&bytes[..space])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                format!(
                    "not a length: {:?}",
                    String::from_utf8_lossy(&bytes[..space])
                )
            })?;
        let message = bytes
            .get(space + 1..space + 1 + len)
            .ok_or("a frame cut short")?;
        messages.push(String::from_utf8(message.to_vec()).map_err(|e| e.to_string())?);
        bytes = &bytes[space + 1 + len..];
    }
    Ok(messages)
}

/// The drains of `app` as `drains --json` lists them.
fn drains_json(server: &Server, app: &str) -> Vec<serde_json::Value> {
    serde_json::from_value(server.cli(&["drains", "-a", app, "--json"]).ok().json()).unwrap()
}

fn token_of(server: &Server, app: &str, url: &str) -> String {
    drains_json(server, app)
        .into_iter()
        .find(|d| d["url"] == url)
        .unwrap_or_else(|| panic!("no drain {url}"))["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The number in an `Error L10 (output buffer overflow): N messages dropped ... (drain TOKEN)` message of the
/// drain with this token (every drain of the app delivers the L10 lines of all of them).
fn l10_count(message: &str, token: &str) -> Option<u64> {
    if !message.ends_with(&format!("(drain {token})")) {
        return None;
    }
    message
        .split("Error L10 (output buffer overflow): ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

// ---- receivers run by the tests

/// `rsyslogd` with a configuration of its own: TCP input on a free loopback port, every message written to a file
/// as it came (`%rawmsg%`, the message after its octet count).
struct Rsyslog {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Rsyslog {
    /// Starts rsyslogd; `None` (the test is skipped) if it is not installed, except in CI, where that fails.
    fn start() -> Option<Rsyslog> {
        let Some(binary) = rsyslogd() else {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "rsyslogd is not installed: scripts/test installs Debian's rsyslog (apt-get install rsyslog)"
            );
            eprintln!("skipping: rsyslogd is not installed (apt-get install rsyslog)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        let config = format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\n")
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName="{port}" ruleset="drain")
ruleset(name="drain") {{
  action(type="omfile" file="{out}" template="raw" flushOnTXEnd="on" asyncWriting="off")
}}
"#,
            work = dir.path().display(),
            port = path("port"),
            out = path("received.log"),
        );
        std::fs::write(dir.path().join("rsyslog.conf"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("rsyslogd.out")).unwrap();
        let child = Command::new(&binary)
            .args([
                "-n",
                "-f",
                &path("rsyslog.conf"),
                "-i",
                &path("rsyslogd.pid"),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut rsyslog = Rsyslog {
            child,
            dir,
            port: 0,
        };
        rsyslog.port = wait_for("rsyslogd to listen", || {
            if let Ok(Some(status)) = rsyslog.child.try_wait() {
                panic!("rsyslogd exited ({status}): {}", rsyslog.output());
            }
            std::fs::read_to_string(rsyslog.dir.path().join("port"))
                .ok()
                .and_then(|port| port.trim().parse().ok())
        });
        Some(rsyslog)
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyslogd.out")).unwrap_or_default()
    }

    /// The messages received so far, in order.
    fn received(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("received.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rsyslogd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join("rsyslogd"))
        .find(|candidate| candidate.is_file())
}

/// What an HTTP receiver got in one request.
#[derive(Debug, Clone)]
struct Received {
    target: String,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or(""))
    }
}

#[derive(Default)]
struct SinkState {
    requests: Vec<Received>,
    /// While set, requests get no answer at all.
    stalled: bool,
}

/// An HTTP(S) server on a loopback port that records every request and answers 200 (unless stalled).
struct HttpSink {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    state: Arc<Mutex<SinkState>>,
}

impl HttpSink {
    fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> HttpSink {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(SinkState::default()));
        let shared = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(record(&state, request).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        HttpSink {
            runtime,
            addr,
            state,
        }
    }

    fn set_stalled(&self, stalled: bool) {
        self.state.lock().unwrap().stalled = stalled;
    }

    fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Every message received, once per frame id (a retried batch keeps its id), in order.
    fn messages(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.requests()
            .into_iter()
            .filter(|r| seen.insert(r.header("logplex-frame-id").to_string()))
            .flat_map(|r| parse_frames(&r.body).unwrap())
            .collect()
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        // Stalled requests never finish: do not wait for them.
        let runtime = std::mem::replace(
            &mut self.runtime,
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        );
        runtime.shutdown_background();
    }
}

async fn record(state: &Mutex<SinkState>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    // A request whose sender gave up before its body was whole was not received (it is sent again).
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Response::new(Full::new(Bytes::new()));
    };
    if state.lock().unwrap().stalled {
        std::future::pending::<()>().await;
    }
    state.lock().unwrap().requests.push(Received {
        target: parts.uri.to_string(),
        headers: parts.headers,
        body: body.to_vec(),
    });
    Response::new(Full::new(Bytes::new()))
}

/// A TCP (or TLS) syslog receiver that keeps every byte of every connection, and whether it has ended.
struct TcpSink {
    runtime: tokio::runtime::Runtime,
    port: u16,
    connections: Arc<Mutex<Vec<Connection>>>,
}

#[derive(Default, Clone)]
struct Connection {
    bytes: Vec<u8>,
    closed: bool,
}

impl TcpSink {
    fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> TcpSink {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections: Arc<Mutex<Vec<Connection>>> = Arc::default();
        let shared = connections.clone();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let index = {
                    let mut connections = shared.lock().unwrap();
                    connections.push(Connection::default());
                    connections.len() - 1
                };
                let connections = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let mut stream: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match tls {
                        Some(tls) => match tls.accept(tcp).await {
                            Ok(stream) => Box::new(stream),
                            Err(_) => return,
                        },
                        None => Box::new(tcp),
                    };
                    let mut chunk = vec![0u8; 65536];
                    while let Ok(n) = stream.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                        connections.lock().unwrap()[index]
                            .bytes
                            .extend_from_slice(&chunk[..n]);
                    }
                    connections.lock().unwrap()[index].closed = true;
                });
            }
        });
        TcpSink {
            runtime,
            port,
            connections,
        }
    }

    /// The messages of every connection, each connection's frames checked whole.
    fn messages(&self) -> Vec<String> {
        let connections = self.connections();
        let mut messages = Vec::new();
        for (i, connection) in connections.iter().enumerate() {
            match parse_frames(&connection.bytes) {
                Ok(found) => messages.extend(found),
                // The last connection may be in the middle of a frame.
                Err(_) if i + 1 == connections.len() => {}
                Err(e) => panic!("connection {i}: {e}"),
            }
        }
        messages
    }
}

impl TcpSink {
    fn connections(&self) -> Vec<Connection> {
        self.connections.lock().unwrap().clone()
    }
}

impl Drop for TcpSink {
    fn drop(&mut self) {
        let runtime = std::mem::replace(
            &mut self.runtime,
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        );
        runtime.shutdown_background();
    }
}

/// A port that refuses connections (nobody listens on it).
fn refusing_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// ---- the tests

#[test]
fn drains_are_added_listed_and_removed() {
    let server = Server::start_in(TestEnv::new(), FAST_DRAINS);
    server.cli(&["apps:create", "drained"]).ok();
    let out = server
        .cli(&["drains:add", "-a", "drained", "syslog://127.0.0.1:6514"])
        .ok();
    assert_eq!(
        out.stdout,
        "Successfully added drain syslog://127.0.0.1:6514\n"
    );
    let out = server
        .cli(&["drains:add", "-a", "drained", "syslog://127.0.0.1:6514"])
        .fails();
    assert!(out.stderr.contains("already has a drain"), "{out}");
    for (bad, says) in [
        ("ftp://logs.example.com:21", "unsupported scheme"),
        ("syslog://logs.example.com", "needs a port"),
        ("not a url", "not allowed"),
    ] {
        let out = server.cli(&["drains:add", "-a", "drained", bad]).fails();
        assert!(out.stderr.contains(says), "{bad}: {out}");
    }
    for url in [
        "https://user:secret@logs.example.com/drain?app=1",
        "http://127.0.0.1:9/",
        "syslog+tls://logs.example.com:6514",
        "http://[::1]:8080/x",
    ] {
        server.cli(&["drains:add", "-a", "drained", url]).ok();
    }
    let out = server
        .cli(&["drains:add", "-a", "drained", "https://six.example/"])
        .fails();
    assert!(out.stderr.contains("already has 5 drains"), "{out}");

    let listed = server.cli(&["drains", "-a", "drained"]).ok().stdout;
    assert!(listed.starts_with("=== drained Drains\n"), "{listed}");
    assert!(
        listed.contains("https://user:secret@logs.example.com/drain?app=1 (d."),
        "{listed}"
    );
    let json = drains_json(&server, "drained");
    assert_eq!(json.len(), 5);
    assert_eq!(json[0]["url"], "syslog://127.0.0.1:6514", "oldest first");
    for drain in &json {
        assert_eq!(drain["app"], "drained");
        assert!(drain["id"].as_str().unwrap().len() == 36, "{drain}");
        assert!(
            drain["token"].as_str().unwrap().starts_with("d."),
            "{drain}"
        );
        assert!(
            drain["status"].is_object(),
            "running drains say how they do: {drain}"
        );
    }
    // Drains make no release.
    let releases = server
        .cli(&["releases", "-a", "drained", "--json"])
        .ok()
        .json();
    assert_eq!(releases.as_array().unwrap().len(), 1);

    // Removed by URL (any characters), token or id.
    let out = server
        .cli(&[
            "drains:remove",
            "-a",
            "drained",
            "https://user:secret@logs.example.com/drain?app=1",
        ])
        .ok();
    assert_eq!(
        out.stdout,
        "Successfully removed drain https://user:secret@logs.example.com/drain?app=1\n"
    );
    let token = json[2]["token"].as_str().unwrap();
    server.cli(&["drains:remove", "-a", "drained", token]).ok();
    let id = json[3]["id"].as_str().unwrap();
    server.cli(&["drains:remove", "-a", "drained", id]).ok();
    let out = server.cli(&["drains:remove", "-a", "drained", id]).fails();
    assert!(out.stderr.contains("has no drain"), "{out}");
    let left: Vec<String> = drains_json(&server, "drained")
        .iter()
        .map(|d| d["url"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["syslog://127.0.0.1:6514", "http://[::1]:8080/x"]);

    // The API answers as the CLI says.
    let token = server.token();
    let (status, body) = server.raw(
        "POST",
        "/apps/drained/log-drains",
        Some(&token),
        r#"{"url": "gopher://x:70"}"#,
    );
    assert_eq!(status, 422, "{body}");
    let (status, _) = server.raw("GET", "/apps/nope/log-drains", Some(&token), "");
    assert_eq!(status, 404);
    let (status, _) = server.raw("GET", "/apps/drained/log-drains", None, "");
    assert_eq!(status, 401);
    server.cli(&["drains", "-a", "nope"]).fails();
}

#[test]
fn every_line_reaches_rsyslog_with_logplex_framing() {
    let Some(rsyslog) = Rsyslog::start() else {
        return;
    };
    let server = Server::start_in(TestEnv::new(), FAST_DRAINS);
    server.cli(&["apps:create", "syslogged"]).ok();
    let url = format!("syslog://127.0.0.1:{}", rsyslog.port);
    server.cli(&["drains:add", "-a", "syslogged", &url]).ok();
    let token = token_of(&server, "syslogged", &url);
    // From here on, every line of the app goes to the drain: a deploy (API lines), a one-off dyno printing awkward
    // lines (platform and app lines), a config change.
    deploy(&server, "syslogged", "worker: probe.wasm cat\n");
    let long = "x".repeat(9_000);
    let dyno = run_detached(
        &server,
        "syslogged",
        &[
            "probe.wasm",
            "args",
            "hello world",
            "héllo ☃ ünïcode",
            "42 starts with a number",
            "<13>1 looks like a header",
            "  spaces  around  ",
            &long,
        ],
    );
    wait_for("the one-off to exit", || {
        history_text(&server, "syslogged")
            .contains(&format!("wasmdyno[{dyno}]: Process exited with status 0"))
            .then_some(())
    });
    server
        .cli(&["config:set", "-a", "syslogged", "LAST=1"])
        .ok();
    let lines = wait_for("the config change in the logs", || {
        let lines = history(&server, "syslogged");
        lines
            .iter()
            .any(|l| l["text"] == "Release v3 created")
            .then_some(lines)
    });
    let expected: Vec<String> = lines.iter().map(|l| expected_message(l, &token)).collect();
    let received = wait_for("rsyslog to receive every line", || {
        let received = rsyslog.received();
        (received.len() >= expected.len()).then_some(received)
    });
    for (i, (want, got)) in expected.iter().zip(&received).enumerate() {
        assert_eq!(
            got,
            want,
            "message {i}; rsyslog got:\n{}",
            received.join("\n")
        );
    }
    assert!(
        received
            .iter()
            .any(|m| m.ends_with(&format!("app {dyno} - héllo ☃ ünïcode"))),
        "{received:?}"
    );
    assert!(received.iter().any(|m| m.ends_with(&long)));
    let status = &drains_json(&server, "syslogged")[0]["status"];
    assert!(
        status["delivered"].as_u64().unwrap() >= expected.len() as u64,
        "{status}"
    );
    assert_eq!(status["dropped"], 0, "{status}");
}

#[test]
fn http_drains_post_logplex_frames() {
    let sink = HttpSink::start(None);
    let server = Server::start_in(TestEnv::new(), FAST_DRAINS);
    server.cli(&["apps:create", "posted"]).ok();
    let url = format!("http://drain-user:s3cr%3At@{}/logs?app=posted", sink.addr);
    server.cli(&["drains:add", "-a", "posted", &url]).ok();
    let token = token_of(&server, "posted", &url);
    deploy(&server, "posted", "worker: probe.wasm cat\n");
    // The deploy's lines, before a flood pushes them out of the history.
    let before = history(&server, "posted");
    assert!(before.iter().any(|l| l["dyno"] == "api"));
    let dyno = run_detached(&server, "posted", &["probe.wasm", "flood", "5000"]);
    wait_for("the flood to finish", || {
        history_text(&server, "posted")
            .contains(&format!("wasmdyno[{dyno}]: Process exited with status 0"))
            .then_some(())
    });
    let flood = format!(" app {dyno} - flood line");
    let messages = wait_for("every line of the flood", || {
        let messages = sink.messages();
        (messages.iter().filter(|m| m.ends_with(&flood)).count() == 5000).then_some(messages)
    });
    // In order, with HOSTNAME `host` as Logplex sends them over HTTP.
    let want: Vec<String> = before.iter().map(|l| expected_message(l, "host")).collect();
    assert_eq!(messages[..want.len()], want);
    let lines = history(&server, "posted");
    let exit = lines
        .iter()
        .rev()
        .find(|l| l["text"] == "Process exited with status 0")
        .unwrap();
    assert!(messages.contains(&expected_message(exit, "host")));

    let requests = sink.requests();
    let mut ids = HashSet::new();
    let mut total = 0;
    for request in &requests {
        assert_eq!(request.target, "/logs?app=posted");
        assert_eq!(request.header("content-type"), "application/logplex-1");
        assert_eq!(request.header("logplex-drain-token"), token);
        assert_eq!(
            request.header("authorization"),
            // base64("drain-user:s3cr:t")
            "Basic ZHJhaW4tdXNlcjpzM2NyOnQ="
        );
        assert!(
            request
                .header("user-agent")
                .starts_with("wasmdyno-logplex/")
        );
        let frames = parse_frames(&request.body).unwrap();
        let count: usize = request.header("logplex-msg-count").parse().unwrap();
        assert_eq!(count, frames.len());
        assert!((1..=1000).contains(&count), "{count} frames in one batch");
        assert!(ids.insert(request.header("logplex-frame-id").to_string()));
        total += count;
    }
    assert_eq!(total, messages.len(), "no batch was sent twice");
    assert!(requests.len() >= 5, "5,000 lines take several batches");
}

#[test]
fn a_stalled_dead_or_refusing_drain_never_holds_anything_up_and_recovers() {
    let stalled = HttpSink::start(None);
    let healthy = HttpSink::start(None);
    // Accepts connections and never reads them.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut vars = FAST_DRAINS.to_vec();
    vars.push(("WASMDYNO_DRAIN_BUFFER_LINES", "1000"));
    let server = Server::start_in(TestEnv::new(), &vars);
    server.cli(&["apps:create", "outage"]).ok();
    deploy(&server, "outage", "worker: probe.wasm cat\n");
    let stalled_url = format!("http://{}/", stalled.addr);
    let refusing_url = format!("syslog://127.0.0.1:{}", refusing_port());
    let healthy_url = format!("http://{}/", healthy.addr);
    for url in [
        stalled_url.clone(),
        healthy_url.clone(),
        format!("syslog://{}", black_hole.local_addr().unwrap()),
        refusing_url.clone(),
    ] {
        server.cli(&["drains:add", "-a", "outage", &url]).ok();
    }
    let stalled_token = token_of(&server, "outage", &stalled_url);
    let healthy_token = token_of(&server, "outage", &healthy_url);

    // A tail reading along, to show readers are not held up either.
    let mut tail = server
        .env
        .cmd(&["logs", "-a", "outage", "--tail", "-n", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let tail_out = tail.stdout.take().unwrap();
    let tail_lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(tail_out)
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.contains("Process exited"))
            .count()
    });

    stalled.set_stalled(true);
    const LINES: u64 = 20_000;
    let dyno = run_detached(
        &server,
        "outage",
        &["probe.wasm", "flood", &LINES.to_string()],
    );
    // The flood runs to its end while a drain gives no answer, another never reads and another refuses.
    wait_for("the flood to finish", || {
        history_text(&server, "outage")
            .contains(&format!("wasmdyno[{dyno}]: Process exited with status 0"))
            .then_some(())
    });
    // (Killed first: a reader that fell behind may never see the exit line.)
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(
        tail_lines.join().unwrap() > 0,
        "the tail read the flood as it came"
    );

    // The healthy drain got every line of the flood, or a count of what it missed.
    let flood = format!(" app {dyno} - flood line");
    let account = || {
        let messages = healthy.messages();
        let delivered = messages.iter().filter(|m| m.ends_with(&flood)).count() as u64;
        let dropped: u64 = messages
            .iter()
            .filter_map(|m| l10_count(m, &healthy_token))
            .sum();
        (delivered, dropped)
    };
    let deadline = Instant::now() + PATIENCE;
    while account().0 + account().1 < LINES {
        assert!(
            Instant::now() < deadline,
            "the healthy drain did not account for the flood: {:?} (delivered, dropped); its status: {}",
            account(),
            drains_json(&server, "outage")
                .into_iter()
                .find(|d| d["url"] == healthy_url.as_str())
                .unwrap()["status"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The stalled drain answers again: it delivers what it held, then the count of what it lost, then new lines.
    stalled.set_stalled(false);
    let messages = wait_for("the L10 line at the recovered drain", || {
        let messages = stalled.messages();
        messages
            .iter()
            .any(|m| l10_count(m, &stalled_token).is_some())
            .then_some(messages)
    });
    let l10 = messages
        .iter()
        .find(|m| l10_count(m, &stalled_token).is_some())
        .unwrap();
    assert!(
        l10.starts_with("<172>1 ")
            && l10.contains(" host wasmdyno logplex - Error L10 (output buffer overflow): "),
        "{l10}"
    );
    assert!(l10.ends_with(&format!("(drain {stalled_token})")), "{l10}");
    let dropped: u64 = messages
        .iter()
        .filter_map(|m| l10_count(m, &stalled_token))
        .sum();
    let delivered = messages.iter().filter(|m| m.ends_with(&flood)).count() as u64;
    assert!(
        dropped > 0,
        "a 1,000-line buffer cannot hold a 20,000-line flood"
    );
    assert!(
        delivered + dropped >= LINES,
        "every line arrived or was counted: {delivered} + {dropped}"
    );
    let after = run_detached(
        &server,
        "outage",
        &["probe.wasm", "args", "after the outage"],
    );
    wait_for("new lines at the recovered drain", || {
        stalled
            .messages()
            .iter()
            .any(|m| m.ends_with(&format!("app {after} - after the outage")))
            .then_some(())
    });

    // The losses are in the app's own stream, and in the drains' status.
    let logs = history_text(&server, "outage");
    assert!(
        logs.contains("wasmdyno[logplex]: Error L10 (output buffer overflow): ")
            && logs.contains(&format!("(drain {stalled_token})")),
        "{logs}"
    );
    let status = drains_json(&server, "outage")
        .into_iter()
        .find(|d| d["url"] == stalled_url.as_str())
        .unwrap()["status"]
        .clone();
    assert!(status["dropped"].as_u64().unwrap() > 0, "{status}");
    assert!(status["error"].is_null(), "delivering again: {status}");
    // The refusing drain is still trying, its buffer full, counting what it drops.
    let status = drains_json(&server, "outage")
        .into_iter()
        .find(|d| d["url"] == refusing_url.as_str())
        .unwrap()["status"]
        .clone();
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect")),
        "{status}"
    );
    assert_eq!(status["buffered"], 1000, "{status}");
    assert!(status["dropped"].as_u64().unwrap() > 0, "{status}");
    drop(black_hole);
}

#[test]
fn drains_survive_a_restart_and_go_with_their_app() {
    let sink = TcpSink::start(None);
    let server = Server::start_in(TestEnv::new(), FAST_DRAINS);
    server.cli(&["apps:create", "durable"]).ok();
    let url = format!("syslog://127.0.0.1:{}", sink.port);
    server.cli(&["drains:add", "-a", "durable", &url]).ok();
    server.cli(&["config:set", "-a", "durable", "A=1"]).ok();
    wait_for("the first release line", || {
        sink.messages()
            .iter()
            .any(|m| m.ends_with("app api - Release v2 created"))
            .then_some(())
    });
    // After a restart the server starts the drains it has in its store.
    let env = server.stop();
    let server = Server::start_in(env, FAST_DRAINS);
    server.cli(&["config:set", "-a", "durable", "B=2"]).ok();
    wait_for("the release line after the restart", || {
        sink.messages()
            .iter()
            .any(|m| m.ends_with("app api - Release v3 created"))
            .then_some(())
    });
    assert!(
        sink.connections().len() >= 2,
        "a new connection after the restart"
    );

    // Destroying the app stops its drain: its connection closes, and nothing more comes.
    server
        .cli(&["apps:destroy", "-a", "durable", "--confirm", "durable"])
        .ok();
    wait_for("the drain's connection to close", || {
        sink.connections().iter().all(|c| c.closed).then_some(())
    });
    server.cli(&["apps:create", "durable"]).ok();
    server.cli(&["config:set", "-a", "durable", "C=3"]).ok();
    assert!(
        drains_json(&server, "durable").is_empty(),
        "a new app of the same name has no drains"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !sink
            .messages()
            .iter()
            .any(|m| m.ends_with("app api - Set C config var")),
        "the destroyed app's drain is gone"
    );
}

fn write_ca(env: &TestEnv) -> PathBuf {
    let path = env.path("drain-ca.pem");
    std::fs::write(&path, TEST_CA).unwrap();
    path
}

#[test]
fn tls_drains_verify_the_receiver_and_deliver() {
    let syslog = TcpSink::start(Some(tls_acceptor()));
    let https = HttpSink::start(Some(tls_acceptor()));
    let env = TestEnv::new();
    let ca = write_ca(&env);
    let mut vars = FAST_DRAINS.to_vec();
    vars.push(("WASMDYNO_DRAIN_CA_FILE", ca.to_str().unwrap()));
    let server = Server::start_in(env, &vars);
    server.cli(&["apps:create", "private"]).ok();
    let syslog_url = format!("syslog+tls://127.0.0.1:{}", syslog.port);
    let https_url = format!("https://localhost:{}/drain", https.addr.port());
    server
        .cli(&["drains:add", "-a", "private", &syslog_url])
        .ok();
    server
        .cli(&["drains:add", "-a", "private", &https_url])
        .ok();
    server.cli(&["config:set", "-a", "private", "A=1"]).ok();
    let token = token_of(&server, "private", &syslog_url);
    wait_for("the release line over syslog+tls", || {
        syslog
            .messages()
            .iter()
            .any(|m| {
                m.starts_with("<13>1 ")
                    && m.ends_with(&format!(" {token} app api - Release v2 created"))
            })
            .then_some(())
    });
    wait_for("the release line over https", || {
        https
            .messages()
            .iter()
            .any(|m| m.ends_with(" host app api - Release v2 created"))
            .then_some(())
    });
    assert!(https.requests().iter().all(|r| r.target == "/drain"));
}

#[test]
fn tls_drains_refuse_a_receiver_they_cannot_verify() {
    let syslog = TcpSink::start(Some(tls_acceptor()));
    // No CA file: the test CA is not trusted, so the handshake fails and nothing is delivered.
    let server = Server::start_in(TestEnv::new(), FAST_DRAINS);
    server.cli(&["apps:create", "untrusted"]).ok();
    let url = format!("syslog+tls://127.0.0.1:{}", syslog.port);
    server.cli(&["drains:add", "-a", "untrusted", &url]).ok();
    server.cli(&["config:set", "-a", "untrusted", "A=1"]).ok();
    let status = wait_for("the drain to report its failure", || {
        let drain = drains_json(&server, "untrusted").remove(0);
        drain["status"]["error"].as_str().map(str::to_string)
    });
    assert!(status.contains("cannot connect"), "{status}");
    assert!(syslog.messages().is_empty());
}
