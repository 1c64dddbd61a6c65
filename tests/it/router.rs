//! The router inside `wasmdyno serve`: HTTP by Host to an app's web dynos, Heroku's error codes, router log lines,
//! custom domains, preboot. Most tests deploy `tests/guests/router-probe` (built once per run), whose paths each
//! provoke one behaviour, and talk raw HTTP/1.1 to the router.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::support::*;

fn wait_until(what: &str, check: impl FnMut() -> bool) {
    crate::support::wait_until(what, Duration::from_secs(60), check);
}

/// The router-probe guest as a slug, built once per run.
pub(crate) fn probe() -> &'static Path {
    static SLUG: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &SLUG
        .get_or_init(|| {
            let env = TestEnv::new();
            let slug = env.path("router-probe.slug");
            let dir = repo().join("tests/guests/router-probe");
            env.run(&["build", dir.to_str().unwrap(), "-o", slug.to_str().unwrap()])
                .ok();
            (env.dir, slug)
        })
        .1
}

/// Uploads a slug and releases it, as a deploy does after its build; the first release scales `web=1`.
pub(crate) fn release_slug(server: &Server, app: &str, slug: &Path) {
    let token = server.token();
    let (status, body) = server.raw(
        "POST",
        &format!("/apps/{app}/slugs"),
        Some(&token),
        std::fs::read(slug).unwrap(),
    );
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = server.raw(
        "POST",
        &format!("/apps/{app}/releases"),
        Some(&token),
        serde_json::json!({ "slug": id }).to_string(),
    );
    assert_eq!(status, 201, "{body}");
}

/// The router's `Host` for an app: `<app>.localhost:<port>`.
fn port(server: &Server) -> &str {
    server.router.rsplit(':').next().unwrap()
}

/// Creates `app` with `config`, releases the probe and, unless told not to, waits until it answers.
fn probe_app(server: &Server, app: &str, config: &[&str], wait: bool) -> String {
    server.cli(&["apps:create", app]).ok();
    if !config.is_empty() {
        let mut args = vec!["config:set", "-a", app];
        args.extend(config);
        server.cli(&args).ok();
    }
    release_slug(server, app, probe());
    let host = host_of(server, app);
    if wait {
        wait_until("the probe to answer", || {
            get(server, &host, "/").status == 200
        });
    }
    host
}

