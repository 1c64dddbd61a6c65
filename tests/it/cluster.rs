//! Several `wasmdyno serve` hosts on one PostgreSQL database: formation dynos spread over the live hosts, a host
//! cut off from the database stops its dynos before they are placed elsewhere, and a killed host's dynos come back
//! on the others. Real servers, a real PostgreSQL, and a real TCP proxy in front of one host's database connection
//! to cut it off.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::postgres::TestDatabase;
use crate::support::*;

/// The host timeout of these tests, in seconds.
pub const HOST_TIMEOUT: u64 = 3;

/// A TCP proxy that can be cut (every connection closed, new ones refused at once) and healed.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// A proxy on loopback to `127.0.0.1:target`.
    fn to(target: u16) -> Proxy {
        Proxy::on("127.0.0.1", target)
    }

    /// A proxy listening on `ip` (any port) to `127.0.0.1:target`.
    pub fn on(ip: &str, target: u16) -> Proxy {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, open2) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                // Like the database server with the session options wasmdyno sets, the proxy notices a client
                // gone silent (a partition) within about 11 s and hangs up on the server, so that the client's
                // session ends, and its locks go, as they would without a proxy.
                let socket = socket2::SockRef::from(&client);
                let _ = socket.set_tcp_keepalive(
                    &socket2::TcpKeepalive::new()
                        .with_time(Duration::from_secs(5))
                        .with_interval(Duration::from_secs(2))
                        .with_retries(3),
                );
                let _ = socket.set_tcp_user_timeout(Some(Duration::from_secs(10)));
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut open = open2.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

pub fn deploy(server: &Server, app: &str, procfile: &str) {
    let dir = server.env.path(&format!("{app}-src"));
    probe_app(&dir, procfile);
    server.cli(&["apps:create", app]).ok();
    server
        .cli(&["deploy", "-a", app, dir.to_str().unwrap()])
        .ok();
}

/// The dynos each host runs of `app` (any state but down or crashed), as each host's manager says: host index →
/// names.
fn running(hosts: &[&Server], app: &str) -> BTreeMap<usize, Vec<String>> {
    hosts
        .iter()
        .enumerate()
        .map(|(i, host)| (i, dynos_on(host, app)))
        .collect()
}

/// The dynos `host` runs of `app` (any state but down or crashed), as its own manager says (no store involved);
/// none if it does not answer.
pub fn dynos_on(host: &Server, app: &str) -> Vec<String> {
    let token = host.token();
    let (status, body) = host.raw(
        "GET",
        &format!("/apps/{app}/dynos?local=true"),
        Some(&token),
        "",
    );
    if status != 200 {
        return Vec::new();
    }
    serde_json::from_str::<serde_json::Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| !matches!(d["state"].as_str(), Some("down" | "crashed")))
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

/// Fails if a dyno runs on two hosts; returns how many run in all.
pub fn assert_once(sample: &BTreeMap<usize, Vec<String>>) -> usize {
    let mut seen = BTreeMap::new();
    for (host, names) in sample {
        for name in names {
            if let Some(other) = seen.insert(name.clone(), *host) {
                panic!("{name} runs on hosts {other} and {host} at once: {sample:?}");
            }
        }
    }
    seen.len()
}

