//! The dyno manager: reconciles each app's dynos to its release and formation, starts and stops them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::launch::Want;
use super::state::{Activity, Dyno, Inner};
use super::supervisor::Supervisor;
use super::*;
use crate::logs::Logplex;
use crate::procfile::Command;
use crate::runtime::net::Listener;
use crate::runtime::{DynoSize, Runtime};
use crate::slug::Limits;

mod desired;
mod fence;
mod one_off;
#[allow(unused_imports)]
use one_off::*;

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
/// # let options = wasmdyno::slug::PackOptions {
/// #     process_types: [("worker".to_string(), "hello.wasm".to_string())].into(),
/// #     ..Default::default()
/// # };
/// # let packed = wasmdyno::slug::pack(app.path(), options)?;
/// use std::sync::Arc;
/// use wasmdyno::{dyno::AppSpec, dyno::Attach, runtime::stdio::Input, Logplex, Manager, edge::MemorySource, dyno::ReleaseSpec, Runtime, RuntimeConfig};
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
    pub(super) inner: Arc<Inner>,
}

impl Manager {
    /// A manager running what `source` says, on `runtime`, writing into `logplex`. It starts nothing until
    /// [`reconcile`](Self::reconcile) or [`reconcile_all`](Self::reconcile_all) is called.
    ///
    /// ```no_run
    /// # async fn host() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use wasmdyno::{dyno::AppSpec, runtime::DynoSize, Logplex, Manager, edge::MemorySource, dyno::ReleaseSpec, Runtime, RuntimeConfig};
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

    pub(super) fn activity(&self, app: &str) -> Arc<Activity> {
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
        // The source's reads (a database that may be slow or silent) and the slug's opening and compiling run on
        // a blocking thread, never on the runtime's workers.
        let desired = tokio::task::spawn_blocking({
            let (this, app) = (self.clone(), app.to_string());
            move || {
                this.refresh_settings(&app);
                this.desired(&app)
            }
        })
        .await
        .unwrap_or_else(|e| Err(DynoError::Command(format!("the reconcile panicked: {e}"))));
        let desired = match desired {
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
                let one_off = is_one_off(&name);
                let wanted = desired.get(&name).is_some_and(|want| {
                    let dyno = &running[&name];
                    let info = dyno.info.lock().expect("dyno info");
                    dyno.slug == want.slug
                        && info.release == want.release
                        && info.size == want.size.name()
                        && info.command == want.command
                });
                // A dyno on baseline code whose optimized code is ready is replaced like one of an old release.
                let upgrading = wanted && running[&name].upgradable();
                if upgrading {
                    let line = "Optimized code ready: replacing the dyno".to_string();
                    self.inner
                        .logplex
                        .publish(app, crate::logs::LogLine::platform(&name, line));
                }
                let keep = one_off || (wanted && !upgrading);
                if !keep {
                    let dyno = running.remove(&name).expect("listed");
                    // Preboot: an up web dyno that is being replaced serves until its successor is up.
                    let info = dyno.info.lock().expect("dyno info").clone();
                    let serving = info.kind == crate::procfile::WEB_TYPE && info.state == State::Up;
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
                    if dyno.info.lock().expect("dyno info").kind == crate::procfile::WEB_TYPE {
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
    pub(super) fn preboot(&self, app: &str, old: Vec<Dyno>, new: Vec<Arc<Mutex<DynoInfo>>>) {
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

    /// Takes the app's settings from the source: sleeping, fresh instances, network destinations.
    fn refresh_settings(&self, app: &str) {
        if let Ok(Some(found)) = self.inner.source.app(app) {
            let activity = self.activity(app);
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            activity.sleep.store(found.sleep, relaxed);
            let fresh = found
                .features
                .contains(crate::features::HTTP_FRESH_INSTANCES);
            activity.fresh_instances.store(fresh, relaxed);
            let settings = &self.inner.settings;
            let mut policy = crate::runtime::NetworkPolicy::new(&found.network);
            for endpoint in &found.endpoints {
                policy = policy.with_endpoint(*endpoint);
            }
            policy.connect_timeout = settings.connect_timeout;
            if let Some(dns) = settings.guest_dns {
                policy = policy.with_dns_server(dns);
            }
            *activity.network.lock().expect("network policy") = policy;
        }
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
                    .map(|d| {
                        let mut info = d.info.lock().expect("dyno info").clone();
                        info.memory_bytes = d.quota.used();
                        info.memory_peak_bytes = d.quota.peak();
                        info.cpu_ms = d.cpu.load(std::sync::atomic::Ordering::Relaxed);
                        info
                    })
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
                    .filter_map(|d| {
                        let name = {
                            let info = d.info.lock().expect("dyno info");
                            (info.state == State::Up).then(|| info.name.clone())?
                        };
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

    pub(super) fn start(&self, app: &str, name: &str, want: Want, attach: Option<Attach>) -> Dyno {
        let info = Arc::new(Mutex::new(DynoInfo {
            name: name.to_string(),
            kind: want.kind.clone(),
            command: want.command.clone(),
            size: want.size.name().to_string(),
            state: State::Starting,
            updated_at: unix_now(),
            release: want.release,
            memory_bytes: 0,
            memory_peak_bytes: 0,
            restarts: 0,
            cpu_ms: 0,
            host: None,
        }));
        let cpu = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // One memory budget for the dyno's whole life: each run gives back all it took when it ends.
        let quota = Arc::new(crate::runtime::vfs::Quota::new(want.size.memory() as u64));
        let listener = (want.kind == crate::procfile::WEB_TYPE)
            .then(|| Listener::new(self.inner.settings.listen_backlog));
        let shared_listener = Arc::new(Mutex::new(listener.clone()));
        let shared_handler = Arc::new(Mutex::new(None));
        let upgrade = Arc::new(Mutex::new(None));
        let (stop_tx, stop_rx) = watch::channel(false);
        let slug = want.slug.clone();
        let one_off = is_one_off(name);
        let serves_requests = listener.is_some();
        let supervisor = Supervisor {
            inner: self.inner.clone(),
            app: app.to_string(),
            name: name.to_string(),
            want,
            info: info.clone(),
            quota: quota.clone(),
            cpu: cpu.clone(),
            listener,
            shared_listener: shared_listener.clone(),
            shared_handler: shared_handler.clone(),
            stop: stop_rx,
            one_off,
            attach,
            exit_status: None,
            upgrade: upgrade.clone(),
        };
        // Web dynos serve the router's requests; everything else is background work the kernel may defer.
        let task = if serves_requests {
            tokio::spawn(supervisor.run())
        } else {
            super::background::spawn(supervisor.run())
        };
        Dyno {
            info,
            stop: stop_tx,
            task,
            listener: shared_listener,
            handler: shared_handler,
            quota,
            cpu,
            slug,
            upgrade,
        }
    }
}

pub(super) async fn stop_and_wait(dynos: Vec<Dyno>) {
    for dyno in &dynos {
        let _ = dyno.stop.send(true);
    }
    for dyno in dynos {
        let _ = dyno.task.await;
    }
}
