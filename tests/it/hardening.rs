//! No client and no local user can hurt the platform: private state on disk, API input that is checked before
//! it names a file, and log output a terminal can show safely.

use std::os::unix::fs::PermissionsExt;

use crate::support::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_home_and_the_ledger_are_the_owners_alone() {
    let env = TestEnv::new();
    // A home another tool created readable by everyone is tightened, with a warning.
    std::fs::create_dir_all(env.home()).unwrap();
    std::fs::set_permissions(env.home(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start_in(env, &[]);
    server.cli(&["apps:create", "private"]).ok();
    let home = server.env.home();
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("state.db")), 0o600);
    assert_eq!(mode(&home.join("token")), 0o600);

    // A fresh home is created private.
    let fresh = TestEnv::new();
    let app = fresh.path("app");
    probe_app(&app, "hello: probe.wasm args\n");
    fresh.run(&["build", app.to_str().unwrap()]).ok();
    assert_eq!(mode(&fresh.home()), 0o700);
}

#[test]
fn a_release_names_its_slug_by_a_sha256_only() {
    let server = Server::start();
    server.cli(&["apps:create", "slugs"]).ok();
    let token = server.token();
    for slug in ["../../state", "é", &"a".repeat(63), &"A".repeat(64), ""] {
        let (status, body) = server.raw(
            "POST",
            "/apps/slugs/releases",
            Some(&token),
            serde_json::json!({ "slug": slug }).to_string(),
        );
        assert_eq!(status, 422, "{slug:?}: {body}");
        assert!(body.contains("64 lowercase hex digits"), "{body}");
    }
    // The server is still there.
    server.cli(&["apps:info", "-a", "slugs"]).ok();
}

#[test]
fn logs_show_an_apps_control_characters_escaped_and_json_keeps_them() {
    let server = Server::start();
    let dir = server.env.path("noisy-src");
    probe_app(&dir, "worker: probe.wasm args\n");
    server.cli(&["apps:create", "noisy"]).ok();
    server
        .cli(&["deploy", "-a", "noisy", dir.to_str().unwrap()])
        .ok();
    let text = "x\r2026 wasmdyno[web.1]: fake \u{1b}]52;c;aGk=\u{7}";
    server
        .cli(&["run:detached", "-a", "noisy", "probe.wasm", "stderr", text])
        .ok();
    let shown = wait_logs(
        &server,
        "noisy",
        "the one-off's line",
        std::time::Duration::from_secs(30),
        // Its own line, not the platform's echo of its command (which holds the same text).
        |t| t.contains("app[run."),
    );
    assert!(
        shown.contains("]: x\\r2026 wasmdyno[web.1]: fake \\u{1b}]52;c;aGk=\\u{7}\n"),
        "{shown}"
    );
    assert!(!shown.contains('\u{1b}') && !shown.contains('\r'));
    let json = server.cli(&["logs", "-a", "noisy", "--json"]).ok().stdout;
    let exact = json
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|l| l["text"] == text);
    assert!(exact, "{json}");
}

/// A TCP connection to `addr` from the loopback address `from` (the whole of 127/8 is loopback on Linux).
fn connect_from(from: &str, addr: &str) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    let remote: std::net::SocketAddr = addr.parse().unwrap();
    socket.connect(&remote.into()).unwrap();
    socket.into()
}

/// Raises this test process's open-file limit: it holds a thousand sockets.
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct given.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

#[test]
fn idle_and_half_sent_connections_cannot_lock_out_apps_or_the_operator() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    raise_open_files();
    let server = Server::start_in(
        TestEnv::new(),
        &[
            ("WASMDYNO_ROUTER_HEADER_TIMEOUT_MS", "8000"),
            ("WASMDYNO_ROUTER_MAX_CONNECTIONS_PER_CLIENT", "600"),
        ],
    );
    let host = healthy_app(&server);

    // A thousand connections from one client: half send half a head, half nothing.
    let opened = Instant::now();
    let mut held = Vec::new();
    for i in 0..1000 {
        let mut conn = connect_from("127.0.0.2", &server.router);
        if i % 2 == 0 {
            let _ = conn.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n").as_bytes());
        }
        held.push(conn);
    }
    // The app and the API answer while they are open.
    for i in 0..20 {
        let (status, reply) = server.get(&host, "/env/DYNO");
        assert_eq!(status, 200, "request {i}: {reply}");
    }
    server.cli(&["ps", "-a", "healthy"]).ok();
    // Past the client's cap, connections were answered 503 at once; the admitted ones are closed once the
    // header timeout passes.
    let (mut refused, mut closed) = (0, 0);
    for conn in &mut held {
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reply = Vec::new();
        let ended = conn.read_to_end(&mut reply).is_ok();
        if reply.starts_with(b"HTTP/1.1 503") {
            refused += 1;
        } else if ended || reply.is_empty() {
            closed += 1;
        }
    }
    // 400 when the server accepted all thousand before the first timed out; a slow machine frees a few places
    // (and admits a few more) before the last are accepted.
    assert!(
        (300..=400).contains(&refused),
        "one client holds at most 600 connections: {refused} refused"
    );
    assert_eq!(
        refused + closed,
        1000,
        "every admitted connection was closed"
    );
    assert!(
        opened.elapsed() < Duration::from_secs(25),
        "closed by the header timeout, not by the test's: {:?}",
        opened.elapsed()
    );
    // And the router takes new clients again.
    assert_eq!(server.get(&host, "/env/DYNO").0, 200);
}

