//! The row-level queries of the [`Tx`] trait on a PostgreSQL transaction.

use std::collections::BTreeSet;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};

use super::{Statements, WRITE_LOCK};
use crate::runtime::DynoSize;
use crate::store::backend::{
    Flag, ReleaseRow, Tx, Which, decode_addon, release_filter, to_json, version_param,
};
use crate::store::{
    Addon, App, Domain, Drain, Formation, FormationEntry, Release, ReleaseStatus, StoreError,
    unix_now,
};

/// One transaction; each query waits on the driver's future, on a statement its connection prepared once.
pub(super) struct PgTx<'a> {
    tx: Transaction<'a>,
    statements: &'a Statements,
}

type Params<'p> = [&'p (dyn ToSql + Sync)];

impl<'a> PgTx<'a> {
    pub(super) fn new(tx: Transaction<'a>, statements: &'a Statements) -> PgTx<'a> {
        PgTx { tx, statements }
    }

    /// `run` on `sql` prepared; a failure forgets the prepared statements (the schema may have changed).
    fn with<T>(
        &self,
        sql: &str,
        run: impl FnOnce(&tokio_postgres::Statement) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        let statement = self.statements.get(&self.tx, sql)?;
        run(&statement).map_err(|e| {
            self.statements.clear();
            StoreError::from(e)
        })
    }

    /// Waits for every other writer, on any host, to finish (the lock goes with the transaction).
    pub(super) fn lock_writers(&mut self) -> Result<(), StoreError> {
        self.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .map(drop)
    }

    /// Tells the other hosts that the ledger changed (in the same transaction as the change): the generation they
    /// compare each round, and a notification that wakes their rounds at once (`listen.rs`; delivered when the
    /// transaction commits).
    pub(super) fn bump_generation(&mut self) -> Result<(), StoreError> {
        self.execute("UPDATE ledger_generation SET n = n + 1", &[])?;
        self.execute(super::NOTIFY_CHANGES, &[]).map(drop)
    }

    pub(super) fn commit(self) -> Result<(), StoreError> {
        Ok(pollster::block_on(self.tx.commit())?)
    }

    fn query(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
        self.with(sql, |s| pollster::block_on(self.tx.query(s, params)))
    }

    fn query_opt(&self, sql: &str, params: &Params<'_>) -> Result<Option<Row>, StoreError> {
        self.with(sql, |s| pollster::block_on(self.tx.query_opt(s, params)))
    }

    fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
        self.with(sql, |s| pollster::block_on(self.tx.execute(s, params)))
    }
}

fn app_from_row(row: &Row) -> Result<App, StoreError> {
    Ok(App {
        name: row.try_get(0)?,
        created_at: row.try_get(1)?,
        maintenance: row.try_get(2)?,
        sleep: row.try_get(3)?,
        features: Default::default(),
    })
}

fn addon_from_row(row: &Row) -> Result<Addon, StoreError> {
    decode_addon((
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
    ))
}

fn strings(rows: Vec<Row>) -> Result<Vec<String>, StoreError> {
    rows.iter()
        .map(|row| Ok(row.try_get::<_, String>(0)?))
        .collect()
}

const APP_COLUMNS: &str = "name, created_at, maintenance, sleep";
const ADDON_COLUMNS: &str = "app, name, service, plan, config, hosts";