/// Samples until `done` holds (within `within`), checking at every sample that no dyno runs twice.
pub fn watch(
    sample: impl Fn() -> BTreeMap<usize, Vec<String>>,
    what: &str,
    within: Duration,
    done: impl Fn(&BTreeMap<usize, Vec<String>>) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let sample = sample();
        assert_once(&sample);
        if done(&sample) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}: {sample:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn formation_dynos_spread_fence_and_fail_over_across_hosts() {
    let db = TestDatabase::create("cluster");
    let proxy = Proxy::to(db.port());
    let through_proxy = db.url_via("127.0.0.1", proxy.port);
    let timeout = HOST_TIMEOUT.to_string();
    let host = |url: &str| {
        Server::start_in(
            TestEnv::new(),
            &[
                ("WASMDYNO_DATABASE_URL", url),
                ("WASMDYNO_HOST_TIMEOUT", &timeout),
                ("WASMDYNO_HOST_CAPACITY", "20"),
            ],
        )
    };
    let (a, b, c) = (host(&db.url), host(&db.url), host(&through_proxy));

    // Deployed through one host, the slug reaches every host through the database.
    deploy(&a, "spread", "worker: probe.wasm cat\n");
    a.cli(&["ps:scale", "-a", "spread", "worker=3"]).ok();
    let all = [&a, &b, &c];
    watch(
        || running(&all, "spread"),
        "one worker on each host",
        Duration::from_secs(30),
        |s| s.values().all(|names| names.len() == 1),
    );
    let hosts = b.cli(&["hosts", "--json"]).ok().json();
    assert_eq!(hosts.as_array().unwrap().len(), 3, "{hosts}");
    // One token for every host, and `ps` on any host lists every host's dynos.
    assert_eq!(a.token(), c.token());
    let ps = c.cli(&["ps", "-a", "spread", "--json"]).ok().json();
    let on: BTreeMap<String, String> = ps
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().into(),
                d["host"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(on.len(), 3, "{ps}");
    assert_eq!(
        on.values().collect::<std::collections::BTreeSet<_>>().len(),
        3,
        "{ps}"
    );

    // `ps:restart` and `ps:stop` through one host reach the dyno where it runs.
    let on_c = running(&all, "spread")[&2][0].clone();
    a.cli(&["ps:restart", "-a", "spread", &on_c]).ok();
    b.cli(&["ps:stop", "-a", "spread", &on_c]).ok();
    wait_logs(
        &a,
        "spread",
        "the dyno on c stopped twice",
        Duration::from_secs(20),
        |logs| {
            logs.lines()
                .filter(|l| l.contains(&format!("wasmdyno[{on_c}]: Stopping process")))
                .count()
                >= 2
        },
    );
    watch(
        || running(&all, "spread"),
        "the worker back on c",
        Duration::from_secs(20),
        |s| s.values().all(|names| names.len() == 1),
    );

    // Host c loses the database: it stops its worker before it is placed on a or b.
    proxy.cut();
    let cut_at = Instant::now();
    watch(
        || running(&all, "spread"),
        "host c fenced",
        Duration::from_secs(HOST_TIMEOUT),
        |s| s[&2].is_empty(),
    );
    assert!(
        cut_at.elapsed() < Duration::from_secs(HOST_TIMEOUT),
        "fenced before the timeout"
    );
    watch(
        || running(&all, "spread"),
        "three workers on a and b",
        Duration::from_secs(4 * HOST_TIMEOUT + 20),
        |s| s[&0].len() + s[&1].len() == 3,
    );

    // Healed, c runs nothing twice (its worker runs elsewhere now).
    proxy.heal();
    let healed_at = Instant::now();
    while healed_at.elapsed() < Duration::from_secs(HOST_TIMEOUT) {
        assert_eq!(assert_once(&running(&all, "spread")), 3);
        std::thread::sleep(Duration::from_millis(200));
    }

    // Host a dies: its workers come back on b and c within twice the host timeout (and the rounds' ticks), each
    // with its state lines in the app's one log stream.
    let on_a = running(&all, "spread")[&0].clone();
    assert!(!on_a.is_empty(), "a runs a worker before it dies");
    // (New lines are told apart from a's old ones by their text, timestamps included.)
    let new_up = |before: &str, logs: &str, dyno: &str| {
        let line = format!("wasmdyno[{dyno}]: State changed from starting to up");
        logs.lines()
            .any(|l| l.contains(&line) && !before.lines().any(|old| old == l))
    };
    // What a said about its worker reaches the shared history within a second or so.
    std::thread::sleep(Duration::from_millis(1500));
    let before = logs(&b, "spread");
    let said_on_a = format!("wasmdyno[{}]: State changed from starting to up", on_a[0]);
    let last_said_on_a = before
        .lines()
        .rev()
        .find(|l| l.contains(&said_on_a))
        .unwrap_or_else(|| panic!("a's worker never said it was up:\n{before}"))
        .to_string();
    let _ = std::process::Command::new("kill")
        .args(["-9", &a.child.id().to_string()])
        .status();
    let killed = Instant::now();
    let live = [&b, &c];
    watch(
        || running(&live, "spread"),
        "three workers on b and c",
        Duration::from_secs(4 * HOST_TIMEOUT + 20),
        |s| s.values().map(Vec::len).sum::<usize>() == 3,
    );
    let moved = killed.elapsed();
    eprintln!("kill -9: a's workers {on_a:?} ran on b and c {moved:?} after the kill");
    assert!(
        moved < Duration::from_secs(2 * HOST_TIMEOUT + 10),
        "failed over {moved:?} after the kill (host timeout {HOST_TIMEOUT} s)"
    );
    wait_logs(
        &b,
        "spread",
        "the moved workers' state lines",
        Duration::from_secs(10),
        |logs| on_a.iter().all(|d| new_up(&before, logs, d)),
    );
    // a's own lines outlive it, in the shared history.
    let after = logs(&b, "spread");
    assert!(
        after.lines().any(|l| l == last_said_on_a),
        "a's line {last_said_on_a:?} left the history with a:\n{after}"
    );
    // The ledger went through it all intact.
    let versions = versions(&b, "spread");
    assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
}

/// Two hosts on a database of their own, with `app` released (web=1, on one of them) and answering through both
/// routers.
fn two_hosts_serving(db: &str, app: &str) -> (TestDatabase, Server, Server) {
    let db = TestDatabase::create(db);
    let timeout = HOST_TIMEOUT.to_string();
    let vars = [
        ("WASMDYNO_DATABASE_URL", db.url.as_str()),
        ("WASMDYNO_HOST_TIMEOUT", timeout.as_str()),
        ("WASMDYNO_HOST_CAPACITY", "20"),
    ];
    let (a, b) = (
        Server::start_in(TestEnv::new(), &vars),
        Server::start_in(TestEnv::new(), &vars),
    );
    a.cli(&["apps:create", app]).ok();
    crate::router::release_slug(&a, app, crate::router::probe());
    for server in [&a, &b] {
        let host = host_of(server, app);
        wait_until(
            "the app answers through this host's router",
            Duration::from_secs(60),
            || server.get(&host, "/").0 == 200,
        );
    }
    (db, a, b)
}

#[test]
fn any_hosts_router_reaches_web_dynos_on_another_host() {
    let (_db, a, b) = two_hosts_serving("forward", "onehost");
    let placed = running(&[&a, &b], "onehost");
    assert_eq!(
        placed.values().map(Vec::len).sum::<usize>(),
        1,
        "{placed:?}"
    );
    let (owner, forwarder) = if placed[&0].is_empty() {
        (&b, &a)
    } else {
        (&a, &b)
    };

    // The forwarding host's router line names the host that served it; that host logs its own line with its dyno.
    for _ in 0..3 {
        assert_eq!(forwarder.get(&host_of(forwarder, "onehost"), "/").0, 200);
    }
    let owner_id = std::fs::read_to_string(owner.env.home().join("host-id")).unwrap();
    wait_logs(
        forwarder,
        "onehost",
        "a forwarded router line",
        Duration::from_secs(10),
        |logs| {
            logs.contains(&format!("dyno=host:{} ", owner_id.trim())) && logs.contains("status=200")
        },
    );
    wait_logs(
        owner,
        "onehost",
        "the owner's router line",
        Duration::from_secs(10),
        |logs| logs.contains("dyno=web.1") && logs.contains("status=200"),
    );

    // A WebSocket-style upgrade through the forwarding host is relayed both ways to the dyno on the other.
    crate::router::echo_over_upgrade(&forwarder.router, &host_of(forwarder, "onehost"));
    wait_logs(
        forwarder,
        "onehost",
        "the forwarded upgrade's router line",
        Duration::from_secs(10),
        |logs| {
            logs.lines().any(|l| {
                l.contains("path=\"/ws\"") && l.contains("dyno=host:") && l.contains("status=101")
            })
        },
    );

    // A new release made through the forwarding host: the owner preboots its web dyno, no request through the
    // forwarding host fails meanwhile, and the new release answers.
    let host = host_of(forwarder, "onehost");
    let version = |response: &str| {
        body_of(response)
            .split(' ')
            .nth(2)
            .unwrap_or("")
            .to_string()
    };
    let (status, response) = forwarder.get(&host, "/");
    assert_eq!(status, 200, "{response}");
    let old = version(&response);
    forwarder
        .cli(&["config:set", "-a", "onehost", "PREBOOTED=1"])
        .ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, response) = forwarder.get(&host, "/");
        assert_eq!(
            status, 200,
            "a request failed during the preboot: {response}"
        );
        if version(&response) != old {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new release never answered: {response}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_logs(
        owner,
        "onehost",
        "the owner's preboot",
        Duration::from_secs(10),
        |logs| {
            logs.matches("wasmdyno[web.1]: State changed from starting to up")
                .count()
                >= 2
        },
    );
}

#[test]
fn a_change_through_one_host_reaches_every_router_and_killed_web_dynos_come_back() {
    let (_db, a, b) = two_hosts_serving("web_failover", "steady");

    // Maintenance mode set through one host is what every host's router answers.
    b.cli(&["maintenance:on", "-a", "steady"]).ok();
    for server in [&a, &b] {
        let host = host_of(server, "steady");
        wait_until(
            "maintenance on every router",
            Duration::from_secs(10),
            || server.get(&host, "/").0 == 503,
        );
    }
    a.cli(&["maintenance:off", "-a", "steady"]).ok();

    // The host that runs the web dyno dies under load through the other: requests fail only while no web dyno
    // is up, and none after.
    let placed = running(&[&a, &b], "steady");
    let (victim, survivor) = if placed[&0].is_empty() {
        (b, a)
    } else {
        (a, b)
    };
    let host = host_of(&survivor, "steady");
    wait_until("maintenance off", Duration::from_secs(10), || {
        survivor.get(&host, "/").0 == 200
    });
    // Four clients load the app through the survivor the whole time, each request noted with when it started
    // and ended.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    let load: Mutex<Vec<(Duration, Duration, u16)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let at = started.elapsed();
                    let status = survivor.get(&host, "/").0;
                    load.lock().unwrap().push((at, started.elapsed(), status));
                }
            });
        }
        let killed_after = started.elapsed();
        let recovered = kill_and_recover(&victim, &survivor, &host);
        stop.store(true, Ordering::Relaxed);
        let load = load.lock().unwrap();
        let failed_before: Vec<_> = load
            .iter()
            .filter(|(_, ended, status)| *ended < killed_after && *status != 200)
            .collect();
        assert!(
            failed_before.is_empty(),
            "requests failed before the kill: {failed_before:?}"
        );
        // A request that started once the app was back (and the survivor's router had seen it) must not fail.
        let settled = killed_after + recovered + Duration::from_secs(1);
        let late_failures: Vec<_> = load
            .iter()
            .filter(|(at, _, status)| *at > settled && *status != 200)
            .collect();
        assert!(
            late_failures.is_empty(),
            "requests failed after recovery: {late_failures:?}"
        );
        let after_kill: Vec<_> = load
            .iter()
            .filter(|(_, ended, _)| *ended >= killed_after)
            .collect();
        let failed = after_kill
            .iter()
            .filter(|(_, _, status)| *status != 200)
            .count();
        eprintln!(
            "under load: {} requests after the kill, {failed} failed, all before the app came back",
            after_kill.len()
        );
    });
}

