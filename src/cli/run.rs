//! `wasmdyno run`: a local one-off dyno attached to the terminal.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::Hint;
use super::env::{parse_env_args, parse_env_file, refuse_platform_vars};
use std::sync::Arc;

use crate::runtime::{CacheOutcome, DynoSize, RuntimeError};
use crate::slug::Slug;

/// Run a one-off dyno: a process type or a module, attached to this terminal.
///
/// With -a APP (or $WASMDYNO_APP) the dyno runs in the server on the app's current release and config vars, as
/// `heroku run` does; its stdin, stdout and stderr travel over one connection, so binary data arrives intact, and
/// Ctrl-C stops it (twice: leave at once). With --slug or --dir it runs here, from that slug or app directory.
///
/// stdin, stdout and stderr are the terminal's, and wasmdyno exits with the guest's own exit status
/// (a trap prints the trap and exits 134). Config vars come from the slug's buildpack defaults (or the app's
/// config), then --env-file, then -e. DYNO is run.N; PORT, DYNO and WASMDYNO_* are set by the platform only.
///
/// `bash` or `sh` (when the slug has no module of that name) starts wasmdyno's built-in shell in the dyno, over its
/// filesystem: builtins such as ls, cd, cat, head, tail, wc, grep, env, mkdir, rm, cp and mv, pipes and
/// redirections, and the slug's own modules as commands (`help` lists them all).
///
/// Exit codes are passed through exactly as the guest reports them: wasm32-wasip1 programs (and Go) through
/// proc_exit (any status, e.g. 33), WASI 0.2 components through wasi:cli/exit, which carries only success or
/// failure (failure exits 1). Build for wasm32-wasip1 when exact statuses matter.
#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub(crate) struct RunArgs {
    /// Run in the server, on this app's current release.
    #[arg(short, long = "app", value_name = "APP", conflicts_with_all = ["slug", "dir"])]
    app: Option<String>,
    /// Run this slug file here.
    #[arg(long, value_name = "FILE", conflicts_with = "dir")]
    slug: Option<PathBuf>,
    /// Build this app directory first, then run it here.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Buildpack for --dir (built-in name or path).
    #[arg(short, long, value_name = "NAME|PATH", requires = "dir")]
    buildpack: Option<String>,
    /// Config var; repeatable, or several at once as `"A=1;B=2"`.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read config vars from a file of KEY=VALUE lines (# comments, optional quotes).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Dyno size, which sets the memory quota (eco, basic, standard-1x, standard-2x, performance-m, performance-l).
    #[arg(short, long, default_value = "standard-1x")]
    size: DynoSize,
    /// Accepted for Heroku habits: the exit status is always the guest's own.
    #[arg(short = 'x', long = "exit-code")]
    exit_code: bool,
    /// Say where the module came from (compiled-code cache hit or compile) on stderr.
    #[arg(short, long)]
    verbose: bool,
    /// A process type of the slug, or a module path in it, and its arguments.
    #[arg(required = true, value_name = "COMMAND", allow_hyphen_values = true)]
    command: Vec<String>,
}

