//! No guest can hurt the platform: each attack runs for real (a WAT guest in `tests/guests/attacks/`) beside a
//! healthy app in one `wasmdyno serve`. The server survives, the attacker gets a clear error or its R14 line, the
//! healthy app answers every request sent during the attack, and the server's memory stays within the quotas.

use std::time::{Duration, Instant};

use crate::support::*;

/// Deploys the attack guest `wat` (from `tests/guests/attacks/`) as `app` with `procfile`.
fn deploy_attack(server: &Server, app: &str, wat: &str, procfile: &str) {
    let dir = server.env.path(&format!("{app}-src"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(repo().join("tests/guests/attacks").join(wat), dir.join(wat)).unwrap();
    std::fs::write(dir.join("Procfile"), procfile).unwrap();
    server.cli(&["apps:create", app]).ok();
    server
        .cli(&["deploy", "-a", app, dir.to_str().unwrap()])
        .ok();
}

/// Sends requests to the healthy app until `done` holds (60 s at most); every one must answer 200. Returns the
/// app's logs at the end, and how many requests were answered.
fn keep_answering(
    server: &Server,
    host: &str,
    app: &str,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> (String, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answered = 0;
    loop {
        let (status, reply) = server.get(host, "/env/DYNO");
        assert_eq!(status, 200, "request {answered} during the attack: {reply}");
        answered += 1;
        let text = logs(server, app);
        if done(&text) {
            return (text, answered);
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; logs:\n{text}"
        );
    }
}

/// The server must stay under the sum of its dynos' quotas (512 MiB each here) plus 256 MiB.
fn assert_memory_bounded(server: &Server, dynos: u64) {
    let peak = peak_rss_kib(server.child.id()) / 1024;
    let bound = dynos * 512 + 256;
    assert!(
        peak < bound,
        "the server peaked at {peak} MiB, over {bound} MiB"
    );
}

#[test]
fn overlapping_iovecs_move_at_most_a_bounded_amount_per_call() {
    let server = Server::start();
    let host = healthy_app(&server);
    deploy_attack(
        &server,
        "iovecs",
        "iovec-bomb.wat",
        "worker: iovec-bomb.wasm\n",
    );
    server.cli(&["ps:scale", "-a", "iovecs", "worker=1"]).ok();
    let (text, answered) = keep_answering(&server, &host, "iovecs", "the attacker's exit", |t| {
        t.contains("wasmdyno[worker.1]: Process exited with status")
    });
    assert!(
        text.contains("wasmdyno[worker.1]: Process exited with status 0"),
        "every write was short: {text}"
    );
    assert!(answered > 0);
    assert_memory_bounded(&server, 2);
    server.cli(&["ps", "-a", "healthy"]).ok();
}

#[test]
fn tables_count_against_the_memory_quota() {
    let server = Server::start();
    let host = healthy_app(&server);
    deploy_attack(
        &server,
        "tables",
        "table-bomb.wat",
        "worker: table-bomb.wasm\n",
    );
    server.cli(&["ps:scale", "-a", "tables", "worker=1"]).ok();
    let (text, _) = keep_answering(&server, &host, "tables", "the attacker's exit", |t| {
        t.contains("wasmdyno[worker.1]: Process exited with status")
    });
    assert!(
        text.contains(
            "wasmdyno[worker.1]: Error R14 (Memory quota exceeded) -> growing a table by 8 MiB would pass the \
             dyno's 512 MiB"
        ),
        "{text}"
    );
    // 8 MiB a table: the quota ends the growth before the 80th table.
    let status: u32 = text
        .lines()
        .find_map(|l| l.split("Process exited with status ").nth(1))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((50..64).contains(&status), "{status} tables grew: {text}");
    assert_memory_bounded(&server, 2);
    server.cli(&["ps", "-a", "healthy"]).ok();
}

/// A process's resident memory now, in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_cgi_response_to_a_slow_client_waits_for_it() {
    use std::io::{Read, Write};
    let server = Server::start();
    let host = healthy_app(&server);
    deploy_attack(
        &server,
        "cgiflood",
        "cgi-flood.wat",
        "web: cgi cgi-flood.wasm\n",
    );
    let flood = host_of(&server, "cgiflood");
    wait_dyno_up(&server, "cgiflood");
    let mut client = std::net::TcpStream::connect(&server.router).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client
        .write_all(format!("GET / HTTP/1.1\r\nHost: {flood}\r\n\r\n").as_bytes())
        .unwrap();
    // Read the head and some of the body, then stop reading: a client on a slow link.
    let mut got = vec![0u8; 256 * 1024];
    let mut read = 0;
    while read < 128 * 1024 {
        read += client.read(&mut got[read..]).unwrap();
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{:?}", &got[..64]);
    let before = rss_kib(server.child.id());
    let (_, answered) = {
        let started = Instant::now();
        keep_answering(&server, &host, "healthy", "three seconds", |_| {
            started.elapsed() > Duration::from_secs(3)
        })
    };
    let grown = rss_kib(server.child.id()).saturating_sub(before) / 1024;
    assert!(
        grown < 64,
        "the server grew {grown} MiB while the client read nothing"
    );
    assert!(answered > 0);
    // The client goes away: the command's writes fail, its run ends, and the dyno answers the next request.
    drop(client);
    let mut next = std::net::TcpStream::connect(&server.router).unwrap();
    next.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    next.write_all(format!("GET / HTTP/1.1\r\nHost: {flood}\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = [0u8; 12];
    next.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    drop(next);
    assert_memory_bounded(&server, 2);
}

#[test]
fn a_log_flood_waits_for_the_dyno_log_rate_and_loses_nothing() {
    // 3,300 bytes a second is 300 of the probe's 11-byte lines: a burst of 300, then 300 a second.
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_LOG_RATE", "3300")]);
    let host = healthy_app(&server);
    let dir = server.env.path("flood-src");
    probe_app(&dir, "worker: probe.wasm spin\n");
    server.cli(&["apps:create", "flood"]).ok();
    server
        .cli(&["deploy", "-a", "flood", dir.to_str().unwrap()])
        .ok();
    let started = Instant::now();
    let dyno = server
        .cli(&["run:detached", "-a", "flood", "probe.wasm", "flood", "1200"])
        .ok()
        .stdout;
    assert!(dyno.contains("run.1"), "{dyno}");
    let (text, answered) = keep_answering(&server, &host, "flood", "the flood to end", |text| {
        text.contains("wasmdyno[run.1]: Process exited with status 0")
    });
    let took = started.elapsed();
    let lines = text.matches("app[run.1]: flood line").count();
    assert_eq!(lines, 1200, "every line of the flood arrives:\n{text}");
    // 900 lines past the burst at 300 a second: the writes waited at least 3 s (2.5 s, for the refill's grain).
    assert!(
        took >= Duration::from_millis(2500),
        "1,200 lines at 300 a second were written in {took:?}"
    );
    assert!(answered > 0);
}

#[test]
fn workers_run_on_nicer_threads_beside_web_dynos() {
    let server = Server::start();
    let host = healthy_app(&server);
    let dir = server.env.path("spin-src");
    probe_app(&dir, "worker: probe.wasm spin\n");
    server.cli(&["apps:create", "spinner"]).ok();
    server
        .cli(&["deploy", "-a", "spinner", dir.to_str().unwrap()])
        .ok();
    server.cli(&["ps:scale", "-a", "spinner", "worker=1"]).ok();
    // The spinning worker's thread is the busy one, and the kernel schedules it at niceness 10.
    let pid = server.child.id();
    wait_until(
        "the spinning worker's thread",
        Duration::from_secs(30),
        || {
            busy_threads(pid)
                .iter()
                .any(|(name, nice)| name.starts_with("wasmdyno-backgr") && *nice == 10)
        },
    );
    for _ in 0..50 {
        assert_eq!(server.get(&host, "/").0, 200);
    }
}

/// The threads of `pid` that used CPU in the last 200 ms: their names and niceness.
fn busy_threads(pid: u32) -> Vec<(String, i32)> {
    let sample = || -> Vec<(String, u64, i32)> {
        let mut threads = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
                continue;
            };
            let (head, tail) = stat.rsplit_once(')').unwrap();
            let name = head.split_once('(').unwrap().1.to_string();
            let fields: Vec<&str> = tail.split_whitespace().collect();
            // After the name: utime is field 14 overall (index 11 here), stime 15, niceness 19 (index 16).
            let cpu = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
            threads.push((name, cpu, fields[16].parse().unwrap()));
        }
        threads
    };
    let before = sample();
    std::thread::sleep(Duration::from_millis(200));
    sample()
        .into_iter()
        .filter(|(name, cpu, _)| before.iter().any(|(n, c, _)| n == name && c < cpu))
        .map(|(name, _, nice)| (name, nice))
        .collect()
}

/// Sends `GET /` for `host` through the router and reads until the answer's `grew=N` line: the CGI run's head and
/// first line. Returns the connection and N.
fn cgi_hold(server: &Server, host: &str) -> (std::net::TcpStream, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(&server.router).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.write_all(
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\n") || !String::from_utf8_lossy(&seen).contains("grew=") {
        conn.read_exact(&mut byte).unwrap();
        seen.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let grew = text.rsplit("grew=").next().unwrap().trim().to_string();
    (conn, grew)
}

fn read_rest(mut conn: std::net::TcpStream) -> String {
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut conn, &mut rest).unwrap();
    rest
}

#[test]
fn a_cgi_run_holds_its_place_until_it_ends_not_until_its_head() {
    // One run at a time: a second request waits for the first run to end.
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_HTTP_INSTANCES", "1")]);
    deploy_attack(
        &server,
        "holder",
        "cgi-hold.wat",
        "web: cgi cgi-hold.wasm\n",
    );
    let host = host_of(&server, "holder");
    let (first, grew) = cgi_hold(&server, &host);
    assert_eq!(grew, "1");
    // The first run has sent its head and keeps running for a second: the second request gets nothing yet.
    let mut second = std::net::TcpStream::connect(&server.router).unwrap();
    std::io::Write::write_all(
        &mut second,
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = std::io::Read::read(&mut second, &mut byte);
    assert!(
        early.is_err(),
        "the second run started while the first still ran"
    );
    assert!(read_rest(first).contains("done\n"));
    second
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let answer = read_rest(second);
    assert!(
        answer.contains("grew=1"),
        "the first run's memory came back: {answer}"
    );
}

#[test]
fn a_cgi_dynos_runs_share_one_memory_quota() {
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_HTTP_INSTANCES", "2")]);
    let healthy = healthy_app(&server);
    deploy_attack(
        &server,
        "sharer",
        "cgi-hold.wat",
        "web: cgi cgi-hold.wasm\n",
    );
    let host = host_of(&server, "sharer");
    // Each run takes 300 MiB of the dyno's 512 MiB: while one holds it, the other cannot grow.
    let (first, first_grew) = cgi_hold(&server, &host);
    let (second, second_grew) = cgi_hold(&server, &host);
    assert_eq!((first_grew.as_str(), second_grew.as_str()), ("1", "0"));
    assert_eq!(server.get(&healthy, "/env/DYNO").0, 200);
    assert!(read_rest(first).contains("done\n"));
    assert!(read_rest(second).contains("done\n"));
    let logs = wait_logs(
        &server,
        "sharer",
        "the quota's R14 line",
        Duration::from_secs(10),
        |text| text.contains("R14"),
    );
    assert!(logs.contains("Memory quota exceeded"), "{logs}");
}

#[test]
fn overlapping_iovecs_on_a_socket_move_a_bounded_amount_per_call() {
    use std::io::{Read, Write};
    let server = Server::start();
    let host = healthy_app(&server);
    deploy_attack(
        &server,
        "recvbomb",
        "recv-bomb.wat",
        "web: recv-bomb.wasm\n",
    );
    let bomb = host_of(&server, "recvbomb");
    wait_dyno_up(&server, "recvbomb");
    // 8 MiB of body, read with RECV_WAITALL into iovecs that claim 250 MiB a call, beside the healthy app.
    let before = rss_kib(server.child.id());
    let answer = std::thread::scope(|scope| {
        let attack = scope.spawn(|| {
            let mut conn = std::net::TcpStream::connect(&server.router).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let body = vec![b'x'; 8 << 20];
            conn.write_all(
                format!(
                    "POST / HTTP/1.1\r\nHost: {bomb}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .unwrap();
            conn.write_all(&body).unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).unwrap();
            answer
        });
        while !attack.is_finished() {
            assert_eq!(server.get(&host, "/env/DYNO").0, 200);
        }
        attack.join().unwrap()
    });
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
    let grown = rss_kib(server.child.id()).saturating_sub(before) / 1024;
    assert!(grown < 64, "the server grew {grown} MiB");
    assert_memory_bounded(&server, 2);
}

#[test]
fn a_cgi_request_body_waits_for_its_runs_place_before_it_is_read() {
    use std::io::Write;
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_HTTP_INSTANCES", "1")]);
    deploy_attack(&server, "queue", "cgi-hold.wat", "web: cgi cgi-hold.wasm\n");
    let host = host_of(&server, "queue");
    // The one place is taken for a second.
    let (first, _) = cgi_hold(&server, &host);
    // A chunked body (CGI needs its length, so it would be read whole before the run) of 32 MiB: while the place is
    // taken, nobody reads it, and the client's writes stall once the sockets' buffers are full.
    let mut second = std::net::TcpStream::connect(&server.router).unwrap();
    second
        .write_all(
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    second
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let chunk = format!("100000\r\n{}\r\n", "x".repeat(0x100000));
    let mut sent = 0;
    let stalled = (0..32).any(|_| {
        let wrote = second.write_all(chunk.as_bytes()).is_err();
        sent += 1;
        wrote
    });
    assert!(
        stalled,
        "all {sent} MiB of the body were read while the dyno's only place was taken"
    );
    assert!(read_rest(first).contains("done\n"));
}
