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
        |t| t.contains("fake"),
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
