//! `/apps/{app}/config-vars`: every change is a new release.

#[allow(unused_imports)]
use super::*;

/// The response header that names the release a change made.
pub const RELEASE_HEADER: &str = "wasmdyno-release";

pub(super) async fn get_config(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<BTreeMap<String, String>>> {
    Ok(Json(p.store.config(&app)?))
}

pub(super) async fn set_config(
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