/// A response read to the end of the connection.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(raw.len());
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Reply {
            status,
            head,
            body: raw.get(split + 4..).unwrap_or_default().to_vec(),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Sends raw bytes to the router and reads until it closes the connection.
fn send(server: &Server, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(&server.router).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    Reply::parse(&raw)
}

fn get(server: &Server, host: &str, path: &str) -> Reply {
    send(
        server,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// A client connection kept alive across requests.
struct KeepAlive {
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn open(server: &Server) -> KeepAlive {
        let stream = TcpStream::connect(&server.router).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        KeepAlive {
            reader: BufReader::new(stream),
        }
    }

    /// One GET; the response must have a Content-Length.
    fn get(&mut self, host: &str, path: &str) -> Reply {
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        )
        .unwrap();
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(
                self.reader.read_line(&mut line).unwrap() > 0,
                "the router closed a kept-alive connection after: {head:?}"
            );
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut reply = Reply::parse(head.as_bytes());
        let length: usize = reply
            .header("content-length")
            .expect("a Content-Length")
            .parse()
            .unwrap();
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).unwrap();
        reply.body = body;
        reply
    }
}

/// `logs --tail` of one app, collected in the background: the 1,500-line history is too short once a test has
/// sent thousands of requests.
struct Tail {
    child: std::process::Child,
    text: Arc<Mutex<String>>,
}

impl Tail {
    fn start(server: &Server, args: &[&str]) -> Tail {
        let mut cmd = server.env.cmd(&[&["logs", "--tail"], args].concat());
        let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Tail { child, text }
    }

    fn wait_for(&self, what: &str) -> String {
        let mut text = String::new();
        wait_until(what, || {
            text = self.text.lock().unwrap().clone();
            text.contains(what)
        });
        text
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn router_logs(server: &Server, app: &str) -> String {
    server
        .cli(&["logs", "-a", app, "-p", "router", "-n", "1500"])
        .ok()
        .stdout
}

/// The router line of the request to `path` (the last one).
fn router_line(server: &Server, app: &str, path: &str) -> String {
    let needle = format!("path=\"{path}\"");
    let mut found = String::new();
    wait_until(&format!("a router line for {path}"), || {
        found = router_logs(server, app)
            .lines()
            .rev()
            .find(|l| l.contains(&needle))
            .unwrap_or_default()
            .to_string();
        !found.is_empty()
    });
    found
}

#[test]
fn requests_reach_web_dynos_and_failures_get_heroku_codes() {
    let server = Server::start();
    let app = repo().join("tests/guests/listener-rust");
    server.cli(&["apps:create", "hello"]).ok();
    server.cli(&["apps:create", "blank"]).ok();

    // Unknown hosts and apps without a release.
    let (status, page) = server.get("nope.localhost", "/");
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("No such app"), "{page}");
    let (status, page) = server.get("blank.localhost", "/");
    assert_eq!(status, 503, "{page}");
    assert!(page.contains("H81"), "{page}");

    // The first deploy with a web process scales web=1; the router sends requests to it.
    server
        .cli(&["config:set", "-a", "hello", "GREETING=hi"])
        .ok();
    server
        .cli(&["deploy", "-a", "hello", app.to_str().unwrap()])
        .ok();
    let host = format!(
        "hello.localhost:{}",
        server.router.rsplit(':').next().unwrap()
    );
    wait_until("the web dyno to answer", || {
        server.get(&host, "/file").0 == 200
    });
    let (_, response) = server.get(&host, "/file");
    assert!(response.ends_with("hello from the slug\n"), "{response}");
    let (status, response) = server.get(&host, "/env/GREETING");
    assert_eq!(status, 200, "{response}");
    assert!(response.ends_with("hi"), "{response}");
    let logs = server
        .cli(&["logs", "-a", "hello", "-p", "router"])
        .ok()
        .stdout;
    assert!(
        logs.contains("at=info method=GET path=\"/file\" host=hello.localhost"),
        "{logs}"
    );
    assert!(
        logs.contains("dyno=web.1") && logs.contains("status=200"),
        "{logs}"
    );

    // Requests one at a time take turns among equally idle web dynos.
    server.cli(&["ps:scale", "-a", "hello", "web=3"]).ok();
    wait_until("three web dynos up", || {
        let ps = server.cli(&["ps", "-a", "hello", "--json"]).ok().json();
        let up = ps
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["state"] == "up")
            .count();
        up == 3
    });
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (status, response) = server.get(&host, "/env/DYNO");
        assert_eq!(status, 200, "{response}");
        answered.insert(response.rsplit('\n').next().unwrap().to_string());
    }
    assert_eq!(
        answered,
        ["web.1", "web.2", "web.3"].map(String::from).into(),
        "sequential requests went to {answered:?}"
    );

    // Maintenance mode, then no web dynos.
    server.cli(&["maintenance:on", "-a", "hello"]).ok();
    let (status, page) = server.get(&host, "/file");
    assert_eq!(status, 503);
    assert!(page.contains("H80"), "{page}");
    server.cli(&["maintenance:off", "-a", "hello"]).ok();
    server.cli(&["ps:scale", "-a", "hello", "web=0"]).ok();
    let (status, page) = server.get(&host, "/file");
    assert_eq!(status, 503);
    assert!(page.contains("H14"), "{page}");
    let logs = server
        .cli(&["logs", "-a", "hello", "-p", "router"])
        .ok()
        .stdout;
    assert!(logs.contains("at=error code=H14"), "{logs}");
}

