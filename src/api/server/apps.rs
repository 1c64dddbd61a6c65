//! `/apps`: create, list, show, update (maintenance, sleep) and destroy apps; their network destinations and
//! features.

#[allow(unused_imports)]
use super::*;

pub(super) async fn list_apps(State(p): State<Arc<Platform>>) -> ApiResult<Json<Vec<App>>> {
    Ok(Json(p.store.apps()?))
}

#[derive(Deserialize, Default)]
pub(super) struct CreateApp {
    name: Option<String>,
}

pub(super) async fn create_app(
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
pub(super) fn random_app_name() -> String {
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

pub(super) async fn get_app(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<App>> {
    Ok(Json(p.store.app(&app)?))
}

pub(super) async fn destroy_app(
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
    p.metrics.remove_app(&app);
    p.release_locks.forget(&app);
    p.build_locks.forget(&app);
    p.release_phases
        .lock()
        .expect("release phases")
        .remove(&app);
    crate::git::remove_repo(&p.home, &app);
    Ok(Json(found))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateApp {
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

pub(super) async fn list_network(
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
pub(super) struct AllowNetwork {
    destination: String,
}

/// Allows a destination; the app's dynos restart to take it up.
pub(super) async fn allow_network(
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

pub(super) async fn deny_network(
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

pub(super) fn features_of(app: &App) -> Vec<FeatureInfo> {
    crate::store::FEATURES
        .iter()
        .map(|(name, description)| FeatureInfo {
            name: name.to_string(),
            description: description.to_string(),
            enabled: app.features.contains(*name),
        })
        .collect()
}

pub(super) async fn list_features(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<FeatureInfo>>> {
    Ok(Json(features_of(&p.store.app(&app)?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateFeature {
    enabled: bool,
}

/// Turns a feature on or off; the app's web dynos restart to take it up.
pub(super) async fn update_feature(
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
        p.manager
            .restart(&app, Some(crate::procfile::WEB_TYPE))
            .await;
    }
    let info = features_of(&after)
        .into_iter()
        .find(|f| f.name == name)
        .expect("set_feature accepts known features only");
    Ok(Json(info))
}

pub(super) async fn update_app(
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
