//! Where buildpack steps run. A buildpack runs the app's own code (cargo build scripts, proc macros, Go
//! generators), so a step never sees the platform's state: its environment holds only the buildpack contract's
//! variables and what toolchains need, and its `HOME` and `TMPDIR` are its own. Under bubblewrap (`bwrap`, from
//! Debian's `bubblewrap`) the rest of the machine is read-only to it and `/tmp` is private (no build sees another's
//! work directory, where its config vars are): only its build, cache
//! and work directories (and its home and temp) are writable, the platform's home (API token, ledger, other apps'
//! slugs, repos and build caches) and the compiled-code cache are empty directories, and Cargo keeps its
//! downloads in the app's own build cache (`CARGO_HOME`), so no build can change another app's crates or the
//! toolchains every build uses. The wasm targets the Rust buildpack needs are added by the platform, outside the
//! sandbox, before the first sandboxed build. Network is as on any host (crates download), as on Heroku's build
//! dynos.
//!
//! Why bubblewrap: it needs no daemon and no image, works as root and, where the kernel allows unprivileged user
//! namespaces, without root, and is one `apt-get install` on a fresh machine. Without it (`auto` on a machine
//! without a working bwrap, or `off`), builds still get the cleared environment and a private home, but they run
//! as the server's user with its file access: an app's build can then read the API token and the key that signs
//! compiled-code cache entries. `serve` warns at start, every such build says so, and
//! `WASMDYNO_BUILD_SANDBOX=bwrap` refuses to build without the sandbox.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// How builds are isolated (`WASMDYNO_BUILD_SANDBOX`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SandboxMode {
    /// Bubblewrap when it works here, else unsandboxed with a note in the build output.
    #[default]
    Auto,
    /// Bubblewrap, or the build fails.
    Bwrap,
    /// No sandbox (the environment is still cleared).
    Off,
}

impl std::str::FromStr for SandboxMode {
    type Err = String;
    fn from_str(s: &str) -> Result<SandboxMode, String> {
        match s.trim() {
            "" | "auto" => Ok(SandboxMode::Auto),
            "bwrap" | "on" => Ok(SandboxMode::Bwrap),
            "off" => Ok(SandboxMode::Off),
            other => Err(format!(
                "WASMDYNO_BUILD_SANDBOX={other:?}: use auto, bwrap or off"
            )),
        }
    }
}

/// A build's isolation: what it must not see, and how.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    pub mode: SandboxMode,
    /// Directories hidden from the build (the platform's home, the compiled-code cache).
    pub hidden: Vec<PathBuf>,
}

/// Environment variables a step inherits from the platform: what finds and runs toolchains, and the proxy
/// settings of the machine's network. Everything else (the server's own settings among them) stays out.
const INHERITED: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "CARGO_HOME",
    "WASMDYNO_RUST_TOOLCHAIN",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "npm_config_registry",
];

/// What a build without the sandbox says, in its output and when `serve` starts.
pub const UNSANDBOXED: &str = "       (building WITHOUT a sandbox: bubblewrap does not work here, so this build runs with \
     the server's file access and could read its API token; install bubblewrap, or set \
     WASMDYNO_BUILD_SANDBOX=bwrap to refuse such builds)";

/// The targets the Rust buildpack builds for, added to rustup's default toolchain by the platform: in the sandbox,
/// rustup's home is read-only.
const RUST_TARGETS: [&str; 2] = ["wasm32-wasip1", "wasm32-wasip2"];

/// A step to run: the program and its arguments, the directories it may write (among them the app's build
/// `cache`), and its private home and temp.
pub(crate) struct Step<'a> {
    pub program: &'a Path,
    pub args: &'a [&'a Path],
    pub writable: &'a [&'a Path],
    pub cache: &'a Path,
    pub home: &'a Path,
    pub tmp: &'a Path,
    pub env: &'a [(&'a str, OsString)],
}