/// Kills `victim` and asks `survivor`'s router for the app, one request at a time, until it has answered for 3 s:
/// requests fail only until the app is back, none after. How long after the kill it came back.
fn kill_and_recover(victim: &Server, survivor: &Server, host: &str) -> Duration {
    let _ = std::process::Command::new("kill")
        .args(["-9", &victim.child.id().to_string()])
        .status();
    let killed = Instant::now();
    let (mut failed, mut recovered_at) = (0usize, None);
    while killed.elapsed() < Duration::from_secs(4 * HOST_TIMEOUT + 30) {
        let ok = survivor.get(host, "/").0 == 200;
        match (ok, recovered_at) {
            (true, None) => recovered_at = Some(killed.elapsed()),
            (false, None) => failed += 1,
            (false, Some(at)) => panic!("a request failed after recovery ({at:?} after the kill)"),
            (true, Some(at)) if killed.elapsed() > at + Duration::from_secs(3) => break,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let recovered_at = recovered_at.expect("the app came back on the surviving host");
    eprintln!("{failed} requests failed in the {recovered_at:?} before the app came back");
    assert!(
        recovered_at < Duration::from_secs(2 * HOST_TIMEOUT + 10),
        "recovered {recovered_at:?} after the kill"
    );
    recovered_at
}
