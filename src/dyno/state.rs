//! What the dyno manager and its supervisors share: the manager's state (its source, runtime, logs, settings, the
//! dynos of each app and the releases booted for them), each app's activity (sleep, features, network policy),
//! and the handle of a running dyno.

use crate::fastmap::FastMap;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::Settings;
use super::Source;
use super::info::DynoInfo;
use super::launch::Booted;
use crate::logs::Logplex;
use crate::runtime::Runtime;
use crate::runtime::net::Listener;
use crate::runtime::web::WebHandler;
use crate::slug::Limits;

/// A running dyno, as the manager holds it.
pub(super) struct Dyno {
    pub(super) info: Arc<Mutex<DynoInfo>>,
    pub(super) stop: watch::Sender<bool>,
    pub(super) task: tokio::task::JoinHandle<()>,
    /// The web dyno's current listener (replaced when the dyno is cycled).
    pub(super) listener: Arc<Mutex<Option<Listener>>>,
    /// A `wasi:http` or CGI web dyno's handler while it serves.
    pub(super) handler: Arc<Mutex<Option<WebHandler>>>,
    pub(super) slug: String,
    /// Its memory budget, shared with its runs (for `memory_bytes` in what the manager reports).
    pub(super) quota: Arc<crate::runtime::vfs::Quota>,
    /// Its guests' CPU time in epoch ticks (milliseconds), shared with its runs.
    pub(super) cpu: Arc<std::sync::atomic::AtomicU64>,
    /// While it runs baseline code: when the optimized code is ready (then the next reconcile replaces it).
    pub(super) upgrade: Arc<Mutex<Option<crate::runtime::Upgrade>>>,
}

impl Dyno {
    /// It runs baseline code whose optimized code is ready.
    pub(super) fn upgradable(&self) -> bool {
        self.upgrade
            .lock()
            .expect("upgrade")
            .as_ref()
            .is_some_and(crate::runtime::Upgrade::is_ready)
    }
}

/// The manager's state, shared by its clones and its dynos' supervisors.
pub(super) struct Inner {
    pub(super) runtime: Arc<Runtime>,
    pub(super) source: Arc<dyn Source>,
    pub(super) limits: Limits,
    pub(super) logplex: Logplex,
    pub(super) settings: Settings,
    pub(super) apps: Mutex<FastMap<String, BTreeMap<String, Dyno>>>,
    /// One reconcile at a time per manager: reconciles are quick (they start and signal tasks).
    pub(super) reconciling: tokio::sync::Mutex<()>,
    /// The number of the next one-off dyno (`run.N`).
    pub(super) one_offs: std::sync::atomic::AtomicU64,
    /// Booted releases: slug sha256 → its image and compiled modules, shared by the slug's dynos.
    pub(super) releases: Mutex<HashMap<String, Arc<Booted>>>,
    /// Preboot: per app, the web dynos of a replaced release that serve until their successors are up.
    pub(super) retiring: Mutex<FastMap<String, Vec<Dyno>>>,
    /// Per app: whether it sleeps, and when its web dynos last got a request.
    pub(super) activity: Mutex<FastMap<String, Arc<Activity>>>,
    /// What [`Activity`] times count from.
    pub(super) epoch: std::time::Instant,
}

/// The requests reaching one app, for sleeping (`apps:sleep on`): its web dynos go idle after
/// [`Settings::sleep_after`] without one, and the next wakes them.
pub(super) struct Activity {
    pub(super) sleep: std::sync::atomic::AtomicBool,
    /// The app's `http-fresh-instances` feature: a new `wasi:http` instance per request.
    pub(super) fresh_instances: std::sync::atomic::AtomicBool,
    /// What its dynos may connect to.
    pub(super) network: Mutex<crate::runtime::NetworkPolicy>,
    /// Milliseconds since the manager's epoch.
    pub(super) last_request: std::sync::atomic::AtomicU64,
    /// Bumped to wake the app's idle dynos.
    pub(super) wakes: watch::Sender<u64>,
}

impl Inner {
    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(super) fn activity(&self, app: &str) -> Arc<Activity> {
        let mut all = self.activity.lock().expect("activity");
        // The router asks on every request: the common case allocates nothing.
        if let Some(activity) = all.get(app) {
            return activity.clone();
        }
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
