//! A fresh store of each backend for the shared suite: an SQLite file in a temporary directory, or a PostgreSQL
//! database of its own on the server `WASMDYNO_TEST_POSTGRES_URL` names (`scripts/test` starts one and sets it),
//! dropped when the test ends.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::super::{PgStore, SqliteStore, Store};

/// A store on fresh state, and what a test needs to look under it.
pub(crate) struct Fresh {
    pub store: Arc<dyn Store>,
    backend: Backend,
}

enum Backend {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres(TestDatabase),
}

impl Fresh {
    pub fn sqlite() -> Fresh {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        Fresh {
            store: Arc::new(SqliteStore::open(&path).unwrap()),
            backend: Backend::Sqlite { _dir: dir, path },
        }
    }

    pub fn postgres() -> Fresh {
        let db = TestDatabase::create();
        Fresh {
            store: Arc::new(PgStore::connect(&db.url).unwrap()),
            backend: Backend::Postgres(db),
        }
    }

    /// A second store on the same state (another connection, as another process or host would open).
    pub fn reopen(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).unwrap()),
            Backend::Postgres(db) => Arc::new(PgStore::connect(&db.url).unwrap()),
        }
    }

    /// `SELECT COUNT(*) FROM <from>`, straight from the database.
    pub fn count(&self, from: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {from}");
        match &self.backend {
            Backend::Sqlite { path, .. } => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(&sql, [], |row| row.get(0))
                .unwrap(),
            Backend::Postgres(db) => on_server(&db.url, |client| async move {
                client.query_one(&sql, &[]).await?.try_get(0)
            })
            .unwrap(),
        }
    }
}

/// A database of its own on the test server, dropped (with any connection left to it) when this goes.
pub(crate) struct TestDatabase {
    admin: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let admin = std::env::var("WASMDYNO_TEST_POSTGRES_URL").unwrap_or_else(|_| {
            panic!(
                "the PostgreSQL tests need a server: set WASMDYNO_TEST_POSTGRES_URL to a role that may create \
                 databases (scripts/test installs and starts PostgreSQL and sets it)"
            )
        });
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "wdt_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            crate::clock::unix_now()
        );
        let create = format!("CREATE DATABASE {name}");
        on_server(&admin, |client| async move {
            client.batch_execute(&create).await
        })
        .unwrap_or_else(|e| panic!("cannot create a test database on {admin}: {e}"));
        let url = with_database(&admin, &name);
        TestDatabase { admin, name, url }
    }
}

impl Drop for TestDatabase {
    /// Ends this role's sessions there, then drops it; not `WITH (FORCE)`, which this role may not use while
    /// autovacuum (whose session belongs to no role) is at work there. A plain drop stops autovacuum itself.
    fn drop(&mut self) {
        let end = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND usename = current_user AND pid <> pg_backend_pid()",
            self.name
        );
        let drop_it = format!("DROP DATABASE IF EXISTS {}", self.name);
        for _ in 0..3 {
            let (end, drop_it) = (end.clone(), drop_it.clone());
            let dropped = on_server(&self.admin, |client| async move {
                client.batch_execute(&end).await?;
                client.batch_execute(&drop_it).await
            });
            if dropped.is_ok() {
                return;
            }
        }
    }
}

/// `url` with its database replaced by `database`.
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// Runs `f` with a client connected to `url`, on a runtime of its own.
fn on_server<T, F, Fut>(url: &str, f: F) -> Result<T, tokio_postgres::Error>
where
    F: FnOnce(tokio_postgres::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        let out = f(client).await;
        let _ = driver.await;
        out
    })
}

#[test]
fn database_urls_are_rewritten() {
    assert_eq!(
        with_database("postgres://u:p@127.0.0.1:5432/postgres", "x"),
        "postgres://u:p@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h/postgres?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}
