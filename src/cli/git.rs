//! `git:remote` (a git remote that deploys on `git push`), and the two programs git runs on our behalf: the
//! credential helper (`git-credential`, which hands git the API token from `$WASMDYNO_HOME`) and the server's
//! `pre-receive` hook (`git-hook pre-receive`, which builds and releases the pushed commit through
//! `/apps/{app}/builds`, streaming the build to the pusher).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, bail};
use clap::Args;

use super::{AppArg, Hint, api, block_on};
use crate::api::{Announcement, TOKEN_FILE};
use crate::git::hook;
use crate::store::{App, Release, ReleaseStatus};

/// Add a git remote for an app: `git push <remote> main` then builds and releases it.
///
/// Run inside the app's git repository. The remote's password (the API token) is never written into
/// .git/config: git asks `wasmdyno git-credential`, which reads it from $WASMDYNO_HOME.
#[derive(Debug, Args)]
pub(crate) struct RemoteArgs {
    #[command(flatten)]
    app: AppArg,
    /// The remote's name.
    #[arg(short, long, value_name = "NAME", default_value = "wasmdyno")]
    remote: String,
}

impl RemoteArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let inside = Command::new("git")
            .args(["rev-parse", "--git-dir"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot run git (is it installed and on PATH?)")?;
        if !inside.success() {
            return Err(anyhow::Error::msg("not inside a git repository").context(Hint(
                "cd into your app's repository (or run `git init` there) and run git:remote again".into(),
            )));
        }
        let client = api()?;
        block_on(client.get::<App>(&format!("/apps/{name}")))
            .with_context(|| format!("cannot add a remote for {name}"))?;
        let url = format!("{}/git/{name}.git", client.base());
        let exists = Command::new("git")
            .args(["remote", "get-url", &self.remote])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success();
        let verb = if exists { "set-url" } else { "add" };
        git(&["remote", verb, &self.remote, &url])?;

        let exe = crate::git::current_exe().context("cannot find the wasmdyno executable")?;
        let home = std::path::absolute(super::home_dir())?;
        let helper = format!(
            "!{} git-credential --home {}",
            crate::git::shell_quote(&exe.to_string_lossy()),
            crate::git::shell_quote(&home.to_string_lossy())
        );
        let key = format!("credential.{}.helper", client.base());
        // The empty value first drops helpers from other config files (a keychain that may remember an old token).
        git(&["config", "--local", "--replace-all", &key, ""])?;
        git(&["config", "--local", "--add", &key, &helper])?;

        println!("set git remote {} to {url}", self.remote);
        eprintln!(
            "`git push {} main` deploys {name}; git gets the API token from `wasmdyno git-credential` \
             (it is not stored in .git/config)",
            self.remote
        );
        Ok(ExitCode::SUCCESS)
    }
}