#[test]
fn the_api_closes_slow_heads_and_unauthenticated_connections() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let server = Server::start_in(
        TestEnv::new(),
        &[("WASMDYNO_API_HEADER_TIMEOUT_MS", "2000")],
    );
    let addr = server.api.strip_prefix("http://").unwrap().to_string();
    // Without the token, on every route (the API's, the dashboard's page and session, git's): the answer says
    // close, and the connection is closed, so nobody without the token holds an API connection open.
    for (path, status) in [
        ("/apps", "401"),
        ("/dashboard", "200"),
        ("/dashboard/app.js", "200"),
        ("/dashboard/session", "401"),
        ("/git/nosuch.git/info/refs?service=git-receive-pack", "401"),
    ] {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply)
            .unwrap_or_else(|e| panic!("GET {path} left the connection open: {e}"));
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {reply}"
        );
        assert!(
            reply.to_ascii_lowercase().contains("connection: close"),
            "{path}: {reply}"
        );
    }
    // A head never finished is cut at the first-head deadline.
    let started = Instant::now();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(45)))
        .unwrap();
    slow.write_all(b"GET /apps HTTP/1.1\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(10)).contains(&took),
        "closed after {took:?}"
    );
    server.cli(&["apps"]).ok();
}

#[test]
fn a_build_script_cannot_reach_the_platforms_state() {
    let server = Server::start_in(
        TestEnv::with_private_cache(),
        &[("WASMDYNO_BUILD_SANDBOX", "bwrap")],
    );
    let home = server.env.home();
    let cache = server.env.cache.clone();
    // A directory of the server's user that is no build's, and the machine's Cargo home, which every build used.
    // (Not under /tmp, which is the build's own.)
    let outside_dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let outside = outside_dir.path().to_path_buf();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo")
        });
    let planted = cargo_home.join("wasmdyno-snoop-planted");
    let _ = std::fs::remove_file(&planted);
    server.cli(&["apps:create", "snoop"]).ok();
    server.cli(&["apps:create", "victim"]).ok();
    server
        .cli(&[
            "config:set",
            "-a",
            "snoop",
            &format!("SNOOP_HOME={}", home.display()),
            &format!("SNOOP_CACHE={}", cache.display()),
            &format!("SNOOP_OUTSIDE={}", outside.display()),
            &format!("SNOOP_CARGO_HOME={}", cargo_home.display()),
        ])
        .ok();
    let token = std::fs::read(home.join("token")).unwrap();
    let guest = repo().join("tests/guests/build-snoop");
    let out = server
        .cli(&["deploy", "-a", "snoop", guest.to_str().unwrap()])
        .ok();
    for attempt in [
        "read the API token",
        "read the ledger",
        "list other apps' slugs",
        "write into the compiled-code cache",
        "write outside its build",
        "write into the machine's Cargo home",
        "see the server's WASMDYNO_HOME",
    ] {
        assert!(
            out.stderr.contains(&format!("snoop: {attempt}: failed")),
            "{attempt}:\n{out}"
        );
    }
    assert!(!out.stderr.contains(": DONE"), "{out}");
    // The server's state is as it was: its token, its cache, its apps.
    assert_eq!(std::fs::read(home.join("token")).unwrap(), token);
    assert!(!cache.join("planted.cwasm").exists());
    assert!(!outside.join("planted").exists());
    let poisoned = planted.exists();
    let _ = std::fs::remove_file(&planted);
    assert!(!poisoned, "a build wrote into {}", cargo_home.display());
    let apps = server.cli(&["apps", "--json"]).ok().json();
    assert_eq!(apps.as_array().unwrap().len(), 2, "{apps}");
    server.cli(&["ps", "-a", "victim"]).ok();
}

#[test]
fn a_kept_alive_router_connection_left_idle_is_closed_at_the_header_timeout() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::time::{Duration, Instant};
    let server = Server::start_in(
        TestEnv::new(),
        &[("WASMDYNO_ROUTER_HEADER_TIMEOUT_MS", "1500")],
    );
    let host = healthy_app(&server);
    let conn = std::net::TcpStream::connect(&server.router).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    // Two requests on one connection: it is kept alive.
    for _ in 0..2 {
        (&conn)
            .write_all(format!("GET /env/DYNO HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let lower = line.to_ascii_lowercase();
            assert!(!lower.starts_with("connection: close"), "{line}");
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        assert_eq!(body, b"web.1");
    }
    // Then nothing: the router closes it once the next head is late, as it would a slow one.
    let idle = Instant::now();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    let waited = idle.elapsed();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(
        (Duration::from_millis(1400)..Duration::from_secs(15)).contains(&waited),
        "closed after {waited:?}"
    );
}
