//! The dashboard: its session cookie and CSRF rules over raw HTTP, then the page itself in headless Chromium
//! (Debian's `chromium`, which `scripts/test` installs, driven by playwright-core from npm): log in, scale, roll
//! back, live logs and the throughput chart. Screenshots go to `target/dashboard/`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// The bound on each request and wait.
const STEP: Duration = Duration::from_secs(30);

/// A raw request to the API with extra header lines; (status, whole response).
fn call(server: &Server, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let addr = server.api.strip_prefix("http://").unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(addr, request.as_bytes(), STEP).unwrap()
}

#[test]
fn the_dashboard_session_is_a_strict_cookie_and_its_writes_need_the_csrf_token() {
    let server = Server::start();
    server.cli(&["apps:create", "guarded"]).ok();
    let (status, _) = call(
        &server,
        "POST",
        "/dashboard/session",
        "",
        r#"{"token": "nope"}"#,
    );
    assert_eq!(status, 401);
    let (status, page) = call(&server, "GET", "/dashboard", "", "");
    assert_eq!(status, 200);
    assert!(page.contains("<title>wasmdyno</title>"), "{page}");

    let login = format!(r#"{{"token": "{}"}}"#, server.token());
    let (status, response) = call(&server, "POST", "/dashboard/session", "", &login);
    assert_eq!(status, 200, "{response}");
    let cookie_line = response
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    assert!(
        cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"),
        "{cookie_line}"
    );
    let cookie = cookie_line
        .split_once(':')
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_string();
    let csrf = serde_json::from_str::<serde_json::Value>(body_of(&response)).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();

    // Reads with the cookie; a write needs the session's CSRF token as well.
    let with_cookie = format!("Cookie: {cookie}\r\n");
    let (status, apps) = call(&server, "GET", "/apps", &with_cookie, "");
    assert_eq!(status, 200, "{apps}");
    let change = r#"{"GREETING": "hi"}"#;
    let (status, refused) = call(
        &server,
        "PATCH",
        "/apps/guarded/config-vars",
        &with_cookie,
        change,
    );
    assert_eq!(status, 403, "{refused}");
    let (status, _) = call(
        &server,
        "PATCH",
        "/apps/guarded/config-vars",
        &format!("{with_cookie}X-CSRF-Token: not-{csrf}\r\n"),
        change,
    );
    assert_eq!(status, 403);
    let (status, changed) = call(
        &server,
        "PATCH",
        "/apps/guarded/config-vars",
        &format!("{with_cookie}X-CSRF-Token: {csrf}\r\n"),
        change,
    );
    assert_eq!(status, 200, "{changed}");

    // Logged out, the cookie is worth nothing.
    let (status, _) = call(&server, "DELETE", "/dashboard/session", &with_cookie, "");
    assert_eq!(status, 204);
    let (status, _) = call(&server, "GET", "/apps", &with_cookie, "");
    assert_eq!(status, 401);
}

/// playwright-core, installed once per target directory with npm.
fn playwright() -> PathBuf {
    let tools = repo().join("target").join("browser-tools");
    if !tools
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        std::fs::create_dir_all(&tools).unwrap();
        let status = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
                tools.to_str().unwrap(),
                "playwright-core@1.65.1",
            ])
            .status()
            .expect("npm (Node.js) drives the browser test");
        assert!(status.success(), "npm install playwright-core failed");
    }
    tools
}

#[test]
fn the_dashboard_scales_rolls_back_and_follows_logs_and_metrics_in_chromium() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium (scripts/test installs it)"
    );
    let tools = playwright();
    let server = Server::start();
    server.cli(&["apps:create", "dash"]).ok();
    crate::router::release_slug(&server, "dash", crate::router::probe());
    server
        .cli(&["config:set", "-a", "dash", "GREETING=hi"])
        .ok();
    wait_until("the app answers", STEP, || {
        server
            .get(
                &format!(
                    "dash.localhost:{}",
                    server.router.rsplit(':').next().unwrap()
                ),
                "/",
            )
            .0
            == 200
    });
    let shots = repo().join("target").join("dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(repo().join("tests/browser/dashboard.mjs"))
        .env("TOOLS", &tools)
        .env("API", &server.api)
        .env("TOKEN", server.token())
        .env("APP", "dash")
        .env("ROUTER", &server.router)
        .env("SHOTS", &shots)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("scaled to two web dynos") && text.ends_with("ok\n"),
        "{text}"
    );
    assert!(shots.join("dashboard.png").is_file());
}
