//! The state store as the dyno manager and the router read it: the adapter from [`Store`] to
//! [`Source`](super::Source), kept beside its reader so that the store knows nothing of dynos.

use std::path::PathBuf;

use crate::runtime::DynoSize;
use crate::store::{App, ErrorKind, Store, StoreError};

/// The store as the dyno manager and the router read it: apps, current releases with their formation, slugs in a
/// [`SlugStore`](crate::slug::SlugStore).
pub struct StoreSource {
    store: std::sync::Arc<dyn Store>,
    slugs: crate::slug::SlugStore,
}

impl StoreSource {
    pub fn new(store: std::sync::Arc<dyn Store>, slugs: crate::slug::SlugStore) -> StoreSource {
        StoreSource { store, slugs }
    }
}

fn source_error(e: StoreError) -> super::SourceError {
    super::SourceError::new(e.to_string())
}

fn app_spec(app: App) -> super::AppSpec {
    let mut spec = super::AppSpec::new(app.name);
    spec.maintenance = app.maintenance;
    spec.sleep = app.sleep;
    spec.features = app.features;
    spec
}

/// The destinations an app's dynos may reach: those it allowed and the hosts of its attached add-ons; and the
/// exact addresses of the add-ons the platform provisioned for it (open even when private).
fn network_of(store: &dyn Store, app: &str) -> (Vec<String>, Vec<std::net::SocketAddr>) {
    let mut all = store.destinations(app).unwrap_or_default();
    let mut endpoints = Vec::new();
    for addon in store.addons(app).unwrap_or_default() {
        let exact = crate::addons::endpoints(&addon.service, &addon.hosts);
        if exact.is_empty() {
            all.extend(addon.hosts);
        }
        endpoints.extend(exact);
    }
    all.sort();
    all.dedup();
    (all, endpoints)
}

impl super::Source for StoreSource {
    fn apps(&self) -> Result<Vec<super::AppSpec>, super::SourceError> {
        let apps = self.store.apps().map_err(source_error)?;
        Ok(apps
            .into_iter()
            .map(|app| {
                let (network, endpoints) = network_of(self.store.as_ref(), &app.name);
                let mut spec = app_spec(app);
                spec.network = network;
                spec.endpoints = endpoints;
                spec
            })
            .collect())
    }

    fn app(&self, app: &str) -> Result<Option<super::AppSpec>, super::SourceError> {
        match self.store.app(app) {
            Ok(found) => {
                let (network, endpoints) = network_of(self.store.as_ref(), app);
                let mut spec = app_spec(found);
                spec.network = network;
                spec.endpoints = endpoints;
                Ok(Some(spec))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(source_error(e)),
        }
    }

    fn release(&self, app: &str) -> Result<Option<super::ReleaseSpec>, super::SourceError> {
        // An app destroyed meanwhile has nothing to run.
        let release = match self.store.current_release(app) {
            Ok(Some(release)) => release,
            Ok(None) => return Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(source_error(e)),
        };
        let formation = match self.store.formation(app) {
            Ok(formation) => formation,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(source_error(e)),
        };
        let mut spec = super::ReleaseSpec::new(release.version, String::new());
        spec.slug = release.slug;
        spec.config = release.config;
        for (kind, entry) in formation {
            let size: DynoSize = entry.size.parse().unwrap_or_default();
            spec.formation
                .insert(kind, super::Scale::new(entry.quantity, size));
        }
        Ok(Some(spec))
    }

    fn slug_path(&self, sha256: &str) -> PathBuf {
        self.slugs.fetch(sha256)
    }

    fn domains(&self, app: &str) -> Result<Vec<String>, super::SourceError> {
        match self.store.domains(app) {
            Ok(domains) => Ok(domains.into_iter().map(|d| d.hostname).collect()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(source_error(e)),
        }
    }
}
