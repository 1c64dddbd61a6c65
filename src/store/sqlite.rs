//! The SQLite backend of the [`Store`].
//!
//! One connection behind a mutex: SQLite serializes writers anyway, and one connection keeps every read and write
//! of an operation on one consistent snapshot. Every write runs in an IMMEDIATE transaction, which takes the
//! database's write lock up front: two writers (threads here, or another process on the same file) queue on the
//! busy timeout instead of failing halfway, and version numbers are allocated inside the transaction that uses
//! them, so they never collide and never leave gaps.
//!
//! The ledger rules are enforced by the schema itself (triggers), not only by this code: see [`MIGRATIONS`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::validate::{
    MAX_QUANTITY, check_addon_fields, check_addon_name, check_app_name, check_config,
    check_config_name, check_config_value, describe_config_change, normalize_hostname,
};
use super::{
    Addon, App, Domain, Drain, FAILPOINT_MIGRATION_BEFORE_COMMIT, FAILPOINT_RELEASE_AFTER_COMMIT,
    FAILPOINT_RELEASE_BEFORE_COMMIT, Formation, FormationEntry, NewAddon, NewRelease, Release,
    ReleaseStatus, ScaleChange, Store, StoreError, failpoint, unix_now,
};
use crate::logplex::drain::{DrainUrl, MAX_DRAINS_PER_APP};
use crate::runtime::DynoSize;