fn git(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .args(args)
        .output()
        .context("cannot run git (is it installed and on PATH?)")?;
    if !out.status.success() {
        bail!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// git's credential helper protocol: answers `get` with the API token of a wasmdyno home.
#[derive(Debug, Args)]
pub(crate) struct CredentialArgs {
    /// The wasmdyno home whose token to send (default: $WASMDYNO_HOME).
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// get, store or erase (git passes it).
    operation: String,
}

impl CredentialArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        // git writes the request's attributes and closes stdin; a helper reads them all either way.
        let mut request = String::new();
        let _ = std::io::stdin().read_to_string(&mut request);
        if self.operation != "get" {
            // The token comes from the home every time: there is nothing to store or erase.
            return Ok(ExitCode::SUCCESS);
        }
        let home = self.home.unwrap_or_else(super::home_dir);
        let token = match std::env::var("WASMDYNO_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
        {
            Some(token) => token,
            None => match std::fs::read_to_string(home.join(TOKEN_FILE)) {
                Ok(token) => token.trim().to_string(),
                Err(_) => {
                    // No answer: git goes on to its other ways of asking, and fails if it has none.
                    eprintln!(
                        "wasmdyno: no API token in {} (is `wasmdyno serve` running there?)",
                        home.display()
                    );
                    return Ok(ExitCode::SUCCESS);
                }
            },
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "username=wasmdyno")?;
        writeln!(out, "password={token}")?;
        Ok(ExitCode::SUCCESS)
    }
}

/// A hook of the server's app repositories (git runs it; the server writes the hook script).
#[derive(Debug, Args)]
pub(crate) struct HookArgs {
    /// The hook: pre-receive.
    #[arg(value_parser = ["pre-receive"])]
    hook: String,
}

impl HookArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .with_context(|| {
                    format!("{name} is not set: this hook is run by git on a wasmdyno server")
                })
        };
        let home = PathBuf::from(var("WASMDYNO_HOME")?);
        let app = var("WASMDYNO_APP")?;
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("cannot read the pushed refs")?;
        match pre_receive(&home, &app, &input)? {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(message) => {
                for line in message.lines() {
                    say(&format!(" !     {line}"));
                }
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// One line to the pusher (git shows hook output as `remote: ...`), sent at once.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The pre-receive hook: `Ok(Err(message))` refuses the push with `message`.
fn pre_receive(home: &Path, app: &str, input: &str) -> anyhow::Result<Result<(), String>> {
    let updates = hook::parse_updates(input).map_err(anyhow::Error::msg)?;
    let update = match hook::plan(&updates) {
        Ok(Some(update)) => update,
        Ok(None) => return Ok(Ok(())),
        Err(refusal) => return Ok(Err(refusal)),
    };
    let branch = update.branch().unwrap_or(&update.refname);
    let short: String = update.new.chars().take(7).collect();
    let rejected =
        format!("Push rejected: {branch} is unchanged, and so is {app}'s current release.");

    // Pushes to an app run one at a time (the server holds a lock until git has updated the branch), so if the
    // branch is where the pusher saw it now, git's own check that it still is will pass after the build.
    let current = rev_parse(&update.refname)?;
    let expected = (!update.creates()).then(|| update.old.clone());
    if current != expected {
        return Ok(Err(format!(
            "{branch} moved to {} while this push was on its way (another push landed first).\n\
             Push rejected: fetch, merge or rebase, and push again.",
            current
                .as_deref()
                .map_or("nothing".to_string(), |c| c.chars().take(7).collect())
        )));
    }

    say(&format!("-----> Building {app} from {branch} ({short})"));
    let tarball = archive(&update.new)?;
    let client = super::api_of(home)?;
    let path = format!("/apps/{app}/builds?commit={}", update.new);
    let outcome = block_on(client.build(&path, tarball, say));
    let release: Release = match outcome {
        Ok(Some(Ok(release))) => release,
        Ok(Some(Err(message))) => {
            return Ok(Err(format!("Build failed: {message}\n{rejected}")));
        }
        Ok(None) => {
            return Ok(Err(format!(
                "The build stopped without a result (the server closed the stream).\n{rejected}"
            )));
        }
        Err(e) => return Ok(Err(format!("The build could not run: {e}\n{rejected}"))),
    };
    if release.status != ReleaseStatus::Succeeded {
        return Ok(Err(format!(
            "Release v{v} failed: its release command did not succeed (its output is above; \
             `wasmdyno releases:output v{v} -a {app}` shows it again).\n{rejected}",
            v = release.version
        )));
    }
    say(&format!("       Released v{}", release.version));
    if let Some(url) = Announcement::read(home).and_then(|a| a.app_url(app)) {
        say(&format!("       {url} deployed to wasmdyno"));
    }
    Ok(Ok(()))
}

/// Where a ref points now (`None` if it does not exist). Reads the repository git is receiving into.
fn rev_parse(refname: &str) -> anyhow::Result<Option<String>> {
    let out = Command::new("git")
        .args(["rev-parse", "--verify", "--quiet", refname])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run git")?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok((out.status.success() && !id.is_empty()).then_some(id))
}

/// The pushed tree as a gzip tarball. git's quarantine environment, which the hook inherits, makes the pushed
/// objects readable before they are accepted.
fn archive(commit: &str) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("git")
        .args(["archive", "--format=tar", commit])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run git archive")?;
    if !out.status.success() {
        bail!("git archive {commit} failed ({})", out.status);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&out.stdout)?;
    Ok(gz.finish()?)
}
