//! The router inside `wasmdyno serve`: HTTP by Host to an app's web dynos, Heroku's error codes, router log lines.

use std::time::{Duration, Instant};

use crate::support::*;

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
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
