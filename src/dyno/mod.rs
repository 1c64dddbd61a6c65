//! The dyno manager: keeps each app's formation running on its current release.
//!
//! [`Manager::reconcile`] converges an app's running dynos to (current release, formation): it starts missing
//! dynos, stops extra ones, and replaces dynos of an older release or another size. Each dyno is a supervisor task
//! that boots the process type's module, runs it, and restarts it when it exits or traps, backing off
//! exponentially on repeated crashes. Every dyno is cycled once a day (with jitter). Stopping is graceful: a worker's
//! stdin reaches end of file and a web dyno's listener stops accepting; a dyno that has not exited when the stop
//! timeout ends is interrupted (R12). State changes and exits are written to the app's log stream as Heroku does.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::logplex::{LineWriter, LogLine, Logplex};
use crate::procfile::Command;
use crate::runtime::cgi::CgiDyno;
use crate::runtime::http::HttpSettings;
use crate::runtime::net::Listener;
use crate::runtime::stdio::{Input, Output};
use crate::runtime::vfs::Image;
use crate::runtime::web::WebHandler;
use crate::runtime::{DynoSize, Exit, Guest, RunSpec, Runtime, resolve_module};
use crate::slug::{Limits, Slug};
use launch::PlatformVars;

pub(crate) mod launch;

/// What the dyno manager and the router run: the apps, and each app's current release and formation.
///
/// `wasmdyno serve` implements it over its state store; an edge host over a folder of slugs or a central server
/// ([`MemorySource`](crate::MemorySource)). Reads are frequent (every reconcile, every routing-table reload) and must be quick: keep the
/// state in memory and refresh it elsewhere.
///
/// ```
/// use std::path::PathBuf;
/// use wasmdyno::{AppSpec, ReleaseSpec, Source, SourceError};
///
/// /// One app, never changing.
/// struct Fixed(ReleaseSpec);
///
/// impl Source for Fixed {
///     fn apps(&self) -> Result<Vec<AppSpec>, SourceError> {
///         Ok(vec![AppSpec::new("hello")])
///     }
///     fn release(&self, app: &str) -> Result<Option<ReleaseSpec>, SourceError> {
///         Ok((app == "hello").then(|| self.0.clone()))
///     }
///     fn slug_path(&self, sha256: &str) -> PathBuf {
///         PathBuf::from(format!("/srv/slugs/{sha256}.tar.gz"))
///     }
/// }
/// ```
pub trait Source: Send + Sync {
    /// Every app, with its flags.
    fn apps(&self) -> Result<Vec<AppSpec>, SourceError>;
    /// One app; `None` when there is no such app. The default looks through [`apps`](Self::apps).
    fn app(&self, app: &str) -> Result<Option<AppSpec>, SourceError> {
        Ok(self.apps()?.into_iter().find(|a| a.name == app))
    }
    /// The app's current release (the one its dynos run); `None` for an unknown app or one never released.
    fn release(&self, app: &str) -> Result<Option<ReleaseSpec>, SourceError>;
    /// Where the slug with this sha256 is on disk. The manager opens and verifies it, checking that the archive's
    /// sha256 is `sha256`.
    fn slug_path(&self, sha256: &str) -> std::path::PathBuf;
    /// The app's custom hostnames, besides `<app>.<base domain>` (lowercase; may start with `*.`).
    fn domains(&self, _app: &str) -> Result<Vec<String>, SourceError> {
        Ok(Vec::new())
    }
}

/// A [`Source`] could not be read.
///
/// ```
/// let e = wasmdyno::SourceError::new("the central server is unreachable");
/// assert_eq!(e.to_string(), "the central server is unreachable");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(String);

impl SourceError {
    /// An error that says `why`.
    ///
    /// ```
    /// let e = wasmdyno::SourceError::new(format!("cannot read {}", "/srv/slugs"));
    /// assert!(e.to_string().contains("/srv/slugs"));
    /// ```
    pub fn new(why: impl Into<String>) -> SourceError {
        SourceError(why.into())
    }
}

/// An app as a [`Source`] lists it.
///
/// ```
/// let app = wasmdyno::AppSpec::new("hello");
/// assert!(!app.maintenance && !app.sleep);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppSpec {
    /// The app's name: its hostname is `<name>.<base domain>`.
    pub name: String,
    /// In maintenance mode the router answers every request with H80.
    pub maintenance: bool,
    /// Its web dynos go idle after [`Settings::sleep_after`] without a request.
    pub sleep: bool,
    /// Features turned on (`http-fresh-instances`: a new `wasi:http` instance for every request).
    pub features: std::collections::BTreeSet<String>,
    /// Destinations its dynos may connect to (`host` or `host:port`, public addresses only).
    pub network: Vec<String>,
}

impl AppSpec {
    /// An app named `name`, not in maintenance, not sleeping.
    ///
    /// ```
    /// let mut app = wasmdyno::AppSpec::new("hello");
    /// app.maintenance = true;
    /// assert_eq!(app.name, "hello");
    /// ```
    pub fn new(name: impl Into<String>) -> AppSpec {
        AppSpec {
            name: name.into(),
            maintenance: false,
            sleep: false,
            features: Default::default(),
            network: Vec::new(),
        }
    }
}

/// An app's current release as a [`Source`] gives it: what its dynos run.
///
/// ```
/// use wasmdyno::{DynoSize, ReleaseSpec};
///
/// let release = ReleaseSpec::new(3, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
///     .config("GREETING", "hi")
///     .scale("web", 2, DynoSize::default());
/// assert_eq!(release.formation["web"].quantity, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReleaseSpec {
    /// 1, 2, 3, ...: a dyno whose release differs is replaced.
    pub version: u64,
    /// The slug's sha256; `None` runs nothing (an app never built).
    pub slug: Option<String>,
    /// Config vars, over the slug's own (`.wasmdyno/slug.json`).
    pub config: BTreeMap<String, String>,
    /// Process type → how many dynos of which size.
    pub formation: BTreeMap<String, Scale>,
}

impl ReleaseSpec {
    /// Release `version` of the slug `sha256`, no config vars, an empty formation.
    ///
    /// ```
    /// let release = wasmdyno::ReleaseSpec::new(1, "ab12");
    /// assert_eq!(release.slug.as_deref(), Some("ab12"));
    /// assert!(release.config.is_empty() && release.formation.is_empty());
    /// ```
    pub fn new(version: u64, sha256: impl Into<String>) -> ReleaseSpec {
        ReleaseSpec {
            version,
            slug: Some(sha256.into()),
            config: BTreeMap::new(),
            formation: BTreeMap::new(),
        }
    }

    /// Sets a config var.
    ///
    /// ```
    /// let release = wasmdyno::ReleaseSpec::new(1, "ab12").config("GREETING", "hi");
    /// assert_eq!(release.config["GREETING"], "hi");
    /// ```
    pub fn config(mut self, name: impl Into<String>, value: impl Into<String>) -> ReleaseSpec {
        self.config.insert(name.into(), value.into());
        self
    }

    /// Runs `quantity` dynos of `kind` at `size`.
    ///
    /// ```
    /// use wasmdyno::{DynoSize, ReleaseSpec, Scale};
    /// let release = ReleaseSpec::new(1, "ab12").scale("web", 2, DynoSize::Eco).scale("worker", 1, DynoSize::Basic);
    /// assert_eq!(release.formation["web"], Scale::new(2, DynoSize::Eco));
    /// ```
    pub fn scale(mut self, kind: impl Into<String>, quantity: u32, size: DynoSize) -> ReleaseSpec {
        self.formation.insert(kind.into(), Scale { quantity, size });
        self
    }
}

/// How many dynos of one process type run, and how big.
///
/// ```
/// let one = wasmdyno::Scale::new(1, wasmdyno::DynoSize::default());
/// assert_eq!(one.quantity, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scale {
    /// How many dynos (0: none).
    pub quantity: u32,
    /// Each one's memory quota.
    pub size: DynoSize,
}

