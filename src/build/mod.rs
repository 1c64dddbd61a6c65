//! The buildpack runner: source directory → slug, with Heroku's buildpack contract.
//!
//! 1. The source is copied into a fresh build directory (without `.git` and what `.slugignore` names).
//! 2. Buildpacks are asked in order (`bin/detect BUILD_DIR`); the first to exit 0 builds the app, or the one the
//!    user named does.
//! 3. `bin/compile BUILD_DIR CACHE_DIR ENV_DIR` builds in place; the cache directory persists between builds of
//!    the same app, and `ENV_DIR` holds one file per config var.
//! 4. `bin/release BUILD_DIR` prints YAML with `default_process_types` and `config_vars`; the app's Procfile
//!    overrides the defaults type by type.
//! 5. The build directory is packed into a slug. Any failure stops the build and leaves no slug.
//!
//! Every line a buildpack prints is passed to the caller as it arrives, so a terminal or an HTTP response can
//! stream it.

pub mod app_json;
mod buildpacks;
mod pipeline;
mod sandbox;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::procfile::{Procfile, ProcfileError};
use crate::slug::{self, PackOptions, Packed, SlugError};

pub use buildpacks::BUILTIN_NAMES;
pub use pipeline::{Built, build_and_store};
pub use sandbox::{Sandbox, SandboxMode, UNSANDBOXED, sandboxed};

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("source directory {0} does not exist or is not a directory")]
    NoSource(PathBuf),
    #[error(
        "no buildpack recognised this app: add .wasm/.wat files and a Procfile, a Cargo.toml, or a go.mod, or name a buildpack with --buildpack"
    )]
    NoBuildpackDetected,
    #[error(
        "buildpack {0:?} is neither a built-in buildpack ({names}) nor a directory with bin/detect, bin/compile and bin/release",
        names = BUILTIN_NAMES.join(", ")
    )]
    UnknownBuildpack(String),
    #[error("buildpack {buildpack} does not apply to this app: bin/detect exited with {status}")]
    NotDetected { buildpack: String, status: String },
    #[error("buildpack {buildpack}: bin/{step} failed ({status}); its output is above")]
    StepFailed {
        buildpack: String,
        step: &'static str,
        status: String,
    },
    #[error("buildpack {buildpack}: cannot run bin/{step}: {source}")]
    Spawn {
        buildpack: String,
        step: &'static str,
        source: std::io::Error,
    },
    #[error("buildpack {buildpack}: bin/release printed invalid YAML: {reason}")]
    ReleaseYaml { buildpack: String, reason: String },
    #[error(transparent)]
    Procfile(#[from] ProcfileError),
    #[error(
        "process type {process_type:?} runs {module:?}, which the build did not produce{}",
        if available.is_empty() { String::new() } else { format!(" (modules: {})", available.join(", ")) }
    )]
    MissingModule {
        process_type: String,
        module: String,
        available: Vec<String>,
    },
    #[error("bad .slugignore: {0}")]
    SlugIgnore(String),
    #[error(transparent)]
    Slug(#[from] SlugError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let context = context.into();
    move |source| BuildError::Io { context, source }
}

/// What to build and how.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BuildRequest {
    pub source: PathBuf,
    /// A built-in buildpack name or a path to a buildpack directory; `None` detects.
    pub buildpack: Option<String>,
    /// Config vars handed to the buildpack through `ENV_DIR`.
    pub env: BTreeMap<String, String>,
    /// The app's build cache, kept between builds.
    pub cache_dir: PathBuf,
    /// Where temporary build directories go (the system's temp dir when `None`).
    pub work_dir: Option<PathBuf>,
    /// The source commit, recorded in the slug.
    pub commit: Option<String>,
    /// The `wasmdyno` executable buildpacks may call for helpers (`$WASMDYNO_BIN`).
    pub wasmdyno_bin: Option<PathBuf>,
    /// What the build's steps may see of the machine.
    pub sandbox: Sandbox,
}

impl BuildRequest {
    pub fn new(source: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        BuildRequest {
            source: source.into(),
            cache_dir: cache_dir.into(),
            ..Default::default()
        }
    }
}

/// A finished build.
#[derive(Debug)]
pub struct Build {
    pub slug: Packed,
}

struct Buildpack {
    /// How the user would name it: `rust` or a path.
    label: String,
    dir: PathBuf,
}

