//! `git push` deploys: the real `git` client against the real server on loopback, through `git:remote`'s remote
//! and credential helper. Every git command runs with a private HOME and no system config, and is bounded in time.

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::support::*;

/// The longest any git or CLI command here may take.
const TIMEOUT: Duration = Duration::from_secs(180);

/// A module that prints, sleeps two seconds (a `poll_oneoff` clock subscription), and prints again: a release
/// phase long enough to see its output arrive while it runs.
const SLEEPY_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "release phase started\n")
  (data (i32.const 320) "release phase done\n")
  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (call $print (i32.const 256) (i32.const 22))
    ;; one subscription at 1024: userdata 0, tag 0 (clock), clock id 1 (monotonic), 2 s, relative
    (i64.store (i32.const 1024) (i64.const 0))
    (i32.store8 (i32.const 1032) (i32.const 0))
    (i32.store (i32.const 1040) (i32.const 1))
    (i64.store (i32.const 1048) (i64.const 2000000000))
    (i64.store (i32.const 1056) (i64.const 0))
    (i32.store16 (i32.const 1064) (i32.const 0))
    (drop (call $poll (i32.const 1024) (i32.const 2048) (i32.const 1) (i32.const 16)))
    (call $print (i32.const 320) (i32.const 19))))
"#;

/// Runs `cmd` to completion, killing it (and failing the test) if it takes longer than [`TIMEOUT`].
fn bounded(mut cmd: Command) -> Out {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} took longer than {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    }
}

/// A git work tree with a private git environment.
struct Repo {
    dir: PathBuf,
    home: PathBuf,
}

impl Repo {
    fn init(env: &TestEnv, name: &str) -> Repo {
        let repo = Repo::at(env, name);
        std::fs::create_dir_all(&repo.dir).unwrap();
        repo.git(&["init", "-q", "-b", "main"]).ok();
        repo
    }

    /// A clone of `from` (a local one: its remotes are set up again with `git:remote`).
    fn clone(env: &TestEnv, from: &Repo, name: &str) -> Repo {
        let repo = Repo::at(env, name);
        let mut cmd = from.command("git");
        cmd.args(["clone", "-q"]).arg(&from.dir).arg(&repo.dir);
        bounded(cmd).ok();
        repo
    }

    fn at(env: &TestEnv, name: &str) -> Repo {
        let home = env.path("git-home");
        std::fs::create_dir_all(&home).unwrap();
        Repo {
            dir: env.path(name),
            home,
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.dir);
        self.git_env(&mut cmd);
        cmd
    }

    fn git_env(&self, cmd: &mut Command) {
        cmd.env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com");
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_CONFIG_GLOBAL",
            "http_proxy",
            "HTTP_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ] {
            cmd.env_remove(var);
        }
    }

    fn git(&self, args: &[&str]) -> Out {
        let mut cmd = self.command("git");
        cmd.args(args);
        bounded(cmd)
    }

    /// The wasmdyno CLI, run inside this work tree against `server`.
    fn wasmdyno(&self, server: &Server, args: &[&str]) -> Out {
        let mut cmd = server.env.cmd(args);
        cmd.current_dir(&self.dir);
        self.git_env(&mut cmd);
        bounded(cmd)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).unwrap();
    }

    /// Commits everything; returns the commit's id.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]).ok();
        self.git(&["commit", "-q", "-m", message]).ok();
        self.head()
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
            .ok()
            .stdout
            .trim()
            .to_string()
    }
}

/// The `wat-hello` sample app, greeting with `greeting`.
fn hello_app(repo: &Repo, greeting: &str) {
    let source =
        std::fs::read_to_string(repo_root().join("sample-apps/wat-hello/hello.wat")).unwrap();
    let original = "Hello from WebAssembly text on wasmdyno!\\n";
    assert!(source.contains(original));
    // Same length, so the sample's iovec length still fits.
    let replaced = format!("{greeting:<width$}\\n", width = original.len() - 2);
    repo.write("hello.wat", &source.replace(original, &replaced));
    repo.write("Procfile", "hello: hello.wat\n");
}

fn repo_root() -> &'static std::path::Path {
    crate::support::repo()
}