/// The schema, one migration per version: `MIGRATIONS[i]` takes a database from version `i` to `i + 1`
/// (`PRAGMA user_version`). Never edit a migration that has shipped; append a new one.
const MIGRATIONS: &[&str] = &[
    // v1
    r#"
    CREATE TABLE apps (
        name        TEXT NOT NULL PRIMARY KEY,
        created_at  INTEGER NOT NULL,
        maintenance INTEGER NOT NULL DEFAULT 0 CHECK (maintenance IN (0, 1))
    ) STRICT;

    -- Releases, formation and the rest refer to apps by name.
    CREATE TRIGGER apps_no_rename BEFORE UPDATE OF name ON apps
    BEGIN
        SELECT RAISE(ABORT, 'an app cannot be renamed');
    END;

    -- The release ledger: append-only. `config` is a JSON object (the full snapshot), `addons` a JSON array of names.
    CREATE TABLE releases (
        app         TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
        version     INTEGER NOT NULL CHECK (version >= 1),
        slug        TEXT,
        config      TEXT NOT NULL CHECK (json_valid(config) AND json_type(config) = 'object'),
        addons      TEXT NOT NULL CHECK (json_valid(addons) AND json_type(addons) = 'array'),
        description TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (app, version)
    ) STRICT;

    -- Versions are contiguous. This also refuses `INSERT OR REPLACE` over an existing release, whose implicit
    -- delete would not fire the delete trigger below.
    CREATE TRIGGER releases_append_only_insert BEFORE INSERT ON releases
    WHEN NEW.version IS NOT (SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app = NEW.app)
    BEGIN
        SELECT RAISE(ABORT, 'releases are append-only: a new release must take the next version');
    END;

    CREATE TRIGGER releases_append_only_update BEFORE UPDATE ON releases
    BEGIN
        SELECT RAISE(ABORT, 'releases are append-only: a release cannot be changed; create a new one');
    END;

    -- Releases go only with their app: destroying the app deletes the app row first and the cascade then finds
    -- it gone.
    CREATE TRIGGER releases_append_only_delete BEFORE DELETE ON releases
    WHEN EXISTS (SELECT 1 FROM apps WHERE name = OLD.app)
    BEGIN
        SELECT RAISE(ABORT, 'releases are append-only: a release is removed only with its app');
    END;

    -- What happened to a release after it was created, append-only too. seq counts 1, 2, ... per release.
    CREATE TABLE release_events (
        app     TEXT NOT NULL,
        version INTEGER NOT NULL,
        seq     INTEGER NOT NULL CHECK (seq >= 1),
        status  TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        output  TEXT,
        at      INTEGER NOT NULL,
        PRIMARY KEY (app, version, seq),
        FOREIGN KEY (app, version) REFERENCES releases (app, version) ON DELETE CASCADE
    ) STRICT;

    CREATE TRIGGER release_events_append_only_insert BEFORE INSERT ON release_events
    WHEN NEW.seq IS NOT (
        SELECT COALESCE(MAX(seq), 0) + 1 FROM release_events WHERE app = NEW.app AND version = NEW.version
    )
    BEGIN
        SELECT RAISE(ABORT, 'release events are append-only: a new event must take the next seq');
    END;

    -- Succeeded and failed are final.
    CREATE TRIGGER release_events_final BEFORE INSERT ON release_events
    WHEN EXISTS (
        SELECT 1 FROM release_events WHERE app = NEW.app AND version = NEW.version AND status <> 'pending'
    )
    BEGIN
        SELECT RAISE(ABORT, 'this release already has its result');
    END;

    CREATE TRIGGER release_events_append_only_update BEFORE UPDATE ON release_events
    BEGIN
        SELECT RAISE(ABORT, 'release events are append-only: an event cannot be changed');
    END;

    CREATE TRIGGER release_events_append_only_delete BEFORE DELETE ON release_events
    WHEN EXISTS (SELECT 1 FROM releases WHERE app = OLD.app AND version = OLD.version)
    BEGIN
        SELECT RAISE(ABORT, 'release events are append-only: an event is removed only with its app');
    END;

    -- Releases with their derived status (of the latest event) and output (of the latest event that has one).
    CREATE VIEW release_view AS
    SELECT r.app, r.version, r.slug, r.config, r.addons, r.description, r.created_at,
        (SELECT e.status FROM release_events e
            WHERE e.app = r.app AND e.version = r.version ORDER BY e.seq DESC LIMIT 1) AS status,
        (SELECT e.output FROM release_events e
            WHERE e.app = r.app AND e.version = r.version AND e.output IS NOT NULL
            ORDER BY e.seq DESC LIMIT 1) AS output
    FROM releases r;

    -- Attached add-ons: the live set (a release's `addons` column records the set at that release).
    CREATE TABLE addons (
        app     TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
        name    TEXT NOT NULL,
        service TEXT NOT NULL,
        plan    TEXT NOT NULL,
        config  TEXT NOT NULL CHECK (json_valid(config) AND json_type(config) = 'object'),
        hosts   TEXT NOT NULL CHECK (json_valid(hosts) AND json_type(hosts) = 'array'),
        PRIMARY KEY (app, name)
    ) STRICT;

    CREATE TABLE formation (
        app          TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
        process_type TEXT NOT NULL,
        quantity     INTEGER NOT NULL CHECK (quantity >= 0),
        size         TEXT NOT NULL,
        PRIMARY KEY (app, process_type)
    ) STRICT;

    -- A hostname routes to one app at most.
    CREATE TABLE domains (
        hostname TEXT NOT NULL PRIMARY KEY,
        app      TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE
    ) STRICT;
    CREATE INDEX domains_by_app ON domains (app);
    "#,
    // v2
    r#"
    -- Log drains: no release records them (as on Heroku), so they are a live set like domains.
    CREATE TABLE log_drains (
        id         TEXT NOT NULL PRIMARY KEY,
        app        TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
        url        TEXT NOT NULL,
        token      TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        UNIQUE (app, url)
    ) STRICT;
    "#,
    // v3
    r#"
    -- Sleeping apps: web dynos go idle without requests and wake on the next one.
    ALTER TABLE apps ADD COLUMN sleep INTEGER NOT NULL DEFAULT 0 CHECK (sleep IN (0, 1));
    "#,
    // v4
    r#"
    -- App features (`features:enable`): a live set like domains, no release.
    CREATE TABLE app_features (
        app  TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
        name TEXT NOT NULL,
        PRIMARY KEY (app, name)
    ) STRICT;
    "#,
    // v5
    r#"
    -- Network destinations an app's dynos may reach (`network:allow`): `host` or `host:port`.
    CREATE TABLE app_network (
        app         TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
        destination TEXT NOT NULL,
        PRIMARY KEY (app, destination)
    ) STRICT;
    "#,
];

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Marks the file as ours (`PRAGMA application_id`, "wdno"), so a stray SQLite file is never mistaken for a store.
const APPLICATION_ID: i32 = 0x7764_6e6f;

/// How long a writer waits for another connection's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const RELEASE_COLUMNS: &str =
    "app, version, slug, config, addons, description, created_at, status, output";

/// The state store in one SQLite file.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file (not its directory) and migrating the schema as needed.
    ///
    /// Refuses a database written by a newer wasmdyno ([`StoreError::SchemaTooNew`]) and an SQLite file that is
    /// not a store ([`StoreError::ForeignDatabase`]). Several stores (in this process or others) may be open on
    /// one file at once.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // The busy timeout first, so that every step below (even switching to WAL) waits for other connections.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // WAL: readers never block the writer and a crash never leaves a half-written transaction.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "{} cannot use write-ahead logging (journal mode is {mode})",
                path.display()
            )));
        }
        // FULL, not NORMAL: with NORMAL in WAL mode a commit survives a crash of the process but not of the machine.
        // Writes here are rare (a release, a config change) and an acknowledged release must stay, so an fsync per
        // commit is worth its cost.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        // Deleting an app cascades to all of it.
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_err)?;
        let fk: bool = conn.pragma_query_value(None, "foreign_keys", |row| row.get(0))?;
        if !fk {
            return Err(StoreError::Corrupt(
                "this SQLite build has no foreign key support".into(),
            ));
        }
        migrate(&mut conn, path)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    /// The database file.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held left no transaction open (a dropped `Transaction` rolls back), so the
        // connection is still good.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on one snapshot of the database, so its queries agree with each other even while another
    /// connection writes.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in an IMMEDIATE transaction and commits if it succeeds; an error rolls everything back.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_with_failpoints(false, f)
    }

    /// [`write`](Self::write) for the operations whose commit crash tests target, with the release failpoints
    /// around the commit.
    fn write_release<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_with_failpoints(true, f)
    }

    fn write_with_failpoints<T>(
        &self,
        failpoints: bool,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        if failpoints {
            failpoint(FAILPOINT_RELEASE_BEFORE_COMMIT);
        }
        tx.commit()?;
        if failpoints {
            failpoint(FAILPOINT_RELEASE_AFTER_COMMIT);
        }
        Ok(out)
    }
}

