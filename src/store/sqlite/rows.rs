//! The row-level queries of the [`Tx`] trait on an SQLite transaction.

#[allow(unused_imports)]
use super::*;

fn app_from_row(row: &Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        name: row.get(0)?,
        created_at: row.get(1)?,
        maintenance: row.get(2)?,
        sleep: row.get(3)?,
        features: Default::default(),
    })
}

fn release_from_row(row: &Row<'_>) -> rusqlite::Result<ReleaseRow> {
    Ok(ReleaseRow {
        app: row.get(0)?,
        version: row.get(1)?,
        slug: row.get(2)?,
        config: row.get(3)?,
        addons: row.get(4)?,
        description: row.get(5)?,
        created_at: row.get(6)?,
        status: row.get(7)?,
        output: row.get(8)?,
    })
}

type AddonRow = (String, String, String, String, String, String);

fn addon_from_row(row: &Row<'_>) -> rusqlite::Result<AddonRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

const ADDON_COLUMNS: &str = "app, name, service, plan, config, hosts";

impl Tx for Transaction<'_> {
    fn app(&mut self, name: &str) -> Result<Option<App>, StoreError> {
        Ok(self
            .prepare_cached(
                "SELECT name, created_at, maintenance, sleep FROM apps WHERE name = ?1",
            )?
            .query_row([name], app_from_row)
            .optional()?)
    }

    fn apps(&mut self) -> Result<Vec<App>, StoreError> {
        let mut stmt = self.prepare_cached(
            "SELECT name, created_at, maintenance, sleep FROM apps ORDER BY name",
        )?;
        let apps = stmt
            .query_map([], app_from_row)?
            .collect::<Result<_, _>>()?;
        Ok(apps)
    }

    fn insert_app(&mut self, app: &App) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO apps (name, created_at, maintenance, sleep) VALUES (?1, ?2, ?3, ?4)",
            params![app.name, app.created_at, app.maintenance, app.sleep],
        )?;
        Ok(())
    }

    fn delete_app(&mut self, name: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM apps WHERE name = ?1", [name])?;
        Ok(())
    }

    fn set_flag(&mut self, app: &str, flag: Flag, on: bool) -> Result<(), StoreError> {
        let sql = match flag {
            Flag::Maintenance => "UPDATE apps SET maintenance = ?2 WHERE name = ?1",
            Flag::Sleep => "UPDATE apps SET sleep = ?2 WHERE name = ?1",
        };
        self.execute(sql, params![app, on])?;
        Ok(())
    }

    fn features(&mut self, app: &str) -> Result<BTreeSet<String>, StoreError> {
        let mut stmt = self.prepare_cached("SELECT name FROM app_features WHERE app = ?1")?;
        let features = stmt
            .query_map([app], |row| row.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        Ok(features)
    }

    fn set_feature(&mut self, app: &str, feature: &str, on: bool) -> Result<(), StoreError> {
        let sql = if on {
            "INSERT OR IGNORE INTO app_features (app, name) VALUES (?1, ?2)"
        } else {
            "DELETE FROM app_features WHERE app = ?1 AND name = ?2"
        };
        self.execute(sql, params![app, feature])?;
        Ok(())
    }

    fn insert_destination(&mut self, app: &str, destination: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT OR IGNORE INTO app_network (app, destination) VALUES (?1, ?2)",
            params![app, destination],
        )?;
        Ok(())
    }

    fn delete_destination(&mut self, app: &str, destination: &str) -> Result<u64, StoreError> {
        let removed = self.execute(
            "DELETE FROM app_network WHERE app = ?1 AND destination = ?2",
            params![app, destination],
        )?;
        Ok(removed as u64)
    }

    fn destinations(&mut self, app: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.prepare_cached(
            "SELECT destination FROM app_network WHERE app = ?1 ORDER BY destination",
        )?;
        let all = stmt
            .query_map([app], |row| row.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        Ok(all)
    }

    fn releases(
        &mut self,
        app: &str,
        which: Which,
        limit: Option<u32>,
    ) -> Result<Vec<Release>, StoreError> {
        let (filter, version) = release_filter(which);
        let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        // Filters are constants, so each has one cached statement.
        let sql = format!(
            "SELECT {RELEASE_COLUMNS} FROM release_view WHERE app = ?1 {filter} ORDER BY version DESC{limit}"
        );
        let mut stmt = self.prepare_cached(&sql)?;
        let rows = match version {
            Some(version) => stmt
                .query_map(params![app, version], release_from_row)?
                .collect::<Result<Vec<_>, _>>()?,
            None => stmt
                .query_map(params![app], release_from_row)?
                .collect::<Result<Vec<_>, _>>()?,
        };
        rows.into_iter().map(ReleaseRow::decode).collect()
    }

    fn insert_release(&mut self, release: &Release) -> Result<(), StoreError> {
        self.prepare_cached(
            "INSERT INTO releases (app, version, slug, config, addons, description, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            release.app,
            version_param(release.version),
            release.slug,
            to_json(&release.config)?,
            to_json(&release.addons)?,
            release.description,
            release.created_at
        ])?;
        Ok(())
    }

    fn next_version(&mut self, app: &str) -> Result<u64, StoreError> {
        let version: i64 = self
            .prepare_cached("SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app = ?1")?
            .query_row([app], |row| row.get(0))?;
        u64::try_from(version)
            .map_err(|_| StoreError::Corrupt(format!("app {app} has bad versions")))
    }

    fn append_event(
        &mut self,
        app: &str,
        version: u64,
        status: ReleaseStatus,
        output: Option<&str>,
    ) -> Result<(), StoreError> {
        self.prepare_cached(
            "INSERT INTO release_events (app, version, seq, status, output, at)
             SELECT ?1, ?2, COALESCE(MAX(seq), 0) + 1, ?3, ?4, ?5 FROM release_events WHERE app = ?1 AND version = ?2",
        )?
        .execute(params![app, version_param(version), status.as_str(), output, unix_now()])?;
        Ok(())
    }

    fn formation(&mut self, app: &str) -> Result<Formation, StoreError> {
        let mut stmt = self
            .prepare_cached("SELECT process_type, quantity, size FROM formation WHERE app = ?1")?;
        let rows = stmt.query_map([app], |row| {
            Ok((
                row.get::<_, String>(0)?,
                FormationEntry {
                    quantity: row.get(1)?,
                    size: row.get(2)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<Formation, _>>()?)
    }

    fn upsert_formation(
        &mut self,
        app: &str,
        process_type: &str,
        quantity: Option<u32>,
        size: Option<&str>,
    ) -> Result<(), StoreError> {
        self.prepare_cached(
            "INSERT INTO formation (app, process_type, quantity, size) VALUES (?1, ?2, COALESCE(?3, 0), COALESCE(?4, ?5))
             ON CONFLICT (app, process_type) DO UPDATE
             SET quantity = COALESCE(?3, quantity), size = COALESCE(?4, size)",
        )?
        .execute(params![app, process_type, quantity, size, DynoSize::default().name()])?;
        Ok(())
    }

    fn addon(&mut self, app: &str, name: &str) -> Result<Option<Addon>, StoreError> {
        self.prepare_cached(&format!(
            "SELECT {ADDON_COLUMNS} FROM addons WHERE app = ?1 AND name = ?2"
        ))?
        .query_row(params![app, name], addon_from_row)
        .optional()?
        .map(decode_addon)
        .transpose()
    }

    fn addons(&mut self, app: &str) -> Result<Vec<Addon>, StoreError> {
        let mut stmt = self.prepare_cached(&format!(
            "SELECT {ADDON_COLUMNS} FROM addons WHERE app = ?1 ORDER BY name"
        ))?;
        let rows = stmt
            .query_map([app], addon_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(decode_addon).collect()
    }

    fn insert_addon(&mut self, addon: &Addon) -> Result<(), StoreError> {
        self.execute(
            &format!("INSERT INTO addons ({ADDON_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
            params![
                addon.app,
                addon.name,
                addon.service,
                addon.plan,
                to_json(&addon.config)?,
                to_json(&addon.hosts)?
            ],
        )?;
        Ok(())
    }

    fn delete_addon(&mut self, app: &str, name: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM addons WHERE app = ?1 AND name = ?2",
            params![app, name],
        )?;
        Ok(())
    }

    fn update_addon_config(&mut self, addon: &Addon) -> Result<(), StoreError> {
        self.execute(
            "UPDATE addons SET config = ?3 WHERE app = ?1 AND name = ?2",
            params![addon.app, addon.name, to_json(&addon.config)?],
        )?;
        Ok(())
    }

    fn domain_owner(&mut self, hostname: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .prepare_cached("SELECT app FROM domains WHERE hostname = ?1")?
            .query_row([hostname], |row| row.get(0))
            .optional()?)
    }

    fn insert_domain(&mut self, domain: &Domain) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO domains (hostname, app) VALUES (?1, ?2)",
            params![domain.hostname, domain.app],
        )?;
        Ok(())
    }

    fn delete_domain(&mut self, app: &str, hostname: &str) -> Result<u64, StoreError> {
        let removed = self.execute(
            "DELETE FROM domains WHERE hostname = ?1 AND app = ?2",
            params![hostname, app],
        )?;
        Ok(removed as u64)
    }

    fn domains(&mut self, app: &str) -> Result<Vec<Domain>, StoreError> {
        let mut stmt = self
            .prepare_cached("SELECT app, hostname FROM domains WHERE app = ?1 ORDER BY hostname")?;
        let domains = stmt
            .query_map([app], |row| {
                Ok(Domain {
                    app: row.get(0)?,
                    hostname: row.get(1)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(domains)
    }

    fn drains(&mut self, app: &str) -> Result<Vec<Drain>, StoreError> {
        let mut stmt = self.prepare_cached(
            "SELECT app, id, url, token, created_at FROM log_drains WHERE app = ?1 ORDER BY created_at, rowid",
        )?;
        let drains = stmt
            .query_map([app], |row| {
                Ok(Drain {
                    app: row.get(0)?,
                    id: row.get(1)?,
                    url: row.get(2)?,
                    token: row.get(3)?,
                    created_at: row.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(drains)
    }

    fn insert_drain(&mut self, drain: &Drain) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO log_drains (id, app, url, token, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                drain.id,
                drain.app,
                drain.url,
                drain.token,
                drain.created_at
            ],
        )?;
        Ok(())
    }

    fn delete_drain(&mut self, id: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM log_drains WHERE id = ?1", [id])?;
        Ok(())
    }
}
