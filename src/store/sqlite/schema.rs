//! The SQLite schema, one migration per version, and the migration of a database to this code's version.

#[allow(unused_imports)]
use super::*;

/// The schema, one migration per version: `MIGRATIONS[i]` takes a database from version `i` to `i + 1`
/// (`PRAGMA user_version`). Never edit a migration that has shipped; append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
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

/// Brings the schema up to [`SCHEMA_VERSION`] in one transaction, or refuses a database it does not understand.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
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
            store: path.display().to_string(),
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
