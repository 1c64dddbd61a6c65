//! A dyno's environment and command line: config layers first, the platform's own variables over them, and the
//! Procfile command expanded from the finished environment, never before (so `web: app.wasm --port $PORT` sees
//! its port, `$DYNO` its name and `$WASMDYNO_RELEASE` its release in every kind of dyno); and what a release
//! asks to run: each formation dyno's [`Want`], from a slug opened and verified once per release ([`Booted`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::DynoError;
use super::manager::Manager;
use super::source::SourceError;
use crate::procfile::Command;
use crate::runtime::vfs::Image;
use crate::runtime::{DynoSize, Guest};
use crate::slug::Slug;

/// The port a web dyno's `$PORT` names when its connections arrive on a listener (fd 4) rather than on a port.
pub(crate) const LISTENER_PORT: u16 = 5000;

/// The variables only the platform sets in a dyno.
#[derive(Debug, Clone)]
pub(crate) struct PlatformVars {
    /// `DYNO`: `web.1`, `run.7`, `release.3`.
    pub dyno: String,
    /// `WASMDYNO_RELEASE`: `v3`, or a local slug's short hash.
    pub release: String,
    /// `PORT`, for a dyno that serves HTTP.
    pub port: Option<u16>,
}

impl PlatformVars {
    /// The dyno's environment: `config` (slug defaults, release config and overrides, already layered in that
    /// order) with the platform's variables over it, `HOME` among them.
    pub(crate) fn environment(
        &self,
        config: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut env = config.clone();
        env.insert("HOME".into(), "/".into());
        env.insert("DYNO".into(), self.dyno.clone());
        env.insert("WASMDYNO_RELEASE".into(), self.release.clone());
        match self.port {
            Some(port) => env.insert("PORT".into(), port.to_string()),
            None => env.remove("PORT"),
        };
        env
    }
}

/// The argv of `line` in `env`.
pub(crate) fn argv(line: &Command, env: &BTreeMap<String, String>) -> Vec<String> {
    line.expand(&|key| env.get(key).cloned())
}

/// `WASMDYNO_RELEASE` of a dyno run from a slug outside any app: the slug's short hash.
pub(crate) fn local_release(slug_sha256: &str) -> String {
    slug_sha256.chars().take(7).collect()
}

/// A slug made ready to boot dynos from.
pub(super) struct Booted {
    pub(super) slug: Slug,
    pub(super) image: Arc<Image>,
    /// Module path → its compiled guest, loaded once however many dynos boot it at the same moment.
    pub(super) guests: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Guest>>>>,
}

pub(super) struct Want {
    pub(super) kind: String,
    /// The command as shown (`ps`, log lines).
    pub(super) command: String,
    /// The command as run: parsed once, so arguments of one-off dynos keep their exact words.
    pub(super) line: Command,
    pub(super) size: DynoSize,
    pub(super) release: u64,
    pub(super) slug: String,
    pub(super) env: BTreeMap<String, String>,
    pub(super) booted: Arc<Booted>,
}

impl Manager {
    /// What should run: dyno name → how.
    pub(super) fn desired(&self, app: &str) -> Result<BTreeMap<String, Want>, DynoError> {
        let err = |e: SourceError| DynoError::Command(e.to_string());
        let Some(release) = self.inner.source.release(app).map_err(err)? else {
            return Ok(BTreeMap::new());
        };
        let Some(sha) = release.slug.clone() else {
            return Ok(BTreeMap::new());
        };
        let booted = self.booted(&sha)?;
        let formation = release.formation.clone();
        let mut env = booted.slug.manifest().config_vars.clone();
        env.extend(release.config.clone());
        let mut desired = BTreeMap::new();
        for (kind, entry) in formation {
            let Some(command) = booted.slug.manifest().process_types.get(&kind) else {
                continue;
            };
            let size = entry.size;
            let line = match Command::parse(command) {
                Ok(line) => line,
                Err(e) => {
                    tracing::warn!(app, kind, "cannot parse the command: {e}");
                    continue;
                }
            };
            for index in 1..=entry.quantity {
                desired.insert(
                    format!("{kind}.{index}"),
                    Want {
                        kind: kind.clone(),
                        command: command.clone(),
                        line: line.clone(),
                        size,
                        release: release.version,
                        slug: sha.clone(),
                        env: env.clone(),
                        booted: booted.clone(),
                    },
                );
            }
        }
        Ok(desired)
    }

    /// The slug `sha` (opened and verified once per release, then shared with its dynos).
    pub(crate) fn slug(&self, sha: &str) -> Result<Slug, DynoError> {
        Ok(self.booted(sha)?.slug.clone())
    }

    pub(super) fn booted(&self, sha: &str) -> Result<Arc<Booted>, DynoError> {
        if let Some(booted) = self.inner.releases.lock().expect("releases lock").get(sha) {
            return Ok(booted.clone());
        }
        let slug =
            Slug::open(&self.inner.source.slug_path(sha), self.inner.limits).map_err(|e| {
                DynoError::Slug {
                    sha256: sha.into(),
                    reason: e.to_string(),
                }
            })?;
        // The release names its slug by the archive's sha256: a file that does not hash to it is not that slug.
        if slug.sha256() != sha {
            return Err(DynoError::Slug {
                sha256: sha.into(),
                reason: format!("the archive's sha256 is {}", slug.sha256()),
            });
        }
        let booted = Arc::new(Booted {
            image: Arc::new(Image::from_slug(&slug)),
            slug,
            guests: Mutex::default(),
        });
        let mut releases = self.inner.releases.lock().expect("releases lock");
        // Keep the cache to the slugs of running releases plus this one.
        if releases.len() > 64 {
            releases.retain(|_, b| Arc::strong_count(b) > 1);
        }
        releases.insert(sha.to_string(), booted.clone());
        Ok(booted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_variables_win_and_the_command_sees_them() {
        let config = BTreeMap::from([
            ("PORT".to_string(), "1".to_string()),
            ("GREETING".to_string(), "hi".to_string()),
        ]);
        let platform = PlatformVars {
            dyno: "web.2".into(),
            release: "v9".into(),
            port: Some(5000),
        };
        let env = platform.environment(&config);
        let line =
            Command::parse("app.wasm --port $PORT $DYNO ${WASMDYNO_RELEASE} ${GREETING:-x} $HOME")
                .unwrap();
        assert_eq!(
            argv(&line, &env),
            ["app.wasm", "--port", "5000", "web.2", "v9", "hi", "/"]
        );
        let worker = PlatformVars {
            port: None,
            ..platform
        };
        assert!(!worker.environment(&config).contains_key("PORT"));
    }
}
