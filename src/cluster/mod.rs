//! Several `wasmdyno serve` hosts on one PostgreSQL database: each host registers itself and heartbeats, one host
//! at a time places the formation dynos across the live hosts ([`placement`]), and each host's dyno manager runs
//! what is placed on it.
//!
//! - **Liveness** is the database's: a host whose last heartbeat is older than the host timeout is dead, and its
//!   dynos are placed on live hosts by the next scheduling round (every tick, on whichever host takes the
//!   scheduler's lock).
//! - **Changes** made through any host (releases, scaling, new placements) notify the others through PostgreSQL's
//!   `LISTEN`/`NOTIFY`, which start their next round at once rather than at the tick.
//! - **Fencing**: a host that has not reached the database for a third of the host timeout stops its formation
//!   dynos at once ([`Manager::fence`]) and runs none until it reaches the database again. Its dynos are placed
//!   elsewhere only after the full timeout, so a formation dyno never runs on two hosts at once.
//! - **Slugs** are kept in the database (in chunks) when built or uploaded; a host fetches a slug it lacks from
//!   there and checks its sha256. The database and not a peer, so that a slug outlives the host that built it.

pub(crate) mod history;
pub(crate) mod placement;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::dyno::{AppSpec, Manager, ReleaseSpec, Source, SourceError};
use crate::slug::SharedSlugs;
use crate::store::PgStore;
use crate::store::postgres::cluster::Host;

/// How a host takes part in a cluster.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// A host that has not heartbeat for this long is dead (`WASMDYNO_HOST_TIMEOUT`, 15 s).
    pub host_timeout: Duration,
    /// Dyno units (512 MiB each) this host runs at most (`WASMDYNO_HOST_CAPACITY`; from its memory).
    pub capacity: Option<u32>,
    /// This host's id (`WASMDYNO_HOST_ID`; else kept in `$WASMDYNO_HOME/host-id`).
    pub host_id: Option<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            host_timeout: Duration::from_secs(15),
            capacity: None,
            host_id: None,
        }
    }
}

/// A live host as `GET /hosts` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct HostStatus {
    pub id: String,
    pub api: String,
    pub router: String,
    /// Dyno units (512 MiB each).
    pub capacity: u32,
    /// `app/dyno` of each formation dyno placed on it.
    pub dynos: Vec<String>,
    /// The host that answered.
    pub this: bool,
}

/// What this host knows of its share of the work: read by its dyno manager through [`PlacedSource`].
#[derive(Debug, Default)]
pub(crate) struct View {
    /// App → the formation dynos placed on this host.
    placed: RwLock<BTreeMap<String, BTreeSet<String>>>,
    /// Lost touch with the database: run no formation dyno.
    fenced: AtomicBool,
    /// App → the other hosts (id, router address) that run its web dynos.
    web_elsewhere: RwLock<BTreeMap<String, Vec<(String, SocketAddr)>>>,
}

/// What one round read: the dynos placed here, where other hosts run web dynos, and the ledger's generation.
struct Round {
    mine: BTreeMap<String, BTreeSet<String>>,
    web_elsewhere: BTreeMap<String, Vec<(String, SocketAddr)>>,
    generation: i64,
}

/// What a host does when another host changed the ledger (reload its routing table, start or stop drains).
pub(crate) type OnChange = Arc<dyn Fn() + Send + Sync>;

/// This host in its cluster.
pub(crate) struct Cluster {
    store: Arc<PgStore>,
    host: Host,
    timeout: Duration,
    view: Arc<View>,
}

impl Cluster {
    /// Registers this host (its API at `api`, its router at `router`) in `store`'s cluster.
    pub(crate) fn join(
        store: Arc<PgStore>,
        home: &Path,
        api: String,
        router: String,
        settings: &Settings,
    ) -> anyhow::Result<Cluster> {
        let id = match &settings.host_id {
            Some(id) => id.clone(),
            None => host_id(home)?,
        };
        let capacity = settings.capacity.unwrap_or_else(capacity_from_memory);
        let host = Host {
            id,
            api,
            router,
            capacity,
        };
        store.register_host(&host)?;
        tracing::info!(host = host.id, capacity, "joined the cluster");
        Ok(Cluster {
            store,
            host,
            timeout: settings.host_timeout,
            view: Arc::default(),
        })
    }

