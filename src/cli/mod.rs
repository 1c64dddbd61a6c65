//! The `wasmdyno` command line: one module per command group, each a clap struct with a `run`.

mod addons;
mod apps;
mod build;
mod config;
mod deploy;
mod domains;
mod drains;
mod env;
mod features;
mod git;
mod hosts;
mod logs;
mod metrics;
mod network;
mod ps;
mod releases;
mod run;
mod serve;
mod settings;
mod up;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
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
    Serve(serve::ServeArgs),
    Up(up::UpArgs),
    Apps(apps::AppsArgs),
    #[command(name = "apps:create")]
    AppsCreate(apps::CreateArgs),
    #[command(name = "apps:info")]
    AppsInfo(apps::InfoArgs),
    #[command(name = "apps:destroy")]
    AppsDestroy(apps::DestroyArgs),
    #[command(name = "apps:sleep")]
    AppsSleep(apps::SleepArgs),
    Features(features::FeaturesArgs),
    Hosts(hosts::HostsArgs),
    Network(network::NetworkArgs),
    #[command(name = "network:allow")]
    NetworkAllow(network::AllowArgs),
    #[command(name = "network:deny")]
    NetworkDeny(network::DenyArgs),
    /// Turn a feature on (the app's web dynos restart to take it up).
    #[command(name = "features:enable")]
    FeaturesEnable(features::EnableArgs),
    /// Turn a feature off (the app's web dynos restart to take it up).
    #[command(name = "features:disable")]
    FeaturesDisable(features::EnableArgs),
    Config(config::ConfigArgs),
    #[command(name = "config:get")]
    ConfigGet(config::GetArgs),
    #[command(name = "config:set", alias = "config:add")]
    ConfigSet(config::SetArgs),
    #[command(name = "config:unset", alias = "config:remove")]
    ConfigUnset(config::UnsetArgs),
    Releases(releases::ReleasesArgs),
    #[command(name = "releases:info")]
    ReleasesInfo(releases::InfoArgs),
    #[command(name = "releases:output")]
    ReleasesOutput(releases::OutputArgs),
    #[command(name = "releases:rollback", alias = "rollback")]
    ReleasesRollback(releases::RollbackArgs),
    Deploy(deploy::DeployArgs),
    Logs(logs::LogsArgs),
    Metrics(metrics::MetricsArgs),
    Ps(ps::PsArgs),
    #[command(name = "ps:scale", alias = "scale")]
    PsScale(ps::ScaleArgs),
    #[command(name = "ps:restart", alias = "restart")]
    PsRestart(ps::RestartArgs),
    /// Stop dynos: one (`web.1`) or a type; the dyno manager starts formation dynos again, as on Heroku.
    #[command(name = "ps:stop")]
    PsStop(ps::RestartArgs),
    #[command(name = "run:detached")]
    RunDetached(ps::RunDetachedArgs),
    Addons(addons::AddonsArgs),
    #[command(name = "addons:create", alias = "addons:add")]
    AddonsCreate(addons::CreateArgs),
    #[command(name = "addons:info")]
    AddonsInfo(addons::InfoArgs),
    #[command(name = "addons:destroy")]
    AddonsDestroy(addons::DestroyArgs),
    #[command(name = "addons:rotate")]
    AddonsRotate(addons::RotateArgs),
    Domains(domains::DomainsArgs),
    #[command(name = "domains:add")]
    DomainsAdd(domains::AddArgs),
    #[command(name = "domains:remove")]
    DomainsRemove(domains::RemoveArgs),
    Drains(drains::DrainsArgs),
    #[command(name = "drains:add")]
    DrainsAdd(drains::AddArgs),
    #[command(name = "drains:remove")]
    DrainsRemove(drains::RemoveArgs),
    #[command(name = "maintenance:on")]
    MaintenanceOn(apps::MaintenanceArgs),
    #[command(name = "maintenance:off")]
    MaintenanceOff(apps::MaintenanceArgs),
    #[command(name = "git:remote")]
    GitRemote(git::RemoteArgs),
    /// git's credential helper for wasmdyno remotes (set up by `git:remote`).
    #[command(name = "git-credential", hide = true)]
    GitCredential(git::CredentialArgs),
    /// The hooks of the server's app repositories (run by git).
    #[command(name = "git-hook", hide = true)]
    GitHook(git::HookArgs),
    /// Compile WebAssembly text (.wat) to a binary module (.wasm); used by the wasm buildpack.
    #[command(hide = true)]
    Wat2wasm {
        input: PathBuf,
        output: PathBuf,
    },
}

