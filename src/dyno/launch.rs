//! A dyno's environment and command line: config layers first, the platform's own variables over them, and the
//! Procfile command expanded from the finished environment, never before (so `web: app.wasm --port $PORT` sees
//! its port, `$DYNO` its name and `$WASMDYNO_RELEASE` its release in every kind of dyno); and the shapes of what
//! a dyno runs: its [`Want`], and the release's slug opened once for all its dynos ([`Booted`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::procfile::Command;
use crate::runtime::vfs::Image;
use crate::runtime::{
    CacheOutcome, DynoSize, Guest, RunSpec, Runtime, RuntimeError, resolve_module,
};
use crate::slug::Slug;

/// The port a web dyno's `$PORT` names when its connections arrive on a listener (fd 4) rather than on a port.
pub(crate) const LISTENER_PORT: u16 = 5000;

/// The variables only the platform sets in a dyno.
#[derive(Debug, Clone)]
pub(crate) struct PlatformVars {
    /// `DYNO`: `web.1`, `run.7`, `release.3`.
    pub dyno: String,
    /// `WASMDYNO_RELEASE`: `v3`, or a local slug's short hash.
    pub release: String,
    /// `PORT`, for a dyno that serves HTTP.
    pub port: Option<u16>,
}

impl PlatformVars {
    /// The dyno's environment: `config` (slug defaults, release config and overrides, already layered in that
    /// order) with the platform's variables over it, `HOME` among them.
    pub(crate) fn environment(
        &self,
        config: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut env = config.clone();
        env.insert("HOME".into(), "/".into());
        env.insert("DYNO".into(), self.dyno.clone());
        env.insert("WASMDYNO_RELEASE".into(), self.release.clone());
        match self.port {
            Some(port) => env.insert("PORT".into(), port.to_string()),
            None => env.remove("PORT"),
        };
        env
    }
}