    pub(crate) fn host_id(&self) -> &str {
        &self.host.id
    }

    /// Copies the lines `logplex` is given into the cluster's shared log history ([`history`]).
    pub(crate) fn ship_logs(&self, logplex: &crate::logs::Logplex) {
        history::ship(self.store.clone(), logplex);
    }

    /// The shared history of `app` ([`history::read`]): every host's lines written so far, the dead ones' too.
    pub(crate) fn shared_history(
        &self,
        app: &str,
        filter: &crate::logs::Filter,
    ) -> Result<Vec<Vec<u8>>, crate::store::StoreError> {
        history::read(&self.store, app, |line| filter.matches(line))
    }

    /// The live hosts and the formation dynos placed on each (`wasmdyno hosts`).
    pub(crate) fn hosts(&self) -> Result<Vec<HostStatus>, crate::store::StoreError> {
        let placements = self.store.placements()?;
        Ok(self
            .store
            .live_hosts(self.timeout)?
            .into_iter()
            .map(|host| HostStatus {
                this: host.id == self.host.id,
                dynos: placements
                    .iter()
                    .filter(|p| p.host == host.id)
                    .map(|p| format!("{}/{}", p.app, p.dyno))
                    .collect(),
                id: host.id,
                api: host.api,
                router: host.router,
                capacity: host.capacity,
            })
            .collect())
    }

    /// `source` as this host's dyno manager should read it: only the dynos placed here.
    pub(crate) fn placed(&self, source: Arc<dyn Source>) -> Arc<dyn Source> {
        Arc::new(PlacedSource {
            inner: source,
            view: self.view.clone(),
        })
    }

    /// The other hosts, for this host's router.
    pub(crate) fn peers(self: &Arc<Self>) -> Arc<dyn crate::router::Peers> {
        Arc::new(ClusterPeers(self.clone()))
    }

    /// The database as the slug store's shared half.
    pub(crate) fn slugs(&self) -> Arc<dyn SharedSlugs> {
        self.store.clone()
    }

    /// Heartbeats, schedules, and keeps `manager` running what is placed here, until the process ends; calls
    /// `on_change` when the ledger changed (through any host). Fails only if the fencing clock's thread cannot
    /// start: without it this host must not run formation dynos.
    pub(crate) fn spawn(
        self: Arc<Self>,
        manager: Manager,
        on_change: OnChange,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let tick = (self.timeout / 5).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let last_ok = Arc::new(Mutex::new(Instant::now()));
        self.start_fence_clock(manager.clone(), last_ok.clone(), tick)?;
        Ok(tokio::spawn(async move {
            self.run(manager, on_change, last_ok, tick).await
        }))
    }

    /// The fencing clock, on a thread of its own so that nothing on the runtime can hold it up (a reconcile
    /// waiting on a silent database, busy workers): once the last heartbeat that got through was sent more than a
    /// third of the host timeout ago, this host stops its formation dynos, well before the other hosts may place
    /// them elsewhere (at the timeout). It stops with the cluster.
    fn start_fence_clock(
        self: &Arc<Self>,
        manager: Manager,
        last_ok: Arc<Mutex<Instant>>,
        tick: Duration,
    ) -> std::io::Result<()> {
        let cluster = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("wasmdyno-fence".into())
            .spawn(move || {
                while let Some(cluster) = cluster.upgrade() {
                    let silent = {
                        // Checked and set under the lock the heartbeat's success takes to unfence.
                        let last = last_ok.lock().unwrap_or_else(PoisonError::into_inner);
                        let silent = last.elapsed();
                        (silent > cluster.timeout / 3
                            && !cluster.view.fenced.swap(true, Ordering::SeqCst))
                        .then_some(silent)
                    };
                    if let Some(silent) = silent {
                        cluster.view.placed.write().expect("view").clear();
                        cluster.view.web_elsewhere.write().expect("view").clear();
                        let stopped =
                            manager.fence("this host lost touch with the cluster's database");
                        tracing::error!(
                            host = cluster.host.id,
                            stopped,
                            "fenced: no heartbeat for {silent:?}; formation dynos stopped"
                        );
                    }
                    drop(cluster);
                    std::thread::sleep(tick);
                }
            })
            .map(drop)
    }

