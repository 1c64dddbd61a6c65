//! The release phase cannot hold an app hostage: it has a deadline, keeps only the tail of its output, stops when
//! its app is destroyed or nobody waits for it any more, and a phase the server never finished fails its release
//! instead of staying pending. A healthy app of the same server answers every request beside a phase that spins or
//! floods.

use std::time::Duration;

use crate::support::*;

fn app_dir(server: &Server, name: &str, procfile: &str) -> String {
    let dir = server.env.path(name);
    probe_app(&dir, procfile);
    dir.to_str().unwrap().to_string()
}

fn release_status(server: &Server, app: &str, version: u64) -> Option<String> {
    let json = server.cli(&["releases", "-a", app, "--json"]).ok().json();
    json.as_array()?
        .iter()
        .find(|r| r["version"].as_u64() == Some(version))
        .map(|r| r["status"].as_str().unwrap().to_string())
}

/// Runs `during` (a deploy whose release phase attacks) while a healthy app of the same server must answer every
/// request; returns what `during` returned.
fn beside_a_healthy_app<T: Send>(server: &Server, during: impl FnOnce() -> T + Send) -> T {
    let host = healthy_app(server);
    std::thread::scope(|scope| {
        let attack = scope.spawn(during);
        let mut answered = 0;
        while !attack.is_finished() || answered == 0 {
            let (status, reply) = server.get(&host, "/env/DYNO");
            assert_eq!(
                status, 200,
                "request {answered} beside the release phase: {reply}"
            );
            answered += 1;
        }
        attack.join().unwrap()
    })
}

/// Starts a deploy of a release phase that spins forever; returns the CLI process once v2 is pending.
fn deploy_spinning_phase(server: &Server, app: &str) -> std::process::Child {
    server.cli(&["apps:create", app]).ok();
    let dir = app_dir(server, &format!("{app}-src"), "release: probe.wasm spin\n");
    let child = server
        .env
        .cmd(&["deploy", "-a", app, &dir])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "the release phase to start",
        Duration::from_secs(60),
        || release_status(server, app, 2).as_deref() == Some("pending"),
    );
    child
}

#[test]
fn a_release_phase_past_its_deadline_fails_and_frees_the_app() {
    let server = Server::start_in(
        TestEnv::new(),
        &[
            ("WASMDYNO_RELEASE_PHASE_TIMEOUT", "1.5"),
            ("WASMDYNO_STOP_TIMEOUT_MS", "300"),
        ],
    );
    server.cli(&["apps:create", "stuck"]).ok();
    let dir = app_dir(&server, "stuck-src", "release: probe.wasm spin\n");
    let out = beside_a_healthy_app(&server, || {
        server.cli(&["deploy", "-a", "stuck", &dir]).fails()
    });
    assert!(out.stderr.contains("v2 failed"), "{out}");
    let output = server.cli(&["releases:output", "-a", "stuck", "v2"]).ok();
    assert!(
        output
            .stdout
            .contains("release command still running after 1.5 seconds"),
        "{output}"
    );
    // The app's lock is free again.
    server.cli(&["config:set", "-a", "stuck", "AFTER=1"]).ok();
}

#[test]
fn a_flooding_release_phase_keeps_only_its_tail() {
    let server = Server::start();
    server.cli(&["apps:create", "chatty"]).ok();
    let dir = app_dir(&server, "chatty-src", "release: probe.wasm flood 200000\n");
    beside_a_healthy_app(&server, || {
        server.cli(&["deploy", "-a", "chatty", &dir]).ok()
    });
    let output = server
        .cli(&["releases:output", "-a", "chatty", "v2"])
        .ok()
        .stdout;
    assert!(output.len() < 70 * 1024, "{} bytes kept", output.len());
    assert!(
        output.starts_with('[') && output.contains("earlier bytes of output not kept]"),
        "{}",
        &output[..200]
    );
    assert!(output.ends_with("flood line\n"));
}

#[test]
fn destroying_an_app_stops_its_release_phase() {
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_STOP_TIMEOUT_MS", "300")]);
    let mut deploy = deploy_spinning_phase(&server, "doomed");
    // The phase is a one-off dyno of the app, as `ps` shows.
    let ps = server.cli(&["ps", "-a", "doomed"]).ok();
    assert!(ps.stdout.contains("release.2"), "{ps}");
    let out = server
        .cli(&["apps:destroy", "-a", "doomed", "--confirm", "doomed"])
        .ok();
    assert!(out.stderr.contains("done"), "{out}");
    let status = deploy.wait().unwrap();
    assert!(!status.success(), "the deploy fails with its release");
    server.cli(&["apps:info", "-a", "doomed"]).fails();
}