impl Tx for PgTx<'_> {
    fn app(&mut self, name: &str) -> Result<Option<App>, StoreError> {
        self.query_opt(
            &format!("SELECT {APP_COLUMNS} FROM apps WHERE name = $1"),
            &[&name],
        )?
        .as_ref()
        .map(app_from_row)
        .transpose()
    }

    fn apps(&mut self) -> Result<Vec<App>, StoreError> {
        self.query(
            &format!("SELECT {APP_COLUMNS} FROM apps ORDER BY name COLLATE \"C\""),
            &[],
        )?
        .iter()
        .map(app_from_row)
        .collect()
    }

    fn insert_app(&mut self, app: &App) -> Result<(), StoreError> {
        self.execute(
            &format!("INSERT INTO apps ({APP_COLUMNS}) VALUES ($1, $2, $3, $4)"),
            &[&app.name, &app.created_at, &app.maintenance, &app.sleep],
        )
        .map(drop)
    }

    fn delete_app(&mut self, name: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM apps WHERE name = $1", &[&name])
            .map(drop)
    }

    fn set_flag(&mut self, app: &str, flag: Flag, on: bool) -> Result<(), StoreError> {
        let sql = match flag {
            Flag::Maintenance => "UPDATE apps SET maintenance = $2 WHERE name = $1",
            Flag::Sleep => "UPDATE apps SET sleep = $2 WHERE name = $1",
        };
        self.execute(sql, &[&app, &on]).map(drop)
    }

    fn features(&mut self, app: &str) -> Result<BTreeSet<String>, StoreError> {
        let rows = self.query("SELECT name FROM app_features WHERE app = $1", &[&app])?;
        Ok(strings(rows)?.into_iter().collect())
    }

    fn set_feature(&mut self, app: &str, feature: &str, on: bool) -> Result<(), StoreError> {
        let sql = if on {
            "INSERT INTO app_features (app, name) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM app_features WHERE app = $1 AND name = $2"
        };
        self.execute(sql, &[&app, &feature]).map(drop)
    }

    fn insert_destination(&mut self, app: &str, destination: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO app_network (app, destination) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&app, &destination],
        )
        .map(drop)
    }

    fn delete_destination(&mut self, app: &str, destination: &str) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM app_network WHERE app = $1 AND destination = $2",
            &[&app, &destination],
        )
    }

    fn destinations(&mut self, app: &str) -> Result<Vec<String>, StoreError> {
        strings(self.query(
            "SELECT destination FROM app_network WHERE app = $1 ORDER BY destination COLLATE \"C\"",
            &[&app],
        )?)
    }

    fn releases(
        &mut self,
        app: &str,
        which: Which,
        limit: Option<u32>,
    ) -> Result<Vec<Release>, StoreError> {
        let (filter, version) = release_filter(which);
        let filter = filter.replace("?2", "$2::BIGINT");
        let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        let sql = format!(
            "SELECT app, version, slug, config, addons, description, created_at, status, output
             FROM release_view WHERE app = $1 {filter} ORDER BY version DESC{limit}"
        );
        let rows = match &version {
            Some(version) => self.query(&sql, &[&app, version])?,
            None => self.query(&sql, &[&app])?,
        };
        rows.iter()
            .map(|row| {
                ReleaseRow {
                    app: row.try_get(0)?,
                    version: row.try_get(1)?,
                    slug: row.try_get(2)?,
                    config: row.try_get(3)?,
                    addons: row.try_get(4)?,
                    description: row.try_get(5)?,
                    created_at: row.try_get(6)?,
                    status: row.try_get(7)?,
                    output: row.try_get(8)?,
                }
                .decode()
            })
            .collect()
    }

    fn insert_release(&mut self, release: &Release) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO releases (app, version, slug, config, addons, description, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &release.app,
                &version_param(release.version),
                &release.slug,
                &to_json(&release.config)?,
                &to_json(&release.addons)?,
                &release.description,
                &release.created_at,
            ],
        )
        .map(drop)
    }

    fn next_version(&mut self, app: &str) -> Result<u64, StoreError> {
        let row = self.query(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app = $1",
            &[&app],
        )?;
        let version: i64 = row
            .first()
            .ok_or_else(|| StoreError::Corrupt("no row from MAX(version)".into()))?
            .try_get(0)?;
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
        self.execute(
            "INSERT INTO release_events (app, version, seq, status, output, at)
             SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, $5
             FROM release_events WHERE app = $1 AND version = $2",
            &[
                &app,
                &version_param(version),
                &status.as_str(),
                &output,
                &unix_now(),
            ],
        )
        .map(drop)
    }

    fn formation(&mut self, app: &str) -> Result<Formation, StoreError> {
        let rows = self.query(
            "SELECT process_type, quantity, size FROM formation WHERE app = $1",
            &[&app],
        )?;
        rows.iter()
            .map(|row| {
                let quantity: i64 = row.try_get(1)?;
                Ok((
                    row.try_get::<_, String>(0)?,
                    FormationEntry {
                        quantity: u32::try_from(quantity).map_err(|_| {
                            StoreError::Corrupt(format!("{app} has a quantity of {quantity}"))
                        })?,
                        size: row.try_get(2)?,
                    },
                ))
            })
            .collect()
    }

    fn upsert_formation(
        &mut self,
        app: &str,
        process_type: &str,
        quantity: Option<u32>,
        size: Option<&str>,
    ) -> Result<(), StoreError> {
        let quantity = quantity.map(i64::from);
        self.execute(
            "INSERT INTO formation (app, process_type, quantity, size)
             VALUES ($1, $2, COALESCE($3::BIGINT, 0), COALESCE($4::TEXT, $5::TEXT))
             ON CONFLICT (app, process_type) DO UPDATE
             SET quantity = COALESCE($3::BIGINT, formation.quantity), size = COALESCE($4::TEXT, formation.size)",
            &[&app, &process_type, &quantity, &size, &DynoSize::default().name()],
        )
        .map(drop)
    }

    fn addon(&mut self, app: &str, name: &str) -> Result<Option<Addon>, StoreError> {
        self.query_opt(
            &format!("SELECT {ADDON_COLUMNS} FROM addons WHERE app = $1 AND name = $2"),
            &[&app, &name],
        )?
        .as_ref()
        .map(addon_from_row)
        .transpose()
    }

    fn addons(&mut self, app: &str) -> Result<Vec<Addon>, StoreError> {
        self.query(
            &format!(
                "SELECT {ADDON_COLUMNS} FROM addons WHERE app = $1 ORDER BY name COLLATE \"C\""
            ),
            &[&app],
        )?
        .iter()
        .map(addon_from_row)
        .collect()
    }

    fn insert_addon(&mut self, addon: &Addon) -> Result<(), StoreError> {
        self.execute(
            &format!("INSERT INTO addons ({ADDON_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[
                &addon.app,
                &addon.name,
                &addon.service,
                &addon.plan,
                &to_json(&addon.config)?,
                &to_json(&addon.hosts)?,
            ],
        )
        .map(drop)
    }

    fn delete_addon(&mut self, app: &str, name: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM addons WHERE app = $1 AND name = $2",
            &[&app, &name],
        )
        .map(drop)
    }

    fn update_addon_config(&mut self, addon: &Addon) -> Result<(), StoreError> {
        self.execute(
            "UPDATE addons SET config = $3 WHERE app = $1 AND name = $2",
            &[&addon.app, &addon.name, &to_json(&addon.config)?],
        )
        .map(drop)
    }

    fn domain_owner(&mut self, hostname: &str) -> Result<Option<String>, StoreError> {
        self.query_opt("SELECT app FROM domains WHERE hostname = $1", &[&hostname])?
            .map(|row| Ok(row.try_get(0)?))
            .transpose()
    }

    fn insert_domain(&mut self, domain: &Domain) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO domains (hostname, app) VALUES ($1, $2)",
            &[&domain.hostname, &domain.app],
        )
        .map(drop)
    }

    fn delete_domain(&mut self, app: &str, hostname: &str) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM domains WHERE hostname = $1 AND app = $2",
            &[&hostname, &app],
        )
    }

    fn domains(&mut self, app: &str) -> Result<Vec<Domain>, StoreError> {
        self.query(
            "SELECT app, hostname FROM domains WHERE app = $1 ORDER BY hostname COLLATE \"C\"",
            &[&app],
        )?
        .iter()
        .map(|row| {
            Ok(Domain {
                app: row.try_get(0)?,
                hostname: row.try_get(1)?,
            })
        })
        .collect()
    }

    fn drains(&mut self, app: &str) -> Result<Vec<Drain>, StoreError> {
        self.query(
            "SELECT app, id, url, token, created_at FROM log_drains WHERE app = $1 ORDER BY created_at, position",
            &[&app],
        )?
        .iter()
        .map(|row| {
            Ok(Drain {
                app: row.try_get(0)?,
                id: row.try_get(1)?,
                url: row.try_get(2)?,
                token: row.try_get(3)?,
                created_at: row.try_get(4)?,
            })
        })
        .collect()
    }

    fn insert_drain(&mut self, drain: &Drain) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO log_drains (id, app, url, token, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[
                &drain.id,
                &drain.app,
                &drain.url,
                &drain.token,
                &drain.created_at,
            ],
        )
        .map(drop)
    }

    fn delete_drain(&mut self, id: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM log_drains WHERE id = $1", &[&id])
            .map(drop)
    }
}