/// Runs a build, passing every output line to `out` as it is produced.
pub fn build(req: &BuildRequest, out: &mut dyn FnMut(&str)) -> Result<Build, BuildError> {
    if !req.source.is_dir() {
        return Err(BuildError::NoSource(req.source.clone()));
    }
    let work = match &req.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
            tempfile::Builder::new().prefix("build-").tempdir_in(dir)
        }
        None => tempfile::Builder::new().prefix("wasmdyno-build-").tempdir(),
    }
    .map_err(io("cannot create a build directory"))?;
    let build_dir = work.path().join("app");
    let env_dir = work.path().join("env");
    // The steps' own HOME and TMPDIR, gone with the build.
    for dir in ["home", "tmp"] {
        std::fs::create_dir_all(work.path().join(dir))
            .map_err(io("cannot create a build directory"))?;
    }
    std::fs::create_dir_all(&req.cache_dir).map_err(io(format!(
        "cannot create build cache {}",
        req.cache_dir.display()
    )))?;

    copy_source(&req.source, &build_dir)?;
    write_env_dir(&env_dir, &req.env)?;
    // Fail fast on a bad Procfile, before minutes of compiling.
    let procfile_path = build_dir.join("Procfile");
    if procfile_path.is_file() {
        read_procfile(&procfile_path)?;
    }

    let candidates = match &req.buildpack {
        Some(name) => vec![buildpacks::resolve(name, work.path())?],
        None => buildpacks::materialize_all(work.path())?,
    };
    let mut ctx = StepContext {
        req,
        out,
        work: work.path(),
        noted: false,
    };
    let mut chosen = None;
    for bp in candidates {
        let (status, output) = ctx.capture(&bp, "detect", &[&build_dir])?;
        if status.success() {
            let name = output.lines().next().unwrap_or("").trim().to_string();
            let name = if name.is_empty() {
                bp.label.clone()
            } else {
                name
            };
            chosen = Some((bp, name));
            break;
        }
        if req.buildpack.is_some() {
            for line in output.lines() {
                (ctx.out)(line);
            }
            return Err(BuildError::NotDetected {
                buildpack: bp.label,
                status: describe(status),
            });
        }
    }
    let (bp, name) = chosen.ok_or(BuildError::NoBuildpackDetected)?;
    (ctx.out)(&format!("-----> {name} app detected"));

    ctx.stream(&bp, "compile", &[&build_dir, &req.cache_dir, &env_dir])?;

    let (status, yaml) = ctx.capture(&bp, "release", &[&build_dir])?;
    if !status.success() {
        for line in yaml.lines() {
            (ctx.out)(line);
        }
        return Err(BuildError::StepFailed {
            buildpack: bp.label,
            step: "release",
            status: describe(status),
        });
    }
    let release = parse_release(&yaml).map_err(|reason| BuildError::ReleaseYaml {
        buildpack: bp.label.clone(),
        reason,
    })?;

    // As on Heroku: the Procfile's types win, the buildpack's defaults fill in the rest.
    let mut process_types = release.default_process_types;
    let declared = if procfile_path.is_file() {
        read_procfile(&procfile_path)?.types
    } else {
        Default::default()
    };
    let defaults: Vec<String> = process_types
        .keys()
        .filter(|kind| !declared.contains_key(*kind))
        .cloned()
        .collect();
    let declared_names: Vec<String> = declared.keys().cloned().collect();
    for (kind, command) in declared {
        process_types.insert(kind, command.as_str().to_string());
    }
    check_modules(&build_dir, &process_types)?;
    (ctx.out)("-----> Discovering process types");
    if !declared_names.is_empty() {
        (ctx.out)(&format!(
            "       Procfile declares types     -> {}",
            declared_names.join(", ")
        ));
    }
    if !defaults.is_empty() || declared_names.is_empty() {
        let shown = if defaults.is_empty() {
            "(none)".to_string()
        } else {
            defaults.join(", ")
        };
        (ctx.out)(&format!("       Default types for buildpack -> {shown}"));
    }

    (ctx.out)("-----> Compressing...");
    let packed = slug::pack(
        &build_dir,
        PackOptions {
            process_types,
            config_vars: release.config_vars,
            buildpack: name.clone(),
            commit: req.commit.clone(),
        },
    )?;
    (ctx.out)(&format!(
        "       Done: {}",
        human_size(packed.bytes.len() as u64)
    ));
    Ok(Build { slug: packed })
}

struct StepContext<'a> {
    req: &'a BuildRequest,
    out: &'a mut dyn FnMut(&str),
    /// The build's temporary directory: build and env dirs, materialized buildpacks, the steps' home and temp.
    work: &'a Path,
    /// Whether the sandbox's note (if any) was shown.
    noted: bool,
}