impl Sandbox {
    /// The command that runs `step`, and a note for the build output when the build runs unsandboxed in `auto`.
    pub(crate) fn command(
        &self,
        step: &Step<'_>,
    ) -> Result<(Command, Option<&'static str>), String> {
        let bwrap = match self.mode {
            SandboxMode::Off => None,
            SandboxMode::Auto => working_bwrap(),
            SandboxMode::Bwrap => Some(working_bwrap().ok_or(
                "WASMDYNO_BUILD_SANDBOX=bwrap, but bubblewrap does not work here: install it (apt-get install \
                 bubblewrap) or set WASMDYNO_BUILD_SANDBOX=auto",
            )?),
        };
        let mut cmd = match bwrap {
            Some(bwrap) => {
                add_rust_targets();
                let mut cmd = Command::new(bwrap);
                cmd.args(["--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev"]);
                cmd.args(["--unshare-pid", "--proc", "/proc", "--tmpfs", "/tmp"]);
                cmd.args(["--die-with-parent", "--new-session"]);
                // A hidden directory that does not exist yet is made (the owner's alone), so that a build cannot
                // make it first and plant files for the platform to find.
                let hidden: Vec<PathBuf> = self
                    .hidden
                    .iter()
                    .filter_map(|p| {
                        use std::os::unix::fs::DirBuilderExt;
                        let _ = std::fs::DirBuilder::new()
                            .recursive(true)
                            .mode(0o700)
                            .create(p);
                        p.canonicalize().ok()
                    })
                    .filter(|p| p != Path::new("/"))
                    .collect();
                for dir in &hidden {
                    cmd.arg("--tmpfs").arg(dir);
                }
                for dir in step.writable.iter().chain([&step.home, &step.tmp]) {
                    let dir = dir
                        .canonicalize()
                        .map_err(|e| format!("{}: {e}", dir.display()))?;
                    cmd.arg("--bind").arg(&dir).arg(&dir);
                }
                // Hidden and read-only: a write there fails rather than vanish into the empty stand-in.
                for dir in &hidden {
                    cmd.arg("--remount-ro").arg(dir);
                }
                cmd.arg("--chdir").arg(step.args[0]);
                cmd.arg("--").arg(step.program);
                cmd
            }
            None => Command::new(step.program),
        };
        cmd.args(step.args)
            .current_dir(step.args[0])
            .stdin(Stdio::null())
            .env_clear();
        for name in INHERITED {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        // Toolchains installed in the platform user's home are found there, whatever HOME the step has.
        if let Some(user_home) = std::env::var_os("HOME").map(PathBuf::from) {
            for (var, dir) in [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")] {
                if std::env::var_os(var).is_none() && user_home.join(dir).is_dir() {
                    cmd.env(var, user_home.join(dir));
                }
            }
        }
        cmd.env("HOME", step.home).env("TMPDIR", step.tmp);
        if bwrap.is_some() {
            // The machine's Cargo home is read-only in the sandbox: downloads go to the app's own cache.
            cmd.env("CARGO_HOME", step.cache.join("cargo-home"));
            if let (Some(python), Some(path)) = (unshimmed_python(), std::env::var_os("PATH")) {
                let dirs =
                    std::iter::once(python.to_path_buf()).chain(std::env::split_paths(&path));
                if let Ok(path) = std::env::join_paths(dirs) {
                    cmd.env("PATH", path);
                }
            }
        }
        for (name, value) in step.env {
            cmd.env(name, value);
        }
        let note = (bwrap.is_none() && self.mode == SandboxMode::Auto).then_some(UNSANDBOXED);
        Ok((cmd, note))
    }
}

/// Adds the Rust buildpack's wasm targets with rustup (when there is one), once per process, before builds run
/// where rustup's home is read-only. A failure (offline) is left to the buildpack, which says what to do.
fn add_rust_targets() {
    static ADDED: OnceLock<()> = OnceLock::new();
    ADDED.get_or_init(|| {
        let Ok(listed) = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .stdin(Stdio::null())
            .output()
        else {
            return;
        };
        let installed = String::from_utf8_lossy(&listed.stdout);
        let missing: Vec<&str> = RUST_TARGETS
            .into_iter()
            .filter(|t| !installed.lines().any(|line| line.trim() == *t))
            .collect();
        if listed.status.success() && !missing.is_empty() {
            let _ = Command::new("rustup")
                .args(["target", "add"])
                .args(&missing)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    });
}

/// The directory of the interpreter that a version manager's `python3` shim runs (pyenv's, in
/// `~/.pyenv/shims`), found once: a sandboxed step finds it first on its `PATH`, because the shim writes into its own
/// directory after `pip install` (pyenv rehashes), and that directory is read-only in the sandbox.
fn unshimmed_python() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let path = std::env::var_os("PATH")?;
        let python = std::env::split_paths(&path)
            .map(|dir| dir.join("python3"))
            .find(|p| p.is_file())?;
        if python.parent()?.file_name()? != "shims" {
            return None;
        }
        let out = Command::new(&python)
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let exe = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
        Some(exe.parent()?.to_path_buf()).filter(|dir| dir.is_dir())
    })
    .as_deref()
}

/// Whether builds in `mode` run in the sandbox here.
pub fn sandboxed(mode: SandboxMode) -> bool {
    mode != SandboxMode::Off && working_bwrap().is_some()
}

/// `bwrap`, when it is installed and can make the namespaces a build needs (checked once).
fn working_bwrap() -> Option<&'static Path> {
    static BWRAP: OnceLock<Option<PathBuf>> = OnceLock::new();
    BWRAP
        .get_or_init(|| {
            let path = std::env::var_os("PATH")?;
            let bwrap = std::env::split_paths(&path)
                .chain([PathBuf::from("/usr/bin")])
                .map(|dir| dir.join("bwrap"))
                .find(|p| p.is_file())?;
            let works = Command::new(&bwrap)
                .args([
                    "--bind",
                    "/",
                    "/",
                    "--unshare-pid",
                    "--proc",
                    "/proc",
                    "true",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            works.then_some(bwrap)
        })
        .as_deref()
}
