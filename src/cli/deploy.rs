//! `deploy [DIR]`: tars the app and builds it on the server through `/apps/{app}/builds`, streaming the build
//! output as it runs; the result is a slug and a release.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use super::{AppArg, api, block_on};
use crate::store::{Release, ReleaseStatus};

/// Build DIR on the server and release it.
#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    #[command(flatten)]
    app: AppArg,
    /// The app's directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// A built-in buildpack (rust, go, python, nodejs, c, wasm) or a buildpack path on the server.
    #[arg(short, long, value_name = "NAME|PATH")]
    buildpack: Option<String>,
}

impl DeployArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let release = deploy(&name, &self.dir, self.buildpack.as_deref())?;
        Ok(ExitCode::from(
            if release.status == ReleaseStatus::Succeeded {
                0
            } else {
                1
            },
        ))
    }
}

/// Deploys `dir` to `app`, printing the build output on stderr; returns the release.
pub(crate) fn deploy(app: &str, dir: &Path, buildpack: Option<&str>) -> anyhow::Result<Release> {
    if !dir.is_dir() {
        bail!("cannot deploy {}: no such directory", dir.display());
    }
    let tarball = source_tarball(dir)?;
    let commit = git_commit(dir);
    let mut query = Vec::new();
    if let Some(commit) = &commit {
        query.push(format!("commit={commit}"));
    }
    if let Some(bp) = buildpack {
        query.push(format!("buildpack={}", percent_encode(bp)));
    }
    let path = format!(
        "/apps/{app}/builds{}{}",
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    eprintln!(
        "-----> Uploading {} ({})",
        dir.display(),
        crate::build::human_size(tarball.len() as u64)
    );
    let client = api()?;
    let outcome = block_on(client.build(&path, tarball, |text| eprintln!("{text}")))?;
    match outcome {
        Some(Ok(release)) => {
            match release.status {
                ReleaseStatus::Succeeded => eprintln!("       Released v{}", release.version),
                _ => eprintln!(
                    "       v{} failed: its release command did not succeed (see `wasmdyno releases:output v{} -a {app}`)",
                    release.version, release.version
                ),
            }
            Ok(release)
        }
        Some(Err(message)) => bail!("deploy to {app} failed: {message}"),
        None => {
            bail!("deploy to {app} failed: the server closed the build stream without a result")
        }
    }
}

/// A gzip tarball of `dir`, honouring `.gitignore` and `.slugignore` (as `git push` would send only tracked files)
/// and skipping `.git`.
fn source_tarball(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    archive.follow_symlinks(false);
    let walker = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .git_ignore(true)
        .git_exclude(false)
        .git_global(false)
        .require_git(false)
        .add_custom_ignore_filename(".slugignore")
        .filter_entry(|e| e.file_name() != ".git")
        .sort_by_file_name(|a, b| a.cmp(b))
        .build();
    for entry in walker {
        let entry = entry.context("cannot read the app directory")?;
        let rel = entry.path().strip_prefix(dir).expect("walked under dir");
        if rel.as_os_str().is_empty() {
            continue;
        }
        archive
            .append_path_with_name(entry.path(), rel)
            .with_context(|| format!("cannot add {} to the upload", entry.path().display()))?;
    }
    Ok(archive.into_inner()?.finish()?)
}

/// The commit checked out in `dir`, if it is a git work tree.
fn git_commit(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--verify", "HEAD"])
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let sha = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && sha.len() == 40).then_some(sha)
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