impl StepContext<'_> {
    fn command(
        &mut self,
        bp: &Buildpack,
        step: &'static str,
        args: &[&Path],
    ) -> Result<Command, BuildError> {
        let mut env = vec![("STACK", "wasmdyno-1".into())];
        if let Some(bin) = &self.req.wasmdyno_bin {
            env.push(("WASMDYNO_BIN", bin.into()));
        }
        if let Some(commit) = &self.req.commit {
            env.push(("SOURCE_VERSION", commit.into()));
        }
        let program = bp.dir.join("bin").join(step);
        let (home, tmp) = (self.work.join("home"), self.work.join("tmp"));
        let spec = sandbox::Step {
            program: &program,
            args,
            writable: &[self.work, &self.req.cache_dir],
            cache: &self.req.cache_dir,
            home: &home,
            tmp: &tmp,
            env: &env,
        };
        let (cmd, note) = self
            .req
            .sandbox
            .command(&spec)
            .map_err(|reason| BuildError::Spawn {
                buildpack: bp.label.clone(),
                step,
                source: std::io::Error::other(reason),
            })?;
        if let Some(note) = note.filter(|_| !self.noted) {
            self.noted = true;
            (self.out)(note);
        }
        Ok(cmd)
    }

    /// Runs a step and collects its stdout (stderr passes through to the caller's output).
    fn capture(
        &mut self,
        bp: &Buildpack,
        step: &'static str,
        args: &[&Path],
    ) -> Result<(std::process::ExitStatus, String), BuildError> {
        let output =
            self.command(bp, step, args)?
                .output()
                .map_err(|source| BuildError::Spawn {
                    buildpack: bp.label.clone(),
                    step,
                    source,
                })?;
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            (self.out)(line);
        }
        Ok((
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
        ))
    }

    /// Runs a step with stdout and stderr merged into one pipe, passing lines on as they come.
    fn stream(
        &mut self,
        bp: &Buildpack,
        step: &'static str,
        args: &[&Path],
    ) -> Result<(), BuildError> {
        let spawn_err = |source| BuildError::Spawn {
            buildpack: bp.label.clone(),
            step,
            source,
        };
        let (reader, writer) = std::io::pipe().map_err(spawn_err)?;
        let mut cmd = self.command(bp, step, args)?;
        cmd.stdout(writer.try_clone().map_err(spawn_err)?)
            .stderr(writer);
        let mut child = cmd.spawn().map_err(spawn_err)?;
        // Our copies of the pipe's write end must go, or the reader never sees EOF.
        drop(cmd);
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    (self.out)(text.trim_end_matches(['\n', '\r']));
                }
                Err(err) => {
                    let _ = child.kill();
                    return Err(spawn_err(err));
                }
            }
        }
        let status = child.wait().map_err(spawn_err)?;
        if status.success() {
            Ok(())
        } else {
            Err(BuildError::StepFailed {
                buildpack: bp.label.clone(),
                step,
                status: describe(status),
            })
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

fn read_procfile(path: &Path) -> Result<Procfile, BuildError> {
    let text = std::fs::read_to_string(path).map_err(io("cannot read the Procfile"))?;
    Ok(Procfile::parse(&text)?)
}

#[derive(Debug, Default)]
struct Release {
    default_process_types: BTreeMap<String, String>,
    config_vars: BTreeMap<String, String>,
}

fn parse_release(yaml: &str) -> Result<Release, String> {
    #[derive(Deserialize, Default)]
    struct Raw {
        #[serde(default)]
        default_process_types: Option<BTreeMap<String, String>>,
        #[serde(default)]
        config_vars: Option<BTreeMap<String, serde_norway::Value>>,
    }
    if yaml.trim().is_empty() || yaml.trim() == "---" {
        return Ok(Release::default());
    }
    let raw: Raw = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
    let mut release = Release::default();
    for (kind, command) in raw.default_process_types.unwrap_or_default() {
        if !crate::procfile::is_valid_type(&kind) {
            return Err(format!(
                "process type {kind:?} may only use letters, digits, `_` and `-`"
            ));
        }
        crate::procfile::Command::parse(&command)
            .map_err(|e| format!("process type {kind:?}: {e}"))?;
        release.default_process_types.insert(kind, command);
    }
    for (key, value) in raw.config_vars.unwrap_or_default() {
        let value = match value {
            serde_norway::Value::String(s) => s,
            serde_norway::Value::Number(n) => n.to_string(),
            serde_norway::Value::Bool(b) => b.to_string(),
            other => {
                return Err(format!(
                    "config var {key:?} must be a scalar, not {other:?}"
                ));
            }
        };
        release.config_vars.insert(key, value);
    }
    Ok(release)
}

/// Every literal module a process type names must exist in the build output (as `.wasm`, or `.wat` built to it).
fn check_modules(build_dir: &Path, types: &BTreeMap<String, String>) -> Result<(), BuildError> {
    for (kind, command) in types {
        let command = crate::procfile::Command::parse(command)
            .map_err(|reason| BuildError::Procfile(ProcfileError::Command { line: 0, reason }))?;
        let Some(word) = command.module_word() else {
            continue;
        };
        let rel = word
            .strip_prefix("/app/")
            .unwrap_or(&word)
            .trim_start_matches('/');
        let mut candidates = vec![rel.to_string()];
        match rel.strip_suffix(".wat") {
            Some(stem) => candidates.push(format!("{stem}.wasm")),
            None if !rel.ends_with(".wasm") => candidates.push(format!("{rel}.wasm")),
            None => {}
        }
        let found = candidates.iter().any(|c| {
            slug::normalize(c).is_some_and(|n| !n.is_empty() && build_dir.join(n).is_file())
        });
        if !found {
            return Err(BuildError::MissingModule {
                process_type: kind.clone(),
                module: word,
                available: list_modules(build_dir),
            });
        }
    }
    Ok(())
}

fn list_modules(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push((entry.path(), rel)),
                Ok(t) if t.is_file() && name.ends_with(".wasm") => found.push(rel),
                _ => {}
            }
        }
    }
    found.sort();
    found
}

