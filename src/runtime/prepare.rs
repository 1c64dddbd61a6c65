//! One-off dynos from a slug: a Procfile process type, command line or module path to a loaded guest and a
//! ready spec, with the dyno's environment and platform variables.

#[allow(unused_imports)]
use super::*;

/// A slug's command made ready to run as a one-off dyno, from [`Runtime::prepare`]: its module compiled and
/// its spec filled in. Change the spec (streams, deadline, network) and give both to [`Runtime::run`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let app = tempfile::tempdir()?;
/// // A core module whose `_start` returns at once: `(module (func (export "_start")))`.
/// # std::fs::write(app.path().join("hello.wasm"), include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm")))?;
/// # let options = wasmdyno::PackOptions {
/// #     process_types: [("worker".to_string(), "hello.wasm".to_string())].into(),
/// #     ..Default::default()
/// # };
/// # let slug = wasmdyno::Slug::from_bytes(&wasmdyno::pack(app.path(), options)?.bytes, Default::default())?;
/// use std::time::Duration;
/// use wasmdyno::{CacheOutcome, Exit, Runtime, RuntimeConfig};
///
/// let runtime = Runtime::new(RuntimeConfig::default())?;
/// let mut one_off = runtime.prepare(&slug, "worker", &[], Default::default(), Default::default())?;
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

impl Runtime {
    /// Prepares a one-off dyno of `slug`, as `wasmdyno run COMMAND ARGS...` does: `command` is a process type of
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
    /// # let options = wasmdyno::PackOptions {
    /// #     process_types: [("worker".to_string(), "hello.wasm --from ${GREETING}".to_string())].into(),
    /// #     config_vars: [("HOME".to_string(), "/app".to_string())].into(),
    /// #     ..Default::default()
    /// # };
    /// # let slug = wasmdyno::Slug::from_bytes(&wasmdyno::pack(app.path(), options)?.bytes, Default::default())?;
    /// use std::collections::BTreeMap;
    /// use wasmdyno::{DynoSize, Exit, Runtime, RuntimeConfig};
    ///
    /// let runtime = Runtime::new(RuntimeConfig::default())?;
    /// let env = BTreeMap::from([("GREETING".to_string(), "hi".to_string())]);
    /// let one_off = runtime.prepare(&slug, "worker", &["--once".into()], env, DynoSize::Eco)?;
    /// assert_eq!(one_off.spec.argv, ["hello.wasm", "--from", "hi", "--once"]);
    /// assert_eq!(one_off.spec.env["DYNO"], "run.1");
    /// assert_eq!(one_off.spec.env["WASMDYNO_RELEASE"], &slug.sha256()[..7]);
    /// assert_eq!(one_off.spec.env["HOME"], "/", "as every dyno has it, whatever the config vars say");
    /// let exit = tokio::runtime::Runtime::new()?.block_on(runtime.run(&one_off.guest, one_off.spec))?;
    /// assert_eq!(exit, Exit::Status(0));
    /// # Ok(()) }
    /// ```
    pub fn prepare(
        &self,
        slug: &Slug,
        command: &str,
        args: &[String],
        env: BTreeMap<String, String>,
        size: DynoSize,
    ) -> Result<Prepared, RuntimeError> {
        let line = crate::procfile::Command::resolve(&slug.manifest().process_types, command, args)
            .map_err(|e| RuntimeError::BadCommand {
                command: command.to_string(),
                reason: e.to_string(),
            })?;
        // As every dyno has them: `/` is home, DYNO is the caller's or `run.1`, WASMDYNO_RELEASE the caller's or
        // the slug's short hash, PORT only the caller's; never a config var's.
        let platform = crate::dyno::launch::PlatformVars {
            dyno: env.get("DYNO").cloned().unwrap_or_else(|| "run.1".into()),
            release: env
                .get("WASMDYNO_RELEASE")
                .cloned()
                .unwrap_or_else(|| crate::dyno::launch::local_release(slug.sha256())),
            port: env.get("PORT").and_then(|port| port.parse().ok()),
        };
        let mut layered = slug.manifest().config_vars.clone();
        layered.extend(env);
        let full_env = platform.environment(&layered);
        let mut argv = crate::dyno::launch::argv(&line, &full_env);
        let Some(word) = argv.first() else {
            return Err(RuntimeError::BadCommand {
                command: line.as_str().to_string(),
                reason: "it expands to nothing".into(),
            });
        };
        let (module, wasm) = resolve_module(slug, word)?;
        let (guest, cache) = self.load(&wasm)?;
        // argv[0] names the module that runs, as the guest sees it (`app.wat` in a Procfile runs `app.wasm`).
        argv[0] = module;
        let spec = RunSpec::new(argv, full_env, size).with_image(Arc::new(Image::from_slug(slug)));
        Ok(Prepared { guest, spec, cache })
    }
}

/// Finds the module a command's first word names: `app.wasm`, `./bin/app.wasm`, `/app/app.wasm`, `app`
/// (for `app.wasm`), or `app.wat` (built to `app.wasm`). Returns the module's path in the slug and its bytes.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let app = tempfile::tempdir()?;
/// # std::fs::write(app.path().join("hello.wasm"), b"\0asm\x01\0\0\0")?;
/// # let options = wasmdyno::PackOptions {
/// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
/// #     ..Default::default()
/// # };
/// # let packed = wasmdyno::pack(app.path(), options)?;
/// let slug = wasmdyno::Slug::from_bytes(&packed.bytes, Default::default())?;
/// for word in ["hello", "hello.wasm", "hello.wat", "/app/hello.wasm"] {
///     let (path, _wasm) = wasmdyno::resolve_module(&slug, word)?;
///     assert_eq!(path, "hello.wasm");
/// }
/// assert!(wasmdyno::resolve_module(&slug, "other").is_err());
/// # Ok(()) }
/// ```
pub fn resolve_module(slug: &Slug, word: &str) -> Result<(String, Arc<[u8]>), RuntimeError> {
    let trimmed = word
        .strip_prefix("/app/")
        .unwrap_or(word)
        .trim_start_matches('/');
    let mut candidates = vec![trimmed.to_string()];
    if let Some(stem) = trimmed.strip_suffix(".wat") {
        candidates.push(format!("{stem}.wasm"));
    } else if !trimmed.ends_with(".wasm") {
        candidates.push(format!("{trimmed}.wasm"));
    }
    for candidate in candidates {
        if let Some(path) = crate::slug::normalize(&candidate)
            && let Some(bytes) = slug.file(&path)
            && is_component(&bytes).is_ok()
        {
            return Ok((path, bytes));
        }
    }
    let available = slug
        .manifest()
        .files
        .keys()
        .filter(|p| p.ends_with(".wasm"))
        .cloned()
        .collect();
    Err(RuntimeError::NoSuchModule {
        word: word.to_string(),
        available,
    })
}
