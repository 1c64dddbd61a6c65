//! Edge hosts: wasmdyno's dyno manager and router embedded in a host process, without the store, the API or the
//! build system.
//!
//! An [`Edge`] owns a [`Runtime`], a [`Manager`] that keeps each app's formation running, a [`Router`] for the
//! host's own hyper server, and an in-memory [`MemorySource`] of what should run. The host fills that source from
//! wherever its releases come from: a folder of slugs ([`Edge::sync_dir`]), a central `wasmdyno serve`
//! ([`Central`], [`Edge::follow`]), or its own code ([`Edge::deploy`]). A changed release is applied with preboot:
//! the new web dynos come up before the old ones stop, so no request fails.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use sha2::{Digest, Sha256};

use crate::dyno::{AppSpec, Manager, ReleaseSpec, Scale, Source, SourceError, State};
use crate::logs::{LogLine, Logplex, SessionOptions};
use crate::router::{Router, Routes};
use crate::runtime::{DynoSize, Runtime};
use crate::slug::{Limits, Slug, SlugError};

mod central;
mod memory;

pub use central::Central;
pub use memory::MemorySource;

/// Why an edge operation failed.
///
/// ```
/// use wasmdyno::{EdgeError, edge::MemorySource};
///
/// let source = MemorySource::new(std::env::temp_dir().join("wasmdyno-doc-slugs"));
/// let err = source.add_slug(b"not a slug", None, Default::default()).unwrap_err();
/// assert!(matches!(err, EdgeError::Slug(_)), "{err}");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeError {
    /// The slug is not valid (or could not be read or stored).
    #[error(transparent)]
    Slug(#[from] SlugError),
    /// The slug's archive does not hash to the sha256 its release names.
    #[error("slug {expected}: the archive's sha256 is {actual}")]
    Sha256Mismatch {
        /// The sha256 the release names.
        expected: String,
        /// The sha256 of the archive received.
        actual: String,
    },
    /// Reading a folder or file failed.
    #[error("{path}: {source}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Talking to the central server failed.
    #[error("central server: {0}")]
    Central(String),
    /// The app is unknown, or has no release to change yet: deploy it first.
    #[error("{0} has no release: deploy it first")]
    NoRelease(String),
    /// A config var or process type that cannot be used; the text says which and why.
    #[error("{0}")]
    Invalid(String),
}

/// Where app log lines go: the host's sink. Any `Fn(&str, &LogLine)` closure is one.
///
/// ```
/// use wasmdyno::edge::LogSink;
///
/// let sink = |app: &str, line: &wasmdyno::logs::LogLine| println!("{app} {line}");
/// fn takes(_: impl LogSink) {}
/// takes(sink);
/// ```
pub trait LogSink: Send + Sync + 'static {
    /// One line of `app`'s stream. Called on a tokio task: keep it quick.
    fn line(&self, app: &str, line: &LogLine);
}

impl<F: Fn(&str, &LogLine) + Send + Sync + 'static> LogSink for F {
    fn line(&self, app: &str, line: &LogLine) {
        self(app, line)
    }
}

/// Settings of an [`Edge`].
///
/// ```
/// let settings = wasmdyno::edge::EdgeSettings::default();
/// assert_eq!(settings.base_domain, "localhost");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EdgeSettings {
    /// Timers and limits of the dynos.
    pub dynos: crate::dyno::Settings,
    /// Timers and limits of the router; its `base_domain` is replaced by [`base_domain`](Self::base_domain).
    pub router: crate::router::Settings,
    /// Apps are served at `<app>.<base_domain>`.
    pub base_domain: String,
    /// Limits of the slugs opened.
    pub limits: Limits,
    /// What a slug from [`Edge::sync_dir`] runs: this many web dynos of this size.
    pub web: Scale,
}

impl Default for EdgeSettings {
    fn default() -> EdgeSettings {
        EdgeSettings {
            dynos: crate::dyno::Settings::default(),
            router: crate::router::Settings::default(),
            base_domain: "localhost".into(),
            limits: Limits::default(),
            web: Scale::new(1, DynoSize::default()),
        }
    }
}

/// An edge host's apps: a dyno manager and a router over an in-memory [`MemorySource`].
///
/// ```no_run
/// # async fn host() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use wasmdyno::{Edge, edge::EdgeSettings, Runtime, RuntimeConfig};
///
/// let runtime = Arc::new(Runtime::new(RuntimeConfig::default())?);
/// let edge = Edge::new(runtime, "/var/lib/edge", EdgeSettings::default());
/// edge.sync_dir("/srv/slugs".as_ref()).await?;
/// edge.logs("hello", |app: &str, line: &wasmdyno::logs::LogLine| println!("{app} {line}"));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// edge.router().clone().serve(listener, std::future::pending()).await;
/// # Ok(()) }
/// ```
pub struct Edge {
    runtime: Arc<Runtime>,
    source: Arc<MemorySource>,
    logplex: Logplex,
    manager: Manager,
    routes: Routes,
    router: Router,
    settings: EdgeSettings,
    /// Per app, what [`sync_dir`](Self::sync_dir) last saw: the slug's sha256.
    seen: std::sync::Mutex<HashMap<String, String>>,
}