#[test]
fn custom_domains_route_to_their_app_and_belong_to_one_app() {
    // A base domain of our own: `<app>.apps.test` still names apps.
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_BASE_DOMAIN", "apps.test")]);
    server.cli(&["apps:create", "shop"]).ok();
    server.cli(&["apps:create", "blog"]).ok();
    release_slug(&server, "shop", probe());
    let port = port(&server).to_string();
    let at = |host: &str| format!("{host}:{port}");
    wait_until("the shop to answer", || {
        get(&server, &at("shop.apps.test"), "/").status == 200
    });
    assert_eq!(get(&server, &at("shop.localhost"), "/").status, 404);

    // Not routed until added; routed by the next request after `domains:add` returns.
    assert_eq!(get(&server, &at("www.example.com"), "/").status, 404);
    let out = server
        .cli(&["domains:add", "-a", "shop", "WWW.Example.com"])
        .ok();
    assert!(
        out.stderr
            .contains("Adding www.example.com to ⬢ shop... done"),
        "{out}"
    );
    let reply = get(&server, &at("www.example.com"), "/");
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "ok web.1 v2"),
        "{reply:?}"
    );
    server
        .cli(&["domains:add", "-a", "shop", "*.shops.example"])
        .ok();
    assert_eq!(get(&server, &at("north.shops.example"), "/").status, 200);
    assert_eq!(get(&server, &at("a.b.shops.example"), "/").status, 404);
    server
        .cli(&["domains:add", "-a", "shop", "api.shop.apps.test"])
        .ok();
    assert_eq!(get(&server, &at("api.shop.apps.test"), "/").status, 200);
    let line = router_line(&server, "shop", "/");
    assert!(line.contains("host=api.shop.apps.test"), "{line}");

    let out = server.cli(&["domains", "-a", "shop"]).ok();
    assert!(
        out.stdout
            .starts_with("=== shop Default Domain\nshop.apps.test\n\n=== shop Custom Domains\n"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("www.example.com     CNAME            shop.apps.test"),
        "{out}"
    );
    let listed = server.cli(&["domains", "-a", "shop", "--json"]).ok().json();
    let hosts: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(
        hosts,
        [
            "shop.apps.test",
            "*.shops.example",
            "api.shop.apps.test",
            "www.example.com"
        ]
    );

    // One app per hostname (409), and names that are not custom domains (422).
    let token = server.token();
    let add = |app: &str, hostname: &str| {
        server.raw(
            "POST",
            &format!("/apps/{app}/domains"),
            Some(&token),
            serde_json::json!({ "hostname": hostname }).to_string(),
        )
    };
    let (status, body) = add("blog", "www.example.com");
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("domain www.example.com is already attached to app"),
        "{body}"
    );
    let (status, body) = add("blog", "shop.apps.test");
    assert_eq!(status, 409, "{body}");
    let (status, body) = add("blog", "api.shop.apps.test");
    assert_eq!(status, 409, "{body}");
    for bad in [
        "www.example.com:8080",
        "http://example.com",
        "bad_host.example",
        "*.apps.test",
        "apps.test",
        "nobody.apps.test",
    ] {
        let (status, body) = add("blog", bad);
        assert_eq!(status, 422, "{bad}: {body}");
    }
    let out = server
        .cli(&["domains:add", "-a", "blog", "www.example.com"])
        .fails();
    assert!(out.stderr.contains("already attached"), "{out}");
    let (status, _) = add("nope", "nope.example");
    assert_eq!(status, 404);

    // Removed: not routed any more, and free for another app.
    let out = server
        .cli(&["domains:remove", "-a", "shop", "www.example.com"])
        .ok();
    assert!(
        out.stderr
            .contains("Removing www.example.com from ⬢ shop... done"),
        "{out}"
    );
    assert_eq!(get(&server, &at("www.example.com"), "/").status, 404);
    server
        .cli(&["domains:remove", "-a", "shop", "www.example.com"])
        .fails();
    server
        .cli(&["domains:add", "-a", "blog", "www.example.com"])
        .ok();
    let reply = get(&server, &at("www.example.com"), "/");
    assert_eq!(reply.status, 503, "the blog has no release: {reply:?}");
    assert!(reply.text().contains("H81"), "{reply:?}");

    // A destroyed app's domains go with it.
    server
        .cli(&["apps:destroy", "-a", "shop", "--confirm", "shop"])
        .ok();
    assert_eq!(get(&server, &at("north.shops.example"), "/").status, 404);
    assert_eq!(get(&server, &at("shop.apps.test"), "/").status, 404);
}