impl RunArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let _ = self.exit_code;
        if self.slug.is_none() && self.dir.is_none() {
            let app = self
                .app
                .clone()
                .or_else(|| std::env::var("WASMDYNO_APP").ok().filter(|a| !a.is_empty()));
            let Some(app) = app else {
                return Err(
                    anyhow::anyhow!("nothing to run: no app, slug or directory given")
                        .context(Hint(
                        "pass -a APP to run in the server, or --slug FILE / --dir DIR to run here"
                            .into(),
                    )),
                );
            };
            return self.run_in_server(&app);
        }
        let runtime = std::sync::Arc::new(super::runtime()?);
        let slug = match (&self.slug, &self.dir) {
            (Some(path), _) => Slug::open(path, super::slug_limits()?)
                .with_context(|| format!("cannot use slug {}", path.display()))?,
            (None, Some(dir)) => {
                super::build::build_app(dir, self.buildpack.as_deref(), BTreeMap::new(), &runtime)?
                    .slug
            }
            (None, None) => unreachable!("handled above"),
        };

        let env = self.given_env()?;
        refuse_platform_vars(&slug.manifest().config_vars)?;
        refuse_platform_vars(&env)?;
        let (command, args) = self.command.split_first().expect("clap requires COMMAND");
        // What COMMAND runs, checked (and compiled) before a dyno starts, so that a wrong one says what there is.
        let found = crate::dyno::launch::one_off_module(&slug, command, args, env.clone())
            .map_err(|e| match e {
                RuntimeError::NoSuchModule { .. } => {
                    let types: Vec<_> = slug.manifest().process_types.keys().cloned().collect();
                    anyhow::Error::new(e).context(Hint(format!(
                        "COMMAND is a process type ({}) or a module path in the slug",
                        if types.is_empty() {
                            "none defined".into()
                        } else {
                            types.join(", ")
                        }
                    )))
                }
                e => anyhow::Error::new(e).context(format!("cannot run {command:?}")),
            })?;
        let (guest, cache) = runtime
            .load(&found.wasm)
            .with_context(|| format!("cannot run {command:?}"))?;
        if self.verbose {
            match &cache {
                CacheOutcome::Hit(path) => eprintln!("compiled-code cache hit: {}", path.display()),
                CacheOutcome::Compiled(path, took) => eprintln!(
                    "compiled-code cache miss: compiled in {:.2}s, stored {}",
                    took.as_secs_f64(),
                    path.display()
                ),
                CacheOutcome::Uncached(took) => {
                    eprintln!(
                        "compiled in {:.2}s (no compiled-code cache)",
                        took.as_secs_f64()
                    )
                }
            }
        }
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let one_off = LocalOneOff {
            runtime,
            slug,
            loaded: (found.module, guest),
            command,
            args,
            env,
            size: self.size,
        };
        let status = tokio.block_on(one_off.run())?;
        // Guests' stdout may still sit in the async runtime's buffers; finish them before exiting.
        tokio.shutdown_timeout(std::time::Duration::from_secs(1));
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(status);
    }

    /// The config vars given on the command line: --env-file, then -e.
    fn given_env(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut env = BTreeMap::new();
        if let Some(path) = &self.env_file {
            env.extend(parse_env_file(path)?);
        }
        env.extend(parse_env_args(&self.env)?);
        Ok(env)
    }

    /// Runs COMMAND as a one-off dyno of `app` in the server, attached over the framed stream of
    /// [`crate::api::attach`], and exits with its status.
    fn run_in_server(&self, app: &str) -> anyhow::Result<ExitCode> {
        let env = self.given_env()?;
        refuse_platform_vars(&env)?;
        let (command, args) = self.command.split_first().expect("clap requires COMMAND");
        let body = serde_json::json!({
            "command": command,
            "args": args,
            "env": env,
            "size": self.size.name(),
            "attach": true,
        });
        let client = super::api()?;
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let status = tokio.block_on(attached(client, app, body))?;
        // Exit at once: the thread reading our stdin may be blocked on a terminal.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(status);
    }
}