/// Where a branch of the app's repository on the server points.
fn server_branch(server: &Server, app: &str, branch: &str) -> Option<String> {
    let repo = server.env.home().join(format!("repos/{app}.git"));
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn releases(server: &Server, app: &str) -> Vec<serde_json::Value> {
    serde_json::from_value(server.cli(&["releases", "-a", app, "--json"]).ok().json()).unwrap()
}

/// The commit recorded in a release's slug.
fn slug_commit(server: &Server, release: &serde_json::Value) -> Option<String> {
    let sha = release["slug"].as_str().unwrap();
    let path = server.env.home().join(format!("slugs/{sha}.tar.gz"));
    let slug = wasmdyno::Slug::open(&path, wasmdyno::slug::Limits::default()).unwrap();
    slug.manifest().commit.clone()
}

fn short(sha: &str) -> &str {
    &sha[..7]
}

/// A server with an app and a repository whose `wasmdyno` remote points at it.
fn setup(app: &str) -> (Server, Repo) {
    setup_with(app, &[])
}

/// [`setup`] with extra environment variables for the server.
fn setup_with(app: &str, vars: &[(&str, &str)]) -> (Server, Repo) {
    let server = Server::start_in(TestEnv::new(), vars);
    server.cli(&["apps:create", app]).ok();
    let repo = Repo::init(&server.env, "src");
    let out = repo.wasmdyno(&server, &["git:remote", "-a", app]).ok();
    assert_eq!(
        out.stdout,
        format!("set git remote wasmdyno to {}/git/{app}.git\n", server.api),
        "{out}"
    );
    (server, repo)
}

#[test]
fn pushes_deploy_each_commit_and_a_force_push_deploys_the_new_one() {
    let (server, repo) = setup("pushed");
    let config = std::fs::read_to_string(repo.dir.join(".git/config")).unwrap();
    assert!(
        !config.contains(server.token().trim()),
        "the token is not written into .git/config:\n{config}"
    );
    assert!(config.contains("git-credential --home"), "{config}");

    hello_app(&repo, "first");
    let first = repo.commit("first");
    let out = repo.git(&["push", "wasmdyno", "main"]).ok();
    let port = server.router.rsplit(':').next().unwrap();
    for expected in [
        format!(
            "remote: -----> Building pushed from main ({})",
            short(&first)
        ),
        "remote: -----> WebAssembly app detected".to_string(),
        "remote: -----> Releasing".to_string(),
        "remote:        Released v2".to_string(),
        format!("remote:        http://pushed.localhost:{port}/ deployed to wasmdyno"),
    ] {
        assert!(out.stderr.contains(&expected), "{expected:?} in:\n{out}");
    }
    assert_eq!(
        server_branch(&server, "pushed", "main"),
        Some(first.clone())
    );

    hello_app(&repo, "second");
    let second = repo.commit("second");
    let out = repo.git(&["push", "wasmdyno", "main"]).ok();
    assert!(out.stderr.contains("Released v3"), "{out}");

    // A rewritten history, force-pushed, deploys the new commit.
    hello_app(&repo, "amended");
    repo.git(&["add", "-A"]).ok();
    repo.git(&["commit", "-q", "--amend", "-m", "amended"]).ok();
    let amended = repo.head();
    let out = repo.git(&["push", "wasmdyno", "main"]).fails();
    assert!(out.stderr.contains("rejected"), "{out}");
    let out = repo.git(&["push", "--force", "wasmdyno", "main"]).ok();
    assert!(out.stderr.contains("Released v4"), "{out}");
    assert_eq!(
        server_branch(&server, "pushed", "main"),
        Some(amended.clone())
    );

    // Nothing new: nothing built.
    let out = repo.git(&["push", "wasmdyno", "main"]).ok();
    assert!(out.stderr.contains("Everything up-to-date"), "{out}");

    let all = releases(&server, "pushed");
    assert_eq!(all.len(), 4);
    for (release, commit) in all[1..].iter().zip([&first, &second, &amended]) {
        assert_eq!(release["description"], format!("Deploy {}", short(commit)));
        assert_eq!(release["status"], "succeeded");
        assert_eq!(slug_commit(&server, release).as_ref(), Some(commit));
    }
    let listed = server.cli(&["releases", "-a", "pushed"]).ok();
    assert!(listed.stdout.contains("Current: v4"), "{listed}");
    assert!(
        listed
            .stdout
            .contains(&format!("Deploy {}", short(&amended))),
        "{listed}"
    );

    // Fetching works through the same remote and credentials.
    repo.git(&["fetch", "-q", "wasmdyno"]).ok();
    assert_eq!(
        repo.git(&["rev-parse", "wasmdyno/main"]).ok().stdout.trim(),
        amended
    );
    // Running git:remote again updates the remote in place.
    repo.wasmdyno(&server, &["git:remote", "-a", "pushed"]).ok();
    let remotes = repo.git(&["remote"]).ok();
    assert_eq!(remotes.stdout, "wasmdyno\n");
}

#[test]
fn a_failed_build_or_release_phase_rejects_the_push_and_keeps_the_branch() {
    let (server, repo) = setup("failing");
    hello_app(&repo, "good");
    let good = repo.commit("good");
    repo.git(&["push", "wasmdyno", "main"]).ok();

    repo.write("broken.wat", "(module (func $oops (i32.add)))\n");
    repo.commit("broken");
    let out = repo.git(&["push", "wasmdyno", "main"]).fails();
    for expected in [
        "remote: -----> Compiling WebAssembly text",
        "remote:  !     Build failed:",
        "Push rejected: main is unchanged",
        "pre-receive hook declined",
    ] {
        assert!(out.stderr.contains(expected), "{expected:?} in:\n{out}");
    }
    assert_eq!(
        server_branch(&server, "failing", "main"),
        Some(good.clone())
    );
    assert_eq!(releases(&server, "failing").len(), 2);

    // A release phase that fails: the release is recorded as failed, the current one stays.
    std::fs::remove_file(repo.dir.join("broken.wat")).unwrap();
    std::fs::copy(
        repo_root().join("tests/guests/probe.wat"),
        repo.dir.join("probe.wat"),
    )
    .unwrap();
    repo.write("Procfile", "hello: hello.wat\nrelease: probe.wasm exit 3\n");
    repo.commit("failing release phase");
    let out = repo.git(&["push", "wasmdyno", "main"]).fails();
    for expected in [
        "remote:  !     Release v3 failed: its release command did not succeed",
        "pre-receive hook declined",
    ] {
        assert!(out.stderr.contains(expected), "{expected:?} in:\n{out}");
    }
    assert_eq!(
        server_branch(&server, "failing", "main"),
        Some(good.clone())
    );
    let listed = server.cli(&["releases", "-a", "failing"]).ok();
    assert!(listed.stdout.contains("Current: v2"), "{listed}");
}

#[test]
fn only_main_and_master_deploy() {
    let (server, repo) = setup("branches");
    hello_app(&repo, "branchy");
    let commit = repo.commit("first");

    let out = repo.git(&["push", "wasmdyno", "main:feature"]).fails();
    assert!(
        out.stderr
            .contains("refusing to push refs/heads/feature: only pushes to main or master deploy"),
        "{out}"
    );
    assert!(
        out.stderr.contains("git push <remote> feature:main"),
        "{out}"
    );
    repo.git(&["tag", "v1"]).ok();
    let out = repo.git(&["push", "wasmdyno", "v1"]).fails();
    assert!(
        out.stderr.contains("refusing to push refs/tags/v1"),
        "{out}"
    );
    assert_eq!(server_branch(&server, "branches", "feature"), None);
    assert_eq!(releases(&server, "branches").len(), 1, "nothing was built");

    let out = repo.git(&["push", "wasmdyno", "main:master"]).ok();
    assert!(out.stderr.contains("Released v2"), "{out}");
    assert_eq!(server_branch(&server, "branches", "master"), Some(commit));
    let out = repo.git(&["push", "wasmdyno", ":master"]).fails();
    assert!(
        out.stderr.contains("refusing to delete refs/heads/master"),
        "{out}"
    );
    assert!(server_branch(&server, "branches", "master").is_some());

    // The repository goes with its app.
    let bare = server.env.home().join("repos/branches.git");
    assert!(bare.is_dir());
    server
        .cli(&["apps:destroy", "-a", "branches", "--confirm", "branches"])
        .ok();
    assert!(!bare.exists());
}

/// A raw request to the API listener; returns (status, the whole response).
fn raw_get(server: &Server, path: &str, authorization: Option<&str>) -> (u16, String) {
    let addr = server.api.strip_prefix("http://").unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    exchange(addr, request.as_bytes(), Duration::from_secs(30)).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

#[test]
fn a_wrong_token_is_refused() {
    let (server, repo) = setup("guarded");
    hello_app(&repo, "guarded");
    repo.commit("first");
    let addr = server.api.strip_prefix("http://").unwrap();
    let wrong = format!("http://wasmdyno:wrong-token@{addr}/git/guarded.git");
    let out = repo.git(&["push", &wrong, "main"]).fails();
    assert!(out.stderr.contains("Authentication failed"), "{out}");
    assert_eq!(server_branch(&server, "guarded", "main"), None);
    assert_eq!(releases(&server, "guarded").len(), 1);

    // Without credentials: a Basic challenge, so git asks its credential helper.
    let refs = "/git/guarded.git/info/refs?service=git-receive-pack";
    let (status, response) = raw_get(&server, refs, None);
    assert_eq!(status, 401, "{response}");
    assert!(
        response.contains("www-authenticate: Basic realm=\"wasmdyno\""),
        "{response}"
    );
    let (status, _) = raw_get(&server, refs, Some(&basic("anyone", "wrong")));
    assert_eq!(status, 401);
    let token = server.token();
    let (status, response) = raw_get(&server, refs, Some(&basic("anyone", token.trim())));
    assert_eq!(status, 200, "{response}");
    assert!(
        response.contains("application/x-git-receive-pack-advertisement"),
        "{response}"
    );
    let (status, response) = raw_get(
        &server,
        "/git/no-such-app.git/info/refs?service=git-receive-pack",
        Some(&basic("anyone", token.trim())),
    );
    assert_eq!(status, 404, "{response}");
    assert!(
        response.contains("no app named \"no-such-app\""),
        "{response}"
    );
    // The rest of the API still wants its Bearer token.
    let (status, _) = raw_get(&server, "/apps", Some(&basic("anyone", token.trim())));
    assert_eq!(status, 401);
    let (status, _) = raw_get(&server, "/apps", Some(&format!("Bearer {}", token.trim())));
    assert_eq!(status, 200);
}

#[test]
fn concurrent_pushes_deploy_one_commit_and_refuse_the_other() {
    let (server, first) = setup("racing");
    hello_app(&first, "base");
    first.commit("base");
    first.git(&["push", "wasmdyno", "main"]).ok();
    let second = Repo::clone(&server.env, &first, "src-2");
    second
        .wasmdyno(&server, &["git:remote", "-a", "racing"])
        .ok();

    hello_app(&first, "from the first");
    let a = first.commit("a");
    hello_app(&second, "from the second");
    let b = second.commit("b");

    let barrier = Arc::new(Barrier::new(2));
    let pushes: Vec<_> = [first, second]
        .into_iter()
        .map(|repo| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let out = repo.git(&["push", "wasmdyno", "main"]);
                (repo, out)
            })
        })
        .collect();
    let results: Vec<(Repo, Out)> = pushes.into_iter().map(|t| t.join().unwrap()).collect();
    let won: Vec<usize> = (0..2).filter(|&i| results[i].1.code == Some(0)).collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one push wins:\n{}\n{}",
        results[0].1,
        results[1].1
    );
    let (winner, loser) = (won[0], 1 - won[0]);
    let (winner_sha, loser_sha) = if winner == 0 { (&a, &b) } else { (&b, &a) };
    let lost = &results[loser].1;
    assert!(
        lost.stderr.contains("another push landed first")
            || lost.stderr.contains("fetch first")
            || lost.stderr.contains("non-fast-forward"),
        "{lost}"
    );
    // The ledger and the branch agree: one deploy, of the winner's commit.
    assert_eq!(
        server_branch(&server, "racing", "main"),
        Some(winner_sha.clone())
    );
    let all = releases(&server, "racing");
    assert_eq!(all.len(), 3, "{all:#?}");
    assert_eq!(
        all[2]["description"],
        format!("Deploy {}", short(winner_sha))
    );
    assert_eq!(slug_commit(&server, &all[2]).as_ref(), Some(winner_sha));

    // The loser can still force its commit through.
    let out = results[loser]
        .0
        .git(&["push", "--force", "wasmdyno", "main"])
        .ok();
    assert!(out.stderr.contains("Released v4"), "{out}");
    assert_eq!(
        server_branch(&server, "racing", "main"),
        Some(loser_sha.clone())
    );
}