#[test]
fn a_release_phase_the_server_never_finished_fails_on_restart() {
    let server = Server::start();
    let mut deploy = deploy_spinning_phase(&server, "killed");
    std::process::Command::new("kill")
        .args(["-9", &server.child.id().to_string()])
        .status()
        .unwrap();
    let _ = deploy.wait();
    let server = Server::start_in(server.stop(), &[]);
    assert_eq!(
        release_status(&server, "killed", 2).as_deref(),
        Some("failed")
    );
    let output = server.cli(&["releases:output", "-a", "killed", "v2"]).ok();
    assert!(
        output
            .stdout
            .contains("the server stopped before it finished"),
        "{output}"
    );
    // The next release is based on v1, and is made at once.
    server.cli(&["config:set", "-a", "killed", "NEXT=1"]).ok();
    assert_eq!(
        release_status(&server, "killed", 3).as_deref(),
        Some("succeeded")
    );
}

#[test]
fn a_release_phase_reaches_the_apps_allowed_destinations() {
    let server = Server::start();
    server.cli(&["apps:create", "migrator"]).ok();
    // Allowed and public-looking: the phase's request is tried (and cannot resolve here), where a phase without
    // the app's destinations would be denied outright.
    server
        .cli(&["network:allow", "no-such-host.invalid:80", "-a", "migrator"])
        .ok();
    let dir = server.env.path("migrator-src");
    std::fs::create_dir_all(&dir).unwrap();
    let guest = repo().join("tests/guests/fetch-cmd");
    for file in ["Cargo.toml", "Cargo.lock"] {
        std::fs::copy(guest.join(file), dir.join(file)).unwrap();
    }
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::copy(guest.join("src/main.rs"), dir.join("src/main.rs")).unwrap();
    std::fs::write(
        dir.join("Procfile"),
        "release: fetch-cmd.wasm no-such-host.invalid:80\n",
    )
    .unwrap();
    server
        .cli(&["deploy", "-a", "migrator", dir.to_str().unwrap()])
        .ok();
    let output = server
        .cli(&["releases:output", "-a", "migrator", "v2"])
        .ok();
    assert!(output.stdout.contains("DnsError"), "{output}");
    let logs = logs(&server, "migrator");
    assert!(
        logs.contains("wasmdyno[release.2]: Starting process"),
        "{logs}"
    );
}

#[test]
fn a_release_phase_whose_request_went_away_is_stopped_and_fails_its_release() {
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_STOP_TIMEOUT_MS", "300")]);
    server.cli(&["apps:create", "orphan"]).ok();
    // The phase spins once PHASE says so: a config change waits for it in its request.
    let dir = app_dir(
        &server,
        "orphan-src",
        "release: probe.wasm ${PHASE:-args}\n",
    );
    server.cli(&["deploy", "-a", "orphan", &dir]).ok();
    let addr = server.api.strip_prefix("http://").unwrap().to_string();
    let body = r#"{"PHASE":"spin"}"#;
    let mut request = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut request,
        format!(
            "PATCH /apps/orphan/config-vars HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            server.token(),
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    wait_until("the release phase to spin", Duration::from_secs(30), || {
        release_status(&server, "orphan", 3).as_deref() == Some("pending")
    });
    // The client hangs up: nobody waits for the phase any more.
    drop(request);
    wait_until("the release dyno to stop", Duration::from_secs(30), || {
        !server
            .cli(&["ps", "-a", "orphan"])
            .ok()
            .stdout
            .contains("release.3")
    });
    wait_until("v3 to fail", Duration::from_secs(30), || {
        release_status(&server, "orphan", 3).as_deref() == Some("failed")
    });
    // The app is free, and the next release builds on v2, not on the one that never finished.
    server.cli(&["config:set", "-a", "orphan", "AFTER=1"]).ok();
    let config = server
        .cli(&["config", "-a", "orphan", "--json"])
        .ok()
        .json();
    assert_eq!(config["AFTER"], "1", "{config}");
    assert!(config.get("PHASE").is_none(), "{config}");
}