impl Scale {
    /// `quantity` dynos of `size`.
    ///
    /// ```
    /// let two = wasmdyno::Scale::new(2, "eco".parse().unwrap());
    /// assert_eq!((two.quantity, two.size), (2, wasmdyno::DynoSize::Eco));
    /// ```
    pub fn new(quantity: u32, size: DynoSize) -> Scale {
        Scale { quantity, size }
    }
}

/// Is `name` a config var name (`[A-Za-z_][A-Za-z0-9_]*`)?
pub(crate) fn is_config_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Is `name` a variable only the platform sets (`PORT`, `DYNO`, `WASMDYNO_*`)?
pub(crate) fn is_platform_var(name: &str) -> bool {
    name == "PORT" || name == "DYNO" || name.starts_with("WASMDYNO_")
}

/// The current time in unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Timers and limits of the dyno manager. Every one is a setting, so tests run them in milliseconds.
///
/// ```
/// use std::time::Duration;
///
/// let mut settings = wasmdyno::ManagerSettings::default();
/// assert_eq!(settings.backoff_base, Duration::from_secs(10));
/// settings.stop_timeout = Duration::from_secs(5);
/// settings.http.max_instances = 4;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Delay before the second restart of a crashing dyno; it doubles with each further crash (the first
    /// restart is immediate).
    pub backoff_base: Duration,
    /// The longest delay between restarts.
    pub backoff_cap: Duration,
    /// How long a dyno runs before it is cycled (plus up to `cycle_jitter`).
    pub cycle_after: Duration,
    /// The most added at random to each dyno's `cycle_after`, so an app's dynos are not all cycled at once.
    pub cycle_jitter: Duration,
    /// How long a stopping dyno has to exit before it is interrupted.
    pub stop_timeout: Duration,
    /// Connections a web dyno's listener queues before the router waits.
    pub listen_backlog: usize,
    /// R10: a web dyno that listens must accept within this time of booting, or it is restarted.
    pub boot_timeout: Duration,
    /// A listening web dyno that accepts no connection for this long while connections wait has stopped making
    /// progress (a Go program spinning in a handler cannot be preempted): it is restarted (R18).
    pub unresponsive_after: Duration,
    /// An attached one-off dyno with no input or output for this long is stopped.
    pub attach_idle: Duration,
    /// How `wasi:http` web dynos keep their instances.
    pub http: HttpSettings,
    /// A sleeping app's web dynos go idle after this long without a request.
    pub sleep_after: Duration,
    /// A release phase still running after this long fails its release (Heroku gives it an hour).
    pub release_phase_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            backoff_base: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(20 * 60),
            cycle_after: Duration::from_secs(24 * 3600),
            cycle_jitter: Duration::from_secs(3600),
            stop_timeout: Duration::from_secs(30),
            listen_backlog: 511,
            boot_timeout: Duration::from_secs(60),
            unresponsive_after: Duration::from_secs(30),
            attach_idle: Duration::from_secs(3600),
            http: HttpSettings::default(),
            sleep_after: Duration::from_secs(30 * 60),
            release_phase_timeout: Duration::from_secs(3600),
        }
    }
}

impl Settings {
    /// The defaults, overridden by `WASMDYNO_BACKOFF_BASE_MS`, `WASMDYNO_BACKOFF_CAP_MS`, `WASMDYNO_CYCLE_MS`,
    /// `WASMDYNO_CYCLE_JITTER_MS`, `WASMDYNO_STOP_TIMEOUT_MS`, `WASMDYNO_BOOT_TIMEOUT_MS` (R10),
    /// `WASMDYNO_UNRESPONSIVE_MS` (R18), `WASMDYNO_ATTACH_IDLE_MS`, `WASMDYNO_SLEEP_AFTER_MS`,
    /// `WASMDYNO_RELEASE_PHASE_TIMEOUT` (seconds; or `WASMDYNO_RELEASE_PHASE_TIMEOUT_MS`), and for `wasi:http`
    /// web dynos `WASMDYNO_HTTP_INSTANCES` (warm instances per dyno), `WASMDYNO_HTTP_FRESH_INSTANCES` (a new
    /// instance per request) and `WASMDYNO_HTTP_DEADLINE_MS` (longest `handle` call). An error names a variable
    /// whose value does not parse.
    ///
    /// ```
    /// // `WASMDYNO_STOP_TIMEOUT_MS=5000 wasmdyno serve` gives dynos 5 s to stop.
    /// let settings = wasmdyno::ManagerSettings::from_env()?;
    /// println!("dynos stop within {:?}", settings.stop_timeout);
    /// # Ok::<(), String>(())
    /// ```
    pub fn from_env() -> Result<Settings, String> {
        let mut settings = Settings::default();
        for (var, field) in [
            ("WASMDYNO_BACKOFF_BASE_MS", &mut settings.backoff_base),
            ("WASMDYNO_BACKOFF_CAP_MS", &mut settings.backoff_cap),
            ("WASMDYNO_CYCLE_MS", &mut settings.cycle_after),
            ("WASMDYNO_CYCLE_JITTER_MS", &mut settings.cycle_jitter),
            ("WASMDYNO_STOP_TIMEOUT_MS", &mut settings.stop_timeout),
            ("WASMDYNO_BOOT_TIMEOUT_MS", &mut settings.boot_timeout),
            ("WASMDYNO_UNRESPONSIVE_MS", &mut settings.unresponsive_after),
            ("WASMDYNO_ATTACH_IDLE_MS", &mut settings.attach_idle),
            ("WASMDYNO_HTTP_DEADLINE_MS", &mut settings.http.deadline),
            ("WASMDYNO_SLEEP_AFTER_MS", &mut settings.sleep_after),
            (
                "WASMDYNO_RELEASE_PHASE_TIMEOUT_MS",
                &mut settings.release_phase_timeout,
            ),
        ] {
            if let Ok(value) = std::env::var(var) {
                let ms: u64 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{var}={value:?} is not a number of milliseconds"))?;
                *field = Duration::from_millis(ms);
            }
        }
        if let Ok(value) = std::env::var("WASMDYNO_RELEASE_PHASE_TIMEOUT") {
            settings.release_phase_timeout = value
                .trim()
                .trim_end_matches('s')
                .parse::<f64>()
                .ok()
                .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
                .ok_or_else(|| {
                    format!("WASMDYNO_RELEASE_PHASE_TIMEOUT={value:?} is not a number of seconds")
                })?;
        }
        if let Ok(value) = std::env::var("WASMDYNO_HTTP_INSTANCES") {
            settings.http.max_instances =
                value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!("WASMDYNO_HTTP_INSTANCES={value:?} is not a positive number")
                    })?;
        }
        if let Ok(value) = std::env::var("WASMDYNO_HTTP_FRESH_INSTANCES") {
            settings.http.fresh_instances = matches!(value.trim(), "1" | "true" | "on" | "yes");
        }
        Ok(settings)
    }

    /// The delay before restart number `crashes` (1 for the first crash).
    pub(crate) fn backoff(&self, crashes: u32) -> Duration {
        if crashes <= 1 {
            return Duration::ZERO;
        }
        let doubled = self
            .backoff_base
            .saturating_mul(1u32 << (crashes - 2).min(30));
        doubled.min(self.backoff_cap)
    }
}

/// A dyno's state, as `ps` shows it ([`DynoInfo::state`]); it serializes as its name.
///
/// ```
/// use wasmdyno::DynoState;
///
/// assert_eq!(serde_json::to_string(&DynoState::Crashed)?, r#""crashed""#);
/// assert_eq!(serde_json::from_str::<DynoState>(r#""up""#)?, DynoState::Up);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Booting (or restarting, or waking): a listening web dyno stays here until it accepts.
    Starting,
    /// Running; the router sends requests to web dynos in this state only.
    Up,
    /// Its process exited or trapped; it is restarted after its backoff.
    Crashed,
    /// A sleeping app's web dyno with no requests for a while; the next request wakes it.
    Idle,
    /// Stopped, or a one-off dyno that ended.
    Down,
}

