//! `/apps/{app}/releases`: the ledger, deploys of an uploaded slug, rollbacks.

#[allow(unused_imports)]
use super::*;

pub(super) async fn list_releases(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Release>>> {
    let mut releases = p.store.releases(&app)?;
    releases.reverse();
    Ok(Json(releases))
}

pub(super) fn parse_version(version: &str) -> ApiResult<u64> {
    version
        .strip_prefix('v')
        .unwrap_or(version)
        .parse()
        .map_err(|_| {
            ApiError::bad_request(format!("{version:?} is not a release version (v3 or 3)"))
        })
}

pub(super) async fn get_release(
    State(p): State<Arc<Platform>>,
    Path((app, version)): Path<(String, String)>,
) -> ApiResult<Json<Release>> {
    Ok(Json(p.store.release(&app, parse_version(&version)?)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRelease {
    /// A slug id (sha256) to release.
    slug: Option<String>,
    /// A version to roll back to; with neither field, the release before the current one.
    release: Option<serde_json::Value>,
    description: Option<String>,
    #[serde(default)]
    rollback: bool,
}

pub(super) async fn create_release(
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
