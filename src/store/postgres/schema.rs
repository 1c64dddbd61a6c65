//! The PostgreSQL schema, one migration per version, and the migration of a database to this code's version.
//!
//! The tables mirror SQLite's (`store/sqlite/schema.rs`), and so do the ledger's rules, as triggers: releases and
//! release events are append-only (no UPDATE, no DELETE but with their app, no TRUNCATE), versions and event
//! numbers are contiguous, a release's result is final, and apps are never renamed.

use tokio_postgres::Client;

use super::WRITE_LOCK;
use crate::store::{FAILPOINT_MIGRATION_BEFORE_COMMIT, StoreError, failpoint};

/// The schema, one migration per version: `MIGRATIONS[i]` takes a database from version `i` to `i + 1` (the row
/// of `wasmdyno_schema`). Never edit a migration that has shipped; append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    // v1: everything SQLite's v1 to v5 hold.
    r#"
    CREATE TABLE wasmdyno_schema (version INTEGER NOT NULL);
    INSERT INTO wasmdyno_schema (version) VALUES (0);

    CREATE FUNCTION wasmdyno_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation';
    END $$;

    CREATE TABLE apps (
        name        TEXT NOT NULL PRIMARY KEY,
        created_at  BIGINT NOT NULL,
        maintenance BOOLEAN NOT NULL DEFAULT FALSE,
        sleep       BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE TRIGGER apps_no_rename BEFORE UPDATE OF name ON apps
        FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
        EXECUTE FUNCTION wasmdyno_refuse('an app cannot be renamed');

    -- The release ledger: append-only. `config` is a JSON object (the full snapshot), `addons` a JSON array.
    CREATE TABLE releases (
        app         TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
        version     BIGINT NOT NULL CHECK (version >= 1),
        slug        TEXT,
        config      TEXT NOT NULL CHECK (jsonb_typeof(config::jsonb) = 'object'),
        addons      TEXT NOT NULL CHECK (jsonb_typeof(addons::jsonb) = 'array'),
        description TEXT NOT NULL,
        created_at  BIGINT NOT NULL,
        PRIMARY KEY (app, version)
    );

    CREATE FUNCTION releases_next_version() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.version IS DISTINCT FROM (SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app = NEW.app) THEN
            RAISE EXCEPTION 'releases are append-only: a new release must take the next version'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER releases_append_only_insert BEFORE INSERT ON releases
        FOR EACH ROW EXECUTE FUNCTION releases_next_version();
    CREATE TRIGGER releases_append_only_update BEFORE UPDATE ON releases
        FOR EACH ROW EXECUTE FUNCTION wasmdyno_refuse(
            'releases are append-only: a release cannot be changed; create a new one');
    CREATE TRIGGER releases_append_only_truncate BEFORE TRUNCATE ON releases
        FOR EACH STATEMENT EXECUTE FUNCTION wasmdyno_refuse(
            'releases are append-only: a release is removed only with its app');

    -- Releases go only with their app: destroying the app deletes the app row first and the cascade then finds
    -- it gone.
    CREATE FUNCTION releases_only_with_app() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM apps WHERE name = OLD.app) THEN
            RAISE EXCEPTION 'releases are append-only: a release is removed only with its app'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END $$;
    CREATE TRIGGER releases_append_only_delete BEFORE DELETE ON releases
        FOR EACH ROW EXECUTE FUNCTION releases_only_with_app();

    -- What happened to a release after it was created, append-only too. seq counts 1, 2, ... per release.
    CREATE TABLE release_events (
        app     TEXT NOT NULL,
        version BIGINT NOT NULL,
        seq     BIGINT NOT NULL CHECK (seq >= 1),
        status  TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        output  TEXT,
        at      BIGINT NOT NULL,
        PRIMARY KEY (app, version, seq),
        FOREIGN KEY (app, version) REFERENCES releases (app, version) ON DELETE CASCADE
    );

    CREATE FUNCTION release_events_next() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.seq IS DISTINCT FROM (
            SELECT COALESCE(MAX(seq), 0) + 1 FROM release_events WHERE app = NEW.app AND version = NEW.version
        ) THEN
            RAISE EXCEPTION 'release events are append-only: a new event must take the next seq'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        -- Succeeded and failed are final.
        IF EXISTS (
            SELECT 1 FROM release_events WHERE app = NEW.app AND version = NEW.version AND status <> 'pending'
        ) THEN
            RAISE EXCEPTION 'this release already has its result'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER release_events_append_only_insert BEFORE INSERT ON release_events
        FOR EACH ROW EXECUTE FUNCTION release_events_next();
    CREATE TRIGGER release_events_append_only_update BEFORE UPDATE ON release_events
        FOR EACH ROW EXECUTE FUNCTION wasmdyno_refuse(
            'release events are append-only: an event cannot be changed');
    CREATE TRIGGER release_events_append_only_truncate BEFORE TRUNCATE ON release_events
        FOR EACH STATEMENT EXECUTE FUNCTION wasmdyno_refuse(
            'release events are append-only: an event is removed only with its app');

    CREATE FUNCTION release_events_only_with_release() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM releases WHERE app = OLD.app AND version = OLD.version) THEN
            RAISE EXCEPTION 'release events are append-only: an event is removed only with its app'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END $$;
    CREATE TRIGGER release_events_append_only_delete BEFORE DELETE ON release_events
        FOR EACH ROW EXECUTE FUNCTION release_events_only_with_release();

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
        config  TEXT NOT NULL CHECK (jsonb_typeof(config::jsonb) = 'object'),
        hosts   TEXT NOT NULL CHECK (jsonb_typeof(hosts::jsonb) = 'array'),
        PRIMARY KEY (app, name)
    );

    CREATE TABLE formation (
        app          TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
        process_type TEXT NOT NULL,
        quantity     BIGINT NOT NULL CHECK (quantity >= 0),
        size         TEXT NOT NULL,
        PRIMARY KEY (app, process_type)
    );

    -- A hostname routes to one app at most.
    CREATE TABLE domains (
        hostname TEXT NOT NULL PRIMARY KEY,
        app      TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE
    );
    CREATE INDEX domains_by_app ON domains (app);

    -- Log drains: no release records them (as on Heroku), so they are a live set like domains.
    CREATE TABLE log_drains (
        id         TEXT NOT NULL PRIMARY KEY,
        position   BIGINT GENERATED ALWAYS AS IDENTITY,
        app        TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
        url        TEXT NOT NULL,
        token      TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        UNIQUE (app, url)
    );

    -- App features (`features:enable`) and network destinations (`network:allow`): live sets, no release.
    CREATE TABLE app_features (
        app  TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
        name TEXT NOT NULL,
        PRIMARY KEY (app, name)
    );
    CREATE TABLE app_network (
        app         TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
        destination TEXT NOT NULL,
        PRIMARY KEY (app, destination)
    );
    "#,
    // v2: the cluster. Hosts heartbeat (on the database's clock); placements say which host runs which formation
    // dyno; slugs are kept in 1 MiB chunks so that any host can run any release.
    r#"
    CREATE TABLE hosts (
        id           TEXT NOT NULL PRIMARY KEY,
        api          TEXT NOT NULL,
        router       TEXT NOT NULL,
        capacity     BIGINT NOT NULL CHECK (capacity >= 0),
        heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );

    CREATE TABLE placements (
        app       TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
        dyno      TEXT NOT NULL,
        host      TEXT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
        units     BIGINT NOT NULL CHECK (units >= 1),
        placed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (app, dyno)
    );
    CREATE INDEX placements_by_host ON placements (host);

    CREATE TABLE slug_chunks (
        sha256 TEXT NOT NULL,
        seq    INTEGER NOT NULL CHECK (seq >= 0),
        bytes  BYTEA NOT NULL,
        PRIMARY KEY (sha256, seq)
    );
    -- Bumped by every write to the ledger: hosts that see it change reload what they keep of it (routes, drains).
    CREATE TABLE ledger_generation (n BIGINT NOT NULL);
    INSERT INTO ledger_generation (n) VALUES (0);

    -- What every host of the cluster shares: the API token and the follower token (any host, one token).
    CREATE TABLE cluster_secrets (
        name  TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    );

    -- Written in the transaction that writes the last chunk: a slug listed here is complete.
    CREATE TABLE slugs (
        sha256 TEXT NOT NULL PRIMARY KEY,
        size   BIGINT NOT NULL CHECK (size >= 0),
        chunks INTEGER NOT NULL CHECK (chunks >= 0)
    );
    "#,
    // v3: the log history the hosts share, so that a host's lines outlive it: each host appends its new lines of
    // each app about once a second (a line as a log session sends it, JSON), and each app keeps its newest 1,500.
    r#"
    CREATE TABLE log_history (
        id   BIGSERIAL PRIMARY KEY,
        app  TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
        line TEXT NOT NULL
    );
    CREATE INDEX log_history_by_app ON log_history (app, id);
    "#,
];

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the schema up to [`SCHEMA_VERSION`] in one transaction (under the writers' lock, so two hosts starting
/// at once migrate once), or refuses a database it does not understand.
pub(super) fn migrate(client: &mut Client, shown: &str) -> Result<(), StoreError> {
    let tx = pollster::block_on(client.transaction())?;
    pollster::block_on(tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK]))?;
    let ours =
        pollster::block_on(tx.query_one("SELECT to_regclass('wasmdyno_schema') IS NOT NULL", &[]))?
            .try_get::<_, bool>(0)?;
    let version: u32 = if ours {
        let found: i32 =
            pollster::block_on(tx.query_one("SELECT version FROM wasmdyno_schema", &[]))?
                .try_get(0)?;
        u32::try_from(found)
            .map_err(|_| StoreError::Corrupt(format!("{shown} has schema version {found}")))?
    } else {
        let tables: i64 = pollster::block_on(tx.query_one(
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema()",
            &[],
        ))?
        .try_get(0)?;
        if tables > 0 {
            return Err(StoreError::ForeignPostgres {
                url: shown.to_string(),
            });
        }
        0
    };
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            store: shown.to_string(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    for migration in &MIGRATIONS[version as usize..] {
        pollster::block_on(tx.batch_execute(migration))?;
    }
    let target = i32::try_from(SCHEMA_VERSION).expect("few migrations");
    pollster::block_on(tx.execute("UPDATE wasmdyno_schema SET version = $1", &[&target]))?;
    failpoint(FAILPOINT_MIGRATION_BEFORE_COMMIT);
    pollster::block_on(tx.commit())?;
    Ok(())
}
