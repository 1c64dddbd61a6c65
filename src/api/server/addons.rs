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
    pub(super) plan: String,
    /// The add-on's name (default: the service's name).
    pub(super) name: Option<String>,
    /// The URL the add-on exposes as `<NAME>_URL` (default: a `DATABASE_URL`-style name from the service).
    pub(super) url: Option<String>,
}

pub(super) async fn create_addon(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    JsonBody(request): JsonBody<CreateAddon>,
) -> ApiResult<(StatusCode, Json<Addon>)> {
    p.store.app(&app)?;
    let addon = add_addon(&p, &app, request).await?;
    Ok((StatusCode::CREATED, Json(addon)))
}

/// Provisions (for a service the platform provisions) and attaches an add-on, in a new release.
pub(super) async fn add_addon(
    p: &Arc<Platform>,
    app: &str,
    request: CreateAddon,
) -> ApiResult<Addon> {
    let app = app.to_string();
    let (service, plan) = match request.plan.split_once(':') {
        Some((service, plan)) => (service.to_string(), Some(plan.to_string())),
        None => (request.plan.clone(), None),
    };
    if service.is_empty() || plan.as_deref() == Some("") {
        return Err(invalid("give the add-on as SERVICE or SERVICE:PLAN"));
    }
    // A service the platform provisions: made now, on the configured server.
    if let Some(canonical) = crate::addons::Providers::canonical(&service) {
        if request.url.is_some() {
            return Err(invalid(format!(
                "{service} add-ons are provisioned by this platform; for a database of your own, give it another \
                 service name (`addons:create external-db --url URL`)"
            )));
        }
        let provider = p
            .providers
            .get(canonical)
            .map_err(|e| invalid(e.to_string()))?;
        let plan = plan.unwrap_or_else(|| provider.default_plan().to_string());
        let name = request.name.unwrap_or_else(|| canonical.to_string());
        // The name is checked before anything is made on the server.
        crate::store::check_addon_name(&name)?;
        if p.store.addons(&app)?.iter().any(|a| a.name == name) {
            return Err(crate::store::StoreError::AddonExists { app, name }.into());
        }
        let made = provider
            .provision(&app, &name, &plan)
            .await
            .map_err(|e| invalid(e.to_string()))?;
        let var = addon_var(canonical, &name);
        let base = var.strip_suffix("_URL").unwrap_or(&var).to_string();
        let mut config = BTreeMap::from([(var, made.url.clone())]);
        for (suffix, value) in &made.extra {
            config.insert(format!("{base}_{suffix}"), value.clone());
        }
        let addon = NewAddon {
            config,
            hosts: vec![made.endpoint.to_string()],
            name,
            service: canonical.to_string(),
            plan,
        };
        return match attach(p, &app, addon).await {
            Ok(created) => Ok(created),
            Err(e) => {
                // Nothing was attached: what was made goes.
                if let Err(undo) = provider.deprovision(&made.url).await {
                    tracing::error!(app, "cannot remove an add-on that failed to attach: {undo}");
                }
                Err(e)
            }
        };
    }
    let plan = plan.unwrap_or_else(|| "default".to_string());
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
    let addon = NewAddon {
        name,
        service,
        plan,
        config: BTreeMap::from([(var, url)]),
        hosts: vec![host],
    };
    attach(p, &app, addon).await
}

/// Attaches `addon` to `app` in a new release (through the release phase, if the slug has one).
async fn attach(p: &Arc<Platform>, app: &str, addon: NewAddon) -> ApiResult<Addon> {
    let mut created = None;
    p.release(
        app,
        None,
        |store, pending| {
            let (addon, release) = store.create_addon(app, addon, pending)?;
            created = Some(addon);
            Ok(release)
        },
        None,
    )
    .await?;
    Ok(created.expect("created with its release"))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_params",
        message.into(),
    )
}

/// New credentials for a provisioned add-on (`addons:rotate`): the old ones stop working, and the app gets the new
/// ones in a new release.
pub(super) async fn rotate_addon(
    State(p): State<Arc<Platform>>,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<Json<Release>> {
    let addon = find_addon(&p, &app, &name)?;
    let provider = crate::addons::Providers::canonical(&addon.service)
        .map(|service| p.providers.get(service))
        .ok_or_else(|| {
            invalid(format!(
                "{name} is not provisioned by this platform: change its URL with `config:set` instead"
            ))
        })?
        .map_err(|e| invalid(e.to_string()))?;
    let (var, url) = addon
        .config
        .iter()
        .find(|(var, _)| var.ends_with("_URL"))
        .ok_or_else(|| invalid(format!("{name} sets no URL")))?;
    let fresh = provider
        .rotate(url)
        .await
        .map_err(|e| invalid(e.to_string()))?;
    let config = BTreeMap::from([(var.clone(), fresh)]);
    let release = p
        .release(
            &app,
            None,
            |store, pending| Ok(store.rotate_addon(&app, &name, config, pending)?.1),
            None,
        )
        .await?;
    Ok(Json(release))
}

fn find_addon(p: &Platform, app: &str, name: &str) -> ApiResult<Addon> {
    p.store
        .addons(app)?
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| {
            crate::store::StoreError::AddonNotFound {
                app: app.to_string(),
                name: name.to_string(),
            }
            .into()
        })
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

/// Detaches the add-on in a new release; a provisioned one's resource (database and role) is then removed.
pub(super) async fn destroy_addon(
    State(p): State<Arc<Platform>>,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<Json<Release>> {
    let addon = find_addon(&p, &app, &name)?;
    let release = p
        .release(
            &app,
            None,
            |store, pending| store.destroy_addon(&app, &name, pending),
            None,
        )
        .await?;
    if let Some(service) = crate::addons::Providers::canonical(&addon.service) {
        let provider = p
            .providers
            .get(service)
            .map_err(|e| invalid(e.to_string()))?;
        for url in addon
            .config
            .iter()
            .filter(|(var, _)| var.ends_with("_URL"))
            .map(|(_, url)| url)
        {
            provider.deprovision(url).await.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "deprovision_failed",
                    format!(
                        "{name} is detached (v{}), but removing its resource failed: {e}; remove it by hand",
                        release.version
                    ),
                )
            })?;
        }
        p.api_log(&app, format!("Destroyed {name} ({service}) and its data"));
    }
    Ok(Json(release))
}