#[test]
fn the_routing_table_follows_every_change_at_once() {
    let server = Server::start();
    let host = probe_app(&server, "flip", &[], true);
    for _ in 0..3 {
        server.cli(&["maintenance:on", "-a", "flip"]).ok();
        let reply = get(&server, &host, "/");
        assert_eq!(reply.status, 503);
        assert!(reply.text().contains("H80"), "{reply:?}");
        server.cli(&["maintenance:off", "-a", "flip"]).ok();
        assert_eq!(get(&server, &host, "/").status, 200);
    }
    let line = router_line(&server, "flip", "/");
    assert!(line.contains("at=info method=GET"), "{line}");
    let logs = router_logs(&server, "flip");
    assert!(
        logs.contains("at=info code=H80 desc=\"Maintenance mode\""),
        "{logs}"
    );
    server.cli(&["apps:create", "late"]).ok();
    let late = format!("late.localhost:{}", port(&server));
    let reply = get(&server, &late, "/");
    assert!(reply.text().contains("H81"), "{reply:?}");
    server
        .cli(&["apps:destroy", "-a", "late", "--confirm", "late"])
        .ok();
    assert_eq!(get(&server, &late, "/").status, 404);
}

#[test]
fn timeouts_are_h12_before_the_response_and_h15_during_it() {
    let server = Server::start_in(
        TestEnv::new(),
        &[
            ("WASMDYNO_ROUTER_TIMEOUT_MS", "500"),
            ("WASMDYNO_ROUTER_IDLE_TIMEOUT_MS", "500"),
        ],
    );
    let host = probe_app(&server, "slow", &[], true);
    let reply = get(&server, &host, "/sleep/3000");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.text().contains("Request timeout (H12)"), "{reply:?}");
    let line = router_line(&server, "slow", "/sleep/3000");
    assert!(
        line.contains("at=error code=H12 desc=\"Request timeout\"")
            && line.contains("dyno=web.1")
            && line.contains("status=503 bytes=0 protocol=http"),
        "{line}"
    );

    // The head and 5 bytes come at once, the rest only after the idle timeout: the response is cut.
    wait_until("the dyno to be done sleeping", || {
        get(&server, &host, "/").status == 200
    });
    let reply = get(&server, &host, "/stall/3000");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.len() < 10, "cut: {reply:?}");
    let line = router_line(&server, "slow", "/stall/3000");
    assert!(
        line.contains("at=error code=H15 desc=\"Idle connection\"")
            && line.contains("status=503 bytes=5"),
        "{line}"
    );
    // A stall shorter than the idle timeout is fine.
    wait_until("the dyno to be free again", || {
        get(&server, &host, "/").status == 200
    });
    let reply = get(&server, &host, "/stall/100");
    assert_eq!(reply.text(), "helloworld");
    let line = router_line(&server, "slow", "/stall/100");
    assert!(
        line.contains("at=info") && line.contains("status=200 bytes=10"),
        "{line}"
    );
}

#[test]
fn dynos_that_hang_up_are_h13_and_h18() {
    let server = Server::start();
    let host = probe_app(&server, "rude", &[], true);
    let reply = get(&server, &host, "/close");
    assert_eq!(reply.status, 503);
    assert!(reply.text().contains("(H13)"), "{reply:?}");
    let line = router_line(&server, "rude", "/close");
    assert!(
        line.contains("at=error code=H13 desc=\"Connection closed without response\""),
        "{line}"
    );

    // Cut mid-body: the client's connection is cut too (after the head, or before it was flushed); the router
    // logs H18.
    let reply = get(&server, &host, "/cut");
    assert!(matches!(reply.status, 200 | 0), "{reply:?}");
    assert!(reply.body.len() < 100, "{reply:?}");
    let line = router_line(&server, "rude", "/cut");
    assert!(
        line.contains("at=error code=H18 desc=\"Server Request Interrupted\"")
            && line.contains("bytes=10"),
        "{line}"
    );

    // Closed while the client was still sending its (2 MB) body.
    let body = vec![b'z'; 2 << 20];
    let mut stream = TcpStream::connect(&server.router).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /slam HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // The router may answer before it has read it all; what it did not read is not our concern.
    let _ = stream.write_all(&body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let reply = Reply::parse(&raw);
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.text().contains("(H18)"), "{reply:?}");

    // A body that fits is echoed whole (and counted in bytes=).
    let echo = send(
        &server,
        format!(
            "POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello there"
        )
        .as_bytes(),
    );
    assert_eq!((echo.status, echo.text().as_str()), (200, "hello there"));
    let line = router_line(&server, "rude", "/echo");
    assert!(line.contains("status=200 bytes=11"), "{line}");
}