impl State {
    /// The state's name: `starting`, `up`, `crashed`, `idle` or `down`.
    ///
    /// ```
    /// assert_eq!(wasmdyno::DynoState::Up.as_str(), "up");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Up => "up",
            State::Crashed => "crashed",
            State::Idle => "idle",
            State::Down => "down",
        }
    }
}

/// What `ps` and the API report about one dyno ([`Manager::dynos`], [`Manager::run_one_off`]).
///
/// ```
/// let info: wasmdyno::DynoInfo = serde_json::from_str(r#"{
///     "name": "web.1", "type": "web", "command": "hello.wasm", "size": "standard-1x",
///     "state": "up", "updated_at": 1700000000, "release": 3
/// }"#)?;
/// assert_eq!((info.kind.as_str(), info.state), ("web", wasmdyno::DynoState::Up));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DynoInfo {
    /// `web.1`, `worker.2`, `run.3`.
    pub name: String,
    /// Its process type (`run` for a one-off dyno); `type` in JSON.
    #[serde(rename = "type")]
    pub kind: String,
    /// The command it runs, as the Procfile (or `wasmdyno run`) gives it.
    pub command: String,
    /// Its size's name (`standard-1x`).
    pub size: String,
    /// Its state now.
    pub state: State,
    /// Unix seconds of the last state change.
    pub updated_at: i64,
    /// The version of the release it runs.
    pub release: u64,
}

/// A web dyno the router can send requests to.
#[derive(Clone)]
pub struct WebDyno {
    pub name: String,
    /// Where its requests go: its listener (a program that listens), unless it has a handler.
    pub listener: Listener,
    /// A `wasi:http` or CGI dyno's handler; when set, requests go here and not to the listener.
    pub handler: Option<WebHandler>,
}

struct Dyno {
    info: Arc<Mutex<DynoInfo>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// The web dyno's current listener (replaced when the dyno is cycled).
    listener: Arc<Mutex<Option<Listener>>>,
    /// A `wasi:http` or CGI web dyno's handler while it serves.
    handler: Arc<Mutex<Option<WebHandler>>>,
    slug: String,
}

/// The dyno manager of one server: keeps the formation of each app of a [`Source`] running (supervised,
/// restarted with backoff, cycled daily, replaced with preboot on a new release) and runs one-off dynos. Cheap to
/// clone: clones share the dynos.
///
/// Here a one-off dyno runs a slug's `worker` process type and reports its exit status:
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # // A slug whose `worker` runs a module that exits 0 at once.
/// # let app = tempfile::tempdir()?;
/// # std::fs::write(app.path().join("hello.wasm"), include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm")))?;
/// # let options = wasmdyno::PackOptions {
/// #     process_types: [("worker".to_string(), "hello.wasm".to_string())].into(),
/// #     ..Default::default()
/// # };
/// # let packed = wasmdyno::pack(app.path(), options)?;
/// use std::sync::Arc;
/// use wasmdyno::{AppSpec, Attach, Input, Logplex, Manager, MemorySource, ReleaseSpec, Runtime, RuntimeConfig};
///
/// let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
/// tokio.block_on(async {
///     let work = tempfile::tempdir()?;
///     let source = Arc::new(MemorySource::new(work.path()));
///     let sha = source.add_slug(&packed.bytes, None, Default::default())?.sha256().to_string();
///     source.set(AppSpec::new("hello"), Some(ReleaseSpec::new(1, sha)));
///     let runtime = Arc::new(Runtime::new(RuntimeConfig::default())?);
///     let manager = Manager::new(runtime, source, Default::default(), Logplex::new(), Default::default());
///
///     let (exit, status) = tokio::sync::oneshot::channel();
///     let discard = || Arc::new(|_: &[u8]| {});
///     let attach = Attach { stdin: Input::closed(), stdout: discard(), stderr: discard(), exit };
///     let dyno = manager.run_one_off("hello", "worker", &[], Default::default(), Default::default(), Some(attach))?;
///     assert_eq!(dyno.name, "run.1");
///     assert_eq!(status.await?, 0);
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Arc<Runtime>,
    source: Arc<dyn Source>,
    limits: Limits,
    logplex: Logplex,
    settings: Settings,
    apps: Mutex<HashMap<String, BTreeMap<String, Dyno>>>,
    /// One reconcile at a time per manager: reconciles are quick (they start and signal tasks).
    reconciling: tokio::sync::Mutex<()>,
    /// The number of the next one-off dyno (`run.N`).
    one_offs: std::sync::atomic::AtomicU64,
    /// Booted releases: slug sha256 → its image and compiled modules, shared by the slug's dynos.
    releases: Mutex<HashMap<String, Arc<Booted>>>,
    /// Preboot: per app, the web dynos of a replaced release that serve until their successors are up.
    retiring: Mutex<HashMap<String, Vec<Dyno>>>,
    /// Per app: whether it sleeps, and when its web dynos last got a request.
    activity: Mutex<HashMap<String, Arc<Activity>>>,
    /// What [`Activity`] times count from.
    epoch: std::time::Instant,
}

/// The requests reaching one app, for sleeping (`apps:sleep on`): its web dynos go idle after
/// [`Settings::sleep_after`] without one, and the next wakes them.
struct Activity {
    sleep: std::sync::atomic::AtomicBool,
    /// The app's `http-fresh-instances` feature: a new `wasi:http` instance per request.
    fresh_instances: std::sync::atomic::AtomicBool,
    /// What its dynos may connect to.
    network: Mutex<crate::runtime::NetworkPolicy>,
    /// Milliseconds since the manager's epoch.
    last_request: std::sync::atomic::AtomicU64,
    /// Bumped to wake the app's idle dynos.
    wakes: watch::Sender<u64>,
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn activity(&self, app: &str) -> Arc<Activity> {
        let mut all = self.activity.lock().expect("activity");
        all.entry(app.to_string())
            .or_insert_with(|| {
                Arc::new(Activity {
                    sleep: std::sync::atomic::AtomicBool::new(false),
                    fresh_instances: std::sync::atomic::AtomicBool::new(false),
                    network: Mutex::default(),
                    last_request: std::sync::atomic::AtomicU64::new(0),
                    wakes: watch::channel(0).0,
                })
            })
            .clone()
    }
}

/// A slug made ready to boot dynos from.
struct Booted {
    slug: Slug,
    image: Arc<Image>,
    /// Module path → its compiled guest, loaded once however many dynos boot it at the same moment.
    guests: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Guest>>>>,
}

/// Why a dyno could not be started.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use wasmdyno::{AppSpec, DynoError, Logplex, Manager, MemorySource, ReleaseSpec, Runtime, RuntimeConfig};
///
/// let work = tempfile::tempdir()?;
/// let source = Arc::new(MemorySource::new(work.path()));
/// let runtime = Arc::new(Runtime::new(RuntimeConfig::default())?);
/// let manager = Manager::new(runtime, source.clone(), Default::default(), Logplex::new(), Default::default());
/// let run = || manager.run_one_off("hello", "worker", &[], Default::default(), Default::default(), None);
///
/// source.set(AppSpec::new("hello"), None);
/// let err = run().unwrap_err();
/// assert!(matches!(err, DynoError::Command(_)));
/// assert_eq!(err.to_string(), "hello has no release with a slug yet: deploy first");
///
/// // A release whose slug is not in the source's folder.
/// source.set(AppSpec::new("hello"), Some(ReleaseSpec::new(1, "0".repeat(64))));
/// assert!(matches!(run().unwrap_err(), DynoError::Slug { .. }));
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DynoError {
    /// The release's slug cannot be opened, fails verification, or is not the archive its sha256 names.
    #[error("slug {sha256}: {reason}")]
    Slug {
        /// The sha256 the release names.
        sha256: String,
        /// What is wrong.
        reason: String,
    },
    /// The app has no release with a slug, its source cannot be read, or the command does not resolve.
    #[error("{0}")]
    Command(String),
}