/// Entry point of the `wasmdyno` binary: parses arguments, runs the command, prints errors with their causes.
pub fn main() -> ExitCode {
    crate::store::arm_failpoint(std::env::var(crate::store::FAILPOINT_ENV).ok());
    init_tracing();
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Build(args) => args.run(),
        Commands::Run(args) => args.run(),
        Commands::Serve(args) => args.run(),
        Commands::Up(args) => args.run(),
        Commands::Apps(args) => args.run(),
        Commands::AppsCreate(args) => args.run(),
        Commands::AppsInfo(args) => args.run(),
        Commands::AppsDestroy(args) => args.run(),
        Commands::AppsSleep(args) => args.run(),
        Commands::Features(args) => args.run(),
        Commands::Hosts(args) => args.run(),
        Commands::Network(args) => args.run(),
        Commands::NetworkAllow(args) => args.run(),
        Commands::NetworkDeny(args) => args.run(),
        Commands::FeaturesEnable(args) => args.run(true),
        Commands::FeaturesDisable(args) => args.run(false),
        Commands::Config(args) => args.run(),
        Commands::ConfigGet(args) => args.run(),
        Commands::ConfigSet(args) => args.run(),
        Commands::ConfigUnset(args) => args.run(),
        Commands::Releases(args) => args.run(),
        Commands::ReleasesInfo(args) => args.run(),
        Commands::ReleasesOutput(args) => args.run(),
        Commands::ReleasesRollback(args) => args.run(),
        Commands::Deploy(args) => args.run(),
        Commands::Logs(args) => args.run(),
        Commands::Metrics(args) => args.run(),
        Commands::Ps(args) => args.run(),
        Commands::PsScale(args) => args.run(),
        Commands::PsRestart(args) => args.run("Restarting"),
        Commands::PsStop(args) => args.run("Stopping"),
        Commands::RunDetached(args) => args.run(),
        Commands::Addons(args) => args.run(),
        Commands::AddonsCreate(args) => args.run(),
        Commands::AddonsInfo(args) => args.run(),
        Commands::AddonsDestroy(args) => args.run(),
        Commands::AddonsRotate(args) => args.run(),
        Commands::Domains(args) => args.run(),
        Commands::DomainsAdd(args) => args.run(),
        Commands::DomainsRemove(args) => args.run(),
        Commands::Drains(args) => args.run(),
        Commands::DrainsAdd(args) => args.run(),
        Commands::DrainsRemove(args) => args.run(),
        Commands::MaintenanceOn(args) => args.run(true),
        Commands::MaintenanceOff(args) => args.run(false),
        Commands::GitRemote(args) => args.run(),
        Commands::GitCredential(args) => args.run(),
        Commands::GitHook(args) => args.run(),
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

pub(crate) fn report(err: &anyhow::Error) {
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
        // Absolute, so buildpacks and git hooks running elsewhere find the same home.
        return std::path::absolute(PathBuf::from(&dir)).unwrap_or_else(|_| PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("wasmdyno");
    }
    user_home().join(".local/share/wasmdyno")
}

/// Creates `home` readable by its owner only (0700), and tightens one that others can read, with a warning:
/// it holds the API token, every app's config vars and their slugs.
pub(crate) fn private_home(home: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home)
        .with_context(|| format!("cannot create {}", home.display()))?;
    let mode = std::fs::metadata(home)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        eprintln!(
            "warning: {} was readable by other users (mode {mode:o}); making it 0700",
            home.display()
        );
        std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", home.display()))?;
    }
    Ok(())
}

/// How builds are isolated (`WASMDYNO_BUILD_SANDBOX`: auto, bwrap, off): the platform's home and the
/// compiled-code cache are hidden from them.
pub(crate) fn build_sandbox() -> anyhow::Result<crate::build::Sandbox> {
    let mode = std::env::var("WASMDYNO_BUILD_SANDBOX")
        .unwrap_or_default()
        .parse()
        .map_err(anyhow::Error::msg)?;
    Ok(crate::build::Sandbox {
        mode,
        hidden: vec![home_dir(), code_cache_dir()],
    })
}

/// The per-user compiled-code cache: `$WASMDYNO_CACHE_DIR`, or `$XDG_CACHE_HOME/wasmdyno`, or `~/.cache/wasmdyno`.
pub(crate) fn code_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WASMDYNO_CACHE_DIR").filter(|d| !d.is_empty()) {
        return std::path::absolute(PathBuf::from(&dir)).unwrap_or_else(|_| PathBuf::from(dir));
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

