//! The PostgreSQL backend of the [`Store`](super::Store): one database shared by every `wasmdyno serve` host of a
//! cluster, with the same guarantees as SQLite's file.
//!
//! - **Writers are serialized** across hosts by a transaction-scoped advisory lock ([`WRITE_LOCK`]), taken first
//!   in every write: version numbers are allocated inside the transaction that uses them, so concurrent writers on
//!   any hosts never collide and never leave gaps (the primary key and the schema's triggers refuse both anyway).
//! - **Reads** run in a `REPEATABLE READ READ ONLY` transaction: one snapshot per operation.
//! - **The ledger's rules are in the schema** (triggers, see [`schema`]): releases and their events are
//!   append-only, whatever client writes to the database.
//! - **Every wait is bounded**: connecting (5 s), a lock (10 s), a statement (30 s), a transaction left idle
//!   (60 s, so a host that dies mid-transaction releases its locks), a caller waiting for one of the
//!   [`POOL_SIZE`] connections (30 s), and a database that went silent (a network partition: TCP keepalives and
//!   user timeout close the connection within about 11 s).
//!
//! The driver is `tokio-postgres`. Its connections are driven by a runtime on a thread of their own, and the
//! store's synchronous calls wait on the driver's futures with `pollster`, so the store can be called from any
//! thread, inside an async runtime or not, exactly like the SQLite one.

use std::fmt;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use tokio_postgres::{Client, Config, IsolationLevel};

use super::backend::{Backend, Tx};
use super::{
    FAILPOINT_RELEASE_AFTER_COMMIT, FAILPOINT_RELEASE_BEFORE_COMMIT, StoreError, failpoint,
};

pub mod cluster;
mod history;
mod listen;
mod rows;
mod schema;
pub(crate) mod tls;

use listen::NOTIFY_CHANGES;
use rows::PgTx;

/// Connections kept to the database, at most.
pub const POOL_SIZE: usize = 8;
/// The advisory lock every write takes first ("wdno").
pub const WRITE_LOCK: i64 = 0x7764_6e6f;
/// How long a caller waits for a free connection.
const POOL_WAIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Session settings of every connection. The server's own keepalives and user timeout drop the session of a
/// host gone silent (a partition) within about 11 s, and with it the locks its transaction held.
const SESSION_OPTIONS: &str = "-c statement_timeout=30000 -c lock_timeout=10000 \
    -c idle_in_transaction_session_timeout=60000 -c client_min_messages=warning \
    -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 \
    -c tcp_user_timeout=10000";

