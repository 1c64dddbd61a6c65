//! The `wasmdyno` command line: one module per command group, each a clap struct with a `run`.

mod build;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A Heroku-style platform whose dynos are WebAssembly sandboxes.
#[derive(Debug, Parser)]
#[command(name = "wasmdyno", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    Build(build::BuildArgs),
    Run(run::RunArgs),
    /// Compile WebAssembly text (.wat) to a binary module (.wasm); used by the wasm buildpack.
    #[command(hide = true)]
    Wat2wasm {
        input: PathBuf,
        output: PathBuf,
    },
}

/// Entry point of the `wasmdyno` binary: parses arguments, runs the command, prints errors with their causes.
pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Build(args) => args.run(),
        Commands::Run(args) => args.run(),
        Commands::Wat2wasm { input, output } => {
            wat2wasm(&input, &output).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            report(&err);
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASMDYNO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// A hint printed under an error, attached with `anyhow::Error::context`-style wrapping.
#[derive(Debug)]
pub(crate) struct Hint(pub String);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Hint {}

fn report(err: &anyhow::Error) {
    // `downcast_ref` sees through context layers; the chain shows the hint as one of its causes, skipped below.
    let hint = err.downcast_ref::<Hint>().map(|h| h.0.as_str());
    let mut chain = err
        .chain()
        .filter(|cause| Some(cause.to_string().as_str()) != hint);
    if let Some(first) = chain.next() {
        eprintln!("error: {first}");
    }
    for cause in chain {
        eprintln!("  caused by: {cause}");
    }
    if let Some(hint) = hint {
        eprintln!("hint: {hint}");
    }
}

/// `$WASMDYNO_HOME`, or `$XDG_DATA_HOME/wasmdyno`, or `~/.local/share/wasmdyno`.
pub(crate) fn home_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WASMDYNO_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("wasmdyno");
    }
    user_home().join(".local/share/wasmdyno")
}

/// The per-user compiled-code cache: `$WASMDYNO_CACHE_DIR`, or `$XDG_CACHE_HOME/wasmdyno`, or `~/.cache/wasmdyno`.
pub(crate) fn code_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WASMDYNO_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("wasmdyno");
    }
    user_home().join(".cache/wasmdyno")
}

fn user_home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// The slug size limit: `WASMDYNO_SLUG_MAX_SIZE` bytes, or Heroku's 500 MB.
pub(crate) fn slug_limits() -> anyhow::Result<crate::slug::Limits> {
    let limits = crate::slug::Limits::default();
    match std::env::var("WASMDYNO_SLUG_MAX_SIZE") {
        Ok(value) => {
            let bytes = value.trim().parse::<u64>().map_err(|_| {
                anyhow::anyhow!("WASMDYNO_SLUG_MAX_SIZE={value:?} is not a number of bytes")
            })?;
            Ok(limits.with_max_compressed(bytes))
        }
        Err(_) => Ok(limits),
    }
}

pub(crate) fn runtime() -> anyhow::Result<crate::runtime::Runtime> {
    let config = crate::runtime::RuntimeConfig::default().with_cache_dir(Some(code_cache_dir()));
    Ok(crate::runtime::Runtime::new(config)?)
}

fn wat2wasm(input: &std::path::Path, output: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let wasm =
        wat::parse_file(input).with_context(|| format!("cannot compile {}", input.display()))?;
    // `wat` checks syntax only; validate here so the error names the source file, not the output.
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&wasm)
        .with_context(|| {
            format!(
                "cannot compile {}: the module is not valid",
                input.display()
            )
        })?;
    std::fs::write(output, wasm).with_context(|| format!("cannot write {}", output.display()))
}
