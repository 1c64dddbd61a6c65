//! No guest can hurt the platform: each attack runs for real (a WAT guest in `tests/guests/attacks/`) beside a
//! healthy app in one `wasmdyno serve`. The server survives, the attacker gets a clear error or its R14 line, the
//! healthy app answers every request sent during the attack, and the server's memory stays within the quotas.

use std::time::{Duration, Instant};

use crate::router::{probe, release_slug};
use crate::support::*;

/// The healthy app's host, answering.
fn healthy(server: &Server) -> String {
    server.cli(&["apps:create", "healthy"]).ok();
    release_slug(server, "healthy", probe());
    let port = server.router.rsplit(':').next().unwrap();
    let host = format!("healthy.localhost:{port}");
    wait_until("the healthy app to answer", Duration::from_secs(60), || {
        server.get(&host, "/").0 == 200
    });
    host
}

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
    let host = healthy(&server);
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
    let host = healthy(&server);
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