/// The state store in a PostgreSQL database.
pub struct PgStore {
    config: Config,
    /// TLS to the database (`sslmode` in the URL), or plain TCP.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The URL without its password, for messages.
    shown: String,
    driver: Driver,
    pool: Mutex<Pool>,
    freed: Condvar,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Conn>,
    /// Connections open, idle or lent out.
    open: usize,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        match e.as_db_error() {
            // The server's own words: a trigger's message, a constraint's name.
            Some(db) => StoreError::Postgres(match db.detail() {
                Some(detail) => format!("{} ({detail})", db.message()),
                None => db.message().to_string(),
            }),
            None => StoreError::Postgres(e.to_string()),
        }
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, or the key=value form),
    /// creating or migrating the schema as needed.
    ///
    /// Refuses a database whose schema a newer wasmdyno wrote ([`StoreError::SchemaTooNew`]) and one that holds
    /// tables of something else ([`StoreError::ForeignPostgres`]). Any number of hosts may connect to one
    /// database at once; the first migrates it, the others wait and find the work done.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let tls = tls::from_url(url).map_err(|reason| StoreError::Unreachable {
            url: redact(url),
            reason,
        })?;
        let mut config: Config = tls.url.parse().map_err(|e| StoreError::Unreachable {
            url: redact(url),
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
        config
            .ssl_mode(tls.mode)
            .connect_timeout(CONNECT_TIMEOUT)
            // A database behind a partition answers nothing, not even a reset: TCP alone would wait ~15 min.
            // Keepalives find a silent peer of an idle or waiting connection within 5 + 3 x 2 s, and the user
            // timeout one that does not acknowledge what was sent within 10 s.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(10))
            .application_name("wasmdyno")
            .options(SESSION_OPTIONS);
        let store = PgStore {
            shown: shown(&config),
            config,
            tls: tls.connector,
            driver: Driver::start()?,
            pool: Mutex::new(Pool::default()),
            freed: Condvar::new(),
        };
        {
            let mut lent = store.take()?;
            schema::migrate(lent.client(), &store.shown)?;
        }
        Ok(store)
    }

    /// The database, as messages name it (no password).
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// A connection of the pool: an idle one, a new one if fewer than [`POOL_SIZE`] are open, or the first one
    /// given back within [`POOL_WAIT`].
    fn take(&self) -> Result<Lent<'_>, StoreError> {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let deadline = std::time::Instant::now() + POOL_WAIT;
        loop {
            while let Some(conn) = pool.idle.pop() {
                if !conn.client.is_closed() {
                    return Ok(Lent {
                        store: self,
                        conn: Some(conn),
                    });
                }
                pool.open -= 1;
            }
            if pool.open < POOL_SIZE {
                pool.open += 1;
                drop(pool);
                return match self.open_connection() {
                    Ok(client) => Ok(Lent {
                        store: self,
                        conn: Some(Conn {
                            client,
                            statements: Statements::default(),
                        }),
                    }),
                    Err(e) => {
                        self.pool
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(StoreError::Unreachable {
                    url: self.shown.clone(),
                    reason: format!(
                        "all {POOL_SIZE} connections stayed busy for {}s",
                        POOL_WAIT.as_secs()
                    ),
                });
            }
            pool = self
                .freed
                .wait_timeout(pool, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn open_connection(&self) -> Result<Client, StoreError> {
        let config = self.config.clone();
        let tls = self.tls.clone();
        // The connection future carries the protocol; it ends when the client goes or the server hangs up.
        let connecting = self.driver.handle.spawn(async move {
            tls::connect(&config, tls.as_ref(), "PostgreSQL state store").await
        });
        let unreachable = |reason: String| StoreError::Unreachable {
            url: self.shown.clone(),
            reason,
        };
        pollster::block_on(connecting)
            .map_err(|e| unreachable(format!("the connection task failed: {e}")))?
            .map_err(|e| unreachable(describe(&e)))
    }
}

/// A connection of the pool, with the statements prepared on it.
struct Conn {
    client: Client,
    statements: Statements,
}

/// Statements prepared on one connection, by their SQL: a query prepared once is sent in one round trip
/// afterwards, rather than two. At most [`MAX_STATEMENTS`]; past that the cache starts again.
#[derive(Default)]
pub(super) struct Statements(
    std::cell::RefCell<std::collections::HashMap<String, tokio_postgres::Statement>>,
);

const MAX_STATEMENTS: usize = 256;

impl Statements {
    /// `sql` prepared on `tx`'s connection, from the cache or now.
    pub(super) fn get(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, StoreError> {
        if let Some(statement) = self.0.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = pollster::block_on(tx.prepare(sql))?;
        let mut cache = self.0.borrow_mut();
        if cache.len() >= MAX_STATEMENTS {
            cache.clear();
        }
        cache.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    /// Forgets every statement (one failed: the schema may have changed under it).
    pub(super) fn clear(&self) {
        self.0.borrow_mut().clear();
    }
}

/// A connection lent out of the pool; given back when dropped (or closed, if it broke).
struct Lent<'a> {
    store: &'a PgStore,
    conn: Option<Conn>,
}

impl Lent<'_> {
    fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("a lent connection")
    }

    fn client(&mut self) -> &mut Client {
        &mut self.conn().client
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let mut pool = self
            .store
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if conn.client.is_closed() {
            pool.open -= 1;
        } else {
            pool.idle.push(conn);
        }
        drop(pool);
        self.store.freed.notify_one();
    }
}

impl Backend for PgStore {
    fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut lent = self.take()?;
        let conn = lent.conn();
        let tx = pollster::block_on(
            conn.client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start(),
        )?;
        let mut tx = PgTx::new(tx, &conn.statements);
        let out = f(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }

    fn write<T>(
        &self,
        release: bool,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut lent = self.take()?;
        let conn = lent.conn();
        let tx = pollster::block_on(
            conn.client
                .build_transaction()
                .isolation_level(IsolationLevel::ReadCommitted)
                .start(),
        )?;
        let mut tx = PgTx::new(tx, &conn.statements);
        tx.lock_writers()?;
        let out = f(&mut tx)?;
        tx.bump_generation()?;
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

/// The thread whose runtime drives the connections. It stops when the store is dropped.
struct Driver {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Driver {
    fn start() -> Result<Driver, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Postgres(format!("cannot start the driver's runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("wasmdyno-postgres".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .map_err(|e| StoreError::Postgres(format!("cannot start the driver's thread: {e}")))?;
        Ok(Driver {
            handle,
            _stop: stop,
        })
    }
}

/// A connection error with its causes (a TLS failure says why the certificate was refused).
fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        source = cause.source();
    }
    text
}

/// `postgres://user@host:port/database` from a config: never the password.
fn shown(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// A URL that did not even parse, shown without anything that may be a password (what is between `:` and `@`).
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_passwords() {
        let config: Config = "postgres://wd:s3cret@127.0.0.1:5433/state".parse().unwrap();
        assert_eq!(shown(&config), "postgres://wd@127.0.0.1:5433/state");
        assert_eq!(
            redact("postgres://wd:s3cret@db/x?bad=%"),
            "postgres://wd@db/x?bad=%"
        );
        assert!(!redact("postgresql://:pw@h/d").contains("pw"));
    }
}