impl Manager {
    /// A manager running what `source` says, on `runtime`, writing into `logplex`. It starts nothing until
    /// [`reconcile`](Self::reconcile) or [`reconcile_all`](Self::reconcile_all) is called.
    ///
    /// ```no_run
    /// # async fn host() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use wasmdyno::{AppSpec, DynoSize, Logplex, Manager, MemorySource, ReleaseSpec, Runtime, RuntimeConfig};
    ///
    /// let runtime = Arc::new(Runtime::new(RuntimeConfig::default())?);
    /// let source = Arc::new(MemorySource::new("/var/lib/edge/slugs"));
    /// let slug = std::fs::read("hello.tar.gz")?;
    /// let sha = source.add_slug(&slug, None, Default::default())?.sha256().to_string();
    /// // Two `worker` dynos with a config var; `reconcile` starts them, a new release replaces them.
    /// let release = ReleaseSpec::new(1, sha).config("GREETING", "hi").scale("worker", 2, DynoSize::default());
    /// source.set(AppSpec::new("hello"), Some(release));
    /// let manager = Manager::new(runtime, source.clone(), Default::default(), Logplex::new(), Default::default());
    /// manager.reconcile("hello").await;
    /// // Stop them: an empty formation (or `stop_app`).
    /// source.set(AppSpec::new("hello"), None);
    /// manager.reconcile("hello").await;
    /// # Ok(()) }
    /// ```
    pub fn new(
        runtime: Arc<Runtime>,
        source: Arc<dyn Source>,
        limits: Limits,
        logplex: Logplex,
        settings: Settings,
    ) -> Manager {
        Manager {
            inner: Arc::new(Inner {
                runtime,
                source,
                limits,
                logplex,
                settings,
                apps: Mutex::default(),
                reconciling: tokio::sync::Mutex::new(()),
                one_offs: std::sync::atomic::AtomicU64::new(1),
                releases: Mutex::default(),
                retiring: Mutex::default(),
                activity: Mutex::default(),
                epoch: std::time::Instant::now(),
            }),
        }
    }

    fn activity(&self, app: &str) -> Arc<Activity> {
        self.inner.activity(app)
    }