#[test]
fn a_client_that_goes_away_is_h27() {
    let server = Server::start();
    let host = probe_app(&server, "fickle", &[], true);
    let mut stream = TcpStream::connect(&server.router).unwrap();
    write!(stream, "GET /sleep/1000 HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    wait_until("the dyno to take the request", || {
        logs(&server, "fickle").contains("sleeping 1000")
    });
    drop(stream);
    let line = router_line(&server, "fickle", "/sleep/1000");
    assert!(
        line.contains("at=info code=H27 desc=\"Client Request Interrupted\"")
            && line.contains("status=499"),
        "{line}"
    );
}

#[test]
fn a_full_backlog_is_h11() {
    let server = Server::start_in(
        TestEnv::new(),
        &[
            ("WASMDYNO_ROUTER_MAX_IN_FLIGHT", "1"),
            ("WASMDYNO_ROUTER_MAX_QUEUE", "1"),
        ],
    );
    let host = probe_app(&server, "busy", &[], true);
    // One request in flight on the only dyno...
    let first = std::thread::spawn({
        let (router, host) = (server.router.clone(), host.clone());
        move || raw_get(&router, &host, "/sleep/4000")
    });
    wait_until("the dyno to take the first request", || {
        logs(&server, "busy").contains("sleeping 4000")
    });
    // ...one queued, and the next finds the queue full, whichever of these two comes first.
    let second = std::thread::spawn({
        let (router, host) = (server.router.clone(), host.clone());
        move || raw_get(&router, &host, "/")
    });
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let reply = get(&server, &host, "/");
        statuses.push(reply.status);
        if reply.status == 503 {
            assert!(reply.text().contains("Backlog too deep (H11)"), "{reply:?}");
            break;
        }
    }
    statuses.push(second.join().unwrap().status);
    assert_eq!(first.join().unwrap().status, 200);
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&200),
        "the queued one is served: {statuses:?}"
    );
    let logs = router_logs(&server, "busy");
    assert!(
        logs.contains("at=error code=H11 desc=\"Backlog too deep\""),
        "{logs}"
    );
}

/// A GET on a fresh connection, from any thread.
fn raw_get(router: &str, host: &str, path: &str) -> Reply {
    let mut stream = TcpStream::connect(router).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    Reply::parse(&raw)
}

#[test]
fn a_slow_boot_is_h20_and_a_dyno_that_never_accepts_gets_r10() {
    let server = Server::start_in(
        TestEnv::new(),
        &[
            ("WASMDYNO_ROUTER_BOOT_TIMEOUT_MS", "300"),
            ("WASMDYNO_BOOT_TIMEOUT_MS", "1500"),
        ],
    );
    let host = probe_app(&server, "sleepy", &["BOOT_DELAY_MS=600000"], false);
    wait_until("the dyno to boot", || {
        logs(&server, "sleepy").contains("booting for 600000 ms")
    });
    let reply = get(&server, &host, "/");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.text().contains("App boot timeout (H20)"), "{reply:?}");
    let line = router_line(&server, "sleepy", "/");
    assert!(
        line.contains("at=error code=H20 desc=\"App boot timeout\""),
        "{line}"
    );
    let mut all = String::new();
    wait_until("R10", || {
        all = logs(&server, "sleepy");
        all.contains("State changed from starting to crashed")
    });
    assert!(
        all.contains(
            "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within 1.5 seconds of launch"
        ),
        "{all}"
    );
    assert!(!all.contains("State changed from starting to up"), "{all}");
}

