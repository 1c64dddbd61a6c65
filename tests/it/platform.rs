//! `wasmdyno serve` driven by the real CLI: apps, config vars, releases, deploys, rollback, release phase,
//! add-ons, restarts, failpoints and bad input.

use crate::support::*;

/// A deployable app: the probe guest with `procfile`.
fn app_dir(env: &TestEnv, name: &str, procfile: &str) -> String {
    let dir = env.path(name);
    probe_app(&dir, procfile);
    dir.to_str().unwrap().to_string()
}

#[test]
fn apps_are_created_listed_shown_and_destroyed() {
    let server = Server::start();
    let out = server.cli(&["apps:create", "my-app"]).ok();
    assert_eq!(out.stdout, "my-app\n");
    assert!(out.stderr.contains("Creating ⬢ my-app... done"), "{out}");
    let random = server.cli(&["apps:create"]).ok().stdout.trim().to_string();
    let listed = server.cli(&["apps"]).ok();
    assert!(
        listed.stdout.contains("my-app\n") && listed.stdout.contains(&random),
        "{listed}"
    );
    let info = server.cli(&["apps:info", "-a", "my-app"]).ok();
    assert!(
        info.stdout.contains("=== my-app")
            && info.stdout.contains("Release:     v1 (Initial release)"),
        "{info}"
    );

    let out = server.cli(&["apps:create", "my-app"]).fails();
    assert!(out.stderr.contains("my-app"), "{out}");
    for bad in ["My-App", "1app", "ab", "a_b", &"a".repeat(31)] {
        let out = server.cli(&["apps:create", bad]).fails();
        assert!(out.stderr.contains("error:"), "{bad}: {out}");
    }
    let out = server.cli(&["apps:info", "-a", "nope"]).fails();
    assert!(out.stderr.contains("nope"), "{out}");

    server.cli(&["apps:destroy", "-a", "my-app"]).fails();
    server
        .cli(&["apps:destroy", "-a", "my-app", "--confirm", "my-app"])
        .ok();
    assert!(!server.cli(&["apps"]).ok().stdout.contains("my-app\n"));
    server.cli(&["apps:info", "-a", "my-app"]).fails();
}

#[test]
fn config_changes_make_releases() {
    let server = Server::start();
    server.cli(&["apps:create", "cfg"]).ok();
    let out = server
        .cli(&["config:set", "-a", "cfg", "A=1", "B=two words"])
        .ok();
    assert!(
        out.stderr
            .contains("Setting A, B and restarting ⬢ cfg... done, v2"),
        "{out}"
    );
    assert_eq!(
        server.cli(&["config:get", "-a", "cfg", "B"]).ok().stdout,
        "two words\n"
    );
    let out = server.cli(&["config:unset", "-a", "cfg", "A"]).ok();
    assert!(out.stderr.contains("done, v3"), "{out}");
    let json = server.cli(&["config", "-a", "cfg", "--json"]).ok().json();
    assert_eq!(json, serde_json::json!({"B": "two words"}));
    let releases = server.cli(&["releases", "-a", "cfg"]).ok();
    assert!(releases.stdout.contains("Current: v3"), "{releases}");
    assert!(
        releases.stdout.contains("Set A, B config vars"),
        "{releases}"
    );
    assert!(releases.stdout.contains("Unset A config var"), "{releases}");

    for (bad, says) in [
        ("PORT=1", "PORT"),
        ("WASMDYNO_X=1", "WASMDYNO_"),
        ("1X=1", "1X"),
        ("DYNO=x", "DYNO"),
    ] {
        let out = server.cli(&["config:set", "-a", "cfg", bad]).fails();
        assert!(out.stderr.contains(says), "{bad}: {out}");
    }
    let big = format!("BIG={}", "x".repeat(40_000));
    server.cli(&["config:set", "-a", "cfg", &big]).fails();
    // Nothing was written by the refused changes.
    let releases = server.cli(&["releases", "-a", "cfg", "--json"]).ok().json();
    assert_eq!(releases.as_array().unwrap().len(), 3);
}

