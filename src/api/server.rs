//! The API server: routes, authentication, and the platform operations behind them (builds, releases with
//! their release phase, rollbacks, config changes, add-ons).

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
use crate::logplex::drain::{DrainSettings, DrainSpec, DrainStatus, Drains};
use crate::logplex::{Filter, LineWriter, LogLine, Logplex, SessionOptions, Source};
use crate::procfile::RELEASE_TYPE;
use crate::runtime::Runtime;
use crate::runtime::stdio::Output;
use crate::slug::{Limits, Slug, SlugStore};
use crate::store::{
    Addon, App, Drain, ErrorKind, FormationEntry, NewAddon, NewRelease, Release, ScaleChange,
    Store, StoreError,
};

/// Largest JSON request body.
const JSON_LIMIT: usize = 1024 * 1024;

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
    /// The router's table of hosts and apps: told here whenever apps, maintenance, releases or domains change.
    pub routes: crate::router::Routes,
    /// The running log drains of every app (started from the store, changed by `/log-drains`).
    pub drains: Drains,
    /// Log sessions created and not yet opened: id → (app, options).
    log_sessions: Mutex<HashMap<String, (String, SessionOptions, std::time::Instant)>>,
    /// One release at a time per app: a release phase holds its app's lock until it has finished.
    release_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The running release phase of each app, told to stop when its app is destroyed.
    release_phases: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    /// How builds are isolated from the platform's state.
    pub build_sandbox: crate::build::Sandbox,
    /// One build at a time per app (a deploy or a `git push`): builds share the app's build cache.
    build_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Platform {
    pub fn new(
        home: PathBuf,
        store: Arc<dyn Store>,
        runtime: Arc<Runtime>,
        limits: Limits,
        token: String,
        settings: Settings,
    ) -> Platform {
        let slugs = SlugStore::new(home.join("slugs"));
        let logplex = Logplex::new();
        let drain_settings = DrainSettings::from_env().unwrap_or_else(|e| {
            tracing::error!("drains: {e}; using the defaults");
            DrainSettings::default()
        });
        let drains = Drains::new(logplex.clone(), drain_settings);
        let manager = Manager::new(
            runtime.clone(),
            Arc::new(crate::store::StoreSource::new(store.clone(), slugs.clone())),
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
            drains,
            log_sessions: Mutex::default(),
            release_locks: Mutex::default(),
            release_phases: Mutex::default(),
            build_sandbox: crate::build::Sandbox::default(),
            build_locks: Mutex::default(),
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
    fn sync_drains(&self, app: &str) -> Result<(), StoreError> {
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
    pub fn fail_interrupted_releases(&self) -> Result<(), StoreError> {
        for app in self.store.apps()? {
            for release in self.store.releases(&app.name)? {
                if release.status == crate::store::ReleaseStatus::Pending {
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
    fn api_log(&self, app: &str, text: String) {
        self.logplex.publish(app, LogLine::app("api", text));
    }

    fn release_lock(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.release_locks.lock().expect("lock table");
        locks.entry(app.to_string()).or_default().clone()
    }

    fn open_slug(&self, sha256: &str) -> Result<Slug, ApiError> {
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
        Slug::open(&self.slugs.path(sha256), self.limits).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_params",
                format!("slug {sha256}: {e}"),
            )
        })
    }

    /// The slug the next release would inherit: that of the latest release that did not fail.
    fn base_slug(&self, app: &str) -> Result<Option<String>, ApiError> {
        let releases = self.store.releases(app)?;
        Ok(releases
            .into_iter()
            .find(|r| r.status != crate::store::ReleaseStatus::Failed)
            .and_then(|r| r.slug))
    }

    fn has_release_phase(&self, slug: Option<&str>) -> Result<bool, ApiError> {
        match slug {
            Some(sha) => Ok(self
                .open_slug(sha)?
                .manifest()
                .process_types
                .contains_key(RELEASE_TYPE)),
            None => Ok(false),
        }
    }

    /// Makes a release with `make` (told whether a release phase must run first), then runs that phase.
    /// Release-phase output goes to `out` line by line as well as into the release's record.
    async fn release(
        &self,
        app: &str,
        slug: Option<String>,
        make: impl FnOnce(&dyn Store, bool) -> Result<Release, StoreError>,
        out: Option<Output>,
    ) -> Result<Release, ApiError> {
        let lock = self.release_lock(app);
        let _one_at_a_time = lock.lock().await;
        let slug = match slug {
            Some(slug) => Some(slug),
            None => self.base_slug(app)?,
        };
        let pending = self.has_release_phase(slug.as_deref())?;
        let release = make(self.store.as_ref(), pending)?;
        self.routes.invalidate();
        self.api_log(app, release.description.clone());
        self.api_log(app, format!("Release v{} created", release.version));
        let release = if release.status == crate::store::ReleaseStatus::Pending {
            // Should this request go away mid-phase (its client gone), the release fails rather than stay pending.
            let unfinished = Unfinished {
                store: self.store.clone(),
                app: app.to_string(),
                version: Some(release.version),
            };
            let (succeeded, output) = match self.release_phase(app, &release, out).await {
                Ok(result) => result,
                Err(e) => (false, format!("release phase could not start: {e}\n")),
            };
            if !succeeded {
                self.api_log(
                    app,
                    format!(
                        "Release v{} failed: its release command did not succeed",
                        release.version
                    ),
                );
            }
            unfinished.finished();
            self.store
                .record_release_result(app, release.version, succeeded, output)?
        } else {
            release
        };
        self.routes.invalidate();
        if release.status == crate::store::ReleaseStatus::Succeeded {
            self.first_deploy_scales_web(app, &release)?;
            self.manager.reconcile(app).await;
        }
        Ok(release)
    }

    /// As on Heroku, the first release that has a `web` process type scales `web=1`.
    fn first_deploy_scales_web(&self, app: &str, release: &Release) -> Result<(), ApiError> {
        let Some(sha) = &release.slug else {
            return Ok(());
        };
        if self.store.formation(app)?.contains_key("web") {
            return Ok(());
        }
        if self
            .open_slug(sha)?
            .manifest()
            .process_types
            .contains_key("web")
        {
            let change = ScaleChange {
                quantity: Some(1),
                size: None,
            };
            self.store
                .scale(app, BTreeMap::from([("web".to_string(), change)]))?;
            self.api_log(app, "Scaled to web@1:standard-1x".into());
        }
        Ok(())
    }

    /// Runs the slug's `release` command as the one-off dyno `release.N` under the dyno manager, with the
    /// release's config vars and the app's network destinations, for at most the release phase timeout, keeping
    /// the tail of its output; destroying the app stops it.
    async fn release_phase(
        &self,
        app: &str,
        release: &Release,
        out: Option<Output>,
    ) -> Result<(bool, String), String> {
        let sha = release.slug.as_deref().ok_or("the release has no slug")?;
        let mut spec = crate::dyno::ReleaseSpec::new(release.version, sha);
        spec.config = release.config.clone();
        let captured = Arc::new(Mutex::new(OutputTail::default()));
        let sink = captured.clone();
        let dyno = format!("release.{}", release.version);
        let stream = Mutex::new(LineWriter::new(self.logplex.clone(), app, &dyno));
        let capture: Output = Arc::new(move |data: &[u8]| {
            sink.lock().expect("capture").push(data);
            stream.lock().expect("release stream").write(data);
            if let Some(out) = &out {
                out(data);
            }
        });
        let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
        let attach = crate::dyno::Attach {
            stdin: crate::runtime::stdio::Input::closed(),
            stdout: capture.clone(),
            stderr: capture,
            exit: exit_tx,
        };
        let manager = self.manager.clone();
        let (app_name, spec_for_start) = (app.to_string(), spec.clone());
        // Opening the slug and compiling its module can take a while: off the async threads.
        tokio::task::spawn_blocking(move || {
            manager.run_release_phase(&app_name, &spec_for_start, attach)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let stop = Arc::new(tokio::sync::Notify::new());
        self.release_phases
            .lock()
            .expect("release phases")
            .insert(app.to_string(), stop.clone());
        let timeout = self.manager.settings().release_phase_timeout;
        let ended = tokio::select! {
            status = exit_rx => Some(status.map_err(|_| "the release phase ended without a status".to_string())),
            () = tokio::time::sleep(timeout) => None,
            // The app's destruction stops every dyno of it, this one too.
            () = stop.notified() => return Err("the app is being destroyed".to_string()),
        };
        self.release_phases
            .lock()
            .expect("release phases")
            .remove(app);
        let status = match ended {
            Some(Ok(status)) => status,
            Some(Err(why)) => return Err(why),
            None => {
                let line = format!(
                    "release command still running after {} seconds (WASMDYNO_RELEASE_PHASE_TIMEOUT): stopped",
                    timeout.as_secs_f64()
                );
                self.logplex
                    .publish(app, LogLine::platform(&dyno, line.clone()));
                self.manager.stop_dyno(app, &dyno).await;
                let mut output = captured.lock().expect("capture").text();
                output.push_str(&line);
                output.push('\n');
                return Ok((false, output));
            }
        };
        let mut output = captured.lock().expect("capture").text();
        if status != 0 {
            output.push_str(&format!("release command exited with status {status}\n"));
        }
        Ok((status == 0, output))
    }
}

/// Fails a pending release when dropped before [`Unfinished::finished`]: the request running its release phase
/// went away, and the ledger must not keep a release pending forever.
struct Unfinished {
    store: Arc<dyn Store>,
    app: String,
    version: Option<u64>,
}

impl Unfinished {
    fn finished(mut self) {
        self.version = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(version) = self.version {
            let why = "release phase interrupted: the request that ran it went away\n";
            if let Err(e) = self
                .store
                .record_release_result(&self.app, version, false, why.into())
            {
                tracing::warn!(
                    app = self.app,
                    version,
                    "cannot fail the interrupted release: {e}"
                );
            }
        }
    }
}

/// The last [`OutputTail::LIMIT`] bytes of a release phase's output: what its release record keeps.
#[derive(Default)]
struct OutputTail {
    bytes: Vec<u8>,
    dropped: u64,
}

impl OutputTail {
    const LIMIT: usize = 64 * 1024;

    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > 2 * Self::LIMIT {
            let cut = self.bytes.len() - Self::LIMIT;
            self.bytes.drain(..cut);
            self.dropped += cut as u64;
        }
    }

    fn text(&self) -> String {
        let start = self.bytes.len().saturating_sub(Self::LIMIT);
        let dropped = self.dropped + start as u64;
        let tail = String::from_utf8_lossy(&self.bytes[start..]);
        if dropped == 0 {
            tail.into_owned()
        } else {
            format!("[{dropped} earlier bytes of output not kept]\n{tail}")
        }
    }
}

/// An API error: status, machine id and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    id: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, id: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            id,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn body(&self) -> ErrorBody {
        ErrorBody {
            id: self.id.into(),
            message: self.message.clone(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        let (status, id) = match &err {
            StoreError::ConfigTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            _ => match err.kind() {
                ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
                ErrorKind::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_params"),
                ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            },
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("store: {err}");
        }
        ApiError::new(status, id, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// `Json` whose rejections are API errors (400 for malformed JSON, 413 past the body limit).
struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "the request body is too large",
                ))
            }
            Err(e) => Err(ApiError::bad_request(format!(
                "malformed request body: {}",
                e.body_text()
            ))),
        }
    }
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
        .route("/apps/{app}/addons/{name}", delete(destroy_addon))
        .route("/apps/{app}/domains", get(list_domains).post(add_domain))
        .route("/apps/{app}/features", get(list_features))
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
        // Git's smart HTTP authenticates on its own (Basic, the token as password): git cannot send a Bearer token.
        .merge(crate::git::http::routes(platform.clone()))
        .with_state(platform)
}

async fn authenticate(State(platform): State<Arc<Platform>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), platform.token.as_bytes()) {
        next.run(req).await
    } else if !platform.follower_token.is_empty()
        && constant_time_eq(given.as_bytes(), platform.follower_token.as_bytes())
    {
        if follower_may(req.method(), req.uri().path()) {
            next.run(req).await
        } else {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the follower token reads apps' current releases and slugs only; use the API token",
            )
            .into_response()
        }
    } else {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API token (the CLI reads it from $WASMDYNO_HOME/token)",
        )
        .into_response();
        let headers = response.headers_mut();
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        // A client without the token gets no kept-alive connection to hold open.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// What the follower token may do: `GET /apps/{app}/current-release` and `GET /apps/{app}/slugs/{sha256}`.
fn follower_may(method: &axum::http::Method, path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    method == axum::http::Method::GET
        && match parts.as_slice() {
            ["apps", app, "current-release"] => !app.is_empty(),
            ["apps", app, "slugs", sha] => !app.is_empty() && !sha.is_empty(),
            _ => false,
        }
}