/// Carries this terminal to an attached dyno and back; returns its exit status.
async fn attached(
    client: crate::api::client::Client,
    app: &str,
    body: serde_json::Value,
) -> anyhow::Result<i32> {
    use crate::api::attach::{self, Frame, read_frame};
    use std::io::{Read, Write};
    use tokio::io::AsyncWriteExt;

    // Ctrl-C is ours from here on (registered before the dyno starts, so none slips through to kill us).
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot handle Ctrl-C")?;
    let (headers, upgraded) = client
        .upgrade(&format!("/apps/{app}/dynos"), attach::PROTOCOL, &body)
        .await?;
    let dyno = headers
        .get(attach::DYNO_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("run")
        .to_string();
    let shown = body["command"].as_str().unwrap_or_default();
    eprintln!("Running `{shown}` on ⬢ {app}... up, {dyno}");
    let (mut reader, mut writer) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));

    // Frames to the server: stdin from a plain thread (terminal reads block), and stop on Ctrl-C.
    let (to_server, mut frames) = tokio::sync::mpsc::channel::<Frame>(8);
    let stdin_frames = to_server.clone();
    std::thread::Builder::new()
        .name("wasmdyno-run-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = match stdin.read(&mut chunk) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                // An empty frame is end of file.
                if stdin_frames
                    .blocking_send(Frame::Stdin(chunk[..n].to_vec()))
                    .is_err()
                    || n == 0
                {
                    return;
                }
            }
        })
        .context("cannot start the stdin thread")?;
    tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            if writer.write_all(&frame.encode()).await.is_err() {
                return;
            }
        }
    });
    let stopper = tokio::spawn(async move {
        if interrupts.recv().await.is_some() {
            eprintln!("Stopping {dyno}... (Ctrl-C again to leave now)");
            let _ = to_server.send(Frame::Stop).await;
            if interrupts.recv().await.is_some() {
                std::process::exit(130);
            }
        }
    });

    let result = loop {
        match read_frame(&mut reader).await {
            Ok(Some(Frame::Stdout(data))) => {
                let mut out = std::io::stdout().lock();
                if out.write_all(&data).and_then(|()| out.flush()).is_err() {
                    // Nobody reads our output any more: stop the dyno as a closed pipe would.
                    break Ok(141);
                }
            }
            Ok(Some(Frame::Stderr(data))) => {
                let _ = std::io::stderr().lock().write_all(&data);
            }
            Ok(Some(Frame::Exit(code))) => break Ok(code),
            Ok(Some(other)) => {
                break Err(anyhow::anyhow!(
                    "the server sent an unexpected frame ({other:?})"
                ));
            }
            Ok(None) => {
                break Err(anyhow::anyhow!(
                    "the connection to the server closed before {app}'s one-off dyno exited"
                ));
            }
            Err(e) => break Err(anyhow::anyhow!("the connection to the server broke: {e}")),
        }
    };
    stopper.abort();
    result
}

/// A one-off dyno of a slug outside any app: the same one-off dyno a server starts ([`Manager::run_one_off`]), on a
/// dyno manager of this process over an in-memory source, attached to this terminal.
struct LocalOneOff<'a> {
    runtime: Arc<crate::runtime::Runtime>,
    slug: Slug,
    /// The module COMMAND names, already compiled.
    loaded: (String, crate::runtime::Guest),
    command: &'a str,
    args: &'a [String],
    env: BTreeMap<String, String>,
    size: DynoSize,
}

impl LocalOneOff<'_> {
    /// The app a local one-off dyno runs under (nobody reads its log stream; its output is this terminal).
    const APP: &'static str = "local";

    /// Runs the dyno; its exit status.
    async fn run(self) -> anyhow::Result<i32> {
        use crate::dyno::{AppSpec, Attach, Manager, ReleaseSpec, launch::LOCAL_VERSION};
        use crate::runtime::stdio;
        let source = Arc::new(crate::edge::MemorySource::new(
            super::home_dir().join("slugs"),
        ));
        source.set(
            AppSpec::new(Self::APP),
            Some(ReleaseSpec::new(LOCAL_VERSION, self.slug.sha256())),
        );
        let settings = super::settings::manager().map_err(anyhow::Error::msg)?;
        let manager = Manager::new(
            self.runtime,
            source,
            super::slug_limits()?,
            crate::Logplex::new(),
            settings,
        );
        manager.adopt(self.slug, self.loaded);
        let (exit, exited) = tokio::sync::oneshot::channel();
        let attach = Attach {
            stdin: stdio::Input::from_reader(std::io::stdin()),
            stdout: stdio::host_stdout(),
            stderr: stdio::host_stderr(),
            exit,
        };
        manager
            .run_one_off(
                Self::APP,
                self.command,
                self.args,
                self.env,
                self.size,
                Some(attach),
            )
            .with_context(|| format!("cannot run {:?}", self.command))?;
        exited
            .await
            .context("the one-off dyno ended without an exit status")
    }
}
