//! `/apps/{app}/addons`: attaching and detaching add-ons, each a new release.

#[allow(unused_imports)]
use super::*;

pub(super) async fn list_addons(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Addon>>> {
    Ok(Json(p.store.addons(&app)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateAddon {
    /// `SERVICE` or `SERVICE:PLAN`.
    plan: String,
    /// The add-on's name (default: the service's name).
    name: Option<String>,
    /// The URL the add-on exposes as `<NAME>_URL` (default: a `DATABASE_URL`-style name from the service).
    url: Option<String>,
}

pub(super) async fn create_addon(
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
pub(super) fn addon_var(service: &str, name: &str) -> String {
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

/// One add-on of the app, by name.
pub(super) async fn get_addon(
    State(p): State<Arc<Platform>>,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<Json<Addon>> {
    p.store
        .addons(&app)?
        .into_iter()
        .find(|a| a.name == name)
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{app} has no add-on named {name} (`wasmdyno addons -a {app}` lists them)"),
            )
        })
}

pub(super) async fn destroy_addon(
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