/// Compares without returning early, so the time taken says nothing about where the token differs.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---- apps

async fn list_apps(State(p): State<Arc<Platform>>) -> ApiResult<Json<Vec<App>>> {
    Ok(Json(p.store.apps()?))
}

#[derive(Deserialize, Default)]
struct CreateApp {
    name: Option<String>,
}

async fn create_app(
    State(p): State<Arc<Platform>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<App>)> {
    let request: CreateApp = if body.is_empty() {
        CreateApp::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("malformed request body: {e}")))?
    };
    let app = match request.name {
        Some(name) => p.store.create_app(&name)?,
        None => loop {
            match p.store.create_app(&random_app_name()) {
                Err(StoreError::AppExists(_)) => continue,
                other => break other?,
            }
        },
    };
    p.routes.invalidate();
    Ok((StatusCode::CREATED, Json(app)))
}

/// A Heroku-style name: `adjective-noun-1234`.
fn random_app_name() -> String {
    const ADJECTIVES: &[&str] = &[
        "afternoon",
        "ancient",
        "bright",
        "calm",
        "crimson",
        "dry",
        "evening",
        "fierce",
        "gentle",
        "hidden",
        "icy",
        "lively",
        "misty",
        "morning",
        "quiet",
        "rapid",
        "shy",
        "still",
        "sunny",
        "wild",
    ];
    const NOUNS: &[&str] = &[
        "brook", "cliff", "dawn", "dune", "field", "forest", "harbor", "lake", "meadow", "mesa",
        "ocean", "peak", "plains", "reef", "ridge", "river", "sea", "shore", "tundra", "wave",
    ];
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the system's random source");
    let n = u32::from_le_bytes(bytes);
    format!(
        "{}-{}-{:04}",
        ADJECTIVES[n as usize % ADJECTIVES.len()],
        NOUNS[(n as usize / 32) % NOUNS.len()],
        (n / 1024) % 10_000
    )
}

