//! Python apps through the Python buildpack (componentize-py from PyPI, the WASI interfaces from crates.io):
//! `sample-apps/python-flask` as a wasi:http component behind the router, `sample-apps/python-worker` as
//! wasi:cli commands (a release phase and a worker), and a dependency with a native extension refused by name.

use std::time::Duration;

use crate::support::*;

#[test]
fn a_flask_app_serves_its_page_its_form_and_json_with_the_apps_config() {
    let server = Server::start();
    let page = deploy_sample(
        &server,
        "flask",
        "python-flask",
        &["GREETING=Howdy"],
        "/?name=Ada",
    );
    let host = "flask.localhost";
    // The config var is read per request (the app was imported at build time, without it).
    assert!(body_of(&page).contains("Howdy, Ada!"), "{page}");
    assert!(
        body_of(&page).contains("<form method=\"post\" action=\"/greet\">"),
        "{page}"
    );

    let (status, response) = server.send(
        host,
        "POST",
        "/greet",
        "application/x-www-form-urlencoded",
        "name=Zo%C3%AB",
    );
    assert_eq!(status, 200, "{response}");
    assert!(
        body_of(&response).contains("Howdy, Zoë: nice to meet you."),
        "{response}"
    );

    let (status, response) =
        server.send(host, "POST", "/api/info", "application/json", r#"{"n": 1}"#);
    assert_eq!(status, 200, "{response}");
    let info: serde_json::Value = serde_json::from_str(body_of(&response)).unwrap();
    assert_eq!(info["dyno"], "web.1", "{info}");
    assert_eq!(info["greeting"], "Howdy", "{info}");
    assert_eq!(info["sent"]["n"], 1, "{info}");
    assert!(
        info["python"].as_str().unwrap().starts_with("3.14"),
        "{info}"
    );

    // The router logs Flask's sized responses as served.
    wait_logs(
        &server,
        "flask",
        "the form's router line",
        Duration::from_secs(10),
        |logs| {
            logs.lines()
                .any(|l| l.contains("path=\"/greet\"") && l.contains("status=200"))
        },
    );
}

#[test]
fn a_python_release_phase_and_worker_run_their_scripts() {
    let server = Server::start();
    server.cli(&["apps:create", "pyworker"]).ok();
    let dir = repo().join("sample-apps/python-worker");
    let deployed = server
        .cli(&["deploy", "-a", "pyworker", dir.to_str().unwrap()])
        .ok();
    assert!(
        deployed
            .stderr
            .contains("migrate: schema up to date for release v"),
        "{}",
        deployed.stderr
    );
    // One-off dynos run any script of the app, as `heroku run python ...` does.
    let migrated = server
        .cli(&["run", "-a", "pyworker", "python", "migrate.py"])
        .ok();
    assert!(
        migrated
            .stdout
            .contains("migrate: schema up to date for release v"),
        "{migrated}"
    );
    let said = server
        .cli(&[
            "run",
            "-a",
            "pyworker",
            "python",
            "-c",
            "import sys, json; print(json.dumps(sys.argv))",
            "a b",
        ])
        .ok();
    assert_eq!(said.stdout.trim(), r#"["-c", "a b"]"#, "{said}");
    // A script's exit status is its own, as a POSIX process reports it (WASI 0.2.12's exit-with-code).
    for (code, status) in [
        ("import sys; sys.exit(3)", Some(3)),
        ("raise SystemExit(-1)", Some(255)),
        ("raise SystemExit('bad input')", Some(1)),
        ("1 / 0", Some(1)),
        ("import sys; sys.exit(0)", Some(0)),
    ] {
        let out = server.cli(&["run", "-a", "pyworker", "python", "-c", code]);
        assert_eq!(out.code, status, "{code}: {out}");
    }
    server.cli(&["ps:scale", "-a", "pyworker", "worker=1"]).ok();
    wait_logs(
        &server,
        "pyworker",
        "the worker's first round",
        Duration::from_secs(60),
        |logs| {
            logs.contains("app[worker.1]: worker: worker.1 ready, greeting 'Hello'")
                && logs.contains("app[worker.1]: worker: round 1 done")
        },
    );
}

#[test]
fn a_python_dependency_with_a_native_extension_fails_the_build_naming_it() {
    let env = TestEnv::new();
    let app = env.path("native");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("requirements.txt"), "orjson==3.13.0\n").unwrap();
    std::fs::write(
        app.join("app.py"),
        "import orjson\n\n\ndef app(environ, start_response):\n    start_response('200 OK', [])\n    return [orjson.dumps({})]\n",
    )
    .unwrap();
    let out = env.run(&["build", app.to_str().unwrap()]);
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("native extension") && text.contains("orjson"),
        "{text}"
    );
}
