//! The API server: the [`Platform`] it serves from and the routing table. Each resource's routes live in a room
//! of their own (`apps`, `config`, `releases`, `builds`, `addons`, `domains`, `formation`, `logs`, `drains`);
//! `release` holds how releases are made and their release phase run, `auth` who may call what, `error` the
//! error type every route answers with.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{BuildEvent, ErrorBody};
use crate::build::BuildRequest;
use crate::dyno::{DynoInfo, Manager, Settings};
use crate::logs::drain::{DrainSettings, DrainSpec, DrainStatus, Drains};
use crate::logs::{Filter, LineWriter, LogLine, Logplex, SessionOptions, Source};
use crate::procfile::RELEASE_TYPE;
use crate::runtime::Runtime;
use crate::runtime::stdio::Output;
use crate::slug::{Limits, Slug, SlugStore};
use crate::store::{
    Addon, App, Drain, ErrorKind, FormationEntry, NewAddon, NewRelease, Release, ScaleChange,
    Store, StoreError,
};

mod addons;
mod app_json;
mod apps;
mod auth;
mod builds;
mod config;
mod dashboard;
mod deploy;
mod domains;
mod drains;
mod error;
mod formation;
mod hosts;
mod logs;
mod logs_cluster;
mod metrics;
mod peers;
mod release;
mod releases;

use addons::*;
use apps::*;
pub use apps::{Destination, FeatureInfo};
use auth::*;
use builds::*;
pub use config::RELEASE_HEADER;
use config::*;
use domains::*;
use drains::*;
pub use error::ApiError;
use error::*;
pub use formation::FormationType;
use formation::*;
use hosts::*;
use logs::*;
pub use metrics::AppMetrics;
use metrics::*;
use peers::*;
use releases::*;

/// Largest JSON request body.
const JSON_LIMIT: usize = 1024 * 1024;

/// A log session created and not yet opened: its app, options, whether it is this host's lines only (a cluster
/// peer's request), and when it was made.
type LogSessionEntry = (String, SessionOptions, bool, std::time::Instant);

/// Everything the API serves from: the store, the slugs, the runtime that runs release phases.
pub struct Platform {
    pub home: PathBuf,
    pub store: Arc<dyn Store>,
    pub slugs: SlugStore,
    pub runtime: Arc<Runtime>,
    pub limits: Limits,
    pub token: String,
    /// The read-only token of edge hosts (see [`super::FOLLOWER_TOKEN_FILE`]); empty: none.
    pub follower_token: String,
    pub manager: Manager,
    pub logplex: Logplex,
    /// The router's metrics per app and process type.
    pub metrics: crate::metrics::Metrics,
    /// The router's table of hosts and apps: told here whenever apps, maintenance, releases or domains change.
    pub routes: crate::router::Routes,
    /// The running log drains of every app (started from the store, changed by `/log-drains`).
    pub drains: Drains,
    /// Log sessions created and not yet opened: id → (app, options).
    log_sessions: Mutex<HashMap<String, LogSessionEntry>>,
    /// One release at a time per app: a release phase holds its app's lock until it has finished.
    release_locks: crate::locks::AppLocks,
    /// The running release phase of each app, told to stop when its app is destroyed.
    release_phases: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    /// The add-on services this server provisions.
    pub providers: crate::addons::Providers,
    /// The cluster this server is a host of (with a PostgreSQL store).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// How builds are isolated from the platform's state.
    pub build_sandbox: crate::build::Sandbox,
    /// The dashboard's login sessions.
    dashboard: dashboard::Sessions,
    /// One build at a time per app (a deploy or a `git push`): builds share the app's build cache.
    build_locks: crate::locks::AppLocks,
}