#[test]
fn deploy_streams_the_build_and_rollback_makes_a_new_release() {
    let server = Server::start();
    let env = &server.env;
    server.cli(&["apps:create", "web-app"]).ok();
    let dir = app_dir(env, "v1", "web: probe.wasm args one\n");
    let out = server.cli(&["deploy", "-a", "web-app", &dir]).ok();
    assert!(
        out.stderr.contains("-----> WebAssembly app detected"),
        "{out}"
    );
    assert!(out.stderr.contains("Released v2"), "{out}");
    let dir = app_dir(env, "v2", "web: probe.wasm args two\n");
    server.cli(&["config:set", "-a", "web-app", "K=v"]).ok();
    server.cli(&["deploy", "-a", "web-app", &dir]).ok();

    let releases: Vec<serde_json::Value> = serde_json::from_value(
        server
            .cli(&["releases", "-a", "web-app", "--json"])
            .ok()
            .json(),
    )
    .unwrap();
    assert_eq!(releases.len(), 4);
    let (v2, v4) = (&releases[1], &releases[3]);
    assert_ne!(v2["slug"], v4["slug"]);
    assert_eq!(v4["config"]["K"], "v", "a deploy keeps the config");

    let out = server
        .cli(&["releases:rollback", "-a", "web-app", "v2"])
        .ok();
    assert!(
        out.stderr.contains("Rolling back ⬢ web-app... done, v5"),
        "{out}"
    );
    assert_eq!(out.stdout, "Rollback to v2\n");
    let v5 = server
        .cli(&["releases:info", "-a", "web-app", "v5", "--json"])
        .ok()
        .json();
    assert_eq!(v5["slug"], v2["slug"]);
    assert_eq!(v5["config"], v2["config"]);
    // Each ledger change is an API line in the app's stream.
    let api = server
        .cli(&["logs", "-a", "web-app", "-p", "api"])
        .ok()
        .stdout;
    for line in [
        "app[api]: Deploy ",
        "app[api]: Set K config var",
        "app[api]: Rollback to v2",
        "Release v5 created",
    ] {
        assert!(api.contains(line), "{line:?} missing:\n{api}");
    }
    // With no version: the release before the current one.
    let out = server.cli(&["releases:rollback", "-a", "web-app"]).ok();
    assert_eq!(out.stdout, "Rollback to v4\n");
    server
        .cli(&["releases:info", "-a", "web-app", "v99"])
        .fails();
}

#[test]
fn the_release_phase_gates_a_release() {
    let server = Server::start();
    let env = &server.env;
    server.cli(&["apps:create", "phased"]).ok();
    let good = app_dir(
        env,
        "good",
        "release: probe.wasm args migrating $STAGE\nweb: probe.wasm args\n",
    );
    server
        .cli(&["config:set", "-a", "phased", "STAGE=one"])
        .ok();
    let out = server.cli(&["deploy", "-a", "phased", &good]).ok();
    assert!(
        out.stderr.contains("migrating"),
        "release output streams with the build: {out}"
    );
    let output = server.cli(&["releases:output", "-a", "phased", "v3"]).ok();
    assert_eq!(output.stdout, "probe.wasm\nargs\nmigrating\none\n");

    let bad = app_dir(
        env,
        "bad",
        "release: probe.wasm exit 3\nweb: probe.wasm args\n",
    );
    let out = server.cli(&["deploy", "-a", "phased", &bad]).fails();
    assert!(out.stderr.contains("v4 failed"), "{out}");
    let releases = server.cli(&["releases", "-a", "phased"]).ok();
    assert!(
        releases.stdout.contains("Current: v3"),
        "a failed release phase leaves the current release: {releases}"
    );
    assert!(
        releases.stdout.contains("(release command failed)"),
        "{releases}"
    );
    let output = server.cli(&["releases:output", "-a", "phased", "v4"]).ok();
    assert!(output.stdout.contains("exited with status 3"), "{output}");
    let out = server
        .cli(&["releases:rollback", "-a", "phased", "v4"])
        .fails();
    assert!(out.stderr.contains("v4"), "{out}");
}

