//! The SQLite backend of the [`Store`](super::Store): transactions for the operations of [`super::ledger`].
//!
//! One connection behind a mutex: SQLite serializes writers anyway, and one connection keeps every read and write
//! of an operation on one consistent snapshot. Every write runs in an IMMEDIATE transaction, which takes the
//! database's write lock up front: two writers (threads here, or another process on the same file) queue on the
//! busy timeout instead of failing halfway, and version numbers are allocated inside the transaction that uses
//! them, so they never collide and never leave gaps.
//!
//! The ledger rules are enforced by the schema itself (triggers), not only by this code: see [`MIGRATIONS`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::backend::{
    Backend, Flag, ReleaseRow, Tx, Which, decode_addon, release_filter, to_json, version_param,
};
use super::{
    Addon, App, Domain, Drain, FAILPOINT_MIGRATION_BEFORE_COMMIT, FAILPOINT_RELEASE_AFTER_COMMIT,
    FAILPOINT_RELEASE_BEFORE_COMMIT, Formation, FormationEntry, Release, ReleaseStatus, StoreError,
    failpoint, unix_now,
};
use crate::runtime::DynoSize;
mod rows;
mod schema;
#[allow(unused_imports)]
use {rows::*, schema::*};

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

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held left no transaction open (a dropped `Transaction` rolls back), so the
        // connection is still good.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for SqliteStore {
    /// Runs `f` on one snapshot of the database, so its queries agree with each other even while another
    /// connection writes.
    fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in an IMMEDIATE transaction (the database's write lock up front) and commits if it succeeds.
    fn write<T>(
        &self,
        release: bool,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&mut tx)?;
        if release {
            failpoint(FAILPOINT_RELEASE_BEFORE_COMMIT);
        }
        tx.commit()?;
        if release {
            failpoint(FAILPOINT_RELEASE_AFTER_COMMIT);
        }
        Ok(out)
    }
}
