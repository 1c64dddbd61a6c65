//! `/apps/{app}/log-drains`: syslog and HTTPS drains.

#[allow(unused_imports)]
use super::*;

/// A drain as the API shows it: its record, and how it is doing while it runs.
#[derive(serde::Serialize)]
pub(super) struct DrainView {
    #[serde(flatten)]
    drain: Drain,
    status: Option<DrainStatus>,
}

pub(super) fn drain_view(p: &Platform, drain: Drain) -> DrainView {
    let status = p.drains.status(&drain.app, &drain.id);
    DrainView { drain, status }
}

pub(super) async fn list_drains(
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
pub(super) struct AddDrain {
    url: String,
}

pub(super) async fn add_drain(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    JsonBody(request): JsonBody<AddDrain>,
) -> ApiResult<(StatusCode, Json<DrainView>)> {
    let drain = p.store.add_drain(&app, &request.url)?;
    p.sync_drains(&app)?;
    Ok((StatusCode::CREATED, Json(drain_view(&p, drain))))
}

/// Removes a drain named by its id, its token or its URL (percent-encoded in the path).
pub(super) async fn remove_drain(
    State(p): State<Arc<Platform>>,
    Path((app, drain)): Path<(String, String)>,
) -> ApiResult<Json<Drain>> {
    let drain = p.store.remove_drain(&app, &drain)?;
    p.sync_drains(&app)?;
    Ok(Json(drain))
}
