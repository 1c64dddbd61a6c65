//! `wasi:http` web dynos through the real server and router: warm instances that serve many requests, a trapping
//! or spinning instance discarded without taking the dyno down, output in the app's stream, and fresh instances
//! per request as a setting. The guest is `tests/guests/http-probe`, built by the Rust buildpack in the server.

use std::time::{Duration, Instant};

use crate::support::*;

/// Deploys the http probe as `app` and waits until its web dyno answers.
pub(crate) fn deploy_probe(server: &Server, app: &str) {
    deploy_and_get(server, app, "tests/guests/http-probe", "/");
}

/// Creates `app`, deploys the repository's directory `dir` to it, and waits until a GET of `path` through the
/// router answers 200; returns that response.
fn deploy_and_get(server: &Server, app: &str, dir: &str, path: &str) -> String {
    server.cli(&["apps:create", app]).ok();
    let dir = repo().join(dir);
    server
        .cli(&["deploy", "-a", app, dir.to_str().unwrap()])
        .ok();
    let host = format!("{app}.localhost");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, response) = server.get(&host, path);
        if status == 200 {
            return response;
        }
        assert!(Instant::now() < deadline, "never answered: {response}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The count the probe reports: requests served by the instance that answered.
fn count(server: &Server, host: &str) -> u64 {
    // An instance goes back to the dyno's pool just after its response is sent: on a busy machine the next request
    // may come first and get an instance of its own. A pause lets the last one settle, so counts follow one.
    std::thread::sleep(Duration::from_millis(100));
    let (status, response) = server.get(host, "/");
    assert_eq!(status, 200, "{response}");
    let text = body(&response);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("count="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {text:?}"))
}

/// Waits until `check` holds on the app's logs (20 s at most).
fn wait_logs(server: &Server, app: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    crate::support::wait_logs(server, app, what, Duration::from_secs(20), check)
}

#[test]
fn a_wasi_http_dyno_keeps_warm_instances_and_survives_bad_requests() {
    let server = Server::start_in(
        TestEnv::new(),
        &[
            ("WASMDYNO_ROUTER_TIMEOUT_MS", "1000"),
            ("WASMDYNO_HTTP_DEADLINE_MS", "1000"),
        ],
    );
    deploy_probe(&server, "hprobe");
    let host = "hprobe.localhost";

    // Sequential requests reuse one warm instance: its own count goes up.
    let counts: Vec<u64> = (0..5).map(|_| count(&server, host)).collect();
    assert!(
        counts.windows(2).all(|w| w[1] > w[0]),
        "one warm instance serves them in turn: {counts:?}"
    );
    let (_, response) = server.get(host, "/");
    assert!(body(&response).contains("dyno=web.1"), "{response}");

    // A trap costs that request and that instance only.
    std::thread::sleep(Duration::from_millis(100));
    let (status, response) = server.get(host, "/trap");
    assert_eq!(status, 503, "{response}");
    wait_logs(&server, "hprobe", "the trap", |t| {
        t.contains("wasmdyno[web.1]: Instance trapped and was discarded") && t.contains("code=H13")
    });
    assert_eq!(
        count(&server, host),
        1,
        "a new instance replaced the trapped one"
    );
    assert_eq!(count(&server, host), 2);

    // A spinning instance times out (H12) and is discarded; the dyno keeps answering.
    std::thread::sleep(Duration::from_millis(100));
    let (status, response) = server.get(host, "/spin");
    assert_eq!(status, 503, "{response}");
    assert!(response.contains("H12"), "{response}");
    assert_eq!(count(&server, host), 1);
    let ps = server.cli(&["ps", "-a", "hprobe", "--json"]).ok().json();
    assert_eq!(ps[0]["state"], "up", "{ps}");

    // The request body reaches the guest; a large streamed response arrives whole. (Last: a streamed response may
    // still hold its instance when the next request comes, which then gets a second one, and the counts above
    // assume one.)
    let (status, text) = request(&server, "POST", host, "/echo", &[7u8; 100_000]);
    assert_eq!(status, 200);
    assert_eq!(text.len(), 100_000);
    let (status, data) = request(&server, "GET", host, "/big?n=3000000", b"");
    assert_eq!(status, 200);
    assert_eq!(data.len(), 3_000_000);
    // Each is logged as served, whether its length was declared (the echo) or not (the stream).
    wait_logs(&server, "hprobe", "both router lines", |t| {
        t.contains("path=\"/echo\"") && t.contains("path=\"/big?n=3000000\"")
    });
    let text = logs(&server, "hprobe");
    for path in ["/echo", "/big?n=3000000"] {
        let line = text
            .lines()
            .rfind(|l| l.contains(&format!("path=\"{path}\"")))
            .unwrap();
        assert!(
            line.contains("at=info") && line.contains("status=200"),
            "{line}"
        );
    }

    // Output goes to the app's stream as the dyno's.
    let (status, _) = server.get(host, "/log");
    assert_eq!(status, 200);
    wait_logs(&server, "hprobe", "the guest's output", |t| {
        t.contains("app[web.1]: a line on stdout") && t.contains("app[web.1]: a line on stderr")
    });
}

#[test]
fn fresh_instances_per_request_is_a_setting() {
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_HTTP_FRESH_INSTANCES", "1")]);
    deploy_probe(&server, "fresh");
    for _ in 0..3 {
        assert_eq!(count(&server, "fresh.localhost"), 1);
    }
}

/// A request through the router; returns (status, body).
fn request(server: &Server, method: &str, host: &str, path: &str, data: &[u8]) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&server.router).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    )
    .unwrap();
    stream.write_all(data).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[test]