#[test]
fn build_output_reaches_the_pusher_while_the_build_runs() {
    let (_server, repo) = setup("streamed");
    repo.write("sleepy.wat", SLEEPY_WAT);
    repo.write("Procfile", "release: sleepy.wasm\n");
    repo.commit("sleepy");

    let mut cmd = repo.command("git");
    cmd.args(["push", "wasmdyno", "main"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let start = Instant::now();
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stderr)
            .split(b'\n')
            .map(|line| {
                (
                    start.elapsed(),
                    String::from_utf8_lossy(&line.unwrap()).into_owned(),
                )
            })
            .collect::<Vec<_>>()
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("git push took longer than {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines = reader.join().unwrap();
    let transcript: Vec<String> = lines
        .iter()
        .map(|(at, line)| format!("{:>6}ms {line}", at.as_millis()))
        .collect();
    let transcript = transcript.join("\n");
    assert!(status.success(), "{transcript}");
    let when = |text: &str| {
        lines
            .iter()
            .find(|(_, line)| line.contains(text))
            .unwrap_or_else(|| panic!("{text:?} in:\n{transcript}"))
            .0
    };
    let (detected, started, done) = (
        when("remote: -----> WebAssembly app detected"),
        when("remote:        release phase started"),
        when("remote:        release phase done"),
    );
    assert!(
        done.saturating_sub(started) >= Duration::from_secs(1)
            && done.saturating_sub(detected) >= Duration::from_secs(1),
        "lines arrive as they are written:\n{transcript}"
    );
    assert!(when("Released v2") >= done, "{transcript}");
}

#[test]
fn git_remote_needs_a_repository_and_an_existing_app() {
    let server = Server::start();
    server.cli(&["apps:create", "remote-app"]).ok();
    let outside = Repo::at(&server.env, "not-a-repo");
    std::fs::create_dir_all(&outside.dir).unwrap();
    let out = outside
        .wasmdyno(&server, &["git:remote", "-a", "remote-app"])
        .fails();
    assert!(out.stderr.contains("not inside a git repository"), "{out}");
    assert!(out.stderr.contains("hint:"), "{out}");

    let repo = Repo::init(&server.env, "repo");
    let out = repo
        .wasmdyno(&server, &["git:remote", "-a", "nope-app"])
        .fails();
    assert!(out.stderr.contains("nope-app"), "{out}");
    assert_eq!(repo.git(&["remote"]).ok().stdout, "", "no remote was added");

    let out = repo
        .wasmdyno(
            &server,
            &["git:remote", "-a", "remote-app", "--remote", "prod"],
        )
        .ok();
    assert!(out.stdout.starts_with("set git remote prod to "), "{out}");
    let url = repo.git(&["remote", "get-url", "prod"]).ok();
    assert_eq!(
        url.stdout.trim(),
        format!("{}/git/remote-app.git", server.api)
    );
}

#[test]
fn builds_of_one_app_run_one_at_a_time() {
    let (server, repo) = setup("one-at-a-time");
    repo.write("sleepy.wat", SLEEPY_WAT);
    repo.write("Procfile", "release: sleepy.wasm\n");
    let pushed = repo.commit("sleepy");
    let push = std::thread::spawn(move || {
        let out = repo.git(&["push", "wasmdyno", "main"]);
        (repo, out)
    });
    // v2 exists (pending) while its two-second release phase runs, and its build holds the app's build lock.
    let deadline = Instant::now() + TIMEOUT;
    while releases(&server, "one-at-a-time").len() < 2 {
        assert!(Instant::now() < deadline, "the push never made a release");
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = server.env.path("deployed");
    let deployed = Repo::at(&server.env, "deployed");
    std::fs::create_dir_all(&dir).unwrap();
    hello_app(&deployed, "deployed");
    let out = server
        .cli(&["deploy", "-a", "one-at-a-time", dir.to_str().unwrap()])
        .ok();
    assert!(
        out.stderr
            .contains("-----> Waiting for another build of one-at-a-time to finish"),
        "{out}"
    );
    assert!(out.stderr.contains("Released v3"), "{out}");
    let (_, pushed_out) = push.join().unwrap();
    let pushed_out = pushed_out.ok();
    assert!(pushed_out.stderr.contains("Released v2"), "{pushed_out}");
    assert_eq!(
        server_branch(&server, "one-at-a-time", "main"),
        Some(pushed)
    );
    let all = releases(&server, "one-at-a-time");
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|r| r["status"] == "succeeded"), "{all:#?}");
}

#[test]
fn a_push_announces_the_app_under_the_servers_base_domain() {
    let (server, repo) = setup_with("based", &[("WASMDYNO_BASE_DOMAIN", "apps.test")]);
    hello_app(&repo, "based");
    repo.commit("first");
    let out = repo.git(&["push", "wasmdyno", "main"]).ok();
    let port = server.router.rsplit(':').next().unwrap();
    let expected = format!("remote:        http://based.apps.test:{port}/ deployed to wasmdyno");
    assert!(out.stderr.contains(&expected), "{expected:?} in:\n{out}");
}