/// Brings the schema up to [`SCHEMA_VERSION`] in one transaction, or refuses a database it does not understand.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    // IMMEDIATE: two processes opening a new store at once must not both migrate it; the second waits, then finds
    // the work done.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: u32 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let application_id: i32 = tx.pragma_query_value(None, "application_id", |row| row.get(0))?;
    let foreign = || StoreError::ForeignDatabase {
        path: path.to_owned(),
    };
    if version == 0 {
        let tables: i64 =
            tx.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |row| row.get(0))?;
        if tables > 0 || application_id != 0 {
            return Err(foreign());
        }
    } else if application_id != APPLICATION_ID {
        return Err(foreign());
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    for migration in &MIGRATIONS[version as usize..] {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    failpoint(FAILPOINT_MIGRATION_BEFORE_COMMIT);
    tx.commit()?;
    Ok(())
}

// --- Queries shared by the operations. Each takes the connection (or transaction) of the operation it serves.

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode as JSON: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what} is not valid: {e}")))
}

fn version_param(version: u64) -> i64 {
    // Versions past i64::MAX cannot exist; such a request matches nothing.
    i64::try_from(version).unwrap_or(i64::MAX)
}

fn app_from_row(row: &Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        name: row.get(0)?,
        created_at: row.get(1)?,
        maintenance: row.get(2)?,
        sleep: row.get(3)?,
        features: Default::default(),
    })
}

/// Fills in the app's features (a table of their own).
fn with_features(conn: &Connection, mut app: App) -> Result<App, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT name FROM app_features WHERE app = ?1")?;
    app.features = stmt
        .query_map([&app.name], |row| row.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    Ok(app)
}

fn require_app(conn: &Connection, name: &str) -> Result<App, StoreError> {
    conn.prepare_cached("SELECT name, created_at, maintenance, sleep FROM apps WHERE name = ?1")?
        .query_row([name], app_from_row)
        .optional()?
        .ok_or_else(|| StoreError::AppNotFound(name.to_owned()))
}

/// [`require_app`] with the app's features: for the calls that return the app, not those that only need it to
/// exist.
fn full_app(conn: &Connection, name: &str) -> Result<App, StoreError> {
    require_app(conn, name).and_then(|app| with_features(conn, app))
}