fn a_go_net_http_cgi_app_is_served_one_run_per_request() {
    let server = Server::start();
    let response = deploy_and_get(&server, "gocgi", "sample-apps/go-cgi", "/hello?a=1");
    let ps = server.cli(&["ps", "-a", "gocgi"]).ok();
    assert!(
        ps.stdout.contains("cgi go-cgi.wasm"),
        "the buildpack's default: {ps}"
    );
    let host = "gocgi.localhost";
    let text = body(&response);
    assert!(
        text.contains("Hello from Go CGI on wasmdyno (web.1)"),
        "{text}"
    );
    assert!(text.contains("GET /hello?a=1"), "{text}");
    assert!(text.contains("X-Forwarded-For: 127.0.0.1"), "{text}");

    let data: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    let (status, echoed) = request(&server, "POST", host, "/echo", &data);
    assert_eq!(status, 200);
    assert!(
        echoed == data,
        "the body comes back intact ({} bytes)",
        echoed.len()
    );
    let (status, _) = server.get(host, "/missing");
    assert_eq!(status, 404);
    let (status, response) = server.get(host, "/moved");
    assert_eq!(status, 302);
    assert!(
        response.to_ascii_lowercase().contains("location: /"),
        "{response}"
    );
    wait_logs(&server, "gocgi", "the command's stderr", |t| {
        t.contains("served POST /echo") && t.contains("at=info method=POST path=\"/echo\"")
    });
}

/// The Go buildpack builds a CGI app pre-initialized: its runtime start and `init`s run once per dyno, and each
/// request starts from the state they left, with its own environment, arguments and random numbers.
#[test]
fn a_go_cgi_app_is_initialized_once_per_dyno_and_each_request_starts_from_there() {
    let server = Server::start();
    let host = "gostate.localhost";
    let value = |text: &str, key: &str| {
        let at = text
            .find(&format!("{key}="))
            .unwrap_or_else(|| panic!("no {key}: {text}"));
        text[at + key.len() + 1..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let first = deploy_and_get(&server, "gostate", "tests/guests/go-cgi-state", "/?n=1");
    let first = body(&first);
    assert!(first.contains("inits=1 served=1 map=3"), "{first}");
    assert!(first.contains("query=n=1 args=1"), "{first}");
    let (status, second) = server.get(host, "/?n=2");
    assert_eq!(status, 200, "{second}");
    let second = body(&second);
    assert!(
        second.contains("inits=1 served=1 map=3"),
        "what the first request changed is gone: {second}"
    );
    assert!(second.contains("query=n=2"), "{second}");
    assert_ne!(
        value(first, "random"),
        value(second, "random"),
        "math/rand is seeded again for each request"
    );
    let logs = wait_logs(&server, "gostate", "the pre-initialization", |t| {
        t.contains("Pre-initialized in") && t.contains("path=\"/?n=2\"")
    });
    assert_eq!(
        logs.matches("go-cgi-state: init ran").count(),
        1,
        "init ran once for two requests: {logs}"
    );

    // A config var is in the environment of the next release's initialization and of each of its requests.
    server
        .cli(&["config:set", "-a", "gostate", "GREETING=hello"])
        .ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, response) = server.get(host, "/");
        if status == 200 && body(&response).contains("greeting=hello at-init=hello") {
            break;
        }
        assert!(Instant::now() < deadline, "never greeted: {response}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn up_starts_the_platform_deploys_and_prints_the_url() {
    use std::io::{BufRead, Read, Write};
    let env = TestEnv::new();
    let dir = repo().join("tests/guests/http-probe");
    let mut child = env
        .cmd(&[
            "up",
            dir.to_str().unwrap(),
            "-a",
            "upapp",
            "--api",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    // The platform's own lines come first; then the app's URL.
    let url = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "up ended early");
        if line.starts_with("http://upapp.") {
            break line.trim().to_string();
        }
    };
    let port = url
        .strip_prefix("http://upapp.localhost:")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected URL line {url:?}"));
    let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: upapp.localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("dyno=web.1"), "{response}");
    std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "up stops cleanly: {status}");
}