    /// A request for `app` arrived (the router says so): its web dynos are in use.
    /// ```no_run
    /// # async fn host(manager: wasmdyno::Manager) {
    /// manager.touch("hello");
    /// # }
    /// ```
    pub fn touch(&self, app: &str) {
        let now = self.inner.now_ms();
        self.activity(app)
            .last_request
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// Wakes `app`'s idle web dynos (the router calls this when a request finds only idle ones).
    /// ```no_run
    /// # async fn host(manager: wasmdyno::Manager) {
    /// manager.wake("hello");
    /// # }
    /// ```
    pub fn wake(&self, app: &str) {
        self.touch(app);
        self.activity(app).wakes.send_modify(|n| *n += 1);
    }

    /// Turns sleeping on or off for `app`; off wakes its idle dynos.
    /// ```no_run
    /// # async fn host(manager: wasmdyno::Manager) {
    /// manager.set_sleep("hello", true);
    /// # }
    /// ```
    pub fn set_sleep(&self, app: &str, on: bool) {
        self.activity(app)
            .sleep
            .store(on, std::sync::atomic::Ordering::Relaxed);
        if !on {
            self.wake(app);
        }
    }

    /// The timers and limits it was made with.
    /// ```no_run
    /// # async fn host(manager: wasmdyno::Manager) {
    /// println!("dynos stop within {:?}", manager.settings().stop_timeout);
    /// # }
    /// ```
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Converges every app (at server start).
    /// ```no_run
    /// # async fn host(manager: wasmdyno::Manager) {
    /// manager.reconcile_all().await;
    /// # }
    /// ```
    pub async fn reconcile_all(&self) {
        let apps = match self.inner.source.apps() {
            Ok(apps) => apps,
            Err(e) => {
                tracing::error!("cannot list apps to start their dynos: {e}");
                return;
            }
        };
        for app in apps {
            self.reconcile(&app.name).await;
        }
    }

    /// Converges `app`'s dynos to its current release and formation: starts missing dynos, stops extra ones, and
    /// replaces those of an older release (web dynos with preboot). Call it whenever the source changes.
    /// ```no_run
    /// # async fn host(manager: wasmdyno::Manager) {
    /// // After the source's release or formation of `hello` changed:
    /// manager.reconcile("hello").await;
    /// # }
    /// ```
    pub async fn reconcile(&self, app: &str) {
        let _one = self.inner.reconciling.lock().await;
        if let Ok(Some(found)) = self.inner.source.app(app) {
            let activity = self.activity(app);
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            activity.sleep.store(found.sleep, relaxed);
            let fresh = found.features.contains("http-fresh-instances");
            activity.fresh_instances.store(fresh, relaxed);
            *activity.network.lock().expect("network policy") =
                crate::runtime::NetworkPolicy::new(&found.network);
        }
        let desired = match self.desired(app) {
            Ok(desired) => desired,
            Err(e) => {
                tracing::warn!(app, "cannot work out the dynos to run: {e}");
                BTreeMap::new()
            }
        };
        let mut to_stop = Vec::new();
        let (mut to_retire, mut successors) = (Vec::new(), Vec::new());
        {
            let mut apps = self.inner.apps.lock().expect("apps lock");
            let running = apps.entry(app.to_string()).or_default();
            // Stop what is not wanted as it is.
            let names: Vec<String> = running.keys().cloned().collect();
            for name in names {
                let one_off = name.starts_with("run.");
                let keep = one_off
                    || desired.get(&name).is_some_and(|want| {
                        let dyno = &running[&name];
                        let info = dyno.info.lock().expect("dyno info");
                        dyno.slug == want.slug
                            && info.release == want.release
                            && info.size == want.size.name()
                            && info.command == want.command
                    });
                if !keep {
                    let dyno = running.remove(&name).expect("listed");
                    // Preboot: an up web dyno that is being replaced serves until its successor is up.
                    let info = dyno.info.lock().expect("dyno info").clone();
                    let serving = info.kind == "web" && info.state == State::Up;
                    if serving && desired.contains_key(&name) {
                        to_retire.push(dyno);
                    } else {
                        to_stop.push(dyno);
                    }
                }
            }
            for (name, want) in desired {
                if let std::collections::btree_map::Entry::Vacant(slot) = running.entry(name) {
                    let dyno = self.start(app, slot.key(), want, None);
                    if dyno.info.lock().expect("dyno info").kind == "web" {
                        successors.push(dyno.info.clone());
                    }
                    slot.insert(dyno);
                }
            }
        }
        for dyno in to_stop {
            let _ = dyno.stop.send(true);
        }
        if !to_retire.is_empty() {
            self.preboot(app, to_retire, successors);
        }
    }

    /// Preboot: the `old` web dynos keep taking requests beside their `new` successors until all of those are
    /// up (a listening dyno is up once it accepts), or one of them failed to come up, or twice the boot timeout
    /// passed; then they stop gracefully. Traffic moves without a moment with no dyno up.
    fn preboot(&self, app: &str, old: Vec<Dyno>, new: Vec<Arc<Mutex<DynoInfo>>>) {
        let leaving: Vec<usize> = old.iter().map(|d| Arc::as_ptr(&d.info) as usize).collect();
        self.inner
            .retiring
            .lock()
            .expect("retiring")
            .entry(app.to_string())
            .or_default()
            .extend(old);
        let inner = self.inner.clone();
        let app = app.to_string();
        let deadline = tokio::time::Instant::now() + inner.settings.boot_timeout * 2;
        tokio::spawn(async move {
            while tokio::time::Instant::now() < deadline {
                let states: Vec<State> = new
                    .iter()
                    .map(|info| info.lock().expect("dyno info").state)
                    .collect();
                let failed = states
                    .iter()
                    .any(|s| matches!(s, State::Crashed | State::Down));
                if failed || states.iter().all(|s| *s == State::Up) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let stopping: Vec<Dyno> = {
                let mut retiring = inner.retiring.lock().expect("retiring");
                let Some(list) = retiring.get_mut(&app) else {
                    return; // the app was stopped meanwhile
                };
                let (stopping, staying) = std::mem::take(list)
                    .into_iter()
                    .partition(|d| leaving.contains(&(Arc::as_ptr(&d.info) as usize)));
                *list = staying;
                if list.is_empty() {
                    retiring.remove(&app);
                }
                stopping
            };
            stop_and_wait(stopping).await;
        });
    }

    /// Stops every dyno of `app` and waits for them (app destroyed, or server shutdown).
    /// ```no_run
    /// # async fn host(manager: wasmdyno::Manager) {
    /// manager.stop_app("hello").await;
    /// assert!(manager.dynos("hello").is_empty());
    /// # }
    /// ```
    pub async fn stop_app(&self, app: &str) {
        let dynos = self
            .inner
            .apps
            .lock()
            .expect("apps lock")
            .remove(app)
            .unwrap_or_default();
        let mut dynos: Vec<Dyno> = dynos.into_values().collect();
        let retiring = self.inner.retiring.lock().expect("retiring").remove(app);
        dynos.extend(retiring.unwrap_or_default());
        stop_and_wait(dynos).await;
    }

    /// Stops every dyno of every app, gracefully, and waits for them.
    /// ```no_run
    /// # async fn host(manager: wasmdyno::Manager) {
    /// manager.shutdown().await;
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        let mut all: Vec<Dyno> = {
            let mut apps = self.inner.apps.lock().expect("apps lock");
            apps.drain()
                .flat_map(|(_, dynos)| dynos.into_values())
                .collect()
        };
        let retiring = std::mem::take(&mut *self.inner.retiring.lock().expect("retiring"));
        all.extend(retiring.into_values().flatten());
        stop_and_wait(all).await;
    }

    /// Stops one dyno gracefully and waits for it; false if there is no such dyno. A formation dyno is started
    /// again by the next reconcile; a one-off dyno is gone.
    /// ```no_run
    /// # async fn host(manager: wasmdyno::Manager) {
    /// let stopped = manager.stop_dyno("hello", "run.1").await;
    /// # let _ = stopped;
    /// # }
    /// ```
    pub async fn stop_dyno(&self, app: &str, name: &str) -> bool {
        let dyno = {
            let mut apps = self.inner.apps.lock().expect("apps lock");
            apps.get_mut(app).and_then(|dynos| dynos.remove(name))
        };
        match dyno {
            Some(dyno) => {
                stop_and_wait(vec![dyno]).await;
                true
            }
            None => false,
        }
    }

    /// Restarts the dynos of `app` whose name is `target` or whose type is `target` (all with `None`); returns how
    /// many.
    /// ```no_run
    /// # async fn host(manager: wasmdyno::Manager) {
    /// let web = manager.restart("hello", Some("web")).await;
    /// let all = manager.restart("hello", None).await;
    /// # let _ = (web, all);
    /// # }
    /// ```
    pub async fn restart(&self, app: &str, target: Option<&str>) -> usize {
        let stopped: Vec<Dyno> = {
            let mut apps = self.inner.apps.lock().expect("apps lock");
            let Some(running) = apps.get_mut(app) else {
                return 0;
            };
            let names: Vec<String> = running
                .keys()
                .filter(|name| {
                    target.is_none_or(|t| *name == t || name.split('.').next() == Some(t))
                })
                .cloned()
                .collect();
            names.iter().filter_map(|n| running.remove(n)).collect()
        };
        let count = stopped.len();
        stop_and_wait(stopped).await;
        self.reconcile(app).await;
        count
    }

    /// Starts a one-off dyno `run.N` on the app's current release. It runs once and is never restarted. `command`
    /// is a process type (plus `args`), or a command line. Detached (`attach` is `None`), its output goes to the
    /// app's stream; attached, it uses the given streams and sends its exit status when it ends. See [`Manager`] for
    /// an attached one.
    /// ```no_run
    /// # async fn host(manager: wasmdyno::Manager) {
    /// // Detached: `heroku run:detached`; its output goes to the app's log stream.
    /// let args = ["--verbose".to_string()];
    /// let dyno = manager.run_one_off("hello", "worker", &args, Default::default(), Default::default(), None);
    /// println!("started {}", dyno.unwrap().name);
    /// # }
    /// ```
    pub fn run_one_off(
        &self,
        app: &str,
        command: &str,
        args: &[String],
        env: BTreeMap<String, String>,
        size: DynoSize,
        attach: Option<Attach>,
    ) -> Result<DynoInfo, DynoError> {
        let err = |e: SourceError| DynoError::Command(e.to_string());
        let release = self
            .inner
            .source
            .release(app)
            .map_err(err)?
            .filter(|r| r.slug.is_some())
            .ok_or_else(|| {
                DynoError::Command(format!(
                    "{app} has no release with a slug yet: deploy first"
                ))
            })?;
        let sha = release.slug.clone().expect("filtered");
        let booted = self.booted(&sha)?;
        let line = Command::resolve(&booted.slug.manifest().process_types, command, args)
            .map_err(|e| DynoError::Command(format!("{command:?}: {e}")))?;
        let mut full_env = booted.slug.manifest().config_vars.clone();
        full_env.extend(release.config.clone());
        full_env.extend(env);
        let number = self
            .inner
            .one_offs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("run.{number}");
        let want = Want {
            kind: "run".into(),
            command: line.as_str().to_string(),
            line,
            size,
            release: release.version,
            slug: sha,
            env: full_env,
            booted,
        };
        let dyno = self.start(app, &name, want, attach);
        let info = dyno.info.lock().expect("dyno info").clone();
        self.inner
            .apps
            .lock()
            .expect("apps lock")
            .entry(app.to_string())
            .or_default()
            .insert(name, dyno);
        Ok(info)
    }

    /// The dynos of `app`, sorted by name.
    /// ```no_run
    /// # async fn host(manager: wasmdyno::Manager) {
    /// for dyno in manager.dynos("hello") {
    ///     println!("{} {} {}", dyno.name, dyno.state.as_str(), dyno.command);
    /// }
    /// # }
    /// ```
    pub fn dynos(&self, app: &str) -> Vec<DynoInfo> {
        let apps = self.inner.apps.lock().expect("apps lock");
        apps.get(app)
            .map(|dynos| {
                dynos
                    .values()
                    .map(|d| d.info.lock().expect("dyno info").clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The app's web dynos that are up, for the router.
    pub(crate) fn web_dynos(&self, app: &str) -> Vec<WebDyno> {
        let retiring = self.inner.retiring.lock().expect("retiring");
        let apps = self.inner.apps.lock().expect("apps lock");
        // Preboot: a replaced release's web dynos serve beside the new ones until those are up.
        let serving = retiring.get(app).into_iter().flatten();
        apps.get(app)
            .map(|dynos| {
                dynos
                    .values()
                    .chain(serving)
                    .filter(|d| d.info.lock().expect("dyno info").state == State::Up)
                    .filter_map(|d| {
                        let name = d.info.lock().expect("dyno info").name.clone();
                        let listener = d.listener.lock().expect("listener").clone();
                        let handler = d.handler.lock().expect("web handler").clone();
                        listener.map(|listener| WebDyno {
                            name,
                            listener,
                            handler,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What should run: dyno name → how.
    fn desired(&self, app: &str) -> Result<BTreeMap<String, Want>, DynoError> {
        let err = |e: SourceError| DynoError::Command(e.to_string());
        let Some(release) = self.inner.source.release(app).map_err(err)? else {
            return Ok(BTreeMap::new());
        };
        let Some(sha) = release.slug.clone() else {
            return Ok(BTreeMap::new());
        };
        let booted = self.booted(&sha)?;
        let formation = release.formation.clone();
        let mut env = booted.slug.manifest().config_vars.clone();
        env.extend(release.config.clone());
        let mut desired = BTreeMap::new();
        for (kind, entry) in formation {
            let Some(command) = booted.slug.manifest().process_types.get(&kind) else {
                continue;
            };
            let size = entry.size;
            let line = match Command::parse(command) {
                Ok(line) => line,
                Err(e) => {
                    tracing::warn!(app, kind, "cannot parse the command: {e}");
                    continue;
                }
            };
            for index in 1..=entry.quantity {
                desired.insert(
                    format!("{kind}.{index}"),
                    Want {
                        kind: kind.clone(),
                        command: command.clone(),
                        line: line.clone(),
                        size,
                        release: release.version,
                        slug: sha.clone(),
                        env: env.clone(),
                        booted: booted.clone(),
                    },
                );
            }
        }
        Ok(desired)
    }

    /// The slug `sha` (opened and verified once per release, then shared with its dynos).
    pub(crate) fn slug(&self, sha: &str) -> Result<Slug, DynoError> {
        Ok(self.booted(sha)?.slug.clone())
    }

    fn booted(&self, sha: &str) -> Result<Arc<Booted>, DynoError> {
        if let Some(booted) = self.inner.releases.lock().expect("releases lock").get(sha) {
            return Ok(booted.clone());
        }
        let slug =
            Slug::open(&self.inner.source.slug_path(sha), self.inner.limits).map_err(|e| {
                DynoError::Slug {
                    sha256: sha.into(),
                    reason: e.to_string(),
                }
            })?;
        // The release names its slug by the archive's sha256: a file that does not hash to it is not that slug.
        if slug.sha256() != sha {
            return Err(DynoError::Slug {
                sha256: sha.into(),
                reason: format!("the archive's sha256 is {}", slug.sha256()),
            });
        }
        let booted = Arc::new(Booted {
            image: Arc::new(Image::from_slug(&slug)),
            slug,
            guests: Mutex::default(),
        });
        let mut releases = self.inner.releases.lock().expect("releases lock");
        // Keep the cache to the slugs of running releases plus this one.
        if releases.len() > 64 {
            releases.retain(|_, b| Arc::strong_count(b) > 1);
        }
        releases.insert(sha.to_string(), booted.clone());
        Ok(booted)
    }

    fn start(&self, app: &str, name: &str, want: Want, attach: Option<Attach>) -> Dyno {
        let info = Arc::new(Mutex::new(DynoInfo {
            name: name.to_string(),
            kind: want.kind.clone(),
            command: want.command.clone(),
            size: want.size.name().to_string(),
            state: State::Starting,
            updated_at: unix_now(),
            release: want.release,
        }));
        let listener =
            (want.kind == "web").then(|| Listener::new(self.inner.settings.listen_backlog));
        let shared_listener = Arc::new(Mutex::new(listener.clone()));
        let shared_handler = Arc::new(Mutex::new(None));
        let (stop_tx, stop_rx) = watch::channel(false);
        let slug = want.slug.clone();
        let one_off = want.kind == "run";
        let supervisor = Supervisor {
            inner: self.inner.clone(),
            app: app.to_string(),
            name: name.to_string(),
            want,
            info: info.clone(),
            listener,
            shared_listener: shared_listener.clone(),
            shared_handler: shared_handler.clone(),
            stop: stop_rx,
            one_off,
            attach,
            exit_status: None,
        };
        let task = tokio::spawn(supervisor.run());
        Dyno {
            info,
            stop: stop_tx,
            task,
            listener: shared_listener,
            handler: shared_handler,
            slug,
        }
    }
}

async fn stop_and_wait(dynos: Vec<Dyno>) {
    for dyno in &dynos {
        let _ = dyno.stop.send(true);
    }
    for dyno in dynos {
        let _ = dyno.task.await;
    }
}

struct Want {
    kind: String,
    /// The command as shown (`ps`, log lines).
    command: String,
    /// The command as run: parsed once, so arguments of one-off dynos keep their exact words.
    line: Command,
    size: DynoSize,
    release: u64,
    slug: String,
    env: BTreeMap<String, String>,
    booted: Arc<Booted>,
}

/// The task that keeps one dyno running.
struct Supervisor {
    inner: Arc<Inner>,
    app: String,
    name: String,
    want: Want,
    info: Arc<Mutex<DynoInfo>>,
    listener: Option<Listener>,
    shared_listener: Arc<Mutex<Option<Listener>>>,
    shared_handler: Arc<Mutex<Option<WebHandler>>>,
    stop: watch::Receiver<bool>,
    /// A one-off dyno runs once, is never restarted, and leaves the app's dyno list when it ends.
    one_off: bool,
    /// The terminal of an attached one-off dyno.
    attach: Option<Attach>,
    /// How the last run ended, as an exit status (134 for a trap, 137 when interrupted after a stop).
    exit_status: Option<i32>,
}

/// The terminal of an attached one-off dyno ([`Manager::run_one_off`]): its standard streams, and where its exit
/// status goes.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // `ECHO`: a core module that copies its standard input to its standard output.
/// # const ECHO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/echo.wasm"));
/// # let app = tempfile::tempdir()?;
/// # std::fs::write(app.path().join("echo.wasm"), ECHO)?;
/// # let options = wasmdyno::PackOptions {
/// #     process_types: [("console".to_string(), "echo.wasm".to_string())].into(),
/// #     ..Default::default()
/// # };
/// # let packed = wasmdyno::pack(app.path(), options)?;
/// use std::sync::{Arc, Mutex};
/// use wasmdyno::{AppSpec, Attach, Input, Logplex, Manager, MemorySource, ReleaseSpec, Runtime, RuntimeConfig};
///
/// let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
/// tokio.block_on(async {
///     let work = tempfile::tempdir()?;
///     let source = Arc::new(MemorySource::new(work.path()));
///     let sha = source.add_slug(&packed.bytes, None, Default::default())?.sha256().to_string();
///     source.set(AppSpec::new("hello"), Some(ReleaseSpec::new(1, sha)));
///     let runtime = Arc::new(Runtime::new(RuntimeConfig::default())?);
///     let manager = Manager::new(runtime, source, Default::default(), Logplex::new(), Default::default());
///
///     // `wasmdyno run console`: what is typed goes to its stdin, its output comes back.
///     let (keys, typed) = tokio::sync::mpsc::channel(8);
///     let screen = Arc::new(Mutex::new(Vec::new()));
///     let shown = screen.clone();
///     let (exit, status) = tokio::sync::oneshot::channel();
///     let attach = Attach {
///         stdin: Input::from_channel(typed),
///         stdout: Arc::new(move |data: &[u8]| shown.lock().unwrap().extend_from_slice(data)),
///         stderr: Arc::new(|_: &[u8]| {}),
///         exit,
///     };
///     manager.run_one_off("hello", "console", &[], Default::default(), Default::default(), Some(attach))?;
///     keys.send(b"hi\n".to_vec()).await?;
///     drop(keys); // end of file: the guest exits
///     assert_eq!(status.await?, 0);
///     assert_eq!(*screen.lock().unwrap(), b"hi\n");
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok(()) }
/// ```
pub struct Attach {
    /// Its standard input.
    pub stdin: Input,
    /// Where its standard output goes.
    pub stdout: Output,
    /// Where its standard error goes, with the platform's own errors for the user (a trap, R99).
    pub stderr: Output,
    /// Gets its exit status when it ends (134 for a trap, 137 when interrupted after a stop).
    pub exit: tokio::sync::oneshot::Sender<i32>,
}

/// How one run of a dyno's process ended.
enum Ended {
    Exited(Exit),
    /// The manager asked it to stop and it did (or was interrupted).
    Stopped,
    /// It is due for its daily restart.
    Cycle,
    /// Its app sleeps and nobody asked for it for a while: it goes idle until a request wakes it.
    Sleep,
    Failed(String),
}

impl Drop for Supervisor {
    /// However the dyno ended (a stop during a crash backoff returns early), its listener is closed: whatever
    /// holds a clone (the router's connection pool) sees it go.
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.close();
        }
    }
}

impl Supervisor {
    fn log(&self, text: impl Into<String>) {
        self.inner
            .logplex
            .publish(&self.app, LogLine::platform(&self.name, text.into()));
    }

    fn set_state(&self, state: State) {
        let mut info = self.info.lock().expect("dyno info");
        if info.state != state {
            let from = info.state;
            info.state = state;
            info.updated_at = unix_now();
            drop(info);
            self.log(format!(
                "State changed from {} to {}",
                from.as_str(),
                state.as_str()
            ));
        }
    }

    async fn run(mut self) {
        self.supervise().await;
        if let Some(attach) = self.attach.take() {
            let status = self.exit_status.unwrap_or(1);
            let _ = attach.exit.send(status);
        }
    }

    async fn supervise(&mut self) {
        let mut crashes = 0u32;
        loop {
            self.log(format!(
                "Starting process with command `{}`",
                self.want.command
            ));
            let ended = self.run_once().await;
            match ended {
                Ended::Stopped => {
                    self.set_state(State::Down);
                    return;
                }
                Ended::Cycle => {
                    self.log("Cycling");
                    self.set_state(State::Starting);
                    continue;
                }
                Ended::Sleep => {
                    self.set_state(State::Idle);
                    let activity = self.inner.activity(&self.app);
                    let mut wakes = activity.wakes.subscribe();
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        _ = wakes.changed() => {}
                        _ = stop.wait_for(|stop| *stop) => {
                            self.set_state(State::Down);
                            return;
                        }
                    }
                    self.log("Unidling");
                    self.set_state(State::Starting);
                    continue;
                }
                Ended::Exited(exit) => {
                    self.exit_status = Some(exit.code());
                    match &exit {
                        Exit::Status(code) => {
                            self.log(format!("Process exited with status {code}"))
                        }
                        Exit::Trap(trap) => {
                            let cause = crate::runtime::trap_cause(trap);
                            self.log(format!("Process trapped: {cause}"));
                            if let Some(attach) = &self.attach {
                                (attach.stderr)(format!("Error: trapped: {trap}\n").as_bytes());
                            }
                            self.log("Process exited with status 134");
                        }
                    }
                }
                Ended::Failed(reason) => {
                    if let Some(attach) = &self.attach {
                        (attach.stderr)(
                            format!("Error R99 (Platform error) -> {reason}\n").as_bytes(),
                        );
                    }
                    self.exit_status = Some(1);
                    self.log(format!("Error R99 (Platform error) -> {reason}"))
                }
            }
            if self.one_off {
                self.set_state(State::Down);
                let mut apps = self.inner.apps.lock().expect("apps lock");
                if let Some(dynos) = apps.get_mut(&self.app) {
                    dynos.remove(&self.name);
                }
                return;
            }
            self.set_state(State::Crashed);
            crashes += 1;
            let delay = self.inner.settings.backoff(crashes);
            if !delay.is_zero() {
                let mut stop = self.stop.clone();
                let stopped = tokio::select! {
                    () = tokio::time::sleep(delay) => false,
                    _ = stop.wait_for(|stop| *stop) => true,
                };
                if stopped {
                    self.set_state(State::Down);
                    return;
                }
            }
            if *self.stop.borrow() {
                self.set_state(State::Down);
                return;
            }
            self.set_state(State::Starting);
        }
    }

    /// The dyno's platform variables; `port` is its `$PORT`, if it serves HTTP.
    fn platform_vars(&self, port: Option<u16>) -> PlatformVars {
        PlatformVars {
            dyno: self.name.clone(),
            release: format!("v{}", self.want.release),
            port,
        }
    }

    /// Boots and runs the process once.
    async fn run_once(&mut self) -> Ended {
        // Web dynos served on a listener (or as handlers) say port 5000; a component that binds `$PORT` itself
        // gets a real loopback port below, and its command line is expanded again with it.
        let listener_port = self.listener.is_some().then_some(launch::LISTENER_PORT);
        let (guest, module) = match self.boot(listener_port).await {
            Ok(ready) => ready,
            Err(reason) => return Ended::Failed(reason),
        };
        let env = self
            .platform_vars(listener_port)
            .environment(&self.want.env);
        let mut argv = launch::argv(&self.want.line, &env);
        argv[0] = module.clone();
        let mut spec =
            RunSpec::new(argv, env, self.want.size).with_image(self.want.booted.image.clone());
        spec.network = self
            .inner
            .activity(&self.app)
            .network
            .lock()
            .expect("network policy")
            .clone();
        let close_stdin = match &self.attach {
            Some(attach) => {
                spec.stdin = attach.stdin.clone();
                spec.stdout = attach.stdout.clone();
                spec.stderr = attach.stderr.clone();
                attach.stdin.closer()
            }
            None => {
                let (stdin, close_stdin) = Input::held_open();
                let stdout = self.output();
                spec.stdin = stdin;
                spec.stdout = stdout.clone();
                spec.stderr = stdout;
                close_stdin
            }
        };
        spec.platform = {
            let (logplex, app, name) = (
                self.inner.logplex.clone(),
                self.app.clone(),
                self.name.clone(),
            );
            Arc::new(move |text: &str| {
                logplex.publish(&app, LogLine::platform(&name, text.to_string()))
            })
        };
        if self.listener.is_some() {
            let mut settings = self.inner.settings.http.clone();
            settings.fresh_instances |= self
                .inner
                .activity(&self.app)
                .fresh_instances
                .load(std::sync::atomic::Ordering::Relaxed);
            if self.want.line.is_cgi() {
                let cgi = CgiDyno::new(
                    self.inner.runtime.clone(),
                    guest,
                    spec,
                    settings.max_instances,
                    settings.deadline,
                );
                return self.serve_handler(WebHandler::Cgi(Arc::new(cgi))).await;
            }
            match self.inner.runtime.http_dyno(&guest, spec.clone(), settings) {
                Ok(Some(pool)) => return self.serve_handler(WebHandler::Http(pool)).await,
                Ok(None) => {}
                Err(e) => return Ended::Failed(e.to_string()),
            }
        } else if self.want.line.is_cgi() {
            return Ended::Failed(format!(
                "`cgi` serves web requests: declare it as `web: {}`",
                self.want.command
            ));
        }
        // A web component that is not a `wasi:http` handler binds `$PORT` on loopback with `wasi:sockets`.
        let mut port = None;
        if self.listener.is_some() && matches!(guest, Guest::Component(_)) {
            match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
                Ok(addr) => {
                    port = Some(addr.port());
                    spec.port = port;
                    spec.env = self.platform_vars(port).environment(&self.want.env);
                    spec.argv = launch::argv(&self.want.line, &spec.env);
                    spec.argv[0] = module;
                }
                Err(e) => return Ended::Failed(format!("no loopback port for $PORT: {e}")),
            }
        } else if let Some(listener) = &self.listener {
            spec = spec.with_listener(listener.clone());
        }
        let runtime = self.inner.runtime.clone();
        let running = runtime.run(&guest, spec);
        tokio::pin!(running);
        if let Some(ended) = self.wait_until_bound(running.as_mut(), port).await {
            return ended;
        }
        let cycle = self.inner.settings.cycle_after + jitter(self.inner.settings.cycle_jitter);
        let mut unresponsive_for = None;
        let why_stop = tokio::select! {
            result = &mut running => {
                return match result {
                    Ok(exit) => Ended::Exited(exit),
                    Err(e) => Ended::Failed(e.to_string()),
                };
            }
            _ = self.stop.wait_for(|stop| *stop) => Ended::Stopped,
            () = tokio::time::sleep(cycle) => Ended::Cycle,
            () = sleepy(&self.inner, &self.app, self.listener.is_some()) => Ended::Sleep,
            stalled = unresponsive(self.listener.clone(), self.inner.settings.unresponsive_after) => {
                unresponsive_for = Some(stalled);
                Ended::Stopped
            }
        };
        if let Some(stalled) = unresponsive_for {
            self.log(format!(
                "Error R18 (Unresponsive) -> Web process accepted no connection for {:.1} seconds while requests waited",
                stalled.as_secs_f64()
            ));
            self.log("Stopping process by interrupting it");
            return Ended::Exited(Exit::Status(137));
        }
        if matches!(why_stop, Ended::Sleep) {
            self.log("Idling");
        }
        // Graceful stop: tell the process in ways a WASI program sees, then give it the stop timeout.
        self.log("Stopping process");
        *self.shared_handler.lock().expect("web handler") = None;
        close_stdin.close();
        if let Some(listener) = &self.listener {
            listener.close();
        }
        let timeout = self.inner.settings.stop_timeout;
        let ended = tokio::time::timeout(timeout, &mut running).await;
        self.exit_status = Some(match &ended {
            Ok(Ok(exit)) => exit.code(),
            Ok(Err(_)) => 1,
            Err(_) => 137,
        });
        match ended {
            Ok(Ok(Exit::Status(code))) => self.log(format!("Process exited with status {code}")),
            Ok(Ok(Exit::Trap(_))) => self.log("Process exited with status 134"),
            Ok(Err(e)) => self.log(format!("Process failed: {e}")),
            Err(_) => {
                self.log(format!(
                    "Error R12 (Exit timeout) -> Process failed to exit within {} seconds of being told to stop",
                    timeout.as_secs_f64()
                ));
                self.log("Stopping process by interrupting it");
            }
        }
        if matches!(why_stop, Ended::Cycle | Ended::Sleep) && self.listener.is_some() {
            // A cycled web dyno gets a new listener: the old one is closed for good.
            let fresh = Listener::new(self.inner.settings.listen_backlog);
            *self.shared_listener.lock().expect("listener") = Some(fresh.clone());
            self.listener = Some(fresh);
        }
        why_stop
    }

    /// Marks the dyno up: a worker at once, a web dyno that listens once it accepts (Heroku's "bound to $PORT"),
    /// so the router never sends to a dyno that is still booting. One that does not accept within the boot
    /// timeout gets R10 and is stopped, to be restarted as a crash. `Some` when the run ended here.
    async fn wait_until_bound<F, E>(
        &mut self,
        running: std::pin::Pin<&mut F>,
        port: Option<u16>,
    ) -> Option<Ended>
    where
        F: std::future::Future<Output = Result<Exit, E>>,
        E: std::fmt::Display,
    {
        let Some(listener) = self.listener.clone() else {
            self.set_state(State::Up);
            return None;
        };
        // Bound: the listener accepts, or for a component on `$PORT`, the port takes a connection.
        let bound = async {
            match port {
                None => listener.accepting().await,
                Some(port) => loop {
                    if tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .is_ok()
                    {
                        *self.shared_handler.lock().expect("web handler") =
                            Some(WebHandler::Port(port));
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                },
            }
        };
        let timeout = self.inner.settings.boot_timeout;
        let mut stop = self.stop.clone();
        tokio::select! {
            result = running => Some(match result {
                Ok(exit) => Ended::Exited(exit),
                Err(e) => Ended::Failed(e.to_string()),
            }),
            () = bound => {
                self.set_state(State::Up);
                None
            }
            // Stopping while booting: the caller's graceful stop sees the signal at once.
            _ = stop.wait_for(|stop| *stop) => None,
            () = tokio::time::sleep(timeout) => {
                self.log(format!(
                    "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within {} seconds of launch",
                    timeout.as_secs_f64()
                ));
                self.log("Stopping process by interrupting it");
                Some(Ended::Exited(Exit::Status(137)))
            }
        }
    }

    /// Serves as a `wasi:http` or CGI web dyno until told to stop or cycle; then lets requests in flight finish.
    async fn serve_handler(&mut self, handler: WebHandler) -> Ended {
        *self.shared_handler.lock().expect("web handler") = Some(handler.clone());
        self.set_state(State::Up);
        let cycle = self.inner.settings.cycle_after + jitter(self.inner.settings.cycle_jitter);
        let why_stop = tokio::select! {
            _ = self.stop.wait_for(|stop| *stop) => Ended::Stopped,
            () = tokio::time::sleep(cycle) => Ended::Cycle,
            () = sleepy(&self.inner, &self.app, true) => Ended::Sleep,
        };
        if matches!(why_stop, Ended::Sleep) {
            self.log("Idling");
        }
        self.log("Stopping process");
        *self.shared_handler.lock().expect("web handler") = None;
        let timeout = self.inner.settings.stop_timeout;
        if handler.close(timeout).await {
            self.exit_status = Some(0);
            self.log("Process exited with status 0");
        } else {
            self.exit_status = Some(137);
            self.log(format!(
                "Error R12 (Exit timeout) -> Requests still running {} seconds after the dyno was told to stop",
                timeout.as_secs_f64()
            ));
            self.log("Stopping process by interrupting it");
        }
        why_stop
    }

    /// The compiled module this dyno's command names, and its path in the slug. The first word is expanded
    /// in the dyno's environment (with `port` as `$PORT`), as the whole command line is when it runs.
    async fn boot(&self, port: Option<u16>) -> Result<(Guest, String), String> {
        let env = self.platform_vars(port).environment(&self.want.env);
        let word = launch::argv(&self.want.line, &env)
            .into_iter()
            .next()
            .ok_or("the command is empty")?;
        let booted = self.want.booted.clone();
        let (module, wasm) = resolve_module(&booted.slug, &word).map_err(|e| e.to_string())?;
        let cell = booted
            .guests
            .lock()
            .expect("guests")
            .entry(module.clone())
            .or_default()
            .clone();
        // The first dyno to get here loads (or compiles) the module; the others wait for that one result.
        let runtime = self.inner.runtime.clone();
        let guest = cell
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(move || runtime.load(&wasm))
                    .await
                    .map_err(|e| e.to_string())?
                    .map(|(guest, _)| guest)
                    .map_err(|e| format!("{module}: {e}"))
            })
            .await?
            .clone();
        Ok((guest, module))
    }

    /// The dyno's stdout and stderr, line by line into the app's stream.
    fn output(&self) -> Output {
        let writer = Mutex::new(LineWriter::new(
            self.inner.logplex.clone(),
            &self.app,
            &self.name,
        ));
        Arc::new(move |data: &[u8]| writer.lock().expect("line writer").write(data))
    }
}

/// Resolves, with how long, when `listener` has had connections waiting and none accepted for `after` (never
/// without a listener).
async fn unresponsive(listener: Option<Listener>, after: Duration) -> Duration {
    let Some(listener) = listener else {
        return std::future::pending().await;
    };
    let tick = (after / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        if let Some(stalled) = listener.stalled_for().filter(|s| *s >= after) {
            return stalled;
        }
    }
}

/// Resolves when a web dyno of a sleeping app has had no request for [`Settings::sleep_after`] (never for
/// other dynos).
async fn sleepy(inner: &Inner, app: &str, web: bool) {
    if !web {
        return std::future::pending().await;
    }
    let activity = inner.activity(app);
    let after = inner.settings.sleep_after;
    let since = inner.now_ms();
    let tick = (after / 4).clamp(Duration::from_millis(5), Duration::from_secs(10));
    loop {
        tokio::time::sleep(tick).await;
        let last = activity
            .last_request
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(since);
        let quiet = Duration::from_millis(inner.now_ms().saturating_sub(last));
        if activity.sleep.load(std::sync::atomic::Ordering::Relaxed) && quiet >= after {
            return;
        }
    }
}

/// A random duration up to `max`.
fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return max;
    }
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    Duration::from_nanos(u64::from_le_bytes(bytes) % max.as_nanos().max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let settings = Settings {
            backoff_base: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(60),
            ..Settings::default()
        };
        let delays: Vec<u64> = (1..=6).map(|n| settings.backoff(n).as_secs()).collect();
        assert_eq!(delays, [0, 10, 20, 40, 60, 60]);
        assert_eq!(settings.backoff(400), Duration::from_secs(60));
    }
}
