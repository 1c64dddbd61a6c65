//! `/apps/{app}/domains`: custom domains routed to the app.

#[allow(unused_imports)]
use super::*;

pub(super) async fn list_domains(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<crate::router::DomainInfo>>> {
    Ok(Json(p.routes.domains(&app)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewDomain {
    hostname: String,
}

/// Routes a custom hostname to the app (checked by [`crate::router::Routes::check_domain`]; 409 when it is
/// another app's).
pub(super) async fn add_domain(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    JsonBody(request): JsonBody<NewDomain>,
) -> ApiResult<(StatusCode, Json<crate::router::DomainInfo>)> {
    let domain = p.routes.add_domain(&app, &request.hostname)?;
    p.api_log(&app, format!("Added domain {}", domain.hostname));
    Ok((StatusCode::CREATED, Json(domain)))
}

pub(super) async fn remove_domain(
    State(p): State<Arc<Platform>>,
    Path((app, hostname)): Path<(String, String)>,
) -> ApiResult<Json<crate::router::DomainInfo>> {
    let domain = p.routes.remove_domain(&app, &hostname)?;
    p.api_log(&app, format!("Removed domain {}", domain.hostname));
    Ok(Json(domain))
}
