//! The [`Store`] operations, written once for every backend.
//!
//! A backend (`backend.rs`) gives two things: transactions ([`Backend::read`] on one consistent snapshot, [`Backend::write`]
//! serialized with every other writer, on this host and others) and, inside them, the few row-level queries of
//! [`Tx`]. Everything the store decides (validation, what a new release starts from, descriptions, conflicts) is
//! here, so SQLite and PostgreSQL cannot drift apart; the schema of each backend enforces the ledger's rules again
//! (append-only releases, contiguous versions) for anything that writes around this code.

use std::collections::BTreeMap;

use super::backend::{Backend, Flag, Tx, Which};
use super::validate::{
    MAX_QUANTITY, check_addon_fields, check_addon_name, check_app_name, check_config,
    check_config_name, check_config_value, check_destination, describe_config_change,
    normalize_hostname,
};
use super::{
    Addon, App, Domain, Drain, FEATURES, Formation, NewAddon, NewRelease, Release, ReleaseStatus,
    ScaleChange, Store, StoreError, unix_now,
};
use crate::logs::drain::{DrainUrl, MAX_DRAINS_PER_APP};
use crate::runtime::DynoSize;

fn require_app(tx: &mut dyn Tx, name: &str) -> Result<App, StoreError> {
    tx.app(name)?
        .ok_or_else(|| StoreError::AppNotFound(name.to_owned()))
}

/// [`require_app`] with the app's features: for the calls that return the app.
fn full_app(tx: &mut dyn Tx, name: &str) -> Result<App, StoreError> {
    let mut app = require_app(tx, name)?;
    app.features = tx.features(name)?;
    Ok(app)
}

fn load_release(tx: &mut dyn Tx, app: &str, version: u64) -> Result<Release, StoreError> {
    tx.releases(app, Which::Version(version), Some(1))?
        .pop()
        .ok_or_else(|| StoreError::ReleaseNotFound {
            app: app.to_owned(),
            version,
        })
}

fn current_release(tx: &mut dyn Tx, app: &str) -> Result<Option<Release>, StoreError> {
    Ok(tx.releases(app, Which::Succeeded, Some(1))?.pop())
}

/// The newest release that did not fail: the config the app has.
fn base_release(tx: &mut dyn Tx, app: &str) -> Result<Release, StoreError> {
    tx.releases(app, Which::NotFailed, Some(1))?
        .pop()
        // v1 never fails, so every app has one.
        .ok_or_else(|| StoreError::Corrupt(format!("app {app} has no release that did not fail")))
}

/// What a new release starts from: the newest release that did not fail. Refused while the newest release is
/// still pending: a release is never based on one whose release phase has not finished.
fn next_release_base(tx: &mut dyn Tx, app: &str) -> Result<Release, StoreError> {
    let base = base_release(tx, app)?;
    if base.status == ReleaseStatus::Pending {
        return Err(StoreError::ReleasePending {
            app: app.to_owned(),
            version: base.version,
        });
    }
    Ok(base)
}

/// Appends the next release of `app` with its first event. The config is checked here, so no path can write an
/// invalid one.
fn append_release(
    tx: &mut dyn Tx,
    app: &str,
    slug: Option<String>,
    config: BTreeMap<String, String>,
    addons: Vec<String>,
    description: String,
    pending: bool,
) -> Result<Release, StoreError> {
    check_config(&config)?;
    let status = if pending {
        ReleaseStatus::Pending
    } else {
        ReleaseStatus::Succeeded
    };
    let release = Release {
        app: app.to_owned(),
        version: tx.next_version(app)?,
        slug,
        config,
        addons,
        description,
        created_at: unix_now(),
        status,
        output: None,
    };
    tx.insert_release(&release)?;
    tx.append_event(app, release.version, status, None)?;
    Ok(release)
}

/// A random (version 4) UUID for a new row.
fn new_uuid() -> Result<String, StoreError> {
    crate::ids::uuid_v4().map_err(|e| StoreError::Corrupt(format!("no randomness for an id: {e}")))
}

impl<B: Backend> Store for B {
    fn create_app(&self, name: &str) -> Result<App, StoreError> {
        check_app_name(name)?;
        self.write(false, |tx| {
            if tx.app(name)?.is_some() {
                return Err(StoreError::AppExists(name.to_owned()));
            }
            let app = App {
                name: name.to_owned(),
                created_at: unix_now(),
                maintenance: false,
                sleep: false,
                features: Default::default(),
            };
            tx.insert_app(&app)?;
            let initial = "Initial release".to_string();
            append_release(tx, name, None, BTreeMap::new(), Vec::new(), initial, false)?;
            Ok(app)
        })
    }

    fn app(&self, name: &str) -> Result<App, StoreError> {
        self.read(|tx| full_app(tx, name))
    }