/// The app's drains, oldest first.
fn load_drains(conn: &Connection, app: &str) -> Result<Vec<Drain>, StoreError> {
    let mut stmt = conn.prepare_cached(
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

/// A random (version 4) UUID for a new row.
fn new_uuid() -> Result<String, StoreError> {
    crate::ids::uuid_v4().map_err(|e| StoreError::Corrupt(format!("no randomness for an id: {e}")))
}

/// A `release_view` row as stored, before its JSON and status are decoded.
struct ReleaseRow {
    app: String,
    version: i64,
    slug: Option<String>,
    config: String,
    addons: String,
    description: String,
    created_at: i64,
    status: Option<String>,
    output: Option<String>,
}

impl ReleaseRow {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<ReleaseRow> {
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

    fn decode(self) -> Result<Release, StoreError> {
        let what = format!("release v{} of {}", self.version, self.app);
        let version = u64::try_from(self.version)
            .map_err(|_| StoreError::Corrupt(format!("{what} has a negative version")))?;
        let status = self
            .status
            .ok_or_else(|| StoreError::Corrupt(format!("{what} has no status event")))?
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))?;
        Ok(Release {
            config: from_json(&format!("the config of {what}"), &self.config)?,
            addons: from_json(&format!("the add-on list of {what}"), &self.addons)?,
            app: self.app,
            version,
            slug: self.slug,
            description: self.description,
            created_at: self.created_at,
            status,
            output: self.output,
        })
    }
}

/// The releases of `app`, newest first, at most `limit` of them, that match `filter`: an SQL condition on
/// `release_view` (`AND ...`) appended after `app = ?1`, in which `?2` is bound to `version` when one is given.
/// Filters are constants of this module, so each has one cached statement.
fn query_releases(
    conn: &Connection,
    app: &str,
    filter: &str,
    limit: Option<u32>,
    version: Option<i64>,
) -> Result<Vec<Release>, StoreError> {
    let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM release_view WHERE app = ?1 {filter} ORDER BY version DESC{limit}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = match version {
        Some(version) => stmt
            .query_map(params![app, version], ReleaseRow::from_row)?
            .collect::<Result<Vec<_>, _>>()?,
        None => stmt
            .query_map(params![app], ReleaseRow::from_row)?
            .collect::<Result<Vec<_>, _>>()?,
    };
    rows.into_iter().map(ReleaseRow::decode).collect()
}

fn load_release(conn: &Connection, app: &str, version: u64) -> Result<Release, StoreError> {
    query_releases(
        conn,
        app,
        "AND version = ?2",
        Some(1),
        Some(version_param(version)),
    )?
    .pop()
    .ok_or_else(|| StoreError::ReleaseNotFound {
        app: app.to_owned(),
        version,
    })
}

fn current_release(conn: &Connection, app: &str) -> Result<Option<Release>, StoreError> {
    Ok(query_releases(conn, app, "AND status = 'succeeded'", Some(1), None)?.pop())
}

/// What a new release starts from: the newest release that did not fail. Refused while the newest release is
/// still pending: a release is never based on one whose release phase has not finished.
fn next_release_base(conn: &Connection, app: &str) -> Result<Release, StoreError> {
    let base = base_release(conn, app)?;
    if base.status == ReleaseStatus::Pending {
        return Err(StoreError::ReleasePending {
            app: app.to_owned(),
            version: base.version,
        });
    }
    Ok(base)
}

/// The newest release that did not fail: the config the app has.
fn base_release(conn: &Connection, app: &str) -> Result<Release, StoreError> {
    query_releases(conn, app, "AND status <> 'failed'", Some(1), None)?
        .pop()
        // v1 never fails, so every app has one.
        .ok_or_else(|| StoreError::Corrupt(format!("app {app} has no release that did not fail")))
}

fn append_event(
    conn: &Connection,
    app: &str,
    version: u64,
    status: ReleaseStatus,
    output: Option<&str>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO release_events (app, version, seq, status, output, at)
         SELECT ?1, ?2, COALESCE(MAX(seq), 0) + 1, ?3, ?4, ?5 FROM release_events WHERE app = ?1 AND version = ?2",
    )?
    .execute(params![app, version_param(version), status.as_str(), output, unix_now()])?;
    Ok(())
}

/// Appends the next release of `app` with its first event. The config is checked here, so no path can write an
/// invalid one.
fn insert_release(
    conn: &Connection,
    app: &str,
    slug: Option<String>,
    config: BTreeMap<String, String>,
    addons: Vec<String>,
    description: String,
    pending: bool,
) -> Result<Release, StoreError> {
    check_config(&config)?;
    let version: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app = ?1")?
        .query_row([app], |row| row.get(0))?;
    let version = u64::try_from(version)
        .map_err(|_| StoreError::Corrupt(format!("app {app} has bad versions")))?;
    let created_at = unix_now();
    conn.prepare_cached(
        "INSERT INTO releases (app, version, slug, config, addons, description, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        app,
        version_param(version),
        slug,
        to_json(&config)?,
        to_json(&addons)?,
        description,
        created_at
    ])?;
    let status = if pending {
        ReleaseStatus::Pending
    } else {
        ReleaseStatus::Succeeded
    };
    append_event(conn, app, version, status, None)?;
    Ok(Release {
        app: app.to_owned(),
        version,
        slug,
        config,
        addons,
        description,
        created_at,
        status,
        output: None,
    })
}

fn addon_from_row(
    row: &Row<'_>,
) -> rusqlite::Result<(String, String, String, String, String, String)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn decode_addon(
    (app, name, service, plan, config, hosts): (String, String, String, String, String, String),
) -> Result<Addon, StoreError> {
    Ok(Addon {
        config: from_json(&format!("the config of add-on {name}"), &config)?,
        hosts: from_json(&format!("the hosts of add-on {name}"), &hosts)?,
        app,
        name,
        service,
        plan,
    })
}

fn load_formation(conn: &Connection, app: &str) -> Result<Formation, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT process_type, quantity, size FROM formation WHERE app = ?1")?;
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
        if !super::FEATURES.iter().any(|(name, _)| *name == feature) {
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
        let destination = super::validate::check_destination(destination)?;
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