    async fn run(
        self: Arc<Self>,
        manager: Manager,
        on_change: OnChange,
        last_ok: Arc<Mutex<Instant>>,
        tick: Duration,
    ) {
        let mut generation = None;
        let applier = Applier::start(manager);
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A change through any host (a release, a scale, new placements) starts a round at once.
        let changed = Arc::new(tokio::sync::Notify::new());
        self.store.on_changes(changed.clone());
        // A round that hangs (a database that stopped answering) is waited for at most a tick at a time.
        let mut in_flight: Option<tokio::task::JoinHandle<_>> = None;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = changed.notified() => interval.reset(),
            }
            let mut round = in_flight.take().unwrap_or_else(|| {
                let this = self.clone();
                // The lease runs from when the heartbeat was sent, not from when its answer came.
                let sent = Instant::now();
                tokio::task::spawn_blocking(move || this.beat().map(|placed| (sent, placed)))
            });
            match tokio::time::timeout(tick, &mut round).await {
                Err(_) => in_flight = Some(round),
                // A round that came back later than its lease lasts may have read placements that other hosts
                // have changed since: it neither unfences nor applies.
                Ok(Ok(Ok((sent, _)))) if sent.elapsed() > self.timeout / 3 => tracing::warn!(
                    host = self.host.id,
                    "a cluster round came back after {:?}: ignored",
                    sent.elapsed()
                ),
                Ok(Ok(Ok((sent, round)))) => {
                    {
                        let mut last = last_ok.lock().unwrap_or_else(PoisonError::into_inner);
                        *last = sent.max(*last);
                        if self.view.fenced.swap(false, Ordering::SeqCst) {
                            tracing::warn!(host = self.host.id, "back in touch with the cluster");
                        }
                    }
                    *self.view.web_elsewhere.write().expect("view") = round.web_elsewhere;
                    if generation.replace(round.generation) != Some(round.generation) {
                        on_change();
                    }
                    self.apply(round.mine, &applier);
                }
                Ok(Ok(Err(e))) => tracing::warn!(host = self.host.id, "cluster round failed: {e}"),
                Ok(Err(e)) => tracing::warn!(host = self.host.id, "cluster round panicked: {e}"),
            }
        }
    }

    /// One round: heartbeat (registering again if this host was removed), schedule if no other host is, and read
    /// what is placed here and where other hosts run web dynos.
    fn beat(&self) -> Result<Round, crate::store::StoreError> {
        if !self.store.heartbeat(&self.host.id)? {
            self.store.register_host(&self.host)?;
        }
        if let Some(changes) = self.store.schedule(self.timeout, placement::plan)?
            && !(changes.added.is_empty() && changes.removed.is_empty())
        {
            tracing::info!(
                host = self.host.id,
                placed = changes.added.len(),
                removed = changes.removed.len(),
                "placements changed"
            );
        }
        let routers: BTreeMap<String, SocketAddr> = self
            .store
            .live_hosts(self.timeout)?
            .into_iter()
            .filter(|h| h.id != self.host.id)
            .filter_map(|h| Some((h.id, h.router.parse().ok()?)))
            .collect();
        let mut round = Round {
            mine: BTreeMap::new(),
            web_elsewhere: BTreeMap::new(),
            generation: self.store.generation()?,
        };
        for p in self.store.placements()? {
            if p.host == self.host.id {
                round.mine.entry(p.app).or_default().insert(p.dyno);
            } else if p.dyno.starts_with("web.")
                && let Some(addr) = routers.get(&p.host)
            {
                let hosts = round.web_elsewhere.entry(p.app).or_default();
                if !hosts.iter().any(|(id, _)| *id == p.host) {
                    hosts.push((p.host, *addr));
                }
            }
        }
        Ok(round)
    }

    /// Makes the manager run what is placed here: every app placed here now or before is marked for the applier
    /// to reconcile (cheap when nothing changed; it also picks up releases made through other hosts' APIs).
    fn apply(&self, placed: BTreeMap<String, BTreeSet<String>>, applier: &Applier) {
        let mut view = self.view.placed.write().expect("view");
        applier.mark(view.keys().chain(placed.keys()).cloned());
        *view = placed;
    }
}

