//! What a release asks to run: each formation dyno's [`Want`], from a slug opened and verified once per release
//! and shared by its dynos ([`Booted`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::dyno::launch::{self, Booted, Want};
use crate::dyno::source::SourceError;
use crate::procfile::Command;
use crate::runtime::vfs::Image;
use crate::slug::Slug;

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
        // On a cluster, only the dynos placed on this host.
        let placed = self.inner.source.placement(app);
        if placed.as_ref().is_some_and(|placed| placed.is_empty()) {
            return Ok(BTreeMap::new());
        }
        let booted = self.booted(&sha)?;
        let formation = release.formation.clone();
        let env = launch::layers(&booted.slug, &release.config, BTreeMap::new());
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
                let name = format!("{kind}.{index}");
                if placed
                    .as_ref()
                    .is_some_and(|placed| !placed.contains(&name))
                {
                    continue;
                }
                desired.insert(
                    name,
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

    /// Takes `slug`, already opened and verified (a local `wasmdyno run`), as its release's, with the module at
    /// `loaded.0` already compiled: its dynos neither open the slug again nor load that module again.
    #[cfg(feature = "platform")]
    pub(crate) fn adopt(&self, slug: Slug, loaded: (String, crate::runtime::Guest)) {
        let guests = std::collections::HashMap::from([(
            (loaded.0, false),
            Arc::new(tokio::sync::OnceCell::new_with(Some((loaded.1, None)))),
        )]);
        let booted = Arc::new(Booted {
            image: Arc::new(Image::from_slug(&slug)),
            guests: Mutex::new(guests),
            slug,
        });
        let sha = booted.slug.sha256().to_string();
        self.inner
            .releases
            .lock()
            .expect("releases lock")
            .insert(sha, booted);
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
