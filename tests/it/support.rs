//! Test helpers: a private `WASMDYNO_HOME` per test, the real binary, and guests built once per run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_wasmdyno");

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One compiled-code cache for the whole run, so each guest is compiled once.
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("code-cache")
}

/// A private wasmdyno home for one test.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub cache: PathBuf,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv {
            dir: tempfile::tempdir().unwrap(),
            cache: shared_cache(),
        }
    }

    /// A test env with its own, empty compiled-code cache.
    pub fn with_private_cache() -> TestEnv {
        let env = TestEnv::new();
        let cache = env.dir.path().join("code-cache");
        TestEnv { cache, ..env }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("WASMDYNO_HOME", self.home())
            .env("WASMDYNO_CACHE_DIR", &self.cache)
            .env_remove("WASMDYNO_BUILDPACK")
            .env_remove("WASMDYNO_SLUG_MAX_SIZE")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Out {
        Out::from(self.cmd(args).output().unwrap())
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Out {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Feed stdin from a thread: the child may fill its stdout pipe before it reads all of it.
        let mut pipe = child.stdin.take().unwrap();
        let input = stdin.to_vec();
        let feeder = std::thread::spawn(move || pipe.write_all(&input));
        let out = Out::from(child.wait_with_output().unwrap());
        feeder
            .join()
            .unwrap()
            .expect("the dyno reads all of its stdin");
        out
    }

    /// Files under the slug store.
    pub fn stored_slugs(&self) -> Vec<PathBuf> {
        list(&self.home().join("slugs"))
    }
}

pub fn list(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().unwrap().is_dir() {
                found.extend(list(&entry.path()));
            } else {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// A finished command's status and output.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Out {
    fn from(o: Output) -> Out {
        Out {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Out {
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, Some(0), "command failed:\n{self}");
        self
    }

    #[track_caller]
    pub fn fails(self) -> Out {
        assert_ne!(self.code, Some(0), "command should have failed:\n{self}");
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The probe guest (`tests/guests/probe.wat`) as an app directory with a Procfile.
pub fn probe_app(dir: &Path, procfile: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(repo().join("tests/guests/probe.wat"), dir.join("probe.wat")).unwrap();
    std::fs::write(dir.join("Procfile"), procfile).unwrap();
}

/// A slug of the probe guest, built once per test run through the wasm buildpack.
pub fn probe_slug() -> &'static Path {
    static SLUG: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &SLUG
        .get_or_init(|| {
            let env = TestEnv::new();
            let app = env.path("probe-app");
            probe_app(
                &app,
                "greet: probe.wat args from-procfile $GREETING\ncat: probe.wasm cat\n",
            );
            let slug = env.path("probe.slug");
            env.run(&["build", app.to_str().unwrap(), "-o", slug.to_str().unwrap()])
                .ok();
            (env.dir, slug)
        })
        .1
}