async fn get_app(State(p): State<Arc<Platform>>, Path(app): Path<String>) -> ApiResult<Json<App>> {
    Ok(Json(p.store.app(&app)?))
}

async fn destroy_app(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<App>> {
    let found = p.store.app(&app)?;
    // A release phase still running holds the release lock: stop it first.
    if let Some(phase) = p.release_phases.lock().expect("release phases").get(&app) {
        phase.notify_one();
    }
    let lock = p.release_lock(&app);
    let _no_release_running = lock.lock().await;
    p.store.destroy_app(&app)?;
    p.routes.invalidate();
    p.manager.stop_app(&app).await;
    p.drains.stop_app(&app);
    p.logplex.remove_app(&app);
    p.release_locks.lock().expect("lock table").remove(&app);
    p.release_phases
        .lock()
        .expect("release phases")
        .remove(&app);
    crate::git::remove_repo(&p.home, &app);
    Ok(Json(found))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateApp {
    maintenance: Option<bool>,
    sleep: Option<bool>,
}

/// A destination an app's dynos may reach, and why.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct Destination {
    pub destination: String,
    /// `app` for `network:allow`, or `addon NAME` for an attached add-on's host.
    pub from: String,
}

async fn list_network(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Destination>>> {
    let mut all: Vec<Destination> = p
        .store
        .destinations(&app)?
        .into_iter()
        .map(|destination| Destination {
            destination,
            from: "app".into(),
        })
        .collect();
    for addon in p.store.addons(&app)? {
        all.extend(addon.hosts.into_iter().map(|destination| Destination {
            destination,
            from: format!("addon {}", addon.name),
        }));
    }
    Ok(Json(all))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowNetwork {
    destination: String,
}

/// Allows a destination; the app's dynos restart to take it up.
async fn allow_network(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    JsonBody(request): JsonBody<AllowNetwork>,
) -> ApiResult<(StatusCode, Json<Destination>)> {
    let destination = p.store.allow_destination(&app, &request.destination)?;
    p.api_log(&app, format!("Allowed network destination {destination}"));
    p.manager.restart(&app, None).await;
    Ok((
        StatusCode::CREATED,
        Json(Destination {
            destination,
            from: "app".into(),
        }),
    ))
}

async fn deny_network(
    State(p): State<Arc<Platform>>,
    Path((app, destination)): Path<(String, String)>,
) -> ApiResult<Json<Destination>> {
    p.store.deny_destination(&app, &destination)?;
    p.api_log(&app, format!("Removed network destination {destination}"));
    p.manager.restart(&app, None).await;
    Ok(Json(Destination {
        destination,
        from: "app".into(),
    }))
}

/// One app feature as the API shows it.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct FeatureInfo {
    pub name: String,
    pub description: String,
    pub enabled: bool,
}

fn features_of(app: &App) -> Vec<FeatureInfo> {
    crate::store::FEATURES
        .iter()
        .map(|(name, description)| FeatureInfo {
            name: name.to_string(),
            description: description.to_string(),
            enabled: app.features.contains(*name),
        })
        .collect()
}

async fn list_features(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<FeatureInfo>>> {
    Ok(Json(features_of(&p.store.app(&app)?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateFeature {
    enabled: bool,
}

/// Turns a feature on or off; the app's web dynos restart to take it up.
async fn update_feature(
    State(p): State<Arc<Platform>>,
    Path((app, name)): Path<(String, String)>,
    JsonBody(update): JsonBody<UpdateFeature>,
) -> ApiResult<Json<FeatureInfo>> {
    let before = p.store.app(&app)?;
    let after = p.store.set_feature(&app, &name, update.enabled)?;
    if before.features != after.features {
        p.api_log(
            &app,
            format!(
                "{} feature {name}",
                if update.enabled {
                    "Enabled"
                } else {
                    "Disabled"
                }
            ),
        );
        p.routes.invalidate();
        p.manager.restart(&app, Some("web")).await;
    }
    let info = features_of(&after)
        .into_iter()
        .find(|f| f.name == name)
        .expect("set_feature accepts known features only");
    Ok(Json(info))
}

async fn update_app(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    JsonBody(update): JsonBody<UpdateApp>,
) -> ApiResult<Json<App>> {
    if let Some(on) = update.maintenance {
        p.store.set_maintenance(&app, on)?;
        p.routes.invalidate();
    }
    if let Some(on) = update.sleep {
        p.store.set_sleep(&app, on)?;
        p.manager.set_sleep(&app, on);
        p.api_log(
            &app,
            format!("Sleeping turned {}", if on { "on" } else { "off" }),
        );
    }
    Ok(Json(p.store.app(&app)?))
}

// ---- config vars

/// The response header that names the release a change made.
pub const RELEASE_HEADER: &str = "wasmdyno-release";

async fn get_config(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<BTreeMap<String, String>>> {
    Ok(Json(p.store.config(&app)?))
}

async fn set_config(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    JsonBody(changes): JsonBody<BTreeMap<String, Option<String>>>,
) -> ApiResult<Response> {
    p.store.app(&app)?;
    if changes.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            "no config vars given: send {\"KEY\": \"value\"} to set and {\"KEY\": null} to unset",
        ));
    }
    let release = p
        .release(
            &app,
            None,
            |store, pending| store.set_config(&app, changes, pending),
            None,
        )
        .await?;
    let mut response = Json(&release.config).into_response();
    response
        .headers_mut()
        .insert(RELEASE_HEADER, HeaderValue::from(release.version));
    Ok(response)
}

// ---- releases

async fn list_releases(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Release>>> {
    let mut releases = p.store.releases(&app)?;
    releases.reverse();
    Ok(Json(releases))
}

fn parse_version(version: &str) -> ApiResult<u64> {
    version
        .strip_prefix('v')
        .unwrap_or(version)
        .parse()
        .map_err(|_| {
            ApiError::bad_request(format!("{version:?} is not a release version (v3 or 3)"))
        })
}

async fn get_release(
    State(p): State<Arc<Platform>>,
    Path((app, version)): Path<(String, String)>,
) -> ApiResult<Json<Release>> {
    Ok(Json(p.store.release(&app, parse_version(&version)?)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRelease {
    /// A slug id (sha256) to release.
    slug: Option<String>,
    /// A version to roll back to; with neither field, the release before the current one.
    release: Option<serde_json::Value>,
    description: Option<String>,
    #[serde(default)]
    rollback: bool,
}

async fn create_release(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    JsonBody(request): JsonBody<CreateRelease>,
) -> ApiResult<(StatusCode, Json<Release>)> {
    p.store.app(&app)?;
    let release = match (request.slug, request.release) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either slug or release, not both",
            ));
        }
        (Some(slug), None) => {
            p.open_slug(&slug)?;
            let description = request
                .description
                .unwrap_or_else(|| format!("Deploy {}", &slug[..7]));
            let new = NewRelease {
                slug: Some(slug.clone()),
                config: None,
                description,
                pending: false,
            };
            p.release(
                &app,
                Some(slug),
                |store, pending| store.create_release(&app, NewRelease { pending, ..new }),
                None,
            )
            .await?
        }
        (None, target) if target.is_some() || request.rollback => {
            let version = match target {
                Some(serde_json::Value::Number(n)) => n.as_u64(),
                Some(serde_json::Value::String(s)) => Some(parse_version(&s)?),
                Some(serde_json::Value::Null) | None => None,
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "release must be a version, not {other}"
                    )));
                }
            };
            let target_slug = match version {
                Some(v) => p.store.release(&app, v)?.slug,
                None => None,
            };
            p.release(
                &app,
                target_slug,
                |store, pending| store.rollback(&app, version, pending),
                None,
            )
            .await?
        }
        (None, _) => {
            return Err(ApiError::bad_request(
                "give a slug to release, or a release to roll back to",
            ));
        }
    };
    Ok((StatusCode::CREATED, Json(release)))
}

// ---- slugs and builds

/// What an edge host following this server runs for an app: the app, its current release and its formation, read
/// together.
async fn get_current_release(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let found = p.store.app(&app)?;
    let release = p.store.current_release(&app)?;
    let formation = p.store.formation(&app)?;
    Ok(Json(serde_json::json!({
        "app": found,
        "release": release,
        "formation": formation,
    })))
}

/// A slug of the app's releases, as stored (an edge host checks its sha256). Only slugs some release of the app
/// names are served, so a token holder reads nothing by guessing ids that belong elsewhere.
async fn download_slug(
    State(p): State<Arc<Platform>>,
    Path((app, sha256)): Path<(String, String)>,
) -> ApiResult<Response> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{app} has no release with slug {sha256}"),
        )
    };
    let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid
        || !p
            .store
            .releases(&app)?
            .iter()
            .any(|r| r.slug.as_deref() == Some(sha256.as_str()))
    {
        return Err(not_found());
    }
    let bytes = tokio::fs::read(p.slugs.path(&sha256))
        .await
        .map_err(|_| not_found())?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/gzip"),
        )],
        bytes,
    )
        .into_response())
}