    fn apps(&self) -> Result<Vec<App>, StoreError> {
        self.read(|tx| {
            let mut apps = tx.apps()?;
            for app in &mut apps {
                app.features = tx.features(&app.name)?;
            }
            Ok(apps)
        })
    }

    fn destroy_app(&self, name: &str) -> Result<(), StoreError> {
        self.write(false, |tx| {
            require_app(tx, name)?;
            // Cascades to everything of the app; the ledger's triggers allow it because the app row goes first.
            tx.delete_app(name)
        })
    }

    fn set_maintenance(&self, app: &str, on: bool) -> Result<App, StoreError> {
        self.write(false, |tx| {
            let mut found = full_app(tx, app)?;
            tx.set_flag(app, Flag::Maintenance, on)?;
            found.maintenance = on;
            Ok(found)
        })
    }

    fn set_sleep(&self, app: &str, on: bool) -> Result<App, StoreError> {
        self.write(false, |tx| {
            let mut found = full_app(tx, app)?;
            tx.set_flag(app, Flag::Sleep, on)?;
            found.sleep = on;
            Ok(found)
        })
    }

    fn set_feature(&self, app: &str, feature: &str, on: bool) -> Result<App, StoreError> {
        if !FEATURES.iter().any(|(name, _)| *name == feature) {
            return Err(StoreError::UnknownFeature(feature.to_owned()));
        }
        self.write(false, |tx| {
            require_app(tx, app)?;
            tx.set_feature(app, feature, on)?;
            full_app(tx, app)
        })
    }

    fn allow_destination(&self, app: &str, destination: &str) -> Result<String, StoreError> {
        let destination = check_destination(destination)?;
        self.write(false, |tx| {
            require_app(tx, app)?;
            tx.insert_destination(app, &destination)?;
            Ok(destination)
        })
    }

    fn deny_destination(&self, app: &str, destination: &str) -> Result<(), StoreError> {
        let destination = destination.trim().to_ascii_lowercase();
        self.write(false, |tx| {
            require_app(tx, app)?;
            if tx.delete_destination(app, &destination)? == 0 {
                return Err(StoreError::DestinationNotFound {
                    app: app.to_owned(),
                    destination,
                });
            }
            Ok(())
        })
    }

    fn destinations(&self, app: &str) -> Result<Vec<String>, StoreError> {
        self.read(|tx| {
            require_app(tx, app)?;
            tx.destinations(app)
        })
    }

    fn create_release(&self, app: &str, release: NewRelease) -> Result<Release, StoreError> {
        self.write(true, |tx| {
            require_app(tx, app)?;
            let base = next_release_base(tx, app)?;
            append_release(
                tx,
                app,
                release.slug.or(base.slug),
                release.config.unwrap_or(base.config),
                base.addons,
                release.description,
                release.pending,
            )
        })
    }

    fn config(&self, app: &str) -> Result<BTreeMap<String, String>, StoreError> {
        self.read(|tx| {
            require_app(tx, app)?;
            Ok(base_release(tx, app)?.config)
        })
    }

    fn set_config(
        &self,
        app: &str,
        changes: BTreeMap<String, Option<String>>,
        pending: bool,
    ) -> Result<Release, StoreError> {
        if changes.is_empty() {
            return Err(StoreError::EmptyConfigChange);
        }
        for (name, value) in &changes {
            check_config_name(name)?;
            if let Some(value) = value {
                check_config_value(name, value)?;
            }
        }
        let description = describe_config_change(&changes);
        self.write(true, |tx| {
            require_app(tx, app)?;
            let base = next_release_base(tx, app)?;
            let mut config = base.config;
            for (name, value) in changes {
                match value {
                    Some(value) => config.insert(name, value),
                    None => config.remove(&name),
                };
            }
            append_release(
                tx,
                app,
                base.slug,
                config,
                base.addons,
                description,
                pending,
            )
        })
    }

    fn rollback(
        &self,
        app: &str,
        version: Option<u64>,
        pending: bool,
    ) -> Result<Release, StoreError> {
        self.write(true, |tx| {
            require_app(tx, app)?;
            next_release_base(tx, app)?;
            let target = match version {
                Some(version) => {
                    let target = load_release(tx, app, version)?;
                    if target.status == ReleaseStatus::Failed {
                        return Err(StoreError::RollbackToFailed { version });
                    }
                    target
                }
                None => {
                    let current = current_release(tx, app)?.ok_or(StoreError::NoPreviousRelease)?;
                    tx.releases(app, Which::SucceededBefore(current.version), Some(1))?
                        .pop()
                        .ok_or(StoreError::NoPreviousRelease)?
                }
            };
            // Its add-ons must still exist: a destroyed one's credentials and data are gone.
            for addon in &target.addons {
                if tx.addon(app, addon)?.is_none() {
                    return Err(StoreError::RollbackToDestroyedAddon {
                        version: target.version,
                        addon: addon.clone(),
                    });
                }
            }
            let description = format!("Rollback to v{}", target.version);
            append_release(
                tx,
                app,
                target.slug,
                target.config,
                target.addons,
                description,
                pending,
            )
        })
    }

