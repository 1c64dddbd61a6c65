//! The [`Store`] operations on SQLite, each in one transaction.

#[allow(unused_imports)]
use super::*;

impl Store for SqliteStore {
    fn create_app(&self, name: &str) -> Result<App, StoreError> {
        check_app_name(name)?;
        self.write(|tx| {
            if require_app(tx, name).is_ok() {
                return Err(StoreError::AppExists(name.to_owned()));
            }
            let app = App {
                name: name.to_owned(),
                created_at: unix_now(),
                maintenance: false,
                sleep: false,
                features: Default::default(),
            };
            tx.execute(
                "INSERT INTO apps (name, created_at, maintenance) VALUES (?1, ?2, 0)",
                params![app.name, app.created_at],
            )?;
            insert_release(
                tx,
                name,
                None,
                BTreeMap::new(),
                Vec::new(),
                "Initial release".into(),
                false,
            )?;
            Ok(app)
        })
    }

    fn app(&self, name: &str) -> Result<App, StoreError> {
        self.read(|conn| full_app(conn, name))
    }

    fn apps(&self) -> Result<Vec<App>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, created_at, maintenance, sleep FROM apps ORDER BY name",
            )?;
            let apps: Vec<App> = stmt
                .query_map([], app_from_row)?
                .collect::<Result<_, _>>()?;
            apps.into_iter()
                .map(|app| with_features(conn, app))
                .collect()
        })
    }

    fn destroy_app(&self, name: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            require_app(tx, name)?;
            // Cascades to everything of the app; the ledger's triggers allow it because the app row goes first.
            tx.execute("DELETE FROM apps WHERE name = ?1", [name])?;
            Ok(())
        })
    }

    fn set_maintenance(&self, app: &str, on: bool) -> Result<App, StoreError> {
        self.write(|tx| {
            let mut found = full_app(tx, app)?;
            tx.execute(
                "UPDATE apps SET maintenance = ?2 WHERE name = ?1",
                params![app, on],
            )?;
            found.maintenance = on;
            Ok(found)
        })
    }

    fn set_feature(&self, app: &str, feature: &str, on: bool) -> Result<App, StoreError> {
        if !crate::store::FEATURES
            .iter()
            .any(|(name, _)| *name == feature)
        {
            return Err(StoreError::UnknownFeature(feature.to_owned()));
        }
        self.write(|tx| {
            require_app(tx, app)?;
            if on {
                tx.execute(
                    "INSERT OR IGNORE INTO app_features (app, name) VALUES (?1, ?2)",
                    params![app, feature],
                )?;
            } else {
                tx.execute(
                    "DELETE FROM app_features WHERE app = ?1 AND name = ?2",
                    params![app, feature],
                )?;
            }
            full_app(tx, app)
        })
    }

    fn allow_destination(&self, app: &str, destination: &str) -> Result<String, StoreError> {
        let destination = crate::store::validate::check_destination(destination)?;
        self.write(|tx| {
            require_app(tx, app)?;
            tx.execute(
                "INSERT OR IGNORE INTO app_network (app, destination) VALUES (?1, ?2)",
                params![app, destination],
            )?;
            Ok(destination)
        })
    }

    fn deny_destination(&self, app: &str, destination: &str) -> Result<(), StoreError> {
        let destination = destination.trim().to_ascii_lowercase();
        self.write(|tx| {
            require_app(tx, app)?;
            let removed = tx.execute(
                "DELETE FROM app_network WHERE app = ?1 AND destination = ?2",
                params![app, destination],
            )?;
            if removed == 0 {
                return Err(StoreError::DestinationNotFound {
                    app: app.to_owned(),
                    destination,
                });
            }
            Ok(())
        })
    }

    fn destinations(&self, app: &str) -> Result<Vec<String>, StoreError> {
        self.read(|conn| {
            require_app(conn, app)?;
            let mut stmt = conn.prepare_cached(
                "SELECT destination FROM app_network WHERE app = ?1 ORDER BY destination",
            )?;
            let all = stmt
                .query_map([app], |row| row.get::<_, String>(0))?
                .collect::<Result<_, _>>()?;
            Ok(all)
        })
    }

    fn set_sleep(&self, app: &str, on: bool) -> Result<App, StoreError> {
        self.write(|tx| {
            let mut found = full_app(tx, app)?;
            tx.execute(
                "UPDATE apps SET sleep = ?2 WHERE name = ?1",
                params![app, on],
            )?;
            found.sleep = on;
            Ok(found)
        })
    }

    fn create_release(&self, app: &str, release: NewRelease) -> Result<Release, StoreError> {
        self.write_release(|tx| {
            require_app(tx, app)?;
            let base = next_release_base(tx, app)?;
            insert_release(
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
        self.read(|conn| {
            require_app(conn, app)?;
            Ok(base_release(conn, app)?.config)
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
        self.write_release(|tx| {
            require_app(tx, app)?;
            let base = next_release_base(tx, app)?;
            let mut config = base.config;
            for (name, value) in changes {
                match value {
                    Some(value) => config.insert(name, value),
                    None => config.remove(&name),
                };
            }
            insert_release(
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
        self.write_release(|tx| {
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
                    query_releases(
                        tx,
                        app,
                        "AND status = 'succeeded' AND version < ?2",
                        Some(1),
                        Some(version_param(current.version)),
                    )?
                    .pop()
                    .ok_or(StoreError::NoPreviousRelease)?
                }
            };
            let description = format!("Rollback to v{}", target.version);
            insert_release(
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
        self.write(|tx| {
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
            append_event(tx, app, version, status, Some(&output))?;
            Ok(Release {
                status,
                output: Some(output),
                ..release
            })
        })
    }

    fn releases(&self, app: &str) -> Result<Vec<Release>, StoreError> {
        self.read(|conn| {
            require_app(conn, app)?;
            query_releases(conn, app, "", None, None)
        })
    }

    fn release(&self, app: &str, version: u64) -> Result<Release, StoreError> {
        self.read(|conn| {
            require_app(conn, app)?;
            load_release(conn, app, version)
        })
    }

    fn current_release(&self, app: &str) -> Result<Option<Release>, StoreError> {
        self.read(|conn| {
            require_app(conn, app)?;
            current_release(conn, app)
        })
    }

    fn formation(&self, app: &str) -> Result<Formation, StoreError> {
        self.read(|conn| {
            require_app(conn, app)?;
            load_formation(conn, app)
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
        self.write(|tx| {
            require_app(tx, app)?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO formation (app, process_type, quantity, size) VALUES (?1, ?2, COALESCE(?3, 0), COALESCE(?4, ?5))
                 ON CONFLICT (app, process_type) DO UPDATE
                 SET quantity = COALESCE(?3, quantity), size = COALESCE(?4, size)",
            )?;
            for (process_type, quantity, size) in &checked {
                upsert.execute(params![app, process_type, quantity, size, DynoSize::default().name()])?;
            }
            load_formation(tx, app)
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
        self.write(|tx| {
            require_app(tx, app)?;
            let exists = tx
                .prepare_cached("SELECT 1 FROM addons WHERE app = ?1 AND name = ?2")?
                .exists(params![app, addon.name])?;
            if exists {
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
            tx.execute(
                "INSERT INTO addons (app, name, service, plan, config, hosts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    app,
                    addon.name,
                    addon.service,
                    addon.plan,
                    to_json(&addon.config)?,
                    to_json(&addon.hosts)?
                ],
            )?;
            let description = format!("Attach {} ({}:{})", addon.name, addon.service, addon.plan);
            let release = insert_release(tx, app, base.slug, config, addons, description, pending)?;
            let addon = Addon {
                app: app.to_owned(),
                name: addon.name,
                service: addon.service,
                plan: addon.plan,
                config: addon.config,
                hosts: addon.hosts,
            };
            Ok((addon, release))
        })
    }

    fn destroy_addon(&self, app: &str, name: &str, pending: bool) -> Result<Release, StoreError> {
        self.write(|tx| {
            require_app(tx, app)?;
            let addon = tx
                .prepare_cached("SELECT app, name, service, plan, config, hosts FROM addons WHERE app = ?1 AND name = ?2")?
                .query_row(params![app, name], addon_from_row)
                .optional()?
                .ok_or_else(|| StoreError::AddonNotFound {
                    app: app.to_owned(),
                    name: name.to_owned(),
                })
                .and_then(decode_addon)?;
            let base = next_release_base(tx, app)?;
            let mut config = base.config;
            for var in addon.config.keys() {
                config.remove(var);
            }
            let addons = base.addons.into_iter().filter(|a| a != name).collect();
            tx.execute("DELETE FROM addons WHERE app = ?1 AND name = ?2", params![app, name])?;
            insert_release(tx, app, base.slug, config, addons, format!("Detach {name}"), pending)
        })
    }

    fn addons(&self, app: &str) -> Result<Vec<Addon>, StoreError> {
        self.read(|conn| {
            require_app(conn, app)?;
            let mut stmt = conn.prepare_cached(
                "SELECT app, name, service, plan, config, hosts FROM addons WHERE app = ?1 ORDER BY name",
            )?;
            let rows = stmt.query_map([app], addon_from_row)?.collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(decode_addon).collect()
        })
    }

    fn add_domain(&self, app: &str, hostname: &str) -> Result<Domain, StoreError> {
        let hostname = normalize_hostname(hostname)?;
        self.write(|tx| {
            require_app(tx, app)?;
            let owner: Option<String> = tx
                .prepare_cached("SELECT app FROM domains WHERE hostname = ?1")?
                .query_row([&hostname], |row| row.get(0))
                .optional()?;
            if let Some(owner) = owner {
                return Err(StoreError::DomainExists {
                    hostname,
                    app: owner,
                });
            }
            tx.execute(
                "INSERT INTO domains (hostname, app) VALUES (?1, ?2)",
                params![hostname, app],
            )?;
            Ok(Domain {
                app: app.to_owned(),
                hostname,
            })
        })
    }

    fn remove_domain(&self, app: &str, hostname: &str) -> Result<(), StoreError> {
        // A hostname that is not even valid cannot be attached: report it as not found, under the name given.
        let normalized = normalize_hostname(hostname).unwrap_or_else(|_| hostname.to_owned());
        self.write(|tx| {
            require_app(tx, app)?;
            let removed = tx.execute(
                "DELETE FROM domains WHERE hostname = ?1 AND app = ?2",
                params![normalized, app],
            )?;
            if removed == 0 {
                return Err(StoreError::DomainNotFound {
                    app: app.to_owned(),
                    hostname: normalized,
                });
            }
            Ok(())
        })
    }

    fn domains(&self, app: &str) -> Result<Vec<Domain>, StoreError> {
        self.read(|conn| {
            require_app(conn, app)?;
            let mut stmt = conn.prepare_cached(
                "SELECT app, hostname FROM domains WHERE app = ?1 ORDER BY hostname",
            )?;
            let domains = stmt
                .query_map([app], |row| {
                    Ok(Domain {
                        app: row.get(0)?,
                        hostname: row.get(1)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(domains)
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
        self.write(|tx| {
            require_app(tx, app)?;
            let drains = load_drains(tx, app)?;
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
            tx.execute(
                "INSERT INTO log_drains (id, app, url, token, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![drain.id, app, drain.url, drain.token, drain.created_at],
            )?;
            Ok(drain)
        })
    }

    fn remove_drain(&self, app: &str, drain: &str) -> Result<Drain, StoreError> {
        self.write(|tx| {
            require_app(tx, app)?;
            let found = load_drains(tx, app)?
                .into_iter()
                .find(|d| d.id == drain || d.token == drain || d.url == drain)
                .ok_or_else(|| StoreError::DrainNotFound {
                    app: app.to_owned(),
                    drain: drain.to_owned(),
                })?;
            tx.execute("DELETE FROM log_drains WHERE id = ?1", [&found.id])?;
            Ok(found)
        })
    }

    fn drains(&self, app: &str) -> Result<Vec<Drain>, StoreError> {
        self.read(|conn| {
            require_app(conn, app)?;
            load_drains(conn, app)
        })
    }
}
