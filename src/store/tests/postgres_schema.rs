//! The PostgreSQL backend's own promises: its schema enforces the ledger whatever client writes, it refuses
//! databases it does not understand, and it never shows a password.

use super::fixture::{Fresh, TestDatabase};
use super::*;

/// Runs `sql` on `url` and returns the server's error message, if any.
fn execute(url: &str, sql: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let out = client.batch_execute(sql).await.map_err(|e| {
            e.as_db_error()
                .map(|db| db.message().to_string())
                .unwrap_or_else(|| e.to_string())
        });
        drop(client);
        let _ = driver.await;
        out
    })
}

#[test]
fn the_schema_refuses_to_change_or_remove_releases() {
    let db = TestDatabase::create();
    let store = PgStore::connect(&db.url).unwrap();
    store.create_app("ledger").unwrap();
    deploy(&store, "ledger", "s2", true);
    store
        .record_release_result("ledger", 2, true, "ok".into())
        .unwrap();
    let before = store.releases("ledger").unwrap();

    let refused = |sql: &str, expected: &str| {
        let err = execute(&db.url, sql).expect_err(sql);
        assert!(err.contains(expected), "{sql}: {err}");
    };
    refused(
        "UPDATE releases SET description = 'tampered'",
        "releases are append-only",
    );
    refused(
        "UPDATE releases SET config = '{}' WHERE version = 2",
        "releases are append-only",
    );
    refused("DELETE FROM releases", "releases are append-only");
    refused("TRUNCATE releases CASCADE", "append-only");
    refused(
        "INSERT INTO releases (app, version, slug, config, addons, description, created_at)
         VALUES ('ledger', 9, NULL, '{}', '[]', 'gap', 0)",
        "next version",
    );
    refused(
        "INSERT INTO releases (app, version, slug, config, addons, description, created_at)
         VALUES ('ledger', 3, NULL, '[]', '[]', 'not an object', 0)",
        "check constraint",
    );
    refused(
        "UPDATE release_events SET status = 'failed'",
        "release events are append-only",
    );
    refused(
        "DELETE FROM release_events",
        "release events are append-only",
    );
    refused(
        "INSERT INTO release_events (app, version, seq, status, output, at) VALUES ('ledger', 2, 3, 'failed', NULL, 0)",
        "already has its result",
    );
    refused("UPDATE apps SET name = 'renamed'", "cannot be renamed");

    assert_eq!(store.releases("ledger").unwrap(), before, "nothing changed");
    // destroy_app still removes the ledger.
    store.destroy_app("ledger").unwrap();
    execute(
        &db.url,
        "DO $$ BEGIN IF (SELECT COUNT(*) FROM releases) + (SELECT COUNT(*) FROM release_events) > 0 THEN \
         RAISE EXCEPTION 'rows left'; END IF; END $$",
    )
    .unwrap();
}

#[test]
fn the_schema_version_is_checked() {
    let db = TestDatabase::create();
    PgStore::connect(&db.url)
        .unwrap()
        .create_app("kept")
        .unwrap();
    // Connecting again migrates nothing and keeps the data.
    assert_eq!(PgStore::connect(&db.url).unwrap().apps().unwrap().len(), 1);

    execute(&db.url, "UPDATE wasmdyno_schema SET version = version + 1").unwrap();
    match PgStore::connect(&db.url) {
        Err(err @ StoreError::SchemaTooNew { .. }) => {
            assert!(err.to_string().contains("upgrade wasmdyno"), "{err}");
            assert!(
                !err.to_string().contains("wasmdyno-test"),
                "no password: {err}"
            );
        }
        other => panic!("a newer schema was not refused: {other:?}"),
    }
    execute(&db.url, "UPDATE wasmdyno_schema SET version = version - 1").unwrap();
    assert_eq!(PgStore::connect(&db.url).unwrap().apps().unwrap().len(), 1);
}

#[test]
fn other_databases_are_refused_and_left_alone() {
    let db = TestDatabase::create();
    execute(
        &db.url,
        "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine')",
    )
    .unwrap();
    let err = PgStore::connect(&db.url).unwrap_err();
    assert!(matches!(err, StoreError::ForeignPostgres { .. }), "{err}");
    assert!(err.to_string().contains("CREATE DATABASE"), "{err}");
    execute(
        &db.url,
        "DO $$ BEGIN IF (SELECT COUNT(*) FROM notes) <> 1 OR to_regclass('apps') IS NOT NULL THEN \
         RAISE EXCEPTION 'touched'; END IF; END $$",
    )
    .unwrap();
}

#[test]
fn an_unreachable_server_is_a_clear_error_without_the_password() {
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err =
        PgStore::connect(&format!("postgres://wd:s3cret@127.0.0.1:{port}/state")).unwrap_err();
    let shown = err.to_string();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{shown}");
    assert!(
        shown.contains(&format!("postgres://wd@127.0.0.1:{port}/state")),
        "{shown}"
    );
    assert!(!shown.contains("s3cret"), "{shown}");

    let err = PgStore::connect("postgres://wd:s3cret@127.0.0.1:notaport/x").unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[test]
fn the_store_works_from_inside_an_async_runtime() {
    let fresh = Fresh::postgres();
    let store = fresh.store.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // As the API's handlers call it: synchronously, on a runtime's thread.
    let apps = runtime.block_on(async move {
        store.create_app("from-async").unwrap();
        store.apps().unwrap()
    });
    assert_eq!(apps.len(), 1);
}
