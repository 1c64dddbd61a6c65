//! `wasmdyno serve`: the platform in one process: API, router, dyno manager, logplex and drains over one state store.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use crate::api::server::{Platform, router};
use crate::api::{Announcement, FOLLOWER_TOKEN_FILE, LOCK_FILE, TOKEN_FILE};
use crate::store::{PgStore, SqliteStore, Store};

/// Run the platform: the control API, with its state in $WASMDYNO_HOME.
///
/// Prints the address it serves on, writes it and an API token (mode 0600) into $WASMDYNO_HOME for the CLI, and
/// stops cleanly on Ctrl-C or SIGTERM. One server per home: a second one refuses to start.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address of the router, which serves apps at `http://<app>.localhost:<port>/` (port 0 picks a free port).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:5000",
        env = "WASMDYNO_LISTEN"
    )]
    listen: SocketAddr,
    /// Address of the control API, and of the web dashboard at `/dashboard` (port 0 picks a free port).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:5001",
        env = "WASMDYNO_API_LISTEN"
    )]
    api: SocketAddr,
    /// Also serve `/metrics` (Prometheus text) here, without the API token, for a scraper that should hold no
    /// credentials; keep it on a private address. `/metrics` on the API needs the token.
    #[arg(long, value_name = "ADDR", env = "WASMDYNO_METRICS_LISTEN")]
    metrics: Option<SocketAddr>,
    /// Keep the state (apps, the release ledger, config, formation, add-ons, domains, drains) in this PostgreSQL
    /// database (`postgres://user:password@host:port/database`, a database of wasmdyno's own) instead of
    /// $WASMDYNO_HOME/state.db. Several hosts may share one. TLS as libpq: `?sslmode=require`, or `verify-full`
    /// with `sslrootcert=FILE`.
    #[arg(
        long,
        value_name = "URL",
        env = "WASMDYNO_DATABASE_URL",
        hide_env_values = true
    )]
    store: Option<String>,
}

impl ServeArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        // Twice as many workers as cores: guests yield only at epoch ticks, so dynos spinning on every worker
        // would make the router and the API wait their turn; with spare workers the kernel shares the cores
        // preemptively instead.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads((2 * cores).max(4))
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        tokio.block_on(serve(
            self.listen,
            self.api,
            self.metrics,
            self.store.as_deref(),
            &super::home_dir(),
            None,
        ))?;
        Ok(ExitCode::SUCCESS)
    }
}

/// The store, and the same store as a cluster's database when it is PostgreSQL.
type OpenedStore = (Arc<dyn Store>, Option<Arc<PgStore>>);

/// The state store: the PostgreSQL database at `url` (returned twice: a cluster's hosts share it), or `state.db`
/// in `home`.
fn open_store(url: Option<&str>, home: &Path) -> anyhow::Result<OpenedStore> {
    if let Some(url) = url {
        let store =
            Arc::new(PgStore::connect(url).context("cannot open the PostgreSQL state store")?);
        tracing::info!(store = store.url(), "state in PostgreSQL");
        return Ok((store.clone(), Some(store)));
    }
    let store = SqliteStore::open(&home.join("state.db")).context("cannot open the state store")?;
    // SQLite creates its files with the umask's mode: the ledger and its journal are the owner's alone.
    for file in ["state.db", "state.db-wal", "state.db-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(home.join(file), std::fs::Permissions::from_mode(0o600));
    }
    Ok((Arc::new(store), None))
}