fn write_env_dir(dir: &Path, env: &BTreeMap<String, String>) -> Result<(), BuildError> {
    std::fs::create_dir_all(dir).map_err(io("cannot create ENV_DIR"))?;
    for (key, value) in env {
        if key.is_empty() || key.contains(['/', '\0']) || key == "." || key == ".." {
            return Err(BuildError::Io {
                context: format!("config var name {key:?} cannot be written to ENV_DIR"),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        std::fs::write(dir.join(key), value).map_err(io("cannot write ENV_DIR"))?;
    }
    Ok(())
}

/// Copies the app into the build directory, leaving out `.git` and whatever `.slugignore` names.
fn copy_source(src: &Path, dest: &Path) -> Result<(), BuildError> {
    let ignore_file = src.join(".slugignore");
    let mut builder = ignore::gitignore::GitignoreBuilder::new(src);
    if ignore_file.is_file()
        && let Some(err) = builder.add(&ignore_file)
    {
        return Err(BuildError::SlugIgnore(err.to_string()));
    }
    let matcher = builder
        .build()
        .map_err(|e| BuildError::SlugIgnore(e.to_string()))?;
    copy_tree(src, dest, &matcher)
}

fn copy_tree(
    src: &Path,
    dest: &Path,
    ignore: &ignore::gitignore::Gitignore,
) -> Result<(), BuildError> {
    std::fs::create_dir_all(dest).map_err(io(format!("cannot create {}", dest.display())))?;
    let entries = std::fs::read_dir(src).map_err(io(format!("cannot read {}", src.display())))?;
    for entry in entries {
        let entry = entry.map_err(io(format!("cannot read {}", src.display())))?;
        let path = entry.path();
        if entry.file_name() == ".git" {
            continue;
        }
        let kind = entry
            .file_type()
            .map_err(io(format!("cannot stat {}", path.display())))?;
        if ignore.matched(&path, kind.is_dir()).is_ignore() {
            continue;
        }
        let target = dest.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&path, &target, ignore)?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(&path)
                .map_err(io(format!("cannot read link {}", path.display())))?;
            std::os::unix::fs::symlink(&link, &target)
                .map_err(io(format!("cannot copy link {}", path.display())))?;
        } else if kind.is_file() {
            std::fs::copy(&path, &target).map_err(io(format!("cannot copy {}", path.display())))?;
        }
        // Sockets, FIFOs and devices in a source tree are not app content; they are left out.
    }
    Ok(())
}

/// `1.2 MB`-style sizes for build output.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_yaml() {
        let r = parse_release(
            "---\ndefault_process_types:\n  web: app.wasm --port $PORT\nconfig_vars:\n  LANG: en_US.UTF-8\n  WORKERS: 4\naddons: []\n",
        )
        .unwrap();
        assert_eq!(r.default_process_types["web"], "app.wasm --port $PORT");
        assert_eq!(r.config_vars["WORKERS"], "4");
        assert!(parse_release("").unwrap().default_process_types.is_empty());
        assert!(parse_release("default_process_types: [1, 2").is_err());
        let err = parse_release("default_process_types:\n  web: a.wasm && b.wasm\n").unwrap_err();
        assert!(err.contains("shell operator"), "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(10), "10 B");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MB");
    }
}