/// Reconciles the apps whose placements a round read, on a task of its own: a slow reconcile (a slug to fetch
/// and compile, a silent database) never delays the next heartbeat. Marks made while it works are coalesced.
#[derive(Default)]
struct Applier {
    apps: Mutex<BTreeSet<String>>,
    marked: tokio::sync::Notify,
}

impl Applier {
    fn start(manager: Manager) -> Arc<Applier> {
        let applier = Arc::new(Applier::default());
        let this = applier.clone();
        tokio::spawn(async move {
            loop {
                this.marked.notified().await;
                let apps =
                    std::mem::take(&mut *this.apps.lock().unwrap_or_else(PoisonError::into_inner));
                for app in apps {
                    manager.reconcile(&app).await;
                }
            }
        });
        applier
    }

    fn mark(&self, apps: impl Iterator<Item = String>) {
        self.apps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(apps);
        self.marked.notify_one();
    }
}

/// A source that runs only the formation dynos placed on this host.
struct PlacedSource {
    inner: Arc<dyn Source>,
    view: Arc<View>,
}

impl Source for PlacedSource {
    fn apps(&self) -> Result<Vec<AppSpec>, SourceError> {
        self.inner.apps()
    }
    fn app(&self, app: &str) -> Result<Option<AppSpec>, SourceError> {
        self.inner.app(app)
    }
    fn release(&self, app: &str) -> Result<Option<ReleaseSpec>, SourceError> {
        self.inner.release(app)
    }
    fn slug_path(&self, sha256: &str) -> PathBuf {
        self.inner.slug_path(sha256)
    }
    fn domains(&self, app: &str) -> Result<Vec<String>, SourceError> {
        self.inner.domains(app)
    }
    fn placement(&self, app: &str) -> Option<BTreeSet<String>> {
        if self.view.fenced.load(Ordering::SeqCst) {
            return Some(BTreeSet::new());
        }
        Some(
            self.view
                .placed
                .read()
                .expect("view")
                .get(app)
                .cloned()
                .unwrap_or_default(),
        )
    }
}

struct ClusterPeers(Arc<Cluster>);

impl crate::router::Peers for ClusterPeers {
    fn this_host(&self) -> String {
        self.0.host.id.clone()
    }
    fn web_hosts(&self, app: &str) -> Vec<(String, SocketAddr)> {
        if self.0.view.fenced.load(Ordering::SeqCst) {
            return Vec::new();
        }
        self.0
            .view
            .web_elsewhere
            .read()
            .expect("view")
            .get(app)
            .cloned()
            .unwrap_or_default()
    }
}

/// This host's id, made once and kept in `home`.
fn host_id(home: &Path) -> anyhow::Result<String> {
    let path = home.join("host-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_string());
    }
    let id = crate::ids::uuid_v4().map_err(|e| anyhow::anyhow!("cannot make a host id: {e}"))?;
    crate::fsutil::write_atomic(&path, id.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(id)
}

/// Dyno units this machine's memory holds, keeping one unit for the platform itself.
fn capacity_from_memory() -> u32 {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(2 * 1024 * 1024);
    u32::try_from((total_kib / (512 * 1024)).saturating_sub(1).max(1)).unwrap_or(u32::MAX)
}