    fn record_release_result(
        &self,
        app: &str,
        version: u64,
        succeeded: bool,
        output: String,
    ) -> Result<Release, StoreError> {
        self.write(false, |tx| {
            require_app(tx, app)?;
            let release = load_release(tx, app, version)?;
            if release.status != ReleaseStatus::Pending {
                return Err(StoreError::ReleaseNotPending {
                    app: app.to_owned(),
                    version,
                    status: release.status,
                });
            }
            let status = if succeeded {
                ReleaseStatus::Succeeded
            } else {
                ReleaseStatus::Failed
            };
            tx.append_event(app, version, status, Some(&output))?;
            Ok(Release {
                status,
                output: Some(output),
                ..release
            })
        })
    }

    fn releases(&self, app: &str) -> Result<Vec<Release>, StoreError> {
        self.read(|tx| {
            require_app(tx, app)?;
            tx.releases(app, Which::All, None)
        })
    }

    fn release(&self, app: &str, version: u64) -> Result<Release, StoreError> {
        self.read(|tx| {
            require_app(tx, app)?;
            load_release(tx, app, version)
        })
    }

    fn current_release(&self, app: &str) -> Result<Option<Release>, StoreError> {
        self.read(|tx| {
            require_app(tx, app)?;
            current_release(tx, app)
        })
    }

    fn formation(&self, app: &str) -> Result<Formation, StoreError> {
        self.read(|tx| {
            require_app(tx, app)?;
            tx.formation(app)
        })
    }

    fn scale(
        &self,
        app: &str,
        changes: BTreeMap<String, ScaleChange>,
    ) -> Result<Formation, StoreError> {
        let mut checked = Vec::with_capacity(changes.len());
        for (process_type, change) in changes {
            if !crate::procfile::is_valid_type(&process_type) {
                return Err(StoreError::InvalidProcessType(process_type));
            }
            if let Some(quantity) = change.quantity.filter(|&q| q > MAX_QUANTITY) {
                return Err(StoreError::QuantityTooLarge {
                    process_type,
                    quantity,
                    limit: MAX_QUANTITY,
                });
            }
            let size = change
                .size
                .map(|size| {
                    size.parse::<DynoSize>()
                        .map(DynoSize::name)
                        .map_err(|_| StoreError::InvalidDynoSize(size))
                })
                .transpose()?;
            checked.push((process_type, change.quantity, size));
        }
        self.write(false, |tx| {
            require_app(tx, app)?;
            for (process_type, quantity, size) in &checked {
                tx.upsert_formation(app, process_type, *quantity, *size)?;
            }
            tx.formation(app)
        })
    }

    fn create_addon(
        &self,
        app: &str,
        addon: NewAddon,
        pending: bool,
    ) -> Result<(Addon, Release), StoreError> {
        check_addon_name(&addon.name)?;
        check_addon_fields(&addon.name, &addon.service, &addon.plan, &addon.hosts)?;
        for (name, value) in &addon.config {
            check_config_name(name)?;
            check_config_value(name, value)?;
        }
        self.write(false, |tx| {
            require_app(tx, app)?;
            if tx.addon(app, &addon.name)?.is_some() {
                return Err(StoreError::AddonExists {
                    app: app.to_owned(),
                    name: addon.name,
                });
            }
            let base = next_release_base(tx, app)?;
            let mut config = base.config;
            for (var, value) in &addon.config {
                if config.contains_key(var) {
                    return Err(StoreError::AddonConfigConflict {
                        addon: addon.name,
                        var: var.clone(),
                    });
                }
                config.insert(var.clone(), value.clone());
            }
            let mut addons = base.addons;
            // A rollback may have restored a list naming a since-detached add-on of the same name.
            if !addons.contains(&addon.name) {
                addons.push(addon.name.clone());
            }
            let description = format!("Attach {} ({}:{})", addon.name, addon.service, addon.plan);
            let addon = Addon {
                app: app.to_owned(),
                name: addon.name,
                service: addon.service,
                plan: addon.plan,
                config: addon.config,
                hosts: addon.hosts,
            };
            tx.insert_addon(&addon)?;
            let release = append_release(tx, app, base.slug, config, addons, description, pending)?;
            Ok((addon, release))
        })
    }

