//! Heroku's app manifest, `app.json`, as a deploy reads it: config var defaults and required ones (`env`), the first
//! deploy's formation, the add-ons it provisions, and the `postdeploy` script. Keys wasmdyno does not use are named
//! in warnings, never errors.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The largest `app.json` read.
const MAX_SIZE: u64 = 64 * 1024;

/// Top-level keys Heroku defines that a deploy here has no use for.
const IGNORED: &[&str] = &[
    "name",
    "description",
    "keywords",
    "website",
    "repository",
    "logo",
    "success_url",
    "stack",
    "image",
    "buildpacks",
    "environments",
];

/// What a deploy takes from `app.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppJson {
    /// Config vars: default values, generated secrets, required ones.
    pub env: BTreeMap<String, EnvVar>,
    /// Process type → (quantity, size) for the first deploy.
    pub formation: BTreeMap<String, (u32, Option<String>)>,
    /// Add-ons the first deploy provisions: (`SERVICE[:PLAN]`, name).
    pub addons: Vec<(String, Option<String>)>,
    /// A command run once, as a one-off dyno, after the first deploy's release.
    pub postdeploy: Option<String>,
    /// What was not understood, for the build's output.
    pub warnings: Vec<String>,
}

/// One config var of `env`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvVar {
    /// The value it gets when the app does not have it.
    pub value: Option<String>,
    /// `generator: secret`: a random value when the app does not have it.
    pub secret: bool,
    /// The deploy fails while the app has no value for it.
    pub required: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawEnv {
    Value(String),
    Spec {
        value: Option<String>,
        generator: Option<String>,
        required: Option<bool>,
    },
}

#[derive(Deserialize)]
struct RawFormation {
    quantity: Option<u32>,
    size: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawAddon {
    Plan(String),
    Spec { plan: String, r#as: Option<String> },
}

#[derive(Deserialize)]
struct RawScripts {
    postdeploy: Option<String>,
}

impl AppJson {
    /// Reads `dir/app.json`; `None` when there is none. An error says what is wrong in it.
    pub fn read(dir: &Path) -> Result<Option<AppJson>, String> {
        let path = dir.join("app.json");
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return Ok(None);
        };
        if !meta.is_file() {
            return Err("app.json is not a regular file".into());
        }
        if meta.len() > MAX_SIZE {
            return Err(format!("app.json is larger than {MAX_SIZE} bytes"));
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read app.json: {e}"))?;
        AppJson::parse(&text).map(Some)
    }

    /// Parses the text of an `app.json`.
    ///
    /// ```ignore
    /// let app = AppJson::parse(r#"{"env": {"GREETING": "hi"}, "formation": {"web": {"quantity": 2}}}"#)?;
    /// ```
    pub fn parse(text: &str) -> Result<AppJson, String> {
        let root: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| format!("app.json is not a JSON object: {e}"))?;
        let mut out = AppJson::default();
        for (key, value) in root {
            let field = |e: serde_json::Error| format!("app.json: `{key}` is not valid: {e}");
            match key.as_str() {
                "env" => {
                    let env: BTreeMap<String, RawEnv> =
                        serde_json::from_value(value).map_err(field)?;
                    for (name, raw) in env {
                        let var = match raw {
                            RawEnv::Value(value) => EnvVar {
                                value: Some(value),
                                secret: false,
                                required: true,
                            },
                            RawEnv::Spec {
                                value,
                                generator,
                                required,
                            } => {
                                let secret = match generator.as_deref() {
                                    None => false,
                                    Some("secret") => true,
                                    Some(other) => {
                                        return Err(format!(
                                            "app.json: env {name} has generator {other:?}; the one generator is \"secret\""
                                        ));
                                    }
                                };
                                EnvVar {
                                    value,
                                    secret,
                                    required: required.unwrap_or(true),
                                }
                            }
                        };
                        out.env.insert(name, var);
                    }
                }
                "formation" => {
                    let formation: BTreeMap<String, RawFormation> =
                        serde_json::from_value(value).map_err(field)?;
                    for (kind, entry) in formation {
                        out.formation
                            .insert(kind, (entry.quantity.unwrap_or(1), entry.size));
                    }
                }
                "addons" => {
                    let addons: Vec<RawAddon> = serde_json::from_value(value).map_err(field)?;
                    out.addons = addons
                        .into_iter()
                        .map(|a| match a {
                            RawAddon::Plan(plan) => (plan, None),
                            RawAddon::Spec { plan, r#as } => (plan, r#as.map(|n| n.to_lowercase())),
                        })
                        .collect();
                }
                "scripts" => {
                    let scripts: RawScripts = serde_json::from_value(value).map_err(field)?;
                    out.postdeploy = scripts.postdeploy.filter(|s| !s.trim().is_empty());
                }
                known if IGNORED.contains(&known) => {}
                unknown => out
                    .warnings
                    .push(format!("app.json: unknown key `{unknown}` ignored")),
            }
        }
        Ok(out)
    }

    /// The required config vars that neither `config` nor a default would set, by name.
    pub fn missing(&self, config: &BTreeMap<String, String>) -> Vec<String> {
        self.env
            .iter()
            .filter(|(name, var)| {
                var.required && var.value.is_none() && !var.secret && !config.contains_key(*name)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herokus_manifest_is_read() {
        let app = AppJson::parse(
            r#"{
                "name": "counter",
                "env": {
                    "GREETING": "hi",
                    "SECRET_KEY": {"generator": "secret"},
                    "API_KEY": {"description": "the API's key", "required": true},
                    "OPTIONAL": {"required": false}
                },
                "formation": {"web": {"quantity": 2, "size": "standard-2x"}, "worker": {}},
                "addons": ["heroku-postgresql", {"plan": "heroku-redis:mini", "as": "CACHE"}],
                "scripts": {"postdeploy": "seed.wasm"},
                "frobnicate": true
            }"#,
        )
        .unwrap();
        assert_eq!(app.env["GREETING"].value.as_deref(), Some("hi"));
        assert!(app.env["SECRET_KEY"].secret);
        assert_eq!(app.missing(&BTreeMap::new()), ["API_KEY"]);
        let have = BTreeMap::from([("API_KEY".to_string(), "k".to_string())]);
        assert!(app.missing(&have).is_empty());
        assert_eq!(app.formation["web"], (2, Some("standard-2x".into())));
        assert_eq!(app.formation["worker"], (1, None));
        assert_eq!(
            app.addons,
            [
                ("heroku-postgresql".to_string(), None),
                ("heroku-redis:mini".to_string(), Some("cache".to_string()))
            ]
        );
        assert_eq!(app.postdeploy.as_deref(), Some("seed.wasm"));
        assert_eq!(app.warnings, ["app.json: unknown key `frobnicate` ignored"]);
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        assert!(
            AppJson::parse("[]")
                .unwrap_err()
                .contains("not a JSON object")
        );
        let err = AppJson::parse(r#"{"formation": {"web": {"quantity": -1}}}"#).unwrap_err();
        assert!(err.contains("`formation`"), "{err}");
        let err = AppJson::parse(r#"{"env": {"X": {"generator": "uuid"}}}"#).unwrap_err();
        assert!(err.contains("generator"), "{err}");
    }
}