#[test]
fn a_component_that_binds_port_is_a_web_dyno_and_reaches_nothing_else() {
    let server = Server::start();
    let response = deploy_and_get(&server, "p2web", "sample-apps/rust-p2-web", "/there");
    let text = body(&response);
    assert!(
        text.contains("Hello from a Rust component on $PORT (web.1)"),
        "{text}"
    );
    assert!(text.contains("GET /there"), "{text}");
    wait_logs(&server, "p2web", "the bind", |t| {
        t.contains("app[web.1]: listening on $PORT")
            && t.contains("wasmdyno[web.1]: State changed from starting to up")
    });

    // The same component may not listen anywhere else, nor connect out: a one-off gets no port at all.
    let out = server
        .cli(&["run:detached", "-a", "p2web", "rust-p2-web.wasm"])
        .ok();
    let name = out.stdout.trim().to_string();
    wait_logs(&server, "p2web", "the refused bind", |t| {
        t.contains(&format!(
            "app[{name}]: cannot bind 127.0.0.1:8080: Permission denied"
        ))
    });
}

#[test]
fn a_sleeping_apps_web_dyno_idles_and_the_next_request_wakes_it() {
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_SLEEP_AFTER_MS", "300")]);
    deploy_probe(&server, "sleepy");
    server.cli(&["apps:sleep", "on", "-a", "sleepy"]).ok();
    let info = server.cli(&["apps:info", "-a", "sleepy"]).ok();
    assert!(info.stdout.contains("Sleep:       on"), "{info}");
    wait_logs(&server, "sleepy", "the dyno to idle", |t| {
        t.contains("wasmdyno[web.1]: Idling") && t.contains("State changed from up to idle")
    });
    let ps = server.cli(&["ps", "-a", "sleepy", "--json"]).ok().json();
    assert_eq!(ps[0]["state"], "idle", "{ps}");

    // The next request wakes it and is answered (by a fresh instance: an idle dyno keeps nothing).
    assert_eq!(count(&server, "sleepy.localhost"), 1);
    let text = wait_logs(&server, "sleepy", "the wake", |t| {
        t.contains("wasmdyno[web.1]: Unidling") && t.contains("State changed from idle to starting")
    });
    assert!(text.contains("app[api]: Sleeping turned on"), "{text}");

    // Off: it stays up however long nobody asks.
    server.cli(&["apps:sleep", "off", "-a", "sleepy"]).ok();
    std::thread::sleep(Duration::from_millis(1000));
    let ps = server.cli(&["ps", "-a", "sleepy", "--json"]).ok().json();
    assert_eq!(ps[0]["state"], "up", "{ps}");
}

#[test]
fn the_http_fresh_instances_feature_is_per_app() {
    let server = Server::start();
    deploy_probe(&server, "warmapp");
    deploy_probe(&server, "freshapp");
    server
        .cli(&["features:enable", "http-fresh-instances", "-a", "freshapp"])
        .ok();
    let list = server.cli(&["features", "-a", "freshapp"]).ok();
    assert!(list.stdout.contains("[+] http-fresh-instances"), "{list}");
    let json = server
        .cli(&["features", "-a", "warmapp", "--json"])
        .ok()
        .json();
    assert_eq!(json[0]["enabled"], false, "{json}");

    // The restarted web dyno takes the feature up: each request gets a new instance; the other app stays warm.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&server, "freshapp.localhost") != 1 || count(&server, "freshapp.localhost") != 1 {
        assert!(Instant::now() < deadline, "the feature never took effect");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..3 {
        assert_eq!(count(&server, "freshapp.localhost"), 1);
    }
    let warm: Vec<u64> = (0..3)
        .map(|_| count(&server, "warmapp.localhost"))
        .collect();
    assert!(warm.windows(2).all(|w| w[1] > w[0]), "{warm:?}");

    let out = server
        .cli(&["features:enable", "no-such-thing", "-a", "freshapp"])
        .fails();
    assert!(
        out.stderr.contains("unknown feature \"no-such-thing\""),
        "{out}"
    );
    assert!(out.stderr.contains("http-fresh-instances"), "{out}");
}