async fn upload_slug(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    p.store.app(&app)?;
    let slug = Slug::from_bytes(&body, p.limits).map_err(|e| match e {
        crate::slug::SlugError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
        }
        e => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            format!("invalid slug: {e}"),
        ),
    })?;
    p.slugs.put(slug.sha256(), &body).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        )
    })?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": slug.sha256(),
            "size": slug.compressed_size(),
            "process_types": slug.manifest().process_types,
            "buildpack": slug.manifest().buildpack,
        })),
    ))
}

#[derive(Deserialize)]
struct BuildQuery {
    commit: Option<String>,
    buildpack: Option<String>,
}

/// Builds a source tarball (gzip tar) on the server, streaming the output as NDJSON [`BuildEvent`]s while it
/// runs, and releases the slug.
async fn create_build(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    Query(query): Query<BuildQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    p.store.app(&app)?;
    // Refused before the stream starts, so the status says it: a gzip stream starts with 1f 8b.
    if !body.starts_with(&[0x1f, 0x8b]) {
        return Err(ApiError::bad_request(
            "send the source as a gzip tarball (tar.gz)",
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<BuildEvent>(256);
    tokio::spawn(async move {
        let lines = tx.clone();
        let result = build_and_release(&p, &app, query, body, lines).await;
        let last = match result {
            Ok(release) => BuildEvent::Release(release),
            Err(e) => BuildEvent::Error(e.body()),
        };
        let _ = tx.send(last).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let mut line = serde_json::to_vec(&event).expect("events serialize");
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

async fn build_and_release(
    p: &Arc<Platform>,
    app: &str,
    query: BuildQuery,
    source: Bytes,
    lines: tokio::sync::mpsc::Sender<BuildEvent>,
) -> ApiResult<Release> {
    let lock = p
        .build_locks
        .lock()
        .expect("lock table")
        .entry(app.to_string())
        .or_default()
        .clone();
    let _one_build_at_a_time = match lock.clone().try_lock_owned() {
        Ok(guard) => guard,
        Err(_) => {
            let _ = lines
                .send(BuildEvent::Line(format!(
                    "-----> Waiting for another build of {app} to finish"
                )))
                .await;
            lock.lock_owned().await
        }
    };
    let platform = p.clone();
    let app_name = app.to_string();
    let build_lines = lines.clone();
    let commit = query.commit.clone();
    let built = tokio::task::spawn_blocking(move || -> ApiResult<crate::build::Built> {
        let work = platform.home.join("tmp");
        std::fs::create_dir_all(&work).map_err(internal)?;
        let dir = tempfile::Builder::new()
            .prefix("source-")
            .tempdir_in(&work)
            .map_err(internal)?;
        // `unpack` refuses entries that would land outside `dir`.
        tar::Archive::new(flate2::read::GzDecoder::new(&source[..]))
            .unpack(dir.path())
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_params",
                    format!("the source is not a gzip tarball: {e}"),
                )
            })?;
        let mut request = BuildRequest::new(
            dir.path(),
            platform
                .home
                .join("build-cache")
                .join(format!("app-{app_name}")),
        );
        request.buildpack = query.buildpack;
        request.work_dir = Some(work);
        request.commit = commit;
        request.wasmdyno_bin = std::env::current_exe().ok();
        request.sandbox = platform.build_sandbox.clone();
        request.env = platform.store.config(&app_name)?;
        crate::build::build_and_store(
            &request,
            &platform.runtime,
            &platform.slugs,
            platform.limits,
            &mut |line| {
                let _ = build_lines.blocking_send(BuildEvent::Line(line.to_string()));
            },
        )
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "build_failed",
                format!("{e:#}"),
            )
        })
    })
    .await
    .map_err(internal)??;

    let sha = built.slug.sha256().to_string();
    let description = match &query.commit {
        Some(commit) => format!("Deploy {}", commit.chars().take(7).collect::<String>()),
        None => format!("Deploy {}", &sha[..7]),
    };
    let phase_lines = lines.clone();
    let pending_line = Arc::new(Mutex::new(Vec::<u8>::new()));
    let echo: Output = Arc::new(move |data: &[u8]| {
        // Release-phase output, passed on a line at a time.
        let mut buf = pending_line.lock().expect("line buffer");
        buf.extend_from_slice(data);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let _ = phase_lines.try_send(BuildEvent::Line(format!("       {text}")));
        }
    });
    let _ = lines
        .send(BuildEvent::Line("-----> Releasing".into()))
        .await;
    let new = NewRelease {
        slug: Some(sha.clone()),
        config: None,
        description,
        pending: false,
    };
    let release = p
        .release(
            app,
            Some(sha),
            |store, pending| store.create_release(app, NewRelease { pending, ..new }),
            Some(echo),
        )
        .await?;
    Ok(release)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        e.to_string(),
    )
}