/// Serves until Ctrl-C/SIGTERM (or until `stop` resolves). Announces the API address on stdout once it listens.
pub(crate) async fn serve(
    router_addr: SocketAddr,
    api: SocketAddr,
    metrics: Option<SocketAddr>,
    store: Option<&str>,
    home: &Path,
    stop: Option<tokio::sync::oneshot::Receiver<()>>,
) -> anyhow::Result<()> {
    super::private_home(home)?;
    let lock_path = home.join(LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        let holder = Announcement::read(home)
            .map(|a| format!(" (pid {}, API at {})", a.pid, a.api))
            .unwrap_or_default();
        bail!(
            "another wasmdyno serve is running on {}{holder}",
            home.display()
        );
    }

    let (store, shared) = open_store(store, home)?;
    let runtime = Arc::new(super::runtime()?);
    // A cluster's hosts share their tokens (kept in its database): the CLI may talk to any of them.
    let (mut token, mut follower_token) = (new_token(), new_token());
    if let Some(shared) = &shared {
        token = shared.shared_secret("api-token", &token)?;
        follower_token = shared.shared_secret("follower-token", &follower_token)?;
    }
    write_private(&home.join(TOKEN_FILE), &token)?;
    write_private(&home.join(FOLLOWER_TOKEN_FILE), &follower_token)?;

    let listener = tokio::net::TcpListener::bind(api)
        .await
        .with_context(|| format!("cannot listen on {api} for the API"))?;
    let api_addr = listener.local_addr()?;
    let router_listener = tokio::net::TcpListener::bind(router_addr)
        .await
        .with_context(|| format!("cannot listen on {router_addr} for the router"))?;
    let router_addr = router_listener.local_addr()?;
    let mut router_settings = super::settings::router().map_err(anyhow::Error::msg)?;
    // Connections are files: take what the system allows, and keep the router's share within it, so that a flood
    // of clients runs into the router's cap (a 503) before the process runs out of descriptors.
    match crate::router::raise_open_file_limit() {
        Ok(files) => {
            let share = usize::try_from(files / 2).unwrap_or(usize::MAX).max(64);
            if router_settings.connections.total > share {
                tracing::info!(
                    files,
                    share,
                    "router connections capped by the open-file limit"
                );
                router_settings.connections.total = share;
            }
        }
        Err(e) => tracing::warn!("cannot read the open-file limit: {e}"),
    }
    let mut platform = Platform::new(
        home.to_path_buf(),
        store,
        runtime,
        super::slug_limits()?,
        token,
        super::settings::manager().map_err(anyhow::Error::msg)?,
        super::settings::drains().map_err(anyhow::Error::msg)?,
    );
    platform.build_sandbox = super::build_sandbox()?;
    match platform.build_sandbox.mode {
        crate::build::SandboxMode::Bwrap => {}
        mode if crate::build::sandboxed(mode) => {}
        _ => eprintln!(
            "wasmdyno serve: warning: {}",
            crate::build::UNSANDBOXED
                .trim_start()
                .trim_matches(['(', ')'])
        ),
    }
    platform.providers = super::settings::addons().map_err(anyhow::Error::msg)?;
    // On PostgreSQL this server is one host of a cluster: it runs the formation dynos placed on it.
    let cluster = match shared {
        Some(shared) => {
            let cluster = crate::cluster::Cluster::join(
                shared,
                home,
                format!("http://{api_addr}"),
                router_addr.to_string(),
                &super::settings::cluster().map_err(anyhow::Error::msg)?,
            )
            .context("cannot join the cluster")?;
            let cluster = Arc::new(cluster);
            cluster.ship_logs(&platform.logplex);
            platform.join(cluster.clone());
            Some(cluster)
        }
        None => None,
    };
    platform.follower_token = follower_token;
    // One routing table, read by the router and refreshed by the API when apps, releases or domains change.
    platform.routes =
        crate::router::Routes::new(platform.store.clone(), &router_settings.base_domain);
    let platform = Arc::new(platform);
    // Alone, every pending release was this server's; on a cluster, only those older than any release phase may
    // run (another host may be running the rest).
    let abandoned_after = cluster
        .as_ref()
        .map(|_| platform.manager.settings().release_phase_timeout);
    platform
        .fail_interrupted_releases(abandoned_after)
        .context("cannot fail the releases a stopped server left pending")?;
    let announcement = Announcement {
        api: format!("http://{api_addr}"),
        router: Some(router_addr.to_string()),
        base_domain: Some(router_settings.base_domain.clone()),
        pid: std::process::id(),
    };
    crate::fsutil::write_atomic(
        &Announcement::path(home),
        serde_json::to_string_pretty(&announcement)?.as_bytes(),
    )
    .context("cannot announce the server")?;
    println!("wasmdyno serve: API on http://{api_addr}");
    println!(
        "wasmdyno serve: router on http://{router_addr} (apps at http://<app>.{}:{})",
        router_settings.base_domain,
        router_addr.port()
    );
    let _ = std::io::stdout().flush();

    // Drains first, so that they ship the formation's first lines too.
    platform
        .start_drains()
        .context("cannot start the log drains")?;
    // Bring back every app's formation (after a restart, the dynos the ledger says should run).
    let manager = platform.manager.clone();
    match &cluster {
        Some(cluster) => {
            tracing::info!(
                host = cluster.host_id(),
                "running the dynos placed on this host"
            );
            let changed = platform.clone();
            cluster
                .clone()
                .spawn(manager, Arc::new(move || changed.ledger_changed()))
                .context("cannot start this host's fencing clock")?;
        }
        None => {
            tokio::spawn(async move { manager.reconcile_all().await });
        }
    }

    let routing_table = crate::router::Router::measured(
        platform.manager.clone(),
        platform.routes.clone(),
        platform.logplex.clone(),
        router_settings,
        platform.metrics.clone(),
    );
    if let Some(cluster) = &cluster {
        routing_table.set_peers(cluster.peers());
    }
    let (router_stop, router_stopped) = tokio::sync::oneshot::channel::<()>();
    let routing = tokio::spawn(routing_table.serve(router_listener, async move {
        let _ = router_stopped.await;
    }));

    let manager = platform.manager.clone();
    let (store, logplex) = (platform.store.clone(), platform.logplex.clone());
    let first_head = match std::env::var("WASMDYNO_API_HEADER_TIMEOUT_MS") {
        Ok(ms) => std::time::Duration::from_millis(ms.trim().parse().map_err(|_| {
            anyhow::anyhow!("WASMDYNO_API_HEADER_TIMEOUT_MS={ms:?} is not a number of milliseconds")
        })?),
        Err(_) => crate::api::listener::FIRST_HEAD_TIMEOUT,
    };
    let listener = crate::api::listener::LimitedListener::new(
        listener,
        crate::api::listener::API_CONNECTIONS,
        first_head,
    );
    let scraping = match metrics {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for metrics"))?;
            println!(
                "wasmdyno serve: metrics on http://{}/metrics",
                listener.local_addr()?
            );
            let listener = crate::api::listener::LimitedListener::new(
                listener,
                crate::api::listener::API_CONNECTIONS,
                first_head,
            );
            let app = crate::api::server::metrics_router(platform.clone());
            Some(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }))
        }
        None => None,
    };
    let served = axum::serve(listener, router(platform)).with_graceful_shutdown(async move {
        shutdown_signal(stop).await;
        eprintln!("wasmdyno serve: shutting down");
        // End every tailing log session, or graceful shutdown would wait for them forever.
        for app in store.apps().unwrap_or_default() {
            logplex.remove_app(&app.name);
        }
    });
    let result = served.await.context("the API server failed");
    if let Some(scraping) = scraping {
        scraping.abort();
    }
    let _ = router_stop.send(());
    let _ = routing.await;
    manager.shutdown().await;
    let _ = std::fs::remove_file(Announcement::path(home));
    drop(lock);
    result
}

async fn shutdown_signal(stop: Option<tokio::sync::oneshot::Receiver<()>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let stop = async {
        match stop {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = stop => {}
    }
}

/// 32 random bytes, hex.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the system's random source");
    hex::encode(bytes)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
