//! `wasmdyno run`: a local one-off dyno attached to the terminal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use super::Hint;
use crate::procfile::Command;
use std::sync::Arc;

use crate::runtime::vfs::Image;
use crate::runtime::{CacheOutcome, DynoSize, Exit, RunSpec, resolve_module};
use crate::slug::Slug;

/// Run a one-off dyno: a process type or a module of a slug, attached to this terminal.
///
/// stdin, stdout and stderr are the terminal's, and wasmdyno exits with the guest's own exit status
/// (a trap prints the trap and exits 134). Config vars come from the slug's buildpack defaults, then
/// --env-file, then -e. DYNO is run.N; PORT, DYNO and WASMDYNO_* are set by the platform only.
///
/// Exit codes are passed through exactly as the guest reports them: wasm32-wasip1 programs (and Go) through
/// proc_exit (any status, e.g. 33), WASI 0.2 components through wasi:cli/exit, which carries only success or
/// failure (failure exits 1). Build for wasm32-wasip1 when exact statuses matter.
#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub(crate) struct RunArgs {
    /// Run this slug file.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "dir",
        required_unless_present = "dir"
    )]
    slug: Option<PathBuf>,
    /// Build this app directory first, then run it.
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

/// Variables only the platform sets.
fn is_platform_var(key: &str) -> bool {
    key == "PORT" || key == "DYNO" || key.starts_with("WASMDYNO_")
}

/// Parses `-e` values: `K=V`, or several separated by `;`.
pub(crate) fn parse_env_args(values: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for value in values {
        for pair in value.split(';').filter(|p| !p.trim().is_empty()) {
            let (key, val) = pair
                .split_once('=')
                .with_context(|| format!("-e {pair:?}: expected KEY=VALUE"))?;
            let key = key.trim();
            check_key(key).with_context(|| format!("-e {pair:?}"))?;
            env.insert(key.to_string(), val.to_string());
        }
    }
    Ok(env)
}

fn check_key(key: &str) -> anyhow::Result<()> {
    let valid = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        bail!(
            "{key:?} is not a valid config var name (letters, digits and _, not starting with a digit)"
        );
    }
    Ok(())
}

/// Parses an env file: `KEY=VALUE` lines, `export ` prefixes, `#` comments, single or double quotes.
fn parse_env_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read env file {}", path.display()))?;
    let mut env = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let where_ = || format!("{} line {}", path.display(), index + 1);
        let (key, value) = line
            .split_once('=')
            .with_context(|| format!("{}: expected KEY=VALUE", where_()))?;
        let key = key.trim();
        check_key(key).with_context(where_)?;
        let value = value.trim();
        let value = match value.as_bytes() {
            [b'"', .., b'"'] | [b'\'', .., b'\''] if value.len() >= 2 => &value[1..value.len() - 1],
            _ => value,
        };
        env.insert(key.to_string(), value.to_string());
    }
    Ok(env)
}

impl RunArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let _ = self.exit_code;
        let runtime = super::runtime()?;
        let slug = match (&self.slug, &self.dir) {
            (Some(path), _) => Slug::open(path, super::slug_limits()?)
                .with_context(|| format!("cannot use slug {}", path.display()))?,
            (None, Some(dir)) => {
                super::build::build_app(dir, self.buildpack.as_deref(), BTreeMap::new(), &runtime)?
                    .slug
            }
            (None, None) => unreachable!("clap requires --slug or --dir"),
        };

        let mut env = slug.manifest().config_vars.clone();
        if let Some(path) = &self.env_file {
            env.extend(parse_env_file(path)?);
        }
        env.extend(parse_env_args(&self.env)?);
        if let Some(key) = env.keys().find(|k| is_platform_var(k)) {
            return Err(anyhow::anyhow!(
                "{key} is set by the platform and cannot be given as a config var"
            )
            .context(Hint("remove it from -e / --env-file".into())));
        }
        env.insert("DYNO".into(), format!("run.{}", one_off_number()));
        env.insert("HOME".into(), "/".into());

        let command = self.command(&slug)?;
        let lookup = |key: &str| env.get(key).cloned();
        let argv = command.expand(&lookup);
        let Some(word) = argv.first().cloned() else {
            bail!("command {:?} expands to nothing", command.as_str());
        };
        let (module_path, wasm) = resolve_module(&slug, &word).map_err(|e| {
            let types: Vec<_> = slug.manifest().process_types.keys().cloned().collect();
            anyhow::Error::new(e).context(Hint(format!(
                "COMMAND is a process type ({}) or a module path in the slug",
                if types.is_empty() {
                    "none defined".into()
                } else {
                    types.join(", ")
                }
            )))
        })?;
        let (guest, outcome) = runtime
            .load(&wasm)
            .with_context(|| format!("cannot load {module_path}"))?;
        if self.verbose {
            match &outcome {
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

        // argv[0] names the module that runs, as the guest sees it (`app.wat` in a Procfile runs `app.wasm`).
        let mut argv = argv;
        argv[0] = module_path.clone();
        let spec = RunSpec::new(argv, env, self.size)
            .with_image(Arc::new(Image::from_slug(&slug)))
            .with_host_stdio();
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let exit = tokio.block_on(runtime.run(&guest, spec))?;
        if let Exit::Trap(trap) = &exit {
            eprintln!("Error: {module_path} trapped: {trap}");
        }
        // Guests' stdout may still sit in the async runtime's buffers; finish them before exiting.
        tokio.shutdown_timeout(std::time::Duration::from_secs(1));
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(exit.code());
    }

    /// COMMAND is a process type (its command, plus ARGS), one quoted command line (`"app.wasm --x $FOO"`,
    /// expanded like a Procfile command), or a module and its literal arguments.
    fn command(&self, slug: &Slug) -> anyhow::Result<Command> {
        let (first, args) = self.command.split_first().expect("clap requires COMMAND");
        if let Some(command) = slug.manifest().process_types.get(first) {
            return Ok(Command::parse(command)?.with_args(args));
        }
        if args.is_empty() && first.contains(char::is_whitespace) {
            return Command::parse(first)
                .with_context(|| format!("cannot parse command {first:?}"));
        }
        Ok(Command::from_argv(&self.command)?)
    }
}

/// Heroku numbers one-off dynos `run.N`; a number from the clock and pid is unique enough on one host.
fn one_off_number() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    1000 + (nanos ^ std::process::id().rotate_left(16)) % 9000
}