/// A dyno's config, in the one order every kind of dyno gets it: the slug's defaults (its buildpack's config
/// vars), then the release's config vars, then `overrides` (a one-off dyno's `-e`). The platform's variables go over
/// all of it ([`PlatformVars::environment`]).
pub(crate) fn layers(
    slug: &Slug,
    release: &BTreeMap<String, String>,
    overrides: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = slug.manifest().config_vars.clone();
    env.extend(release.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(overrides);
    env
}

/// The argv of `line` in `env`.
pub(crate) fn argv(line: &Command, env: &BTreeMap<String, String>) -> Vec<String> {
    line.expand(&|key| env.get(key).cloned())
}

/// What a dyno's guest runs with: the environment (`config`, already layered, with the platform's variables over
/// it) and the command line expanded from that finished environment, its first word replaced by the `module`
/// that runs (as the guest sees it: `app.wat` in a Procfile runs `app.wasm`), on the release's `image`. Every
/// kind of dyno gets its spec here: formation dynos, one-off and release-phase dynos, and `wasmdyno run`.
pub(crate) fn spec(
    line: &Command,
    config: &BTreeMap<String, String>,
    vars: &PlatformVars,
    module: &str,
    size: DynoSize,
    image: Arc<Image>,
) -> RunSpec {
    let env = vars.environment(config);
    let mut argv = argv(line, &env);
    match argv.first_mut() {
        Some(first) => *first = module.to_string(),
        None => argv.push(module.to_string()),
    }
    RunSpec::new(argv, env, size).with_image(image)
}

/// `WASMDYNO_RELEASE` of a dyno run from a slug outside any app: the slug's short hash.
pub(crate) fn local_release(slug_sha256: &str) -> String {
    slug_sha256.chars().take(7).collect()
}

/// The version of a release outside any app's ledger (a local `wasmdyno run`): its dynos' `WASMDYNO_RELEASE` is
/// the slug's short hash, not `v0`.
pub(crate) const LOCAL_VERSION: u64 = 0;

/// `WASMDYNO_RELEASE` of a dyno of release `version` of the slug `sha256`: `vN`, or the short hash of a local one.
pub(crate) fn release_label(version: u64, sha256: &str) -> String {
    match version {
        LOCAL_VERSION => local_release(sha256),
        version => format!("v{version}"),
    }
}

/// A compiled guest, and while it is baseline code, when the optimized code is ready.
pub(super) type Loaded = (Guest, Option<crate::runtime::Upgrade>);
/// A guest loaded once, whichever dyno asks first.
pub(super) type LoadOnce = tokio::sync::OnceCell<Loaded>;

/// A slug made ready to boot dynos from.
pub(super) struct Booted {
    pub(super) slug: Slug,
    pub(super) image: Arc<Image>,
    /// (Module path, whether baseline code may do) → its compiled guest (and while that is baseline code, when the
    /// optimized code is ready), loaded once however many dynos boot it at the same moment.
    pub(super) guests: Mutex<HashMap<(String, bool), Arc<LoadOnce>>>,
}

pub(super) struct Want {
    pub(super) kind: String,
    /// The command as shown (`ps`, log lines).
    pub(super) command: String,
    /// The command as run: parsed once, so arguments of one-off dynos keep their exact words.
    pub(super) line: Command,
    pub(super) size: DynoSize,
    pub(super) release: u64,
    pub(super) slug: String,
    pub(super) env: BTreeMap<String, String>,
    pub(super) booted: Arc<Booted>,
}

/// A slug's command made ready to run as a one-off dyno, from [`prepare`]: its module compiled and its spec
/// filled in. Change the spec (streams, deadline, network) and give both to [`Runtime::run`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let app = tempfile::tempdir()?;
/// // A core module whose `_start` returns at once: `(module (func (export "_start")))`.
/// # std::fs::write(app.path().join("hello.wasm"), include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm")))?;
/// # let options = wasmdyno::slug::PackOptions {
/// #     process_types: [("worker".to_string(), "hello.wasm".to_string())].into(),
/// #     ..Default::default()
/// # };
/// # let slug = wasmdyno::Slug::from_bytes(&wasmdyno::slug::pack(app.path(), options)?.bytes, Default::default())?;
/// use std::time::Duration;
/// use wasmdyno::{runtime::CacheOutcome, runtime::Exit, Runtime, RuntimeConfig};
///
/// let runtime = Runtime::new(RuntimeConfig::default())?;
/// let mut one_off = wasmdyno::dyno::prepare(&runtime, &slug, "worker", &[], Default::default(), Default::default())?;
/// assert!(matches!(one_off.cache, CacheOutcome::Uncached(_)));
/// assert_eq!(one_off.spec.argv, ["hello.wasm"]);
/// one_off.spec.deadline = Some(Duration::from_secs(60));
/// let tokio = tokio::runtime::Runtime::new()?;
/// assert_eq!(tokio.block_on(runtime.run(&one_off.guest, one_off.spec))?, Exit::Status(0));
/// # Ok(()) }
/// ```
#[non_exhaustive]
pub struct Prepared {
    /// The compiled module or component.
    pub guest: Guest,
    /// argv (argv\[0\] the module's path in the slug), the environment, the size and the slug's filesystem.
    pub spec: RunSpec,
    /// Where the compiled code came from.
    pub cache: CacheOutcome,
}

/// Prepares a one-off dyno of `slug` on `runtime`, as `wasmdyno run COMMAND ARGS...` does: `command` is a process type of
/// the slug's Procfile (with `args` appended), a command line, or a module path. The guest's environment is
/// the slug's config vars, then `env`, with `HOME=/`, `DYNO` from `env` or else `run.1`, and
/// `WASMDYNO_RELEASE` from `env` or else the slug's short hash; variable references in the command expand
/// from the finished environment. Compiling can take a while for a big module (the first time,
/// without a cache): async callers run this on a blocking thread.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let app = tempfile::tempdir()?;
/// // A core module whose `_start` returns at once: `(module (func (export "_start")))`.
/// # std::fs::write(app.path().join("hello.wasm"), include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm")))?;
/// # let options = wasmdyno::slug::PackOptions {
/// #     process_types: [("worker".to_string(), "hello.wasm --from ${GREETING}".to_string())].into(),
/// #     config_vars: [("HOME".to_string(), "/app".to_string())].into(),
/// #     ..Default::default()
/// # };
/// # let slug = wasmdyno::Slug::from_bytes(&wasmdyno::slug::pack(app.path(), options)?.bytes, Default::default())?;
/// use std::collections::BTreeMap;
/// use wasmdyno::{runtime::DynoSize, runtime::Exit, Runtime, RuntimeConfig};
///
/// let runtime = Runtime::new(RuntimeConfig::default())?;
/// let env = BTreeMap::from([("GREETING".to_string(), "hi".to_string())]);
/// let one_off = wasmdyno::dyno::prepare(&runtime, &slug, "worker", &["--once".into()], env, DynoSize::Eco)?;
/// assert_eq!(one_off.spec.argv, ["hello.wasm", "--from", "hi", "--once"]);
/// assert_eq!(one_off.spec.env["DYNO"], "run.1");
/// assert_eq!(one_off.spec.env["WASMDYNO_RELEASE"], &slug.sha256()[..7]);
/// assert_eq!(one_off.spec.env["HOME"], "/", "as every dyno has it, whatever the config vars say");
/// let exit = tokio::runtime::Runtime::new()?.block_on(runtime.run(&one_off.guest, one_off.spec))?;
/// assert_eq!(exit, Exit::Status(0));
/// # Ok(()) }
/// ```
pub fn prepare(
    runtime: &Runtime,
    slug: &Slug,
    command: &str,
    args: &[String],
    env: BTreeMap<String, String>,
    size: DynoSize,
) -> Result<Prepared, RuntimeError> {
    let found = one_off_module(slug, command, args, env)?;
    let (guest, cache) = runtime.load(&found.wasm)?;
    let spec = spec(
        &found.line,
        &found.config,
        &found.platform,
        &found.module,
        size,
        Arc::new(Image::from_slug(slug)),
    );
    Ok(Prepared { guest, spec, cache })
}

/// What a one-off dyno of `slug` runs for `command` and `args` (see [`prepare`]): its command line, config,
/// platform variables, and the module its first word names, with the module's bytes.
pub(crate) struct OneOffModule {
    pub(crate) line: Command,
    pub(crate) config: BTreeMap<String, String>,
    pub(crate) platform: PlatformVars,
    pub(crate) module: String,
    pub(crate) wasm: Arc<[u8]>,
}

/// Finds the module a one-off dyno of `slug` runs for `command` and `args` with `env` over the slug's config
/// vars: the one check `prepare` and a local `wasmdyno run` make before anything is compiled or started.
pub(crate) fn one_off_module(
    slug: &Slug,
    command: &str,
    args: &[String],
    env: BTreeMap<String, String>,
) -> Result<OneOffModule, RuntimeError> {
    let line = crate::procfile::Command::resolve(&slug.manifest().process_types, command, args)
        .map_err(|e| RuntimeError::BadCommand {
            command: command.to_string(),
            reason: e.to_string(),
        })?;
    // As every dyno has them: `/` is home, DYNO is the caller's or `run.1`, WASMDYNO_RELEASE the caller's or
    // the slug's short hash, PORT only the caller's; never a config var's.
    let platform = PlatformVars {
        dyno: env.get("DYNO").cloned().unwrap_or_else(|| "run.1".into()),
        release: env
            .get("WASMDYNO_RELEASE")
            .cloned()
            .unwrap_or_else(|| local_release(slug.sha256())),
        port: env.get("PORT").and_then(|port| port.parse().ok()),
    };
    let config = layers(slug, &BTreeMap::new(), env);
    let full_env = platform.environment(&config);
    let Some(word) = argv(&line, &full_env).into_iter().next() else {
        return Err(RuntimeError::BadCommand {
            command: line.as_str().to_string(),
            reason: "it expands to nothing".into(),
        });
    };
    let (module, wasm) = resolve_module(slug, &word)?;
    Ok(OneOffModule {
        line,
        config,
        platform,
        module,
        wasm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_variables_win_and_the_command_sees_them() {
        let config = BTreeMap::from([
            ("PORT".to_string(), "1".to_string()),
            ("GREETING".to_string(), "hi".to_string()),
        ]);
        let platform = PlatformVars {
            dyno: "web.2".into(),
            release: "v9".into(),
            port: Some(5000),
        };
        let env = platform.environment(&config);
        let line =
            Command::parse("app.wasm --port $PORT $DYNO ${WASMDYNO_RELEASE} ${GREETING:-x} $HOME")
                .unwrap();
        assert_eq!(
            argv(&line, &env),
            ["app.wasm", "--port", "5000", "web.2", "v9", "hi", "/"]
        );
        let worker = PlatformVars {
            port: None,
            ..platform
        };
        assert!(!worker.environment(&config).contains_key("PORT"));
    }
}