/// With `WASMDYNO_BASELINE_TIER=auto` (the default), web modules this large start on baseline code: a Go program
/// (the 9.5 MB sample's Cranelift compile takes 3-5 s on two cores); smaller ones compile in about a second anyway.
const BASELINE_MIN_BYTES: usize = 4 << 20;

/// The runtime every command uses: compiled code cached in the cache dir, the pooling allocator when
/// `WASMDYNO_POOL_SLOTS` sizes it, and the baseline tier as `WASMDYNO_BASELINE_TIER` says (`auto` by default).
pub(crate) fn runtime() -> anyhow::Result<crate::runtime::Runtime> {
    let pooling = match std::env::var("WASMDYNO_POOL_SLOTS") {
        Ok(value) if !value.trim().is_empty() => {
            let slots: u32 = value.trim().parse().map_err(|_| {
                anyhow::anyhow!("WASMDYNO_POOL_SLOTS={value:?} is not a number of instances")
            })?;
            let mut pool = crate::runtime::PoolingSettings::new(slots);
            if let Ok(mb) = std::env::var("WASMDYNO_POOL_MEMORY_MB") {
                let mb: u64 = mb.trim().parse().map_err(|_| {
                    anyhow::anyhow!("WASMDYNO_POOL_MEMORY_MB={mb:?} is not a number of MiB")
                })?;
                pool = pool.with_memory_reservation(mb << 20);
            }
            Some(pool)
        }
        _ => None,
    };
    let baseline_tier = match std::env::var("WASMDYNO_BASELINE_TIER") {
        Ok(value) => match value.trim() {
            "1" | "on" | "true" => Some(0),
            "0" | "off" | "false" => None,
            "" | "auto" => Some(BASELINE_MIN_BYTES),
            _ => anyhow::bail!(
                "WASMDYNO_BASELINE_TIER={value:?} is none of auto (modules of 4 MiB and more), on (1) or off (0)"
            ),
        },
        Err(_) => Some(BASELINE_MIN_BYTES),
    };
    let preinit = match std::env::var("WASMDYNO_PREINIT").as_deref().map(str::trim) {
        Ok("0" | "off" | "false") => false,
        Ok("" | "1" | "on" | "true") | Err(_) => true,
        Ok(value) => anyhow::bail!("WASMDYNO_PREINIT={value:?} is neither on (1) nor off (0)"),
    };
    let config = crate::runtime::RuntimeConfig::default()
        .with_cache_dir(Some(code_cache_dir()))
        .with_pooling(pooling)
        .with_baseline_tier(baseline_tier)
        .with_preinit(preinit);
    Ok(crate::runtime::Runtime::new(config)?)
}

fn wat2wasm(input: &std::path::Path, output: &std::path::Path) -> anyhow::Result<()> {
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

/// `-a/--app NAME` (or `$WASMDYNO_APP`), as every app command takes it.
#[derive(Debug, clap::Args)]
pub(crate) struct AppArg {
    /// The app to act on.
    #[arg(short, long = "app", value_name = "APP", env = "WASMDYNO_APP")]
    app: Option<String>,
}

impl AppArg {
    pub(crate) fn name(&self) -> anyhow::Result<String> {
        self.app.clone().ok_or_else(|| {
            anyhow::Error::msg("no app given")
                .context(Hint("pass -a APP or set WASMDYNO_APP".into()))
        })
    }
}

/// `wasmdyno config | head -1` closes our stdout early; Rust ignores SIGPIPE, so printing then fails, and
/// `println!` panics. Leave quietly instead, with the status a shell gives a process killed by SIGPIPE.
fn quiet_on_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}

/// A client of the server announced in this home (or at `$WASMDYNO_API`), with the token in this home (or
/// `$WASMDYNO_TOKEN`).
pub(crate) fn api() -> anyhow::Result<crate::api::client::Client> {
    api_of(&home_dir())
}

/// A client of the server announced in `home`, unless `$WASMDYNO_API` and `$WASMDYNO_TOKEN` say otherwise.
pub(crate) fn api_of(home: &std::path::Path) -> anyhow::Result<crate::api::client::Client> {
    Ok(crate::api::client::Client::discover(
        home,
        std::env::var("WASMDYNO_API").ok(),
        std::env::var("WASMDYNO_TOKEN").ok(),
    )?)
}

/// Runs one API call to completion on a small runtime of its own (CLI commands are synchronous).
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