// ---- add-ons

async fn list_addons(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Addon>>> {
    Ok(Json(p.store.addons(&app)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAddon {
    /// `SERVICE` or `SERVICE:PLAN`.
    plan: String,
    /// The add-on's name (default: the service's name).
    name: Option<String>,
    /// The URL the add-on exposes as `<NAME>_URL` (default: a `DATABASE_URL`-style name from the service).
    url: Option<String>,
}

async fn create_addon(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    JsonBody(request): JsonBody<CreateAddon>,
) -> ApiResult<(StatusCode, Json<Addon>)> {
    p.store.app(&app)?;
    let (service, plan) = match request.plan.split_once(':') {
        Some((service, plan)) => (service.to_string(), plan.to_string()),
        None => (request.plan.clone(), "default".to_string()),
    };
    if service.is_empty() || plan.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            "give the add-on as SERVICE or SERVICE:PLAN",
        ));
    }
    let name = request.name.unwrap_or_else(|| service.clone());
    let var = addon_var(&service, &name);
    let url = request
        .url
        .unwrap_or_else(|| format!("{service}://{name}.{app}.addons.localhost"));
    let host = url
        .split_once("://")
        .map_or(url.as_str(), |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_string();
    let config = BTreeMap::from([(var, url)]);
    let mut created = None;
    p.release(
        &app,
        None,
        |store, pending| {
            let addon = NewAddon {
                name,
                service,
                plan,
                config,
                hosts: vec![host],
            };
            let (addon, release) = store.create_addon(&app, addon, pending)?;
            created = Some(addon);
            Ok(release)
        },
        None,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(created.expect("created with its release")),
    ))
}

/// The config var an add-on sets: `DATABASE_URL` for database services, else `<NAME>_URL`.
fn addon_var(service: &str, name: &str) -> String {
    let databases = [
        "postgres",
        "postgresql",
        "heroku-postgresql",
        "mysql",
        "database",
    ];
    if name == service && databases.contains(&service) {
        "DATABASE_URL".into()
    } else {
        let base: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("{base}_URL")
    }
}

async fn destroy_addon(
    State(p): State<Arc<Platform>>,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<Json<Release>> {
    p.store.app(&app)?;
    let release = p
        .release(
            &app,
            None,
            |store, pending| store.destroy_addon(&app, &name, pending),
            None,
        )
        .await?;
    Ok(Json(release))
}

// ---- domains

async fn list_domains(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<crate::router::DomainInfo>>> {
    Ok(Json(p.routes.domains(&app)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    hostname: String,
}

/// Routes a custom hostname to the app (checked by [`crate::router::Routes::check_domain`]; 409 when it is
/// another app's).
async fn add_domain(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    JsonBody(request): JsonBody<NewDomain>,
) -> ApiResult<(StatusCode, Json<crate::router::DomainInfo>)> {
    let domain = p.routes.add_domain(&app, &request.hostname)?;
    p.api_log(&app, format!("Added domain {}", domain.hostname));
    Ok((StatusCode::CREATED, Json(domain)))
}

async fn remove_domain(
    State(p): State<Arc<Platform>>,
    Path((app, hostname)): Path<(String, String)>,
) -> ApiResult<Json<crate::router::DomainInfo>> {
    let domain = p.routes.remove_domain(&app, &hostname)?;
    p.api_log(&app, format!("Removed domain {}", domain.hostname));
    Ok(Json(domain))
}

// ---- formation and dynos

/// One process type of the formation, as the API shows it.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct FormationType {
    #[serde(rename = "type")]
    pub kind: String,
    pub quantity: u32,
    pub size: String,
    /// The command of the current release, when it defines this type.
    pub command: Option<String>,
}

fn formation_view(p: &Platform, app: &str) -> ApiResult<Vec<FormationType>> {
    let formation = p.store.formation(app)?;
    let types = current_types(p, app)?;
    let mut view: Vec<FormationType> = formation
        .iter()
        .map(|(kind, FormationEntry { quantity, size })| FormationType {
            kind: kind.clone(),
            quantity: *quantity,
            size: size.clone(),
            command: types.get(kind).cloned(),
        })
        .collect();
    // Types the release defines but nobody scaled yet show at 0.
    for (kind, command) in types {
        if !formation.contains_key(&kind) {
            view.push(FormationType {
                kind,
                quantity: 0,
                size: "standard-1x".into(),
                command: Some(command),
            });
        }
    }
    view.sort_by(|a, b| a.kind.cmp(&b.kind));
    Ok(view)
}

/// The process types of the app's current release.
fn current_types(p: &Platform, app: &str) -> ApiResult<BTreeMap<String, String>> {
    match p.store.current_release(app)?.and_then(|r| r.slug) {
        Some(sha) => Ok(p.open_slug(&sha)?.manifest().process_types.clone()),
        None => Ok(BTreeMap::new()),
    }
}

async fn get_formation(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<FormationType>>> {
    p.store.app(&app)?;
    Ok(Json(formation_view(&p, &app)?))
}

async fn get_formation_type(
    State(p): State<Arc<Platform>>,
    Path((app, kind)): Path<(String, String)>,
) -> ApiResult<Json<FormationType>> {
    p.store.app(&app)?;
    formation_view(&p, &app)?
        .into_iter()
        .find(|f| f.kind == kind)
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no process type {kind:?} in {app}"),
            )
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormationUpdate {
    #[serde(rename = "type")]
    kind: Option<String>,
    quantity: Option<u32>,
    size: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormationBatch {
    updates: Vec<FormationUpdate>,
}

async fn scale(
    p: &Platform,
    app: &str,
    updates: Vec<FormationUpdate>,
) -> ApiResult<Vec<FormationType>> {
    p.store.app(app)?;
    let types = current_types(p, app)?;
    let mut changes = BTreeMap::new();
    for update in updates {
        let kind = update
            .kind
            .ok_or_else(|| ApiError::bad_request("each update needs a type"))?;
        if !types.contains_key(&kind) {
            let known: Vec<&str> = types.keys().map(String::as_str).collect();
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_params",
                format!(
                    "no process type {kind:?} in the current release of {app} (it has: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
        if let Some(size) = &update.size {
            size.parse::<crate::runtime::DynoSize>().map_err(|e| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", e)
            })?;
        }
        changes.insert(
            kind,
            ScaleChange {
                quantity: update.quantity,
                size: update.size,
            },
        );
    }
    let formation = p.store.scale(app, changes)?;
    let summary: Vec<String> = formation
        .iter()
        .map(|(kind, e)| format!("{kind}@{}:{}", e.quantity, e.size))
        .collect();
    p.api_log(app, format!("Scaled to {}", summary.join(" ")));
    p.manager.reconcile(app).await;
    formation_view(p, app)
}

async fn update_formation(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    JsonBody(batch): JsonBody<FormationBatch>,
) -> ApiResult<Json<Vec<FormationType>>> {
    Ok(Json(scale(&p, &app, batch.updates).await?))
}

async fn update_formation_type(
    State(p): State<Arc<Platform>>,
    Path((app, kind)): Path<(String, String)>,
    JsonBody(mut update): JsonBody<FormationUpdate>,
) -> ApiResult<Json<FormationType>> {
    update.kind = Some(kind.clone());
    let view = scale(&p, &app, vec![update]).await?;
    Ok(Json(
        view.into_iter()
            .find(|f| f.kind == kind)
            .expect("scaled type is listed"),
    ))
}

async fn list_dynos(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<DynoInfo>>> {
    p.store.app(&app)?;
    Ok(Json(p.manager.dynos(&app)))
}

async fn restart_dynos(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    p.store.app(&app)?;
    let restarted = p.manager.restart(&app, None).await;
    Ok(Json(serde_json::json!({ "restarted": restarted })))
}

/// Restarts one dyno (`web.1`) or every dyno of a type (`web`).
async fn restart_dyno(
    State(p): State<Arc<Platform>>,
    Path((app, dyno)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    p.store.app(&app)?;
    let restarted = p.manager.restart(&app, Some(&dyno)).await;
    if restarted == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no dyno {dyno:?} is running in {app}"),
        ));
    }
    Ok(Json(serde_json::json!({ "restarted": restarted })))
}

// ---- logs

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogSessionRequest {
    /// History lines to send first (default 100, at most 1,500).
    lines: Option<usize>,
    #[serde(default)]
    tail: bool,
    /// A process type (`web`) or one dyno (`web.1`).
    ps: Option<String>,
    dyno: Option<String>,
    /// `app` or `wasmdyno`.
    source: Option<String>,
}

/// Creates a log session (as Heroku's `/log-sessions`); its `logplex_url` streams the lines as NDJSON.
async fn create_log_session(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    JsonBody(request): JsonBody<LogSessionRequest>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    p.store.app(&app)?;
    let source = match request.source.as_deref() {
        None => None,
        Some("app") => Some(Source::App),
        Some("wasmdyno") => Some(Source::Platform),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_params",
                format!("unknown log source {other:?} (app or wasmdyno)"),
            ));
        }
    };
    let options = SessionOptions {
        lines: request.lines.unwrap_or(100).min(1500),
        tail: request.tail,
        filter: Filter {
            ps: request.ps,
            dyno: request.dyno,
            source,
        },
    };
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(internal)?;
    let id = hex::encode(bytes);
    let mut sessions = p.log_sessions.lock().expect("log sessions");
    // Sessions nobody opened within a minute are forgotten.
    sessions.retain(|_, (_, _, at)| at.elapsed() < std::time::Duration::from_secs(60));
    sessions.insert(
        id.clone(),
        (app.clone(), options, std::time::Instant::now()),
    );
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::json!({ "id": id, "logplex_url": format!("/apps/{app}/log-sessions/{id}") }),
        ),
    ))
}