impl Platform {
    pub fn new(
        home: PathBuf,
        store: Arc<dyn Store>,
        runtime: Arc<Runtime>,
        limits: Limits,
        token: String,
        settings: Settings,
        drain_settings: DrainSettings,
    ) -> Platform {
        let slugs = SlugStore::new(home.join("slugs"));
        let logplex = Logplex::new();
        let drains = Drains::new(logplex.clone(), drain_settings);
        let manager = Manager::new(
            runtime.clone(),
            Arc::new(crate::dyno::StoreSource::new(store.clone(), slugs.clone())),
            limits,
            logplex.clone(),
            settings,
        );
        let routes = crate::router::Routes::new(store.clone(), "localhost");
        Platform {
            routes,
            slugs,
            home,
            store,
            runtime,
            limits,
            token,
            follower_token: String::new(),
            manager,
            logplex,
            metrics: crate::metrics::Metrics::new(),
            drains,
            log_sessions: Mutex::default(),
            release_locks: Default::default(),
            release_phases: Mutex::default(),
            providers: crate::addons::Providers::default(),
            cluster: None,
            build_sandbox: crate::build::Sandbox::default(),
            build_locks: Default::default(),
            dashboard: dashboard::Sessions::default(),
        }
    }

    /// This platform as one host of `cluster`: its dyno manager runs only the formation dynos placed here, and its
    /// slugs are shared with the other hosts through the cluster's database. Call before anything runs.
    pub(crate) fn join(&mut self, cluster: Arc<crate::cluster::Cluster>) {
        self.slugs = self.slugs.clone().with_shared(cluster.slugs());
        let source = Arc::new(crate::dyno::StoreSource::new(
            self.store.clone(),
            self.slugs.clone(),
        ));
        self.manager = Manager::new(
            self.runtime.clone(),
            cluster.placed(source),
            self.limits,
            self.logplex.clone(),
            self.manager.settings().clone(),
        );
        self.cluster = Some(cluster);
    }

