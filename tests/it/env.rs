//! Every kind of dyno expands its command line after its whole environment is in place: config vars, then the
//! platform's `PORT`, `DYNO`, `HOME` and `WASMDYNO_RELEASE` (issue 24: `web: app.wasm --port $PORT`).

use std::time::Duration;

use crate::support::*;

/// The probe prints each argv entry on its own line; these name what every dyno should see.
const ARGS: &str = "probe.wasm args port=${PORT:-unset} dyno=$DYNO rel=$WASMDYNO_RELEASE home=$HOME \
                    greeting=${GREETING:-none}";

/// `app[dyno]: key=value` lines of `dyno` in `text`, as (key, value).
fn seen(text: &str, dyno: &str) -> Vec<(String, String)> {
    let prefix = format!("app[{dyno}]: ");
    text.lines()
        .filter_map(|line| line.split_once(&prefix).map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn value(text: &str, dyno: &str, key: &str) -> String {
    seen(text, dyno)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{dyno} printed no {key}=; logs:\n{text}"))
}

#[test]
fn every_dyno_expands_its_command_after_the_platform_variables() {
    let server = Server::start();
    let dir = server.env.path("envy-src");
    probe_app(
        &dir,
        &format!("web: {ARGS}\nworker: {ARGS}\nrelease: {ARGS}\n"),
    );
    server.cli(&["apps:create", "envy"]).ok();
    server
        .cli(&["config:set", "-a", "envy", "GREETING=hi"])
        .ok();
    server
        .cli(&["deploy", "-a", "envy", dir.to_str().unwrap()])
        .ok();
    server.cli(&["ps:scale", "-a", "envy", "worker=1"]).ok();
    let releases = server
        .cli(&["releases", "-a", "envy", "--json"])
        .ok()
        .json();
    let version = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .max()
        .unwrap();
    let release = format!("v{version}");

    let text = wait_logs(
        &server,
        "envy",
        "the web, worker and release dynos' arguments",
        Duration::from_secs(30),
        |t| {
            ["web.1", "worker.1", &format!("release.{version}")]
                .iter()
                .all(|d| seen(t, d).iter().any(|(k, _)| k == "greeting"))
        },
    );
    // Web dynos get $PORT; workers and the release phase have none, so the default applies.
    for (dyno, port) in [
        ("web.1", "5000"),
        ("worker.1", "unset"),
        (&*format!("release.{version}"), "unset"),
    ] {
        assert_eq!(value(&text, dyno, "port"), port, "{dyno}");
        assert_eq!(value(&text, dyno, "dyno"), dyno);
        assert_eq!(value(&text, dyno, "rel"), release, "{dyno}");
        assert_eq!(value(&text, dyno, "home"), "/", "{dyno}");
        assert_eq!(value(&text, dyno, "greeting"), "hi", "{dyno}");
    }

    // A detached one-off dyno, from a command line with the platform's variables in it.
    let name = server
        .cli(&["run:detached", "-a", "envy", ARGS])
        .ok()
        .stdout
        .trim()
        .to_string();
    let text = wait_logs(
        &server,
        "envy",
        "the detached one-off's arguments",
        Duration::from_secs(30),
        |t| seen(t, &name).iter().any(|(k, _)| k == "greeting"),
    );
    assert_eq!(value(&text, &name, "dyno"), name);
    assert_eq!(value(&text, &name, "rel"), release);
    assert_eq!(value(&text, &name, "port"), "unset");
    assert_eq!(value(&text, &name, "greeting"), "hi");

    // An attached one.
    let out = server.cli(&["run", "-a", "envy", ARGS]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.contains(&format!("rel={release}").as_str()), "{out}");
    assert!(lines.contains(&"greeting=hi"), "{out}");
    assert!(lines.contains(&"port=unset"), "{out}");
    let dyno = lines
        .iter()
        .find_map(|l| l.strip_prefix("dyno="))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(dyno.starts_with("run."), "{out}");
}

#[test]
fn a_local_run_names_its_release_by_the_slugs_short_hash() {
    let env = TestEnv::new();
    let app = env.path("app");
    probe_app(&app, &format!("web: {ARGS}\n"));
    let slug = env.path("app.slug");
    let built = env
        .run(&[
            "build",
            app.to_str().unwrap(),
            "-o",
            slug.to_str().unwrap(),
            "--json",
        ])
        .ok()
        .json();
    let sha = built["sha256"].as_str().unwrap();
    let out = env
        .run(&[
            "run",
            "--slug",
            slug.to_str().unwrap(),
            "-e",
            "GREETING=yo",
            "web",
        ])
        .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.contains(&format!("rel={}", &sha[..7]).as_str()),
        "{out}"
    );
    assert!(lines.contains(&"greeting=yo"), "{out}");
    assert!(lines.contains(&"home=/"), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.strip_prefix("dyno=run.").is_some_and(|n| !n.is_empty())),
        "{out}"
    );
}