impl Edge {
    /// An edge host with nothing running, keeping its slugs under `work_dir/slugs`. Call it within a tokio runtime.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use wasmdyno::{Edge, edge::EdgeSettings, Runtime, RuntimeConfig};
    ///
    /// let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    /// let _guard = tokio.enter();
    /// let work = tempfile::tempdir()?;
    /// let edge = Edge::new(Arc::new(Runtime::new(RuntimeConfig::default())?), work.path(), EdgeSettings::default());
    /// assert!(edge.apps().is_empty());
    /// assert_eq!(edge.hostname("hello"), "hello.localhost");
    /// # Ok(()) }
    /// ```
    pub fn new(runtime: Arc<Runtime>, work_dir: impl AsRef<Path>, settings: EdgeSettings) -> Edge {
        let source = Arc::new(MemorySource::new(work_dir.as_ref().join("slugs")));
        let logplex = Logplex::new();
        let manager = Manager::new(
            runtime.clone(),
            source.clone(),
            settings.limits,
            logplex.clone(),
            settings.dynos.clone(),
        );
        let routes = Routes::from_source(source.clone(), &settings.base_domain);
        let mut router_settings = settings.router.clone();
        router_settings.base_domain = settings.base_domain.clone();
        let router = Router::new(
            manager.clone(),
            routes.clone(),
            logplex.clone(),
            router_settings,
        );
        Edge {
            runtime,
            source,
            logplex,
            manager,
            routes,
            router,
            settings,
            seen: std::sync::Mutex::default(),
        }
    }