#[test]
fn heads_over_8k_bodies_over_the_limit_and_keep_alive() {
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_ROUTER_MAX_BODY", "1000")]);
    let host = probe_app(&server, "strict", &[], true);

    // Several requests on one client connection, though the dyno closes each of its own.
    let mut conn = KeepAlive::open(&server);
    for path in ["/", "/env/DYNO", "/big/3000", "/"] {
        let reply = conn.get(&host, path);
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert!(reply.header("connection").is_none(), "{reply:?}");
    }
    assert_eq!(conn.get(&host, "/big/3000").body.len(), 3000);
    let line = router_line(&server, "strict", "/big/3000");
    assert!(
        line.contains("status=200 bytes=3000 protocol=http"),
        "{line}"
    );
    assert!(
        line.contains(" connect=") && line.contains("ms service="),
        "{line}"
    );

    // Bodies: declared too large, sent too large (chunked), and small enough.
    let big = vec![b'b'; 2000];
    let mut request = format!(
        "POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    request.extend(&big);
    let reply = send(&server, &request);
    assert_eq!(reply.status, 413, "{reply:?}");
    let mut chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for piece in big.chunks(500) {
        chunked.extend(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend(piece);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let reply = send(&server, &chunked);
    assert_eq!(reply.status, 413, "{reply:?}");
    let mut small = format!(
        "POST /echo HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    small.extend(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    let reply = send(&server, &small);
    assert_eq!((reply.status, reply.text().as_str()), (200, "abcde"));
    let logs = router_logs(&server, "strict");
    assert!(
        logs.contains("at=error desc=\"Request body too large\" method=POST path=\"/echo\"")
            && logs.contains("status=413"),
        "{logs}"
    );

    // A head over 8 KiB is refused, and logged in the app's stream.
    let filler = "a".repeat(9000);
    let reply = send(
        &server,
        format!("GET /huge HTTP/1.1\r\nHost: {host}\r\nX-Filler: {filler}\r\n\r\n").as_bytes(),
    );
    assert_eq!(reply.status, 431, "{reply:?}");
    let line = router_line(&server, "strict", "/huge");
    assert!(
        line.contains("at=error desc=\"Request header too large\"") && line.contains("status=431"),
        "{line}"
    );
    // A head just under it is fine.
    let filler = "a".repeat(7000);
    let reply = send(
        &server,
        format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nX-Filler: {filler}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// Upgrades a connection to the router at `router` for `host` to the probe's `echo` protocol, checks that a few
/// messages come back as sent, and ends it from this side; the dyno ends its side too.
pub(crate) fn echo_over_upgrade(router: &str, host: &str) {
    let mut stream = TcpStream::connect(router).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "{head}");
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_lowercase().contains("upgrade: echo"), "{head}");
    for message in ["ping", "a longer message, twice over", "last"] {
        stream.write_all(message.as_bytes()).unwrap();
        let mut echoed = vec![0u8; message.len()];
        reader.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed, message.as_bytes());
    }
    // Our end of stream reaches the dyno, which ends its side too.
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn upgraded_connections_are_relayed_both_ways() {
    let server = Server::start();
    let host = probe_app(&server, "socket", &[], true);
    echo_over_upgrade(&server.router, &host);
    let line = router_line(&server, "socket", "/ws");
    assert!(line.contains("status=101"), "{line}");
    // The dyno serves plain requests afterwards.
    assert_eq!(get(&server, &host, "/").status, 200);
}

#[test]
fn preboot_moves_traffic_to_a_new_release_without_failing_a_request() {
    const REQUESTS: usize = 2000;
    const CAP: usize = 20_000;
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_STOP_TIMEOUT_MS", "5000")]);
    let host = probe_app(&server, "steady", &[], true);
    assert_eq!(get(&server, &host, "/").text(), "ok web.1 v2");

    let tail = Tail::start(&server, &["-a", "steady", "-p", "web"]);
    tail.wait_for("State changed from starting to up");
    let sent = Arc::new(AtomicUsize::new(0));
    let switched = Arc::new(AtomicBool::new(false));
    let replies = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let (sent, switched, replies) = (sent.clone(), switched.clone(), replies.clone());
            let router = server.router.clone();
            let host = host.clone();
            std::thread::spawn(move || {
                let mut conn = KeepAlive {
                    reader: BufReader::new({
                        let s = TcpStream::connect(&router).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                        s
                    }),
                };
                // Until 2,000 requests are done and the new release answered (bounded either way).
                loop {
                    let n = sent.fetch_add(1, Ordering::SeqCst);
                    if n >= CAP || (n >= REQUESTS && switched.load(Ordering::SeqCst)) {
                        return;
                    }
                    let reply = conn.get(&host, "/");
                    if reply.text().ends_with(" v3") {
                        switched.store(true, Ordering::SeqCst);
                    }
                    replies.lock().unwrap().push((reply.status, reply.text()));
                }
            })
        })
        .collect();
    wait_until("some load", || sent.load(Ordering::SeqCst) >= 300);
    server.cli(&["config:set", "-a", "steady", "NEW=1"]).ok();
    for client in clients {
        client.join().unwrap();
    }
    let replies = replies.lock().unwrap();
    assert!(replies.len() >= REQUESTS, "{}", replies.len());
    assert_switched_without_failures(&replies, "ok web.1 v2", "ok web.1 v3");

    // The old dyno stopped after the new one was up, and only the new one answers now.
    let all = tail.wait_for("State changed from up to down");
    let second_up = all
        .match_indices("State changed from starting to up")
        .nth(1)
        .map(|(i, _)| i)
        .expect("the new dyno came up");
    let stopping = all.find("Stopping process").expect("the old dyno stopped");
    assert!(second_up < stopping, "{all}");
    for _ in 0..20 {
        assert_eq!(get(&server, &host, "/").text(), "ok web.1 v3");
    }
}

#[test]
fn a_crashing_dyno_s_traffic_moves_to_the_healthy_one() {
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_BACKOFF_BASE_MS", "60000")]);
    let host = probe_app(&server, "wobbly", &[], true);
    server.cli(&["ps:scale", "-a", "wobbly", "web=2"]).ok();
    wait_until("both dynos up", || {
        let ps = server.cli(&["ps", "-a", "wobbly", "--json"]).ok().json();
        ps.as_array()
            .unwrap()
            .iter()
            .filter(|d| d["state"] == "up")
            .count()
            == 2
    });
    // Load on both while one of them crashes (and again, which it then stays, for the backoff).
    let failures = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (router, host, failures) = (server.router.clone(), host.clone(), failures.clone());
            std::thread::spawn(move || {
                for _ in 0..100 {
                    if raw_get(&router, &host, "/").status != 200 {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for _ in 0..2 {
        let reply = get(&server, &host, "/crash");
        assert_eq!(reply.status, 503, "{reply:?}");
        assert!(reply.text().contains("(H13)"), "{reply:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for thread in load {
        thread.join().unwrap();
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    for _ in 0..20 {
        assert_eq!(get(&server, &host, "/").status, 200);
    }
    let logs = logs(&server, "wobbly");
    assert!(logs.contains("Process exited with status 3"), "{logs}");
}

#[test]
fn a_spinning_dyno_stalls_only_itself() {
    let server = Server::start_in(
        TestEnv::new(),
        &[
            ("WASMDYNO_ROUTER_TIMEOUT_MS", "1000"),
            ("WASMDYNO_STOP_TIMEOUT_MS", "500"),
            ("WASMDYNO_UNRESPONSIVE_MS", "700"),
        ],
    );
    let spinner = probe_app(&server, "spinner", &[], true);
    let calm = probe_app(&server, "calm", &[], true);
    let spinning = std::thread::spawn({
        let (router, spinner) = (server.router.clone(), spinner.clone());
        move || raw_get(&router, &spinner, "/spin")
    });
    wait_until("the dyno to spin", || {
        logs(&server, "spinner").contains("spinning")
    });
    for i in 0..200 {
        let reply = get(&server, &calm, "/env/DYNO");
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "web.1"),
            "request {i}"
        );
    }
    let reply = spinning.join().unwrap();
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.text().contains("(H12)"), "{reply:?}");
    // Requests now wait on a dyno that accepts nothing: past WASMDYNO_UNRESPONSIVE_MS it is restarted (R18),
    // and the restarted process answers.
    let _ = get(&server, &spinner, "/");
    wait_until("the R18 restart", || {
        logs(&server, "spinner").contains("wasmdyno[web.1]: Error R18 (Unresponsive)")
    });
    wait_until("the restarted dyno to answer", || {
        get(&server, &spinner, "/env/DYNO").status == 200
    });
}

/// The (conn, req) numbers of a router-probe `/conn` answer: `conn C req R`.
fn conn_and_request(reply: &Reply) -> (u64, u64) {
    let text = reply.text();
    let words: Vec<&str> = text.split(' ').collect();
    match words[..] {
        ["conn", c, "req", r] => (c.parse().unwrap(), r.parse().unwrap()),
        _ => panic!("not a /conn answer: {reply:?}"),
    }
}

#[test]
fn connections_to_a_dyno_are_kept_alive_without_holding_up_a_one_connection_server() {
    // A stop timeout long enough that only a dyno stuck on an idle connection would hit it.
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_STOP_TIMEOUT_MS", "20000")]);
    let host = probe_app(&server, "alive", &["KEEP_ALIVE=1"], true);

    // One client after the other: their requests go over one connection to the dyno.
    let seen: Vec<(u64, u64)> = (0..10)
        .map(|_| conn_and_request(&get(&server, &host, "/conn")))
        .collect();
    assert!(
        seen.windows(2).all(|w| w[1] == (w[0].0, w[0].1 + 1)),
        "{seen:?}"
    );

    // Many at once: the dyno serves one connection at a time, and still every request is answered (idle
    // connections it might be waiting on are closed when a new one is not taken).
    let failures = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (router, host, failures) = (server.router.clone(), host.clone(), failures.clone());
            std::thread::spawn(move || {
                for _ in 0..10 {
                    if raw_get(&router, &host, "/conn").status != 200 {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    // A request with a body is answered too (it always gets a connection of its own).
    let reply = send(
        &server,
        format!(
            "POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        )
        .as_bytes(),
    );
    assert_eq!((reply.status, reply.text().as_str()), (200, "hello"));

    // Stopping it is graceful: its idle connections close with its listener, so it sees the listener close.
    server.cli(&["ps:scale", "-a", "alive", "web=0"]).ok();
    wait_until("the dyno to stop", || {
        logs(&server, "alive").contains("Process exited with status 0")
    });
    let logs = logs(&server, "alive");
    assert!(logs.contains("accept failed"), "{logs}");
    assert!(!logs.contains("R12"), "{logs}");

    // Heroku's feature turns keep-alive to the dynos off: a connection per request.
    server
        .cli(&[
            "features:enable",
            "http-disable-keepalive-to-dyno",
            "-a",
            "alive",
        ])
        .ok();
    server.cli(&["ps:scale", "-a", "alive", "web=1"]).ok();
    wait_until("the dyno to answer again", || {
        get(&server, &host, "/").status == 200
    });
    let seen: Vec<(u64, u64)> = (0..5)
        .map(|_| conn_and_request(&get(&server, &host, "/conn")))
        .collect();
    assert!(seen.windows(2).all(|w| w[1].0 > w[0].0), "{seen:?}");
    assert!(seen.iter().all(|(_, request)| *request == 1), "{seen:?}");
}

#[test]
fn a_dyno_that_closes_connections_without_saying_so_fails_no_request() {
    let server = Server::start();
    let host = probe_app(&server, "quiet", &["CLOSE_QUIETLY=1"], true);
    for _ in 0..50 {
        let reply = get(&server, &host, "/conn");
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(conn_and_request(&reply).1, 1, "one request per connection");
    }
    let logs = router_logs(&server, "quiet");
    assert!(!logs.contains("H13"), "{logs}");
}

#[test]
fn a_request_a_dyno_read_on_a_kept_alive_connection_is_never_sent_again() {
    let server = Server::start();
    let host = probe_app(&server, "once", &["KEEP_ALIVE=1"], true);
    // The connection the probe's answer came over is now idle in the pool; the crash goes over it.
    assert_eq!(get(&server, &host, "/conn").status, 200);
    let reply = get(&server, &host, "/crash");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.text().contains("(H13)"), "{reply:?}");
    // The dyno restarts at once after a first crash: a request sent again would crash it again.
    wait_until("the dyno to be back", || {
        get(&server, &host, "/").status == 200
    });
    let logs = logs(&server, "once");
    assert_eq!(logs.matches("crashing").count(), 1, "{logs}");
}
