//! What a deploy does with the app's `app.json`: required config vars checked before the build; on the first
//! deploy, config defaults set and add-ons provisioned before its release, then the formation scaled and the
//! `postdeploy` script run as a one-off dyno.

use super::addons::{CreateAddon, add_addon};
#[allow(unused_imports)]
use super::*;
use crate::build::app_json::AppJson;

/// Reads `dir/app.json`, passes its warnings to `out`, and fails when a required config var is missing from
/// `config`.
pub(super) fn read_app_json(
    dir: &std::path::Path,
    config: &BTreeMap<String, String>,
    out: &mut dyn FnMut(String),
) -> ApiResult<Option<AppJson>> {
    let invalid =
        |message: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "build_failed", message);
    let Some(manifest) = AppJson::read(dir).map_err(invalid)? else {
        return Ok(None);
    };
    for warning in &manifest.warnings {
        out(format!(" !     {warning}"));
    }
    let missing = manifest.missing(config);
    if !missing.is_empty() {
        return Err(invalid(format!(
            "app.json requires config var{} {}, which the app does not have: set {} with `wasmdyno config:set`",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" },
        )));
    }
    Ok(Some(manifest))
}

/// A deploy's progress lines (see `deploy::Progress`).
type Lines = tokio::sync::mpsc::Sender<String>;

async fn say(lines: &Lines, text: String) {
    let _ = lines.send(text).await;
}

/// Sets the config defaults the app lacks (in one release) and provisions the add-ons.
pub(super) async fn before_first_release(
    p: &Arc<Platform>,
    app: &str,
    manifest: &AppJson,
    lines: &Lines,
) -> ApiResult<()> {
    let config = p.store.config(app)?;
    let mut defaults = BTreeMap::new();
    for (name, var) in &manifest.env {
        if config.contains_key(name) {
            continue;
        }
        let value = match (&var.value, var.secret) {
            (Some(value), _) => value.clone(),
            (None, true) => crate::addons::random_hex(32).map_err(internal)?,
            (None, false) => continue,
        };
        defaults.insert(name.clone(), Some(value));
    }
    if !defaults.is_empty() {
        let names: Vec<&str> = defaults.keys().map(String::as_str).collect();
        say(
            lines,
            format!("-----> Setting {} from app.json", names.join(", ")),
        )
        .await;
        p.release(
            app,
            None,
            |store, pending| store.set_config(app, defaults, pending),
            None,
        )
        .await?;
    }
    for (plan, name) in &manifest.addons {
        say(
            lines,
            format!("-----> Creating add-on {plan} from app.json"),
        )
        .await;
        let request = CreateAddon {
            plan: plan.clone(),
            name: name.clone(),
            url: None,
        };
        add_addon(p, app, request).await?;
    }
    Ok(())
}

/// Scales the formation app.json gives and starts its postdeploy script.
pub(super) async fn after_first_release(
    p: &Arc<Platform>,
    app: &str,
    manifest: &AppJson,
    lines: &Lines,
) -> ApiResult<()> {
    if !manifest.formation.is_empty() {
        let changes: BTreeMap<String, ScaleChange> = manifest
            .formation
            .iter()
            .map(|(kind, (quantity, size))| {
                let change = ScaleChange {
                    quantity: Some(*quantity),
                    size: size.clone(),
                };
                (kind.clone(), change)
            })
            .collect();
        let formation = p.store.scale(app, changes)?;
        let shown: Vec<String> = formation
            .iter()
            .map(|(kind, e)| format!("{kind}={}:{}", e.quantity, e.size))
            .collect();
        say(
            lines,
            format!("-----> Scaled to {} from app.json", shown.join(" ")),
        )
        .await;
        p.api_log(app, format!("Scaled to {} from app.json", shown.join(" ")));
        p.manager.reconcile(app).await;
    }
    if let Some(command) = &manifest.postdeploy {
        let dyno = p
            .manager
            .run_one_off(
                app,
                command,
                &[],
                BTreeMap::new(),
                crate::runtime::DynoSize::default(),
                None,
            )
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "postdeploy_failed",
                    format!("app.json's postdeploy script {command:?} could not start: {e}"),
                )
            })?;
        say(
            lines,
            format!(
                "-----> Running postdeploy as {} (output in `wasmdyno logs`)",
                dyno.name
            ),
        )
        .await;
        p.api_log(app, format!("Running postdeploy as {}", dyno.name));
    }
    Ok(())
}