    /// The router: serve it on a listener, or mount [`Router::service`] in your own hyper server.
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
    /// edge.router().clone().serve(listener, std::future::pending()).await;
    /// # Ok(()) }
    /// ```
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The dyno manager (`dynos`, `restart`, `run_one_off`, ...).
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// for dyno in edge.manager().dynos("hello") {
    ///     println!("{} {}", dyno.name, dyno.state.as_str());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn manager(&self) -> &Manager {
        &self.manager
    }

    /// The runtime its dynos run on.
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// let (guest, _) = edge.runtime().load(&std::fs::read("tool.wasm")?)?;
    /// # let _ = guest;
    /// # Ok(()) }
    /// ```
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The apps' log streams (to read with sessions of your own; [`logs`](Self::logs) is simpler).
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut session = edge.logplex().session("hello", Default::default());
    /// while let Some(line) = session.next().await {
    ///     println!("{line}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn logplex(&self) -> &Logplex {
        &self.logplex
    }

    /// What it runs: the in-memory source its manager and router read.
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// use wasmdyno::dyno::Source;
    /// let release = edge.source().release("hello")?;
    /// println!("hello runs {:?}", release.map(|r| r.version));
    /// # Ok(()) }
    /// ```
    pub fn source(&self) -> &Arc<MemorySource> {
        &self.source
    }

    /// The names of the apps it runs.
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// for app in edge.apps() {
    ///     println!("{app} at http://{}", edge.hostname(&app));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn apps(&self) -> Vec<String> {
        let apps = self.source.apps().unwrap_or_default();
        apps.into_iter().map(|a| a.name).collect()
    }

    /// The hostname `app` is served at, `<app>.<base domain>`.
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(edge.hostname("hello"), "hello.localhost");
    /// # Ok(()) }
    /// ```
    pub fn hostname(&self, app: &str) -> String {
        self.routes.default_host(app)
    }

    /// Runs `release` (whose slug must be in the source's folder: see [`MemorySource::add_slug`]) as `app`'s
    /// current release, with preboot: returns once the change is applied, not when the dynos are up.
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use wasmdyno::{dyno::AppSpec, runtime::DynoSize, dyno::ReleaseSpec};
    ///
    /// let slug = edge.source().add_slug(&std::fs::read("hello.tar.gz")?, None, Default::default())?;
    /// let release = ReleaseSpec::new(1, slug.sha256()).config("GREETING", "hi").scale("web", 2, DynoSize::Eco);
    /// edge.deploy(AppSpec::new("hello"), Some(release)).await;
    /// assert!(edge.wait_up("hello", Duration::from_secs(30)).await);
    /// # Ok(()) }
    /// ```
    pub async fn deploy(&self, app: AppSpec, release: Option<ReleaseSpec>) {
        let name = app.name.clone();
        self.source.set(app, release);
        self.apply(&name).await;
    }

    /// Runs `quantity` dynos of `app`'s process type `kind` at `size`, as `wasmdyno ps:scale kind=quantity:size`
    /// does: starts the missing ones, stops extra ones (0 stops them all) and replaces those of another size. The
    /// release stays the same.
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), wasmdyno::EdgeError> {
    /// use wasmdyno::runtime::DynoSize;
    ///
    /// edge.scale("hello", "worker", 2, DynoSize::Basic).await?;
    /// edge.scale("hello", "worker", 0, DynoSize::Basic).await?; // stops them
    /// # Ok(()) }
    /// ```
    pub async fn scale(
        &self,
        app: &str,
        kind: &str,
        quantity: u32,
        size: DynoSize,
    ) -> Result<(), EdgeError> {
        let release = self.source.release(app).ok().flatten();
        let sha = release
            .and_then(|r| r.slug)
            .ok_or_else(|| EdgeError::NoRelease(app.to_string()))?;
        let booted = self
            .manager
            .slug(&sha)
            .map_err(|e| EdgeError::Invalid(e.to_string()))?;
        if !booted.manifest().process_types.contains_key(kind) {
            let types: Vec<_> = booted.manifest().process_types.keys().cloned().collect();
            return Err(EdgeError::Invalid(format!(
                "{app} has no process type {kind:?} (it has: {})",
                types.join(", ")
            )));
        }
        let changed = self.source.update(app, |release| {
            release
                .formation
                .insert(kind.to_string(), Scale::new(quantity, size));
        });
        if !changed {
            return Err(EdgeError::NoRelease(app.to_string()));
        }
        self.apply(app).await;
        Ok(())
    }

    /// Sets (`Some`) or unsets (`None`) config vars of `app` as a new release, as `wasmdyno config:set` does: its
    /// dynos restart with them, web dynos with preboot. Returns the new release's version.
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), wasmdyno::EdgeError> {
    /// let version = edge.set_config("hello", [("GREETING", Some("hi")), ("DEBUG", None)]).await?;
    /// println!("hello is at v{version}");
    /// # Ok(()) }
    /// ```
    pub async fn set_config<K: Into<String>, V: Into<String>>(
        &self,
        app: &str,
        vars: impl IntoIterator<Item = (K, Option<V>)>,
    ) -> Result<u64, EdgeError> {
        let mut changes = Vec::new();
        for (name, value) in vars {
            let (name, value) = (name.into(), value.map(Into::into));
            if !crate::vars::is_config_name(&name) {
                return Err(EdgeError::Invalid(format!(
                    "{name:?} is not a config var name: use letters, digits and _, not starting with a digit"
                )));
            }
            if crate::vars::is_platform_var(&name) {
                return Err(EdgeError::Invalid(format!("{name} is set by the platform")));
            }
            if value.as_deref().is_some_and(|v| v.contains('\0')) {
                return Err(EdgeError::Invalid(format!(
                    "the value of {name} contains a NUL character"
                )));
            }
            changes.push((name, value));
        }
        let mut version = None;
        self.source.update(app, |release| {
            for (name, value) in changes {
                match value {
                    Some(value) => release.config.insert(name, value),
                    None => release.config.remove(&name),
                };
            }
            release.version += 1;
            version = Some(release.version);
        });
        let version = version.ok_or_else(|| EdgeError::NoRelease(app.to_string()))?;
        self.apply(app).await;
        Ok(version)
    }

    /// Stops and forgets `app`.
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// edge.remove("hello").await;
    /// # Ok(()) }
    /// ```
    pub async fn remove(&self, app: &str) {
        self.source.remove(app);
        self.routes.invalidate();
        self.manager.stop_app(app).await;
        self.seen.lock().expect("seen").remove(app);
    }

    /// Converges `app`'s dynos to what the source says (after changing the [`source`](Self::source) directly).
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// edge.source().set(wasmdyno::dyno::AppSpec::new("hello"), None);
    /// edge.apply("hello").await; // stops its dynos
    /// # Ok(()) }
    /// ```
    pub async fn apply(&self, app: &str) {
        self.routes.invalidate();
        self.manager.reconcile(app).await;
    }

    /// Waits until every web dyno of `app` is up (true), or `timeout` passes (false).
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// if !edge.wait_up("hello", std::time::Duration::from_secs(30)).await {
    ///     eprintln!("hello is not up yet");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn wait_up(&self, app: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let web: Vec<_> = self
                .manager
                .dynos(app)
                .into_iter()
                .filter(|d| d.kind == crate::procfile::WEB_TYPE)
                .collect();
            if !web.is_empty() && web.iter().all(|d| d.state == State::Up) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `app`'s log lines, from now on, to `sink` (until the app is removed or the task aborted).
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// let task = edge.logs("hello", |app: &str, line: &wasmdyno::logs::LogLine| println!("{app}: {line}"));
    /// // ... later: stop printing.
    /// task.abort();
    /// # Ok(()) }
    /// ```
    pub fn logs(&self, app: &str, sink: impl LogSink) -> tokio::task::JoinHandle<()> {
        let options = SessionOptions {
            lines: 0,
            tail: true,
            ..SessionOptions::default()
        };
        let mut session = self.logplex.session(app, options);
        let app = app.to_string();
        tokio::spawn(async move {
            while let Some(line) = session.next().await {
                sink.line(&app, &line);
            }
        })
    }

    /// Serves every slug in `dir` (`<app>.tar.gz`, or any `<app>.slug`): a new or changed file becomes a new
    /// release of its app, running [`EdgeSettings::web`] web dynos; a removed file stops its app. Returns the
    /// apps whose release changed.
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// loop {
    ///     let changed = edge.sync_dir("/srv/slugs".as_ref()).await?;
    ///     if !changed.is_empty() {
    ///         println!("new releases: {changed:?}");
    ///     }
    ///     tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn sync_dir(&self, dir: &Path) -> Result<Vec<String>, EdgeError> {
        let io = |source| EdgeError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut found = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(app) = name
                .strip_suffix(".tar.gz")
                .or_else(|| name.strip_suffix(".slug"))
            else {
                continue;
            };
            found.insert(app.to_string(), path);
        }
        let mut changed = Vec::new();
        for (app, path) in &found {
            let bytes = match std::fs::read(path) {
                Ok(bytes) => bytes,
                // Being replaced right now: the next sync sees it.
                Err(_) => continue,
            };
            let sha = hex::encode(Sha256::digest(&bytes));
            if self.seen.lock().expect("seen").get(app) == Some(&sha) {
                continue;
            }
            if let Err(e) = self
                .source
                .add_slug(&bytes, Some(&sha), self.settings.limits)
            {
                tracing::warn!(app, "skipping {}: {e}", path.display());
                continue;
            }
            let version = self
                .source
                .release(app)
                .ok()
                .flatten()
                .map_or(1, |r| r.version + 1);
            let web = self.settings.web;
            let release = ReleaseSpec::new(version, sha.clone()).scale(
                crate::procfile::WEB_TYPE,
                web.quantity,
                web.size,
            );
            self.deploy(AppSpec::new(app.clone()), Some(release)).await;
            self.seen.lock().expect("seen").insert(app.clone(), sha);
            changed.push(app.clone());
        }
        let gone: Vec<String> = self
            .apps()
            .into_iter()
            .filter(|app| !found.contains_key(app))
            .collect();
        for app in gone {
            self.remove(&app).await;
            changed.push(app);
        }
        Ok(changed)
    }

    /// Pulls `app`'s current release from a central server, downloads and verifies its slug if it is new, and
    /// applies it (preboot). True when the release changed.
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// let central = wasmdyno::edge::Central::new("http://10.0.0.1:5001", std::env::var("WASMDYNO_TOKEN")?)?;
    /// loop {
    ///     if edge.follow(&central, "hello").await? {
    ///         println!("hello: new release");
    ///     }
    ///     tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn follow(&self, central: &Central, app: &str) -> Result<bool, EdgeError> {
        let Some(remote) = central.current(app).await? else {
            return Ok(false);
        };
        let current = self.source.release(app).ok().flatten();
        let (app_spec, release) = remote;
        let known = self.source.app(app).ok().flatten();
        if current.as_ref() == release.as_ref() && known.as_ref() == Some(&app_spec) {
            return Ok(false);
        }
        if let Some(sha) = release.as_ref().and_then(|r| r.slug.as_deref())
            && !self.source.slug_path(sha).exists()
        {
            let bytes = central.slug(app, sha).await?;
            self.source
                .add_slug(&bytes, Some(sha), self.settings.limits)?;
        }
        self.deploy(app_spec, release).await;
        Ok(true)
    }

    /// Stops every dyno gracefully and waits for them.
    ///
    /// ```no_run
    /// # async fn host(edge: wasmdyno::Edge) -> Result<(), Box<dyn std::error::Error>> {
    /// tokio::signal::ctrl_c().await?;
    /// edge.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) {
        self.manager.shutdown().await;
    }
}