#[test]
fn addons_set_config_vars_in_releases() {
    let server = Server::start();
    server.cli(&["apps:create", "withdb"]).ok();
    let out = server
        .cli(&[
            "addons:create",
            "-a",
            "withdb",
            "postgres:mini",
            "--url",
            "postgres://u:p@db.example.com:5432/d",
        ])
        .ok();
    assert!(out.stdout.contains("DATABASE_URL"), "{out}");
    assert_eq!(
        server
            .cli(&["config:get", "-a", "withdb", "DATABASE_URL"])
            .ok()
            .stdout,
        "postgres://u:p@db.example.com:5432/d\n"
    );
    let listed = server
        .cli(&["addons", "-a", "withdb", "--json"])
        .ok()
        .json();
    assert_eq!(listed[0]["service"], "postgres");
    // `addons:info` shows the plan and the config var's name, never its value; `addons:add` is Heroku's alias.
    let info = server
        .cli(&["addons:info", "-a", "withdb", "postgres"])
        .ok();
    assert!(info.stdout.contains("Plan:        postgres:mini"), "{info}");
    assert!(info.stdout.contains("withdb::DATABASE_URL"), "{info}");
    assert!(!info.stdout.contains("u:p@"), "{info}");
    let missing = server
        .cli(&["addons:info", "-a", "withdb", "redis"])
        .fails();
    assert!(
        missing.stderr.contains("no add-on named redis"),
        "{missing}"
    );
    server
        .cli(&[
            "addons:add",
            "-a",
            "withdb",
            "redistogo:nano",
            "--url",
            "redis://r.example.com:6379",
        ])
        .ok();
    let listed = server
        .cli(&["addons", "-a", "withdb", "--json"])
        .ok()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let out = server
        .cli(&["addons:destroy", "-a", "withdb", "postgres"])
        .ok();
    assert!(out.stderr.contains("done, v4"), "{out}");
    assert_eq!(
        server
            .cli(&["config:get", "-a", "withdb", "DATABASE_URL"])
            .ok()
            .stdout,
        "\n"
    );
}

#[test]
fn state_survives_a_restart_and_one_server_per_home() {
    let server = Server::start();
    server.cli(&["apps:create", "durable"]).ok();
    server.cli(&["config:set", "-a", "durable", "A=1"]).ok();
    server.cli(&["maintenance:on", "-a", "durable"]).ok();

    let second = server
        .env
        .run(&["serve", "--api", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
        .fails();
    assert!(
        second.stderr.contains("another wasmdyno serve is running"),
        "{second}"
    );

    let env = server.stop();
    let server = Server::start_in(env, &[]);
    assert_eq!(
        server
            .cli(&["config:get", "-a", "durable", "A"])
            .ok()
            .stdout,
        "1\n"
    );
    let info = server.cli(&["apps:info", "-a", "durable"]).ok();
    assert!(info.stdout.contains("Maintenance: on"), "{info}");
}

#[test]
fn the_api_refuses_bad_requests_with_json_errors() {
    let server = Server::start();
    let (status, body) = server.raw("GET", "/apps", None, "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"id\":\"unauthorized\""), "{body}");
    let (status, _) = server.raw("GET", "/apps", Some("wrong-token"), "");
    assert_eq!(status, 401);
    let token = server.token();
    let (status, body) = server.raw("POST", "/apps", Some(&token), "{not json");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"id\":\"bad_request\""), "{body}");
    let (status, body) = server.raw("GET", "/apps/missing", Some(&token), "");
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.raw("POST", "/apps", Some(&token), "{\"name\": \"Bad_Name\"}");
    assert_eq!(status, 422, "{body}");
    server.raw("POST", "/apps", Some(&token), "{\"name\": \"taken\"}");
    let (status, _) = server.raw("POST", "/apps", Some(&token), "{\"name\": \"taken\"}");
    assert_eq!(status, 409);
    let huge = format!("{{\"name\": \"{}\"}}", "a".repeat(2 << 20));
    let (status, _) = server.raw("POST", "/apps", Some(&token), &huge);
    assert_eq!(status, 413);
    let (status, body) = server.raw("POST", "/apps/taken/slugs", Some(&token), "not a slug");
    assert_eq!(status, 422, "{body}");
}

