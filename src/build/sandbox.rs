//! Where buildpack steps run. A buildpack runs the app's own code (cargo build scripts, proc macros, Go
//! generators), so a step never sees the platform's state: its environment holds only the buildpack contract's
//! variables and what toolchains need, its `HOME` and `TMPDIR` are its own, and under bubblewrap (`bwrap`, from
//! Debian's `bubblewrap`) the platform's home (API token, ledger, other apps' slugs, repos and build caches) and
//! the compiled-code cache are empty directories to it, while its build, cache and work directories stay
//! writable. The rest of the machine is as it is for any build on the host (toolchains install, crates
//! download), as on Heroku's build dynos.
//!
//! Why bubblewrap: it needs no daemon and no image, works as root and, where the kernel allows unprivileged user
//! namespaces, without root, and is one `apt-get install` on a fresh machine. Without it (`auto`), builds still
//! get the cleared environment, say that they run unsandboxed, and compiled code stays safe (cache entries are
//! signed with a key only the server reads).

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

/// A step to run: the program and its arguments, the directories it may write, and its private home and temp.
pub(crate) struct Step<'a> {
    pub program: &'a Path,
    pub args: &'a [&'a Path],
    pub writable: &'a [&'a Path],
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
                let mut cmd = Command::new(bwrap);
                cmd.args(["--bind", "/", "/", "--dev-bind", "/dev", "/dev"]);
                cmd.args(["--unshare-pid", "--proc", "/proc"]);
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
        for (name, value) in step.env {
            cmd.env(name, value);
        }
        let note = (bwrap.is_none() && self.mode == SandboxMode::Auto).then_some(
            "       (building without a sandbox: install bubblewrap to hide the platform's state from builds)",
        );
        Ok((cmd, note))
    }
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
