//! `/apps/{app}/formation` and `/dynos`: scaling, restarts, and one-off dynos (detached or attached).

#[allow(unused_imports)]
use super::*;
use std::time::Duration;

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

pub(super) fn formation_view(p: &Platform, app: &str) -> ApiResult<Vec<FormationType>> {
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
pub(super) fn current_types(p: &Platform, app: &str) -> ApiResult<BTreeMap<String, String>> {
    match p.store.current_release(app)?.and_then(|r| r.slug) {
        Some(sha) => Ok(p.open_slug(&sha)?.manifest().process_types.clone()),
        None => Ok(BTreeMap::new()),
    }
}

pub(super) async fn get_formation(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<FormationType>>> {
    p.store.app(&app)?;
    Ok(Json(formation_view(&p, &app)?))
}

pub(super) async fn get_formation_type(
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
pub(super) struct FormationUpdate {
    #[serde(rename = "type")]
    kind: Option<String>,
    quantity: Option<u32>,
    size: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FormationBatch {
    updates: Vec<FormationUpdate>,
}

pub(super) async fn scale(
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

pub(super) async fn update_formation(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    JsonBody(batch): JsonBody<FormationBatch>,
) -> ApiResult<Json<Vec<FormationType>>> {
    Ok(Json(scale(&p, &app, batch.updates).await?))
}

pub(super) async fn update_formation_type(
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

#[derive(Deserialize, Default)]
pub(super) struct DynosQuery {
    /// Only this host's dynos (what a cluster's host asks its peers).
    #[serde(default)]
    local: bool,
}

/// The app's dynos; on a cluster, those of every live host (each asked for 2 s at most; a host that does not
/// answer is left out), each with its host.
pub(super) async fn list_dynos(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    Query(query): Query<DynosQuery>,
) -> ApiResult<Json<Vec<DynoInfo>>> {
    // A peer asking for this host's dynos needs no store (this host may have lost its database).
    if !query.local {
        p.store.app(&app)?;
    }
    let mut dynos = p.manager.dynos(&app);
    let Some(cluster) = p.cluster.clone() else {
        return Ok(Json(dynos));
    };
    for dyno in &mut dynos {
        dyno.host = Some(cluster.host_id().to_string());
    }
    if !query.local {
        let path = format!("/apps/{app}/dynos?local=true");
        let theirs = ask_peers(&p, Duration::from_secs(2), |host| {
            let path = path.clone();
            async move { host.get::<Vec<DynoInfo>>(&path).await }
        })
        .await?;
        dynos.extend(theirs.into_iter().flatten());
    }
    Ok(Json(dynos))
}

/// How long another host may take to restart its dynos: their graceful stop, and a margin.
fn restart_deadline(p: &Platform) -> Duration {
    p.manager.settings().stop_timeout + Duration::from_secs(5)
}

/// Restarts every dyno of the app (`ps:restart`), on every host of a cluster.
pub(super) async fn restart_dynos(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    Query(query): Query<DynosQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    if !query.local {
        p.store.app(&app)?;
    }
    let mut restarted = p.manager.restart(&app, None).await;
    if !query.local {
        restarted += restart_on_peers(&p, format!("/apps/{app}/dynos?local=true")).await?;
    }
    Ok(Json(serde_json::json!({ "restarted": restarted })))
}

/// Restarts (`ps:restart`) or stops (`ps:stop`: the manager starts formation dynos again) one dyno (`web.1`) or
/// every dyno of a type (`web`), wherever it runs in a cluster.
pub(super) async fn restart_dyno(
    State(p): State<Arc<Platform>>,
    Path((app, dyno)): Path<(String, String)>,
    Query(query): Query<DynosQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    if !query.local {
        p.store.app(&app)?;
    }
    let mut restarted = p.manager.restart(&app, Some(&dyno)).await;
    if !query.local {
        restarted += restart_on_peers(&p, format!("/apps/{app}/dynos/{dyno}?local=true")).await?;
    }
    if restarted == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no dyno {dyno:?} is running in {app}"),
        ));
    }
    Ok(Json(serde_json::json!({ "restarted": restarted })))
}

/// How many dynos the other hosts restarted for `path` (a DELETE; a host that runs none answers 404).
async fn restart_on_peers(p: &Platform, path: String) -> ApiResult<usize> {
    let counts = ask_peers(p, restart_deadline(p), |host| {
        let path = path.clone();
        async move {
            match host.delete::<serde_json::Value>(&path).await {
                Ok(answer) => Ok(answer["restarted"].as_u64().unwrap_or(0) as usize),
                Err(crate::api::client::ClientError::Api { status: 404, .. }) => Ok(0),
                Err(e) => Err(e),
            }
        }
    })
    .await?;
    Ok(counts.into_iter().sum())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateDyno {
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
pub(super) async fn create_dyno(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    mut req: Request,
) -> ApiResult<Response> {
    let upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    let wants_attach = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(crate::api::attach::PROTOCOL));
    let JsonBody(request) = JsonBody::<CreateDyno>::from_request(req, &()).await?;
    p.store.app(&app)?;
    let upgrade = match (request.attach, wants_attach, upgrade) {
        (false, _, _) => None,
        (true, true, Some(upgrade)) => Some(upgrade),
        (true, _, _) => {
            return Err(ApiError::bad_request(format!(
                "an attached dyno needs the connection upgraded to `{}` (use `wasmdyno run -a {app}`)",
                crate::api::attach::PROTOCOL
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
            let (session, attach) =
                crate::api::attach::Session::new(p.manager.settings().attach_idle);
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
        HeaderValue::from_static(crate::api::attach::PROTOCOL),
    );
    if let Ok(name) = HeaderValue::from_str(&info.name) {
        headers.insert(crate::api::attach::DYNO_HEADER, name);
    }
    Ok(response)
}