async fn open_log_session(
    State(p): State<Arc<Platform>>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let Some((owner, options, _)) = p.log_sessions.lock().expect("log sessions").remove(&id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such log session (they are used once)",
        ));
    };
    if owner != app {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such log session",
        ));
    }
    let session = p.logplex.session(&app, options);
    let stream = futures_util::stream::unfold(session, |mut session| async move {
        let line = session.next().await?;
        let mut bytes = serde_json::to_vec(&line).expect("log lines serialize");
        bytes.push(b'\n');
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(bytes)),
            session,
        ))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

// ---- log drains

/// A drain as the API shows it: its record, and how it is doing while it runs.
#[derive(serde::Serialize)]
struct DrainView {
    #[serde(flatten)]
    drain: Drain,
    status: Option<DrainStatus>,
}

fn drain_view(p: &Platform, drain: Drain) -> DrainView {
    let status = p.drains.status(&drain.app, &drain.id);
    DrainView { drain, status }
}

async fn list_drains(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<DrainView>>> {
    let drains = p.store.drains(&app)?;
    Ok(Json(
        drains.into_iter().map(|d| drain_view(&p, d)).collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddDrain {
    url: String,
}

async fn add_drain(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    JsonBody(request): JsonBody<AddDrain>,
) -> ApiResult<(StatusCode, Json<DrainView>)> {
    let drain = p.store.add_drain(&app, &request.url)?;
    p.sync_drains(&app)?;
    Ok((StatusCode::CREATED, Json(drain_view(&p, drain))))
}

/// Removes a drain named by its id, its token or its URL (percent-encoded in the path).
async fn remove_drain(
    State(p): State<Arc<Platform>>,
    Path((app, drain)): Path<(String, String)>,
) -> ApiResult<Json<Drain>> {
    let drain = p.store.remove_drain(&app, &drain)?;
    p.sync_drains(&app)?;
    Ok(Json(drain))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDyno {
    /// A process type, or a command line.
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    size: Option<String>,
    /// Attach the dyno's stdin, stdout and stderr to this connection (upgraded to `wasmdyno-attach`).
    #[serde(default)]
    attach: bool,
}

/// Starts a one-off dyno. Detached (`run:detached`), its output goes to the app's stream and the answer is the
/// dyno; attached (`run -a`), the connection is upgraded to the framed stream of [`super::attach`].
async fn create_dyno(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    mut req: Request,
) -> ApiResult<Response> {
    let upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    let wants_attach = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(super::attach::PROTOCOL));
    let JsonBody(request) = JsonBody::<CreateDyno>::from_request(req, &()).await?;
    p.store.app(&app)?;
    let upgrade = match (request.attach, wants_attach, upgrade) {
        (false, _, _) => None,
        (true, true, Some(upgrade)) => Some(upgrade),
        (true, _, _) => {
            return Err(ApiError::bad_request(format!(
                "an attached dyno needs the connection upgraded to `{}` (use `wasmdyno run -a {app}`)",
                super::attach::PROTOCOL
            )));
        }
    };
    for key in request.env.keys() {
        crate::store::check_config_name(key).map_err(ApiError::from)?;
    }
    let size = match &request.size {
        Some(size) => size
            .parse::<crate::runtime::DynoSize>()
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", e))?,
        None => Default::default(),
    };
    let (session, attach) = match upgrade {
        Some(upgrade) => {
            let (session, attach) = super::attach::Session::new(p.manager.settings().attach_idle);
            (Some((session, upgrade)), Some(attach))
        }
        None => (None, None),
    };
    let info = p
        .manager
        .run_one_off(
            &app,
            &request.command,
            &request.args,
            request.env,
            size,
            attach,
        )
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_params",
                e.to_string(),
            )
        })?;
    let how = if session.is_some() {
        "attached"
    } else {
        "by user"
    };
    p.api_log(
        &app,
        format!("Starting process with command `{}` {how}", info.command),
    );
    let Some((session, upgrade)) = session else {
        return Ok((StatusCode::CREATED, Json(info)).into_response());
    };
    tokio::spawn(session.serve(upgrade, p.manager.clone(), app, info.name.clone()));
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(
        header::UPGRADE,
        HeaderValue::from_static(super::attach::PROTOCOL),
    );
    if let Ok(name) = HeaderValue::from_str(&info.name) {
        headers.insert(super::attach::DYNO_HEADER, name);
    }
    Ok(response)
}