    fn destroy_addon(&self, app: &str, name: &str, pending: bool) -> Result<Release, StoreError> {
        self.write(false, |tx| {
            require_app(tx, app)?;
            let addon = tx
                .addon(app, name)?
                .ok_or_else(|| StoreError::AddonNotFound {
                    app: app.to_owned(),
                    name: name.to_owned(),
                })?;
            let base = next_release_base(tx, app)?;
            let mut config = base.config;
            for var in addon.config.keys() {
                config.remove(var);
            }
            let addons = base.addons.into_iter().filter(|a| a != name).collect();
            tx.delete_addon(app, name)?;
            let description = format!("Detach {name}");
            append_release(tx, app, base.slug, config, addons, description, pending)
        })
    }

    fn rotate_addon(
        &self,
        app: &str,
        name: &str,
        config: BTreeMap<String, String>,
        pending: bool,
    ) -> Result<(Addon, Release), StoreError> {
        for (var, value) in &config {
            check_config_name(var)?;
            check_config_value(var, value)?;
        }
        self.write(false, |tx| {
            require_app(tx, app)?;
            let mut addon = tx
                .addon(app, name)?
                .ok_or_else(|| StoreError::AddonNotFound {
                    app: app.to_owned(),
                    name: name.to_owned(),
                })?;
            if let Some(var) = config.keys().find(|var| !addon.config.contains_key(*var)) {
                return Err(StoreError::AddonRotationMismatch {
                    addon: name.to_owned(),
                    var: var.clone(),
                });
            }
            let base = next_release_base(tx, app)?;
            let mut vars = base.config;
            for (var, value) in &config {
                vars.insert(var.clone(), value.clone());
                addon.config.insert(var.clone(), value.clone());
            }
            tx.update_addon_config(&addon)?;
            let description = format!("Rotate {name} credentials");
            let release =
                append_release(tx, app, base.slug, vars, base.addons, description, pending)?;
            Ok((addon, release))
        })
    }

    fn addons(&self, app: &str) -> Result<Vec<Addon>, StoreError> {
        self.read(|tx| {
            require_app(tx, app)?;
            tx.addons(app)
        })
    }

    fn add_domain(&self, app: &str, hostname: &str) -> Result<Domain, StoreError> {
        let hostname = normalize_hostname(hostname)?;
        self.write(false, |tx| {
            require_app(tx, app)?;
            if let Some(owner) = tx.domain_owner(&hostname)? {
                return Err(StoreError::DomainExists {
                    hostname,
                    app: owner,
                });
            }
            let domain = Domain {
                app: app.to_owned(),
                hostname,
            };
            tx.insert_domain(&domain)?;
            Ok(domain)
        })
    }

    fn remove_domain(&self, app: &str, hostname: &str) -> Result<(), StoreError> {
        // A hostname that is not even valid cannot be attached: report it as not found, under the name given.
        let normalized = normalize_hostname(hostname).unwrap_or_else(|_| hostname.to_owned());
        self.write(false, |tx| {
            require_app(tx, app)?;
            if tx.delete_domain(app, &normalized)? == 0 {
                return Err(StoreError::DomainNotFound {
                    app: app.to_owned(),
                    hostname: normalized,
                });
            }
            Ok(())
        })
    }

    fn domains(&self, app: &str) -> Result<Vec<Domain>, StoreError> {
        self.read(|tx| {
            require_app(tx, app)?;
            tx.domains(app)
        })
    }

    fn add_drain(&self, app: &str, url: &str) -> Result<Drain, StoreError> {
        DrainUrl::parse(url).map_err(|e| StoreError::InvalidDrainUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let drain = Drain {
            app: app.to_owned(),
            id: new_uuid()?,
            url: url.to_owned(),
            token: format!("d.{}", new_uuid()?),
            created_at: unix_now(),
        };
        self.write(false, |tx| {
            require_app(tx, app)?;
            let drains = tx.drains(app)?;
            if drains.iter().any(|d| d.url == url) {
                return Err(StoreError::DrainExists {
                    app: app.to_owned(),
                    url: url.to_owned(),
                });
            }
            if drains.len() >= MAX_DRAINS_PER_APP {
                return Err(StoreError::TooManyDrains {
                    app: app.to_owned(),
                    limit: MAX_DRAINS_PER_APP,
                });
            }
            tx.insert_drain(&drain)?;
            Ok(drain)
        })
    }

    fn remove_drain(&self, app: &str, drain: &str) -> Result<Drain, StoreError> {
        self.write(false, |tx| {
            require_app(tx, app)?;
            let found = tx
                .drains(app)?
                .into_iter()
                .find(|d| d.id == drain || d.token == drain || d.url == drain)
                .ok_or_else(|| StoreError::DrainNotFound {
                    app: app.to_owned(),
                    drain: drain.to_owned(),
                })?;
            tx.delete_drain(&found.id)?;
            Ok(found)
        })
    }

    fn drains(&self, app: &str) -> Result<Vec<Drain>, StoreError> {
        self.read(|tx| {
            require_app(tx, app)?;
            tx.drains(app)
        })
    }
}
