//! The dyno manager inside `wasmdyno serve`: formation, supervision with backoff, graceful stop, restarts,
//! and the log lines that tell the story. Timers are set in milliseconds through settings.

use std::time::{Duration, Instant};

use crate::support::*;

fn deploy(server: &Server, app: &str, procfile: &str) {
    let dir = server.env.path(&format!("{app}-src"));
    probe_app(&dir, procfile);
    server.cli(&["apps:create", app]).ok();
    server
        .cli(&["deploy", "-a", app, dir.to_str().unwrap()])
        .ok();
}

/// Waits until `check` holds on the app's logs (30 s at most).
fn wait_logs(server: &Server, app: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    crate::support::wait_logs(server, app, what, Duration::from_secs(30), check)
}

fn states(server: &Server, app: &str) -> Vec<(String, String)> {
    let json = server.cli(&["ps", "-a", app, "--json"]).ok().json();
    json.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn scaling_starts_and_gracefully_stops_workers() {
    let server = Server::start();
    deploy(&server, "workers", "worker: probe.wasm cat\n");
    assert!(
        states(&server, "workers").is_empty(),
        "no worker runs before scaling"
    );
    let out = server.cli(&["ps:scale", "-a", "workers", "worker=2"]).ok();
    assert!(
        out.stderr.contains("now running worker=2:standard-1x"),
        "{out}"
    );
    wait_until("both workers up", Duration::from_secs(30), || {
        states(&server, "workers")
            == [
                ("worker.1".to_string(), "up".to_string()),
                ("worker.2".to_string(), "up".to_string()),
            ]
    });
    let ps = server.cli(&["ps", "-a", "workers"]).ok();
    assert!(
        ps.stdout
            .starts_with("=== worker (standard-1x): probe.wasm cat (2)\nworker.1: up "),
        "{ps}"
    );
    let text = wait_logs(&server, "workers", "start lines", |t| {
        t.contains("wasmdyno[worker.2]: State changed from starting to up")
    });
    assert!(
        text.contains("wasmdyno[worker.1]: Starting process with command `probe.wasm cat`"),
        "{text}"
    );
    assert!(
        text.contains("app[api]: Scaled to worker@2:standard-1x"),
        "{text}"
    );

    // Scaling down tells the worker by closing its stdin; `cat` exits 0 at end of file.
    server.cli(&["ps:scale", "-a", "workers", "worker-1"]).ok();
    let text = wait_logs(&server, "workers", "the stop", |t| {
        t.contains("wasmdyno[worker.2]: State changed from up to down")
    });
    assert!(
        text.contains("wasmdyno[worker.2]: Stopping process"),
        "{text}"
    );
    assert!(
        text.contains("wasmdyno[worker.2]: Process exited with status 0"),
        "{text}"
    );
    assert_eq!(
        states(&server, "workers"),
        [("worker.1".into(), "up".into())]
    );

    let out = server.cli(&["ps:scale", "-a", "workers", "web=1"]).fails();
    assert!(out.stderr.contains("no process type \"web\""), "{out}");
}

#[test]
fn a_crashing_dyno_is_restarted_with_exponential_backoff() {
    let env = TestEnv::new();
    let server = Server::start_in(
        env,
        &[
            ("WASMDYNO_BACKOFF_BASE_MS", "100"),
            ("WASMDYNO_BACKOFF_CAP_MS", "400"),
        ],
    );
    deploy(&server, "crashy", "worker: probe.wasm exit 3\n");
    server.cli(&["ps:scale", "-a", "crashy", "worker=1"]).ok();
    let text = wait_logs(&server, "crashy", "six crashes", |t| {
        t.matches("Process exited with status 3").count() >= 6
    });
    assert!(text.contains("State changed from up to crashed"), "{text}");
    // Restart n+1 comes at least backoff(n) after crash n: 0, 100, 200, 400, 400 ms.
    let starts: Vec<chrono_free::Micros> = text
        .lines()
        .filter(|l| l.contains("wasmdyno[worker.1]: Starting process"))
        .map(chrono_free::parse)
        .collect();
    let gaps: Vec<i64> = starts.windows(2).map(|w| (w[1] - w[0]) / 1000).collect();
    for (gap, at_least) in gaps.iter().zip([0, 100, 200, 400, 400]) {
        assert!(*gap >= at_least, "gaps between restarts {gaps:?} (ms)");
    }
    assert!(
        gaps[4] < 4000,
        "the backoff stops growing at its cap: {gaps:?}"
    );
}

#[test]
fn a_dyno_that_ignores_the_stop_is_interrupted_with_r12() {
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_STOP_TIMEOUT_MS", "200")]);
    deploy(&server, "stubborn", "worker: probe.wasm spin\n");
    server.cli(&["ps:scale", "-a", "stubborn", "worker=1"]).ok();
    wait_logs(&server, "stubborn", "the start", |t| {
        t.contains("State changed from starting to up")
    });
    server.cli(&["ps:scale", "-a", "stubborn", "worker=0"]).ok();
    let text = wait_logs(&server, "stubborn", "R12", |t| {
        t.contains("State changed from up to down")
    });
    assert!(text.contains("Error R12 (Exit timeout)"), "{text}");
    // The platform is still answering.
    server.cli(&["apps"]).ok();
}

#[test]
fn the_size_sets_the_memory_quota() {
    let server = Server::start();
    deploy(&server, "sized", "worker: probe.wasm grow\n");
    server
        .cli(&["ps:scale", "-a", "sized", "worker=1:eco"])
        .ok();
    let text = wait_logs(&server, "sized", "an exit", |t| {
        t.contains("Process exited with status")
    });
    let eco = exit_status(&text);
    assert!(
        text.contains("wasmdyno[worker.1]: Error R14 (Memory quota exceeded) -> growing memory by 16 MiB would pass the dyno's 512 MiB"),
        "{text}"
    );
    server
        .cli(&["ps:scale", "-a", "sized", "worker=1:performance-m"])
        .ok();
    let text = wait_logs(&server, "sized", "an exit at the new size", |t| {
        t.lines()
            .any(|l| l.contains("Process exited with status") && exit_status(l) != eco)
    });
    let big = text
        .lines()
        .filter(|l| l.contains("Process exited with status"))
        .map(exit_status)
        .max()
        .unwrap();
    // 16 MiB steps: eco has 512 MiB for memory and files, performance-m 2.5 GiB.
    assert!((28..32).contains(&eco), "eco grew {eco} steps");
    assert!((150..160).contains(&big), "performance-m grew {big} steps");
}

fn exit_status(text: &str) -> i64 {
    let line = text
        .lines()
        .find(|l| l.contains("Process exited with status"))
        .unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn the_formation_comes_back_after_a_server_restart_and_restarts_replace_dynos() {
    let server = Server::start();
    deploy(&server, "phoenix", "worker: probe.wasm cat\n");
    server.cli(&["ps:scale", "-a", "phoenix", "worker=1"]).ok();
    let env = server.stop();
    let server = Server::start_in(env, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while states(&server, "phoenix") != [("worker.1".to_string(), "up".to_string())] {
        assert!(Instant::now() < deadline, "worker.1 did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
        .cli(&["ps:restart", "-a", "phoenix", "worker.1"])
        .ok();
    let text = wait_logs(&server, "phoenix", "the restart", |t| {
        t.matches("Starting process").count() >= 2
    });
    assert!(text.contains("Stopping process"), "{text}");
    server
        .cli(&["ps:restart", "-a", "phoenix", "web.9"])
        .fails();
}

#[test]
fn logs_filter_by_dyno_type_and_source() {
    let server = Server::start();
    deploy(
        &server,
        "chatty",
        "worker: probe.wasm stderr hello-from-the-worker\nrelease: probe.wasm args migrating\n",
    );
    server.cli(&["ps:scale", "-a", "chatty", "worker=1"]).ok();
    wait_logs(&server, "chatty", "the worker's line", |t| {
        t.contains("app[worker.1]: hello-from-the-worker")
    });
    let app_only = server
        .cli(&["logs", "-a", "chatty", "-s", "app", "-p", "worker"])
        .ok()
        .stdout;
    assert!(
        app_only.lines().all(|l| l.contains(" app[worker.1]: ")),
        "{app_only}"
    );
    let release = server
        .cli(&["logs", "-a", "chatty", "-d", "release.2"])
        .ok()
        .stdout;
    assert!(release.contains("app[release.2]: migrating"), "{release}");
    let api = server
        .cli(&["logs", "-a", "chatty", "-p", "api"])
        .ok()
        .stdout;
    assert!(api.contains("app[api]: Release v2 created"), "{api}");
    let two = server.cli(&["logs", "-a", "chatty", "-n", "2"]).ok().stdout;
    assert_eq!(two.lines().count(), 2, "{two}");
    // Each line: RFC 3339 timestamp with microseconds, source[dyno]: text.
    let first = two.lines().next().unwrap();
    assert_eq!(first.as_bytes()[26], b'+', "{first}");
}

/// Log timestamps (`2026-11-23T12:00:00.123456+00:00`) as microseconds since midnight, enough to compare
/// lines of one test.
mod chrono_free {
    pub type Micros = i64;

    pub fn parse(line: &str) -> Micros {
        let time = &line[11..26];
        let h: i64 = time[0..2].parse().unwrap();
        let m: i64 = time[3..5].parse().unwrap();
        let s: i64 = time[6..8].parse().unwrap();
        let us: i64 = time[9..15].parse().unwrap();
        ((h * 60 + m) * 60 + s) * 1_000_000 + us
    }
}

#[test]
fn logs_tail_follows_new_lines_and_ends_with_the_server() {
    use std::io::BufRead;
    let server = Server::start();
    server.cli(&["apps:create", "tailed"]).ok();
    let mut tail = server
        .env
        .cmd(&["logs", "-a", "tailed", "--tail", "-n", "10"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(tail.stdout.take().unwrap()).lines();
    // History first (the app's creation made v1 silently), then the new line.
    server.cli(&["config:set", "-a", "tailed", "A=1"]).ok();
    let seen = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.ends_with("app[api]: Set A config var"));
    assert!(seen.is_some(), "the tail saw the change");
    // Stopping the server ends the stream, and the tail with it.
    drop(server);
    let status = tail.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn run_detached_sends_a_one_off_dynos_output_to_the_logs() {
    let server = Server::start();
    deploy(&server, "oneoff", "greet: probe.wasm args hello $WHO\n");
    let out = server
        .cli(&[
            "run:detached",
            "-a",
            "oneoff",
            "-e",
            "WHO=world",
            "greet",
            "extra arg",
        ])
        .ok();
    let name = out.stdout.trim().to_string();
    assert!(name.starts_with("run."), "{out}");
    assert!(out.stderr.contains("up, run."), "{out}");
    let text = wait_logs(&server, "oneoff", "the one-off's exit", |t| {
        t.contains(&format!("wasmdyno[{name}]: Process exited with status 0"))
    });
    assert!(text.contains(&format!("app[{name}]: hello")), "{text}");
    assert!(text.contains(&format!("app[{name}]: world")), "{text}");
    assert!(
        text.contains(&format!("app[{name}]: extra arg")),
        "arguments keep their words: {text}"
    );
    // One-off dynos are never restarted and leave `ps` when they end.
    std::thread::sleep(Duration::from_millis(200));
    let all = logs(&server, "oneoff");
    let starts = format!("wasmdyno[{name}]: Starting process");
    assert_eq!(all.matches(&starts).count(), 1, "{all}");
    assert!(states(&server, "oneoff").is_empty());
    // A module path works too, with its literal arguments; a missing module says so.
    let name = server
        .cli(&["run:detached", "-a", "oneoff", "probe.wasm", "exit", "7"])
        .ok()
        .stdout;
    let name = name.trim();
    wait_logs(&server, "oneoff", "status 7", |t| {
        t.contains(&format!("wasmdyno[{name}]: Process exited with status 7"))
    });
    let out = server
        .cli(&["run:detached", "-a", "oneoff", "nope.wasm"])
        .ok()
        .stdout;
    let name = out.trim();
    wait_logs(&server, "oneoff", "the R99 line", |t| {
        t.contains(&format!("wasmdyno[{name}]: Error R99"))
    });
}

#[test]
fn a_flooding_dyno_never_waits_on_a_stalled_reader() {
    use std::io::BufRead;
    let server = Server::start();
    deploy(&server, "flood", "worker: probe.wasm cat\n");
    // A tail nobody reads: once its pipe is full it stops reading, and the server's session fills up.
    let mut stalled = server
        .env
        .cmd(&["logs", "-a", "flood", "--tail", "-n", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let name = server
        .cli(&[
            "run:detached",
            "-a",
            "flood",
            "probe.wasm",
            "flood",
            "300000",
        ])
        .ok()
        .stdout;
    let name = name.trim().to_string();
    wait_logs(&server, "flood", "the flood to finish", |t| {
        t.contains(&format!("wasmdyno[{name}]: Process exited with status 0"))
    });
    let peak = peak_rss_kib(server.child.id());
    assert!(
        peak < 512 * 1024,
        "the server's memory stays bounded: peak {peak} KiB"
    );

    // The stalled reader, read at last, is told what it missed.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = stalled.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("Error L10 (output buffer overflow)") {
                let _ = tx.send(line);
                break;
            }
        }
    });
    let l10 = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("an L10 line");
    assert!(
        l10.contains("wasmdyno[logplex]: Error L10 (output buffer overflow): "),
        "{l10}"
    );
    let _ = stalled.kill();
    let _ = stalled.wait();
}

/// `wasmdyno run -a APP ...` with `stdin`, its raw stdout and stderr, and its exit code.
fn run_attached(server: &Server, args: &[&str], stdin: &[u8]) -> (Vec<u8>, String, Option<i32>) {
    use std::io::Write;
    let mut child = server
        .env
        .cmd(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let feeder = std::thread::spawn(move || pipe.write_all(&input));
    let out = child.wait_with_output().unwrap();
    let _ = feeder.join().unwrap();
    (
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn attached_run_passes_binary_stdin_stdout_and_the_exit_status() {
    let server = Server::start();
    deploy(&server, "attach", "cat: probe.wasm cat\n");
    server
        .cli(&["config:set", "-a", "attach", "FROM_CONFIG=yes"])
        .ok();

    // Every byte value, 1 MiB of them: more than any buffer on the way, so flow control is exercised.
    let input: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let (stdout, stderr, code) = run_attached(&server, &["run", "-a", "attach", "cat"], &input);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout == input,
        "stdout differs from stdin ({} bytes back)",
        stdout.len()
    );
    assert!(stderr.contains("on ⬢ attach... up, run."), "{stderr}");

    let (_, stderr, code) = run_attached(
        &server,
        &["run", "-a", "attach", "probe.wasm", "exit", "42"],
        b"",
    );
    assert_eq!(code, Some(42), "{stderr}");
    let (stdout, stderr, code) = run_attached(
        &server,
        &["run", "-a", "attach", "probe.wasm", "stderr", "to stderr"],
        b"",
    );
    assert_eq!((code, stdout.as_slice()), (Some(0), &b""[..]), "{stderr}");
    assert!(stderr.contains("to stderr\n"), "{stderr}");
    let (_, stderr, code) =
        run_attached(&server, &["run", "-a", "attach", "probe.wasm", "trap"], b"");
    assert_eq!(code, Some(134), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");

    // The app's config vars, then -e; the platform's own variables.
    let (stdout, stderr, code) = run_attached(
        &server,
        &[
            "run",
            "-a",
            "attach",
            "-e",
            "ONLY_HERE=1",
            "probe.wasm",
            "env",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{stderr}");
    let env = String::from_utf8(stdout).unwrap();
    for want in ["FROM_CONFIG=yes", "ONLY_HERE=1", "DYNO=run."] {
        assert!(env.contains(want), "{want} missing from {env}");
    }

    // Attached dynos' state lines are in the stream; their output is not.
    let text = logs(&server, "attach");
    assert!(text.contains("attached"), "{text}");
    assert!(!text.contains("app[run."), "{text}");

    // Mistakes are told, not run.
    let (_, stderr, code) = run_attached(&server, &["run", "-a", "nope", "cat"], b"");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("nope"), "{stderr}");
    let (_, stderr, code) = run_attached(
        &server,
        &["run", "-a", "attach", "--slug", "x.slug", "cat"],
        b"",
    );
    assert_eq!(code, Some(2), "-a with --slug is refused: {stderr}");
    assert!(states(&server, "attach").is_empty(), "one-offs are gone");
}

#[test]
fn ctrl_c_and_idleness_stop_an_attached_dyno() {
    let server = Server::start_in(
        TestEnv::new(),
        &[
            ("WASMDYNO_STOP_TIMEOUT_MS", "200"),
            ("WASMDYNO_ATTACH_IDLE_MS", "400"),
        ],
    );
    deploy(&server, "stopme", "cat: probe.wasm cat\n");

    // A spinning dyno ignores the stop; after the stop timeout it is interrupted (137, R12).
    let mut child = server
        .env
        .cmd(&["run", "-a", "stopme", "probe.wasm", "spin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the CLI says the dyno is up, Ctrl-C is its to handle.
    let mut stderr_pipe = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr_pipe, &mut first).unwrap();
    assert!(first.contains("up, run."), "{first}");
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr_pipe, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = format!("{first}{rest}");
    assert_eq!(out.status.code(), Some(137), "{stderr}");
    assert!(stderr.contains("Stopping run."), "{stderr}");
    wait_logs(&server, "stopme", "R12 for the one-off", |t| {
        t.contains("Error R12")
    });

    // A dyno waiting on input nobody sends is stopped when idle: its stdin ends, and cat exits 0.
    let mut child = server
        .env
        .cmd(&["run", "-a", "stopme", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let held = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    drop(held);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs = logs(&server, "stopme");
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{logs}");
    assert!(
        stderr.contains("had no input or output"),
        "{stderr}\n{logs}"
    );
}