    /// Another host of the cluster changed the ledger: the routing table reloads, and each app's drains become what
    /// the store lists.
    pub(crate) fn ledger_changed(&self) {
        self.routes.invalidate();
        match self.store.apps() {
            Ok(apps) => {
                for app in apps {
                    if let Err(e) = self.sync_drains(&app.name) {
                        tracing::warn!(app = app.name, "cannot sync the drains: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("cannot list apps to sync their drains: {e}"),
        }
    }

    /// Starts the log drains of every app in the store (when the server starts). Must run within Tokio.
    pub fn start_drains(&self) -> Result<(), StoreError> {
        for app in self.store.apps()? {
            self.sync_drains(&app.name)?;
        }
        Ok(())
    }

    /// Makes the app's running drains what the store lists.
    pub(super) fn sync_drains(&self, app: &str) -> Result<(), StoreError> {
        self.drains.sync(app, || {
            let drains = self.store.drains(app)?;
            Ok(drains
                .into_iter()
                .map(|d| DrainSpec {
                    id: d.id,
                    token: d.token,
                    url: d.url,
                })
                .collect())
        })
    }

    /// Fails every release whose release phase never finished (the server stopped while it ran): none is left
    /// pending, so the next release can be made. Runs when the server starts, before it takes requests.
    pub fn fail_interrupted_releases(
        &self,
        older_than: Option<std::time::Duration>,
    ) -> Result<(), StoreError> {
        let cutoff = older_than
            .map(|age| crate::clock::unix_now() - i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
        for app in self.store.apps()? {
            for release in self.store.releases(&app.name)? {
                if release.status == crate::store::ReleaseStatus::Pending
                    && cutoff.is_none_or(|cutoff| release.created_at < cutoff)
                {
                    let why = "release phase interrupted: the server stopped before it finished\n";
                    self.store.record_release_result(
                        &app.name,
                        release.version,
                        false,
                        why.into(),
                    )?;
                    self.api_log(
                        &app.name,
                        format!(
                            "Release v{} failed: the server stopped during its release phase",
                            release.version
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// A line from the API into the app's stream (`app[api]: ...`).
    pub(super) fn api_log(&self, app: &str, text: String) {
        self.logplex.publish(app, LogLine::app("api", text));
    }

    pub(super) fn release_lock(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.release_locks.of(app)
    }

    pub(super) fn open_slug(&self, sha256: &str) -> Result<Slug, ApiError> {
        // A slug id names a file: only a sha256 in lowercase hex may become one.
        if sha256.len() != 64
            || !sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_params",
                format!(
                    "slug {:?} is not a slug id: ids are the sha256 of the slug, 64 lowercase hex digits",
                    sha256.chars().take(80).collect::<String>()
                ),
            ));
        }
        Slug::open(&self.slugs.fetch(sha256), self.limits).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_params",
                format!("slug {sha256}: {e}"),
            )
        })
    }

    /// The slug the next release would inherit: that of the latest release that did not fail.
    pub(super) fn base_slug(&self, app: &str) -> Result<Option<String>, ApiError> {
        let releases = self.store.releases(app)?;
        Ok(releases
            .into_iter()
            .find(|r| r.status != crate::store::ReleaseStatus::Failed)
            .and_then(|r| r.slug))
    }

    pub(super) fn has_release_phase(&self, slug: Option<&str>) -> Result<bool, ApiError> {
        match slug {
            Some(sha) => Ok(self
                .open_slug(sha)?
                .manifest()
                .process_types
                .contains_key(RELEASE_TYPE)),
            None => Ok(false),
        }
    }
}

/// `GET /metrics` alone, without the token: for `serve --metrics ADDR`, a listener of its own that a scraper
/// reaches without credentials.
pub fn metrics_router(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/metrics", get(prometheus))
        .layer(middleware::map_response(close_after))
        .with_state(platform)
}

/// The API's routes over `platform`.
pub fn router(platform: Arc<Platform>) -> Router {
    let uploads = Router::new()
        .route("/apps/{app}/slugs", post(upload_slug))
        .route("/apps/{app}/builds", post(create_build))
        .layer(DefaultBodyLimit::max(
            platform.limits.max_compressed as usize,
        ));
    Router::new()
        .route("/apps", get(list_apps).post(create_app))
        .route("/hosts", get(list_hosts))
        .route(
            "/apps/{app}",
            get(get_app).delete(destroy_app).patch(update_app),
        )
        .route("/apps/{app}/config-vars", get(get_config).patch(set_config))
        .route(
            "/apps/{app}/releases",
            get(list_releases).post(create_release),
        )
        .route("/apps/{app}/releases/{version}", get(get_release))
        .route("/apps/{app}/current-release", get(get_current_release))
        .route("/apps/{app}/slugs/{sha256}", get(download_slug))
        .route("/apps/{app}/addons", get(list_addons).post(create_addon))
        .route(
            "/apps/{app}/addons/{name}",
            get(get_addon).delete(destroy_addon),
        )
        .route("/apps/{app}/addons/{name}/rotate", post(rotate_addon))
        .route("/apps/{app}/domains", get(list_domains).post(add_domain))
        .route("/apps/{app}/features", get(list_features))
        .route("/apps/{app}/metrics", get(app_metrics))
        .route("/metrics", get(prometheus))
        .route("/apps/{app}/network", get(list_network).post(allow_network))
        .route("/apps/{app}/network/{destination}", delete(deny_network))
        .route("/apps/{app}/features/{name}", patch(update_feature))
        .route("/apps/{app}/domains/{hostname}", delete(remove_domain))
        .route(
            "/apps/{app}/formation",
            get(get_formation).patch(update_formation),
        )
        .route(
            "/apps/{app}/formation/{kind}",
            get(get_formation_type).patch(update_formation_type),
        )
        .route(
            "/apps/{app}/dynos",
            get(list_dynos).delete(restart_dynos).post(create_dyno),
        )
        .route("/apps/{app}/dynos/{dyno}", delete(restart_dyno))
        .route("/apps/{app}/log-sessions", post(create_log_session))
        .route("/apps/{app}/log-sessions/{id}", get(open_log_session))
        .route("/apps/{app}/log-drains", get(list_drains).post(add_drain))
        .route("/apps/{app}/log-drains/{drain}", delete(remove_drain))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .merge(uploads)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API resource")
        })
        .layer(middleware::from_fn_with_state(
            platform.clone(),
            authenticate,
        ))
        .merge(
            dashboard::routes()
                // Git's smart HTTP authenticates on its own (Basic, the token as password): git cannot send a
                // Bearer token.
                .merge(crate::git::http::routes(crate::git::http::Access {
                    home: platform.home.clone(),
                    token: platform.token.clone(),
                    store: platform.store.clone(),
                }))
                .layer(middleware::map_response(close_after)),
        )
        .with_state(platform)
}

/// Routes anyone may call without the token (the dashboard's page and session, git) close their connection after
/// the answer, as the API's 401 does: only a client with the token keeps an API connection open, so nobody else
/// can hold the API's connection budget with idle kept-alive connections.
async fn close_after(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