#[test]
fn a_guest_reaches_nothing_on_the_network() {
    let server = Server::start();
    deploy_probe(&server, "boxed");
    let api = server.api.strip_prefix("http://").unwrap().to_string();
    for target in [
        api.as_str(),
        server.router.as_str(),
        "127.0.0.1:9",
        "10.0.0.1:80",
    ] {
        // Outgoing wasi:http: refused by the platform before any connection.
        let (status, response) = server.get("boxed.localhost", &format!("/fetch?{target}"));
        assert_eq!(status, 200, "{response}");
        assert!(
            body(&response).contains("HttpRequestDenied"),
            "fetch {target}: {response}"
        );
        // wasi:sockets: no address is allowed.
        let (status, response) = server.get("boxed.localhost", &format!("/connect?{target}"));
        assert_eq!(status, 200, "{response}");
        let text = body(&response);
        assert!(
            text.contains("error Permission denied") && !text.contains("connected"),
            "connect {target}: {text}"
        );
    }
}

#[test]
fn allowed_destinations_are_tried_and_private_addresses_stay_closed() {
    let server = Server::start();
    deploy_probe(&server, "netapp");
    let api = server.api.strip_prefix("http://").unwrap().to_string();
    server.cli(&["network:allow", &api, "-a", "netapp"]).ok();
    server
        .cli(&["network:allow", "no-such-host.invalid:80", "-a", "netapp"])
        .ok();
    server
        .cli(&[
            "addons:create",
            "postgres",
            "--url",
            "postgres://db.example.invalid:5432/x",
            "-a",
            "netapp",
        ])
        .ok();
    let list = server.cli(&["network", "-a", "netapp"]).ok();
    for want in [
        api.as_str(),
        "no-such-host.invalid:80",
        "db.example.invalid:5432",
    ] {
        assert!(list.stdout.contains(want), "{want} missing: {list}");
    }
    assert!(list.stdout.contains("addon "), "{list}");

    // The restarted dynos carry the policy. Allowed, yet loopback: refused for its address, not its name.
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let (status, response) = server.get("netapp.localhost", &format!("/fetch?{api}"));
        if status == 200 && !body(&response).contains("HttpRequestDenied") {
            break body(&response).to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the policy never took effect: {response}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(answer.contains("DestinationIpProhibited"), "{answer}");
    // Allowed and public-looking: the request is tried (and fails to resolve here).
    let (_, response) = server.get("netapp.localhost", "/fetch?no-such-host.invalid:80");
    let text = body(&response);
    assert!(text.contains("DnsError"), "{text}");
    // Still never a socket to loopback.
    let (_, response) = server.get("netapp.localhost", &format!("/connect?{api}"));
    assert!(body(&response).contains("error"), "{response}");

    // Bad input is told; a removed destination is refused again.
    let out = server
        .cli(&["network:allow", "http://x.example/", "-a", "netapp"])
        .fails();
    assert!(out.stderr.contains("not a URL"), "{out}");
    server.cli(&["network:deny", &api, "-a", "netapp"]).ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, response) = server.get("netapp.localhost", &format!("/fetch?{api}"));
        if body(&response).contains("HttpRequestDenied") {
            break;
        }
        assert!(Instant::now() < deadline, "still allowed: {response}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_command_component_makes_outgoing_requests_under_the_same_policy() {
    let server = Server::start();
    server.cli(&["apps:create", "worker-app"]).ok();
    let dir = repo().join("tests/guests/fetch-cmd");
    server
        .cli(&["deploy", "-a", "worker-app", dir.to_str().unwrap()])
        .ok();
    let api = server.api.strip_prefix("http://").unwrap().to_string();
    // Not allowed: refused by the platform. Allowed but loopback: refused for its address.
    let out = server
        .cli(&["run", "-a", "worker-app", "fetch-cmd.wasm", &api])
        .ok();
    assert!(out.stdout.contains("HttpRequestDenied"), "{out}");
    server
        .cli(&["network:allow", &api, "-a", "worker-app"])
        .ok();
    let out = server
        .cli(&["run", "-a", "worker-app", "fetch-cmd.wasm", &api])
        .ok();
    assert!(out.stdout.contains("DestinationIpProhibited"), "{out}");
}
