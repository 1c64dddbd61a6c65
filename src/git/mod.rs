//! `git push` deploys: each app's bare repository under `$WASMDYNO_HOME/repos/<app>.git`, served over git's smart
//! HTTP protocol, with a `pre-receive` hook that builds and releases what is pushed.
//!
//! - [`http`] serves `/git/{app}.git/...` on the API listener by running `git http-backend` as a streaming CGI,
//!   authenticated by HTTP Basic with the API token as the password. Pushes to one app run one at a time.
//! - [`hook`] is the push policy the hook applies: which refs deploy, and what is refused.
//!
//! The hook program (`wasmdyno git-hook pre-receive`), the credential helper (`wasmdyno git-credential`) and
//! `git:remote` are CLI commands (`cli/git.rs`): the hook is a client of the API's `/apps/{app}/builds`, so a push
//! is built exactly as `wasmdyno deploy` is.

pub(crate) mod hook;
pub(crate) mod http;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The branches whose pushes deploy, as Heroku has them.
pub(crate) const DEPLOY_BRANCHES: [&str; 2] = ["main", "master"];

/// Why an app's repository could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git (is it installed and on PATH?): {0}")]
    NoGit(std::io::Error),
    #[error("`git {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> GitError {
    let context = context.into();
    move |source| GitError::Io { context, source }
}

/// Where an app's bare repository lives.
pub(crate) fn repo_path(home: &Path, app: &str) -> PathBuf {
    home.join("repos").join(format!("{app}.git"))
}

/// A `git` command that ignores the system's and the user's git config, so nothing there (a `core.hooksPath`, a
/// credential helper) changes how the platform's repositories behave.
pub(crate) fn git() -> Command {
    let mut cmd = Command::new("git");
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0");
    cmd
}

fn run(cmd: &mut Command) -> Result<String, GitError> {
    let out = cmd.output().map_err(GitError::NoGit)?;
    if !out.status.success() {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return Err(GitError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The running `wasmdyno` executable, for hooks and credential helpers to call back into. Linux names a replaced
/// executable `path (deleted)`; the path itself then holds the new build, which is the one to run.
pub(crate) fn current_exe() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let text = exe.to_str()?;
    match text.strip_suffix(" (deleted)") {
        Some(path) if !exe.exists() => Some(PathBuf::from(path)),
        _ => Some(exe),
    }
}

/// Creates the app's bare repository if it does not exist yet (accepting pushes over HTTP, `HEAD` on `main`), and
/// (re)writes its `pre-receive` hook when it does not run `exe` (the binary may have moved since the hook was
/// written). Callers run one at a time per home.
pub(crate) fn ensure_repo(home: &Path, app: &str, exe: &Path) -> Result<PathBuf, GitError> {
    let repo = repo_path(home, app);
    if !repo.join("HEAD").is_file() {
        let repos = home.join("repos");
        std::fs::create_dir_all(&repos)
            .map_err(io(format!("cannot create {}", repos.display())))?;
        // Built aside and renamed into place, so a crash never leaves half a repository under the app's name.
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{app}-"))
            .tempdir_in(&repos)
            .map_err(io(format!(
                "cannot create a directory in {}",
                repos.display()
            )))?;
        run(git()
            .args(["init", "--quiet", "--bare", "--initial-branch=main"])
            .arg(tmp.path()))?;
        for (key, value) in [
            ("http.receivepack", "true"),
            // A record of every deploy branch update, for whoever has to look at the repository by hand.
            ("core.logAllRefUpdates", "always"),
        ] {
            run(git()
                .arg("--git-dir")
                .arg(tmp.path())
                .args(["config", key, value]))?;
        }
        let _ = std::fs::remove_dir_all(&repo);
        // (The temporary directory's own cleanup then finds nothing left to remove.)
        std::fs::rename(tmp.path(), &repo)
            .map_err(io(format!("cannot create {}", repo.display())))?;
    }
    let hook = repo.join("hooks").join("pre-receive");
    let script = hook_script(home, app, exe);
    if std::fs::read_to_string(&hook).ok().as_deref() != Some(script.as_str()) {
        write_executable(&hook, &script)?;
    }
    Ok(repo)
}

/// Removes an app's repository (with the app: a new app of the same name starts empty).
pub(crate) fn remove_repo(home: &Path, app: &str) {
    let repo = repo_path(home, app);
    if let Err(e) = std::fs::remove_dir_all(&repo)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {e}", repo.display());
    }
}

/// The `pre-receive` hook: hands the push to `wasmdyno git-hook pre-receive`, naming the app and home it serves.
fn hook_script(home: &Path, app: &str, exe: &Path) -> String {
    format!(
        "#!/bin/sh\n\
         # Written by wasmdyno serve (rewritten when the server's executable changes): a push to main or master\n\
         # is built and released before git updates the branch.\n\
         WASMDYNO_HOME={home}\n\
         WASMDYNO_APP={app}\n\
         export WASMDYNO_HOME WASMDYNO_APP\n\
         exec {exe} git-hook pre-receive\n",
        home = shell_quote(&home.to_string_lossy()),
        app = shell_quote(app),
        exe = shell_quote(&exe.to_string_lossy()),
    )
}

fn write_executable(path: &Path, text: &str) -> Result<(), GitError> {
    use std::os::unix::fs::PermissionsExt;
    let context = || format!("cannot write {}", path.display());
    let dir = path.parent().expect("hooks live in a directory");
    std::fs::create_dir_all(dir).map_err(io(context()))?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(context()))?;
    std::fs::write(tmp.path(), text).map_err(io(context()))?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(io(context()))?;
    tmp.persist(path).map_err(|e| io(context())(e.error))?;
    Ok(())
}

/// Quotes `text` as one word for `sh`.
pub(crate) fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_repository_is_created_once_and_its_hook_follows_the_executable() {
        let home = tempfile::tempdir().unwrap();
        let repo = ensure_repo(home.path(), "my-app", Path::new("/bin/one")).unwrap();
        assert_eq!(repo, home.path().join("repos/my-app.git"));
        let config = run(git()
            .arg("--git-dir")
            .arg(&repo)
            .args(["config", "http.receivepack"]))
        .unwrap();
        assert_eq!(config.trim(), "true");
        let head = std::fs::read_to_string(repo.join("HEAD")).unwrap();
        assert_eq!(head.trim(), "ref: refs/heads/main");
        let hook = std::fs::read_to_string(repo.join("hooks/pre-receive")).unwrap();
        assert!(
            hook.contains("exec '/bin/one' git-hook pre-receive"),
            "{hook}"
        );
        assert!(hook.contains("WASMDYNO_APP='my-app'"), "{hook}");

        std::fs::write(repo.join("marker"), "kept").unwrap();
        ensure_repo(home.path(), "my-app", Path::new("/bin/two")).unwrap();
        assert!(
            repo.join("marker").exists(),
            "an existing repository is kept"
        );
        let hook = std::fs::read_to_string(repo.join("hooks/pre-receive")).unwrap();
        assert!(
            hook.contains("exec '/bin/two' git-hook pre-receive"),
            "{hook}"
        );

        remove_repo(home.path(), "my-app");
        assert!(!repo.exists());
    }
}