#[test]
fn concurrent_config_sets_all_land_with_contiguous_versions() {
    let server = Server::start();
    server.cli(&["apps:create", "busy"]).ok();
    let children: Vec<_> = (0..50)
        .map(|i| {
            server
                .env
                .cmd(&["config:set", "-a", "busy", &format!("K{i}={i}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        Out::from(child.wait_with_output().unwrap()).ok();
    }
    let config = server.cli(&["config", "-a", "busy", "--json"]).ok().json();
    assert_eq!(config.as_object().unwrap().len(), 50);
    assert_eq!(versions(&server, "busy"), (1..=51).collect::<Vec<_>>());
}

#[test]
fn a_crash_at_any_commit_step_leaves_a_consistent_ledger() {
    // Each operation that appends to the ledger, crashed before and after its commit.
    type Operation = fn(&Server, &str) -> Out;
    let operations: [(&str, Operation); 3] = [
        ("config change", |s, _| {
            s.cli(&["config:set", "-a", "crashy", "A=2"])
        }),
        ("deploy", |s, dir| s.cli(&["deploy", "-a", "crashy", dir])),
        ("rollback", |s, _| {
            s.cli(&["releases:rollback", "-a", "crashy", "v2"])
        }),
    ];
    for (operation, run) in operations {
        for failpoint in ["release.before_commit", "release.after_commit"] {
            let server = Server::start();
            let dir = app_dir(&server.env, "src", "web: probe.wasm args\n");
            server.cli(&["apps:create", "crashy"]).ok();
            server.cli(&["config:set", "-a", "crashy", "A=1"]).ok();
            let env = server.stop();
            let server = Server::start_in(env, &[("WASMDYNO_FAILPOINT", failpoint)]);
            run(&server, &dir).fails();
            let (code, env) = server.wait_exit();
            assert_ne!(
                code,
                Some(0),
                "{operation} at {failpoint}: the server aborted"
            );
            let server = Server::start_in(env, &[]);
            let releases = server
                .cli(&["releases", "-a", "crashy", "--json"])
                .ok()
                .json();
            let versions: Vec<u64> = releases
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["version"].as_u64().unwrap())
                .collect();
            let current = server
                .cli(&["apps:info", "-a", "crashy", "--json"])
                .ok()
                .json()["current_release"]["version"]
                .as_u64();
            match failpoint {
                "release.before_commit" => {
                    assert_eq!(versions, [1, 2], "{operation} at {failpoint}");
                    assert_eq!(
                        current,
                        Some(2),
                        "{operation} at {failpoint}: the old release is current"
                    );
                }
                _ => {
                    assert_eq!(versions, [1, 2, 3], "{operation} at {failpoint}");
                    assert_eq!(
                        current,
                        Some(3),
                        "{operation} at {failpoint}: the new release is current"
                    );
                }
            }
            // The ledger still takes new releases.
            server.cli(&["config:set", "-a", "crashy", "B=1"]).ok();
        }
    }
}

#[test]
fn bad_source_tarballs_are_refused() {
    let server = Server::start();
    server.cli(&["apps:create", "tarry"]).ok();
    let token = server.token();
    let (status, body) = server.raw(
        "POST",
        "/apps/tarry/builds",
        Some(&token),
        "definitely not gzip",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("send the source as a gzip tarball"), "{body}");
    // Gzip, but not a tar inside: the build stream says so and nothing is released.
    let (status, body) = server.raw(
        "POST",
        "/apps/tarry/builds",
        Some(&token),
        b"\x1f\x8bgarbage",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    let releases = server
        .cli(&["releases", "-a", "tarry", "--json"])
        .ok()
        .json();
    assert_eq!(
        releases.as_array().unwrap().len(),
        1,
        "nothing was released"
    );
}

#[test]
fn a_reader_that_stops_early_gets_no_panic() {
    let server = Server::start();
    server.cli(&["apps:create", "chatty"]).ok();
    server
        .cli(&["config:set", "-a", "chatty", "A=1", "B=2"])
        .ok();
    // Output into a pipe nobody reads any more (as `| head -1` leaves it): every write fails with EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = server
        .env
        .cmd(&["config", "-a", "chatty"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}
