//! Tests of the store: one suite run on both backends (a real SQLite file, a real PostgreSQL database of its own),
//! and the tests of each backend's own file or schema.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;

mod cluster_shared;
mod fixture;
mod postgres_schema;
use fixture::Fresh;

/// Each test of the shared suite, on SQLite and on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[test] fn $name() { super::$name(&super::Fresh::sqlite()) })*
        }
        mod on_postgres {
            $(#[test] fn $name() { super::$name(&super::Fresh::postgres()) })*
        }
    };
}

on_both_backends!(
    app_names_are_checked,
    apps_are_created_listed_and_destroyed,
    operations_on_a_missing_app_say_so,
    a_new_app_has_the_initial_release,
    config_vars_are_set_and_unset_with_heroku_descriptions,
    bad_config_changes_write_nothing,
    config_is_limited_to_32_kb,
    release_status_comes_from_events_and_decides_the_current_release,
    create_release_defaults_to_the_base_slug_and_config,
    rollback_copies_an_earlier_release,
    destroying_an_app_removes_everything_of_it_and_nothing_else,
    addons_attach_and_detach_with_releases,
    scaling_changes_the_formation_without_a_release,
    sleeping_is_toggled_and_defaults_off,
    features_are_toggled_and_must_be_known,
    maintenance_mode_is_toggled,
    domains_are_added_and_removed,
    drains_are_added_listed_and_removed_without_releases,
    reopening_keeps_everything,
    concurrent_writers_through_one_store,
    concurrent_writers_through_two_stores_on_one_database,
    rotating_an_addon_makes_a_release_and_a_destroyed_addon_blocks_rollback,
);

/// A store in a fresh directory; the directory lives as long as the returned guard.
fn store() -> (tempfile::TempDir, PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).unwrap();
    (dir, path, store)
}

fn changes(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

fn set(store: &dyn Store, app: &str, pairs: &[(&str, &str)]) -> Release {
    let pairs: Vec<_> = pairs.iter().map(|&(k, v)| (k, Some(v))).collect();
    store.set_config(app, changes(&pairs), false).unwrap()
}

fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn deploy(store: &dyn Store, app: &str, slug: &str, pending: bool) -> Release {
    store
        .create_release(
            app,
            NewRelease {
                slug: Some(slug.into()),
                config: None,
                description: format!("Deploy {slug}"),
                pending,
            },
        )
        .unwrap()
}

fn versions(store: &dyn Store, app: &str) -> Vec<u64> {
    store
        .releases(app)
        .unwrap()
        .iter()
        .map(|r| r.version)
        .collect()
}

fn raw(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn
}

fn count(conn: &rusqlite::Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .unwrap()
}

fn postgres() -> NewAddon {
    NewAddon {
        name: "db".into(),
        service: "postgres".into(),
        plan: "dev".into(),
        config: config(&[("DATABASE_URL", "postgres://db.example.com/app")]),
        hosts: vec!["db.example.com:5432".into()],
    }
}

#[test]
fn store_is_shareable_and_object_safe() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SqliteStore>();
    let (_dir, _path, store) = store();
    let shared: Arc<dyn Store> = Arc::new(store);
    shared.create_app("via-dyn").unwrap();
    assert_eq!(shared.apps().unwrap().len(), 1);
}

fn app_names_are_checked(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    let rejected = [
        ("ab", "at least 3"),
        ("a234567890123456789012345678901", "at most 30"),
        ("1app", "start with a lowercase letter"),
        ("-app", "start with a lowercase letter"),
        ("MyApp", "start with a lowercase letter"),
        ("myApp", "lowercase letters, digits and dashes"),
        ("my_app", "lowercase letters, digits and dashes"),
        ("my app", "lowercase letters, digits and dashes"),
        ("app-", "end with a dash"),
        ("", "at least 3"),
    ];
    for (name, expected) in rejected {
        match store.create_app(name) {
            Err(StoreError::InvalidAppName { name: n, reason }) => {
                assert_eq!(n, name);
                assert!(reason.contains(expected), "{name:?}: {reason}");
            }
            other => panic!("{name:?} was not refused: {other:?}"),
        }
    }
    assert!(store.apps().unwrap().is_empty(), "nothing was created");
    for name in ["abc", "my-app-2", "a23456789012345678901234567890", "x--y"] {
        store.create_app(name).unwrap();
    }
    let message = store.create_app("ab").unwrap_err().to_string();
    assert_eq!(
        message,
        "invalid app name \"ab\": must be at least 3 characters long"
    );
}

fn apps_are_created_listed_and_destroyed(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    let created = store.create_app("zeta").unwrap();
    assert_eq!(created.name, "zeta");
    assert!(!created.maintenance);
    assert!(created.created_at > 1_600_000_000);
    store.create_app("alpha").unwrap();
    assert!(matches!(store.create_app("zeta"), Err(StoreError::AppExists(n)) if n == "zeta"));

    let names: Vec<_> = store.apps().unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert_eq!(store.app("zeta").unwrap(), created);

    store.destroy_app("zeta").unwrap();
    assert!(matches!(store.app("zeta"), Err(StoreError::AppNotFound(n)) if n == "zeta"));
    assert!(matches!(
        store.destroy_app("zeta"),
        Err(StoreError::AppNotFound(_))
    ));
    assert_eq!(store.apps().unwrap().len(), 1);
}

fn operations_on_a_missing_app_say_so(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    let missing = |r: Result<(), StoreError>| {
        assert!(matches!(r, Err(StoreError::AppNotFound(n)) if n == "nope"))
    };
    missing(store.releases("nope").map(drop));
    missing(store.release("nope", 1).map(drop));
    missing(store.current_release("nope").map(drop));
    missing(store.config("nope").map(drop));
    missing(
        store
            .set_config("nope", changes(&[("A", Some("1"))]), false)
            .map(drop),
    );
    missing(
        store
            .create_release("nope", NewRelease::default())
            .map(drop),
    );
    missing(store.rollback("nope", None, false).map(drop));
    missing(store.formation("nope").map(drop));
    missing(store.scale("nope", BTreeMap::new()).map(drop));
    missing(store.create_addon("nope", postgres(), false).map(drop));
    missing(store.addons("nope").map(drop));
    missing(store.set_maintenance("nope", true).map(drop));
    missing(store.add_domain("nope", "example.com").map(drop));
    missing(store.domains("nope").map(drop));
    assert_eq!(
        StoreError::AppNotFound("nope".into()).to_string(),
        "no app named \"nope\" (`wasmdyno apps` lists them)"
    );
}

fn a_new_app_has_the_initial_release(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("web-app").unwrap();
    let releases = store.releases("web-app").unwrap();
    assert_eq!(releases.len(), 1);
    let v1 = &releases[0];
    assert_eq!(v1.version, 1);
    assert_eq!(v1.description, "Initial release");
    assert_eq!(v1.slug, None);
    assert!(v1.config.is_empty());
    assert!(v1.addons.is_empty());
    assert_eq!(v1.status, ReleaseStatus::Succeeded);
    assert_eq!(v1.output, None);
    assert_eq!(store.current_release("web-app").unwrap().as_ref(), Some(v1));
    assert_eq!(&store.release("web-app", 1).unwrap(), v1);
    assert!(matches!(
        store.release("web-app", 2),
        Err(StoreError::ReleaseNotFound { version: 2, .. })
    ));
}

fn config_vars_are_set_and_unset_with_heroku_descriptions(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("cfg").unwrap();
    deploy(store, "cfg", "slug1", false);

    let r = set(store, "cfg", &[("FOO", "1")]);
    assert_eq!(r.description, "Set FOO config var");
    assert_eq!(r.version, 3);
    assert_eq!(r.slug.as_deref(), Some("slug1"), "the base slug is kept");
    assert_eq!(r.status, ReleaseStatus::Succeeded);

    let r = set(store, "cfg", &[("BAR", "2"), ("BAZ", "a=b c")]);
    assert_eq!(r.description, "Set BAR, BAZ config vars");
    assert_eq!(
        r.config,
        config(&[("BAR", "2"), ("BAZ", "a=b c"), ("FOO", "1")])
    );

    let r = store
        .set_config("cfg", changes(&[("FOO", None)]), false)
        .unwrap();
    assert_eq!(r.description, "Unset FOO config var");
    let r = store
        .set_config("cfg", changes(&[("BAR", None), ("BAZ", None)]), false)
        .unwrap();
    assert_eq!(r.description, "Unset BAR, BAZ config vars");
    assert!(r.config.is_empty());

    let r = store
        .set_config("cfg", changes(&[("NEW", Some("x")), ("GONE", None)]), false)
        .unwrap();
    assert_eq!(r.description, "Set NEW config var, unset GONE config var");
    assert_eq!(r.config, config(&[("NEW", "x")]));
    assert_eq!(store.config("cfg").unwrap(), config(&[("NEW", "x")]));

    // Lowercase names and leading underscores are fine; so is re-setting a value (it still releases).
    let r = set(store, "cfg", &[("_private", "p"), ("NEW", "x")]);
    assert_eq!(r.version, 8);
    assert_eq!(versions(store, "cfg"), [8, 7, 6, 5, 4, 3, 2, 1]);
}

fn bad_config_changes_write_nothing(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("cfg").unwrap();
    set(store, "cfg", &[("KEEP", "1")]);

    for name in ["1FOO", "FOO-BAR", "FOO BAR", "", "FÖÖ", "A.B"] {
        let err = store
            .set_config(
                "cfg",
                changes(&[("OK", Some("1")), (name, Some("x"))]),
                false,
            )
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidConfigName(n) if n == name),
            "{name:?}: {err}"
        );
    }
    for name in ["PORT", "DYNO", "WASMDYNO_RELEASE", "WASMDYNO_"] {
        let err = store
            .set_config("cfg", changes(&[(name, Some("x"))]), false)
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::ReservedConfigName(n) if n == name),
            "{name:?}: {err}"
        );
        // Unsetting a reserved name is refused too: it can never have been set.
        let err = store
            .set_config("cfg", changes(&[(name, None)]), false)
            .unwrap_err();
        assert!(matches!(err, StoreError::ReservedConfigName(_)));
    }
    assert!(
        store
            .set_config("cfg", changes(&[("port", Some("1"))]), false)
            .is_ok(),
        "names are case-sensitive"
    );
    let err = store
        .set_config("cfg", changes(&[("NUL", Some("a\0b"))]), false)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidConfigValue { .. }),
        "{err}"
    );
    assert!(matches!(
        store.set_config("cfg", BTreeMap::new(), false),
        Err(StoreError::EmptyConfigChange)
    ));
    // The one good change above made v3; every refused one made nothing.
    assert_eq!(versions(store, "cfg"), [3, 2, 1]);
    assert_eq!(
        store.config("cfg").unwrap(),
        config(&[("KEEP", "1"), ("port", "1")])
    );
    let err = store.create_release(
        "cfg",
        NewRelease {
            config: Some(config(&[("DYNO", "web.1")])),
            ..NewRelease::default()
        },
    );
    assert!(
        matches!(err, Err(StoreError::ReservedConfigName(_))),
        "explicit configs are checked too"
    );
    assert_eq!(versions(store, "cfg"), [3, 2, 1]);
}

fn config_is_limited_to_32_kb(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("big").unwrap();
    // Exactly the limit is fine: "A" + value = 32768 bytes.
    set(store, "big", &[("A", &"x".repeat(CONFIG_LIMIT - 1))]);
    // One more byte, counted with what is already there, is not.
    let err = store
        .set_config("big", changes(&[("B", Some(""))]), false)
        .unwrap_err();
    match &err {
        StoreError::ConfigTooLarge { size, limit } => {
            assert_eq!((*size, *limit), (CONFIG_LIMIT + 1, 32768));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("32769 bytes"), "{err}");
    assert_eq!(versions(store, "big"), [2, 1]);
    // Replacing the big value with a small one is fine.
    let r = set(store, "big", &[("A", "small"), ("B", "")]);
    assert_eq!(r.config.len(), 2);
}

fn release_status_comes_from_events_and_decides_the_current_release(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("phases").unwrap();
    let v2 = deploy(store, "phases", "s2", false);
    assert_eq!(v2.status, ReleaseStatus::Succeeded);
    assert_eq!(store.current_release("phases").unwrap().unwrap().version, 2);

    // A pending release is not current until its release phase succeeds.
    let v3 = deploy(store, "phases", "s3", true);
    assert_eq!(v3.status, ReleaseStatus::Pending);
    assert_eq!(
        store.release("phases", 3).unwrap().status,
        ReleaseStatus::Pending
    );
    assert_eq!(store.current_release("phases").unwrap().unwrap().version, 2);
    let done = store
        .record_release_result("phases", 3, true, "migrated\n".into())
        .unwrap();
    assert_eq!(
        (done.status, done.output.as_deref()),
        (ReleaseStatus::Succeeded, Some("migrated\n"))
    );
    assert_eq!(store.release("phases", 3).unwrap(), done);
    assert_eq!(store.current_release("phases").unwrap().unwrap().version, 3);

    // A result is recorded once.
    let err = store
        .record_release_result("phases", 3, false, String::new())
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::ReleaseNotPending {
            version: 3,
            status: ReleaseStatus::Succeeded,
            ..
        }
    ));
    assert!(matches!(
        store.record_release_result("phases", 9, true, String::new()),
        Err(StoreError::ReleaseNotFound { version: 9, .. })
    ));

    // No release is based on an unfinished one: while v4 is pending, the next change is refused.
    let v4 = store
        .set_config("phases", changes(&[("PENDING", Some("1"))]), true)
        .unwrap();
    assert_eq!(v4.status, ReleaseStatus::Pending);
    for refused in [
        store.set_config("phases", changes(&[("FAILS", Some("1"))]), true),
        store.rollback("phases", Some(2), false),
        store.create_release(
            "phases",
            NewRelease {
                slug: Some("s9".into()),
                config: None,
                description: "Deploy s9".into(),
                pending: false,
            },
        ),
    ] {
        assert!(
            matches!(refused, Err(StoreError::ReleasePending { version: 4, .. })),
            "{refused:?}"
        );
    }
    store
        .record_release_result("phases", 4, true, String::new())
        .unwrap();
    // A succeeded config change is the base of the next change; a failed one is not.
    let v5 = store
        .set_config("phases", changes(&[("FAILS", Some("1"))]), true)
        .unwrap();
    assert_eq!(v5.config, config(&[("FAILS", "1"), ("PENDING", "1")]));
    let failed = store
        .record_release_result("phases", 5, false, "boom\n".into())
        .unwrap();
    assert_eq!(failed.status, ReleaseStatus::Failed);
    assert_eq!(store.config("phases").unwrap(), config(&[("PENDING", "1")]));
    let v6 = set(store, "phases", &[("NEXT", "1")]);
    assert_eq!(v6.config, config(&[("NEXT", "1"), ("PENDING", "1")]));
    assert_eq!(v6.slug.as_deref(), Some("s3"));
    assert_eq!(store.current_release("phases").unwrap().unwrap().version, 6);

    // A failed deploy's slug is not carried forward either.
    deploy(store, "phases", "bad-slug", true);
    store
        .record_release_result("phases", 7, false, String::new())
        .unwrap();
    let v8 = set(store, "phases", &[("AFTER", "1")]);
    assert_eq!(v8.slug.as_deref(), Some("s3"));

    let statuses: Vec<_> = store
        .releases("phases")
        .unwrap()
        .into_iter()
        .map(|r| (r.version, r.status))
        .collect();
    use ReleaseStatus::*;
    assert_eq!(
        statuses,
        [
            (8, Succeeded),
            (7, Failed),
            (6, Succeeded),
            (5, Failed),
            (4, Succeeded),
            (3, Succeeded),
            (2, Succeeded),
            (1, Succeeded)
        ]
    );
}

fn create_release_defaults_to_the_base_slug_and_config(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("defaults").unwrap();
    deploy(store, "defaults", "s1", false);
    set(store, "defaults", &[("A", "1")]);
    let r = store
        .create_release(
            "defaults",
            NewRelease {
                description: "Restart".into(),
                ..NewRelease::default()
            },
        )
        .unwrap();
    assert_eq!(
        (r.slug.as_deref(), r.config.clone()),
        (Some("s1"), config(&[("A", "1")]))
    );
    let r = store
        .create_release(
            "defaults",
            NewRelease {
                slug: Some("s2".into()),
                config: Some(config(&[("B", "2")])),
                description: "Deploy s2".into(),
                pending: false,
            },
        )
        .unwrap();
    assert_eq!(
        (r.slug.as_deref(), r.config),
        (Some("s2"), config(&[("B", "2")]))
    );
}

fn rollback_copies_an_earlier_release(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("rollbacks").unwrap();
    assert!(matches!(
        store.rollback("rollbacks", None, false),
        Err(StoreError::NoPreviousRelease)
    ));

    deploy(store, "rollbacks", "s2", false); // v2
    set(store, "rollbacks", &[("A", "1")]); // v3
    store.create_addon("rollbacks", postgres(), false).unwrap(); // v4

    // Default: the release before the current one.
    let v5 = store.rollback("rollbacks", None, false).unwrap();
    assert_eq!(v5.version, 5);
    assert_eq!(v5.description, "Rollback to v3");
    assert_eq!(v5.slug.as_deref(), Some("s2"));
    assert_eq!(v5.config, config(&[("A", "1")]));
    assert!(v5.addons.is_empty());
    assert_eq!(v5.status, ReleaseStatus::Succeeded);
    // Rolling back again goes to the release before that one, as on Heroku.
    assert_eq!(
        store
            .rollback("rollbacks", None, false)
            .unwrap()
            .description,
        "Rollback to v4"
    );

    // Explicit: copies slug, config and add-on list.
    let v7 = store.rollback("rollbacks", Some(4), true).unwrap();
    assert_eq!(v7.description, "Rollback to v4");
    assert_eq!(v7.status, ReleaseStatus::Pending);
    let v4 = store.release("rollbacks", 4).unwrap();
    assert_eq!(
        (&v7.slug, &v7.config, &v7.addons),
        (&v4.slug, &v4.config, &v4.addons)
    );
    assert_eq!(v7.addons, ["db"]);

    // Not to a failed release; the default skips failed and pending ones.
    store
        .record_release_result("rollbacks", 7, false, "no".into())
        .unwrap();
    assert!(matches!(
        store.rollback("rollbacks", Some(7), false),
        Err(StoreError::RollbackToFailed { version: 7 })
    ));
    deploy(store, "rollbacks", "s8", true); // v8 pending
    assert_eq!(
        store.current_release("rollbacks").unwrap().unwrap().version,
        6
    );
    assert!(matches!(
        store.rollback("rollbacks", None, false),
        Err(StoreError::ReleasePending { version: 8, .. })
    ));
    store
        .record_release_result("rollbacks", 8, false, String::new())
        .unwrap();
    assert_eq!(
        store
            .rollback("rollbacks", None, false)
            .unwrap()
            .description,
        "Rollback to v5"
    );
    assert!(matches!(
        store.rollback("rollbacks", Some(42), false),
        Err(StoreError::ReleaseNotFound { version: 42, .. })
    ));
    // To v1: no slug, nothing set.
    let r = store.rollback("rollbacks", Some(1), false).unwrap();
    assert_eq!((r.slug, r.config.len()), (None, 0));
    assert_eq!(
        versions(store, "rollbacks"),
        (1..=10).rev().collect::<Vec<_>>()
    );
}

#[test]
fn the_schema_refuses_to_change_or_remove_releases() {
    let (_dir, path, store) = store();
    store.create_app("ledger").unwrap();
    deploy(&store, "ledger", "s2", true);
    store
        .record_release_result("ledger", 2, true, "ok".into())
        .unwrap();
    let before = store.releases("ledger").unwrap();

    let conn = raw(&path);
    let refused = |sql: &str, expected: &str| {
        let err = conn.execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains(expected), "{sql}: {err}");
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation),
            "{sql}"
        );
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
    refused(
        "DELETE FROM releases WHERE app = 'ledger' AND version = 2",
        "releases are append-only",
    );
    refused(
        "INSERT OR REPLACE INTO releases (app, version, slug, config, addons, description, created_at)
         VALUES ('ledger', 1, 'evil', '{}', '[]', 'x', 0)",
        "append-only",
    );
    refused(
        "INSERT INTO releases (app, version, slug, config, addons, description, created_at)
         VALUES ('ledger', 9, NULL, '{}', '[]', 'gap', 0)",
        "next version",
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
    drop(conn);

    assert_eq!(store.releases("ledger").unwrap(), before, "nothing changed");
    // destroy_app still removes the ledger.
    store.destroy_app("ledger").unwrap();
    let conn = raw(&path);
    assert_eq!(count(&conn, "releases"), 0);
    assert_eq!(count(&conn, "release_events"), 0);
}

fn destroying_an_app_removes_everything_of_it_and_nothing_else(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    for app in ["doomed", "kept"] {
        store.create_app(app).unwrap();
        deploy(store, app, "s", true);
        store
            .record_release_result(app, 2, true, "ok".into())
            .unwrap();
        set(store, app, &[("A", "1")]);
        store.create_addon(app, postgres(), false).unwrap();
        store
            .scale(
                app,
                BTreeMap::from([(
                    "web".into(),
                    ScaleChange {
                        quantity: Some(1),
                        size: None,
                    },
                )]),
            )
            .unwrap();
        store
            .add_domain(app, &format!("{app}.example.com"))
            .unwrap();
        store.set_maintenance(app, true).unwrap();
    }
    store.destroy_app("doomed").unwrap();

    for table in [
        "apps",
        "releases",
        "release_events",
        "addons",
        "formation",
        "domains",
    ] {
        let column = if table == "apps" { "name" } else { "app" };
        let doomed = fresh.count(&format!("{table} WHERE {column} = 'doomed'"));
        assert_eq!(doomed, 0, "{table} still has rows of the destroyed app");
        assert!(fresh.count(table) > 0, "{table} lost the other app's rows");
    }
    assert_eq!(versions(store, "kept"), [4, 3, 2, 1]);

    // The name is free again, and its ledger starts over.
    store.create_app("doomed").unwrap();
    assert_eq!(versions(store, "doomed"), [1]);
    assert!(store.addons("doomed").unwrap().is_empty());
    assert!(store.formation("doomed").unwrap().is_empty());
    assert!(store.domains("doomed").unwrap().is_empty());
    assert!(!store.app("doomed").unwrap().maintenance);
}

fn addons_attach_and_detach_with_releases(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("with-db").unwrap();
    deploy(store, "with-db", "s2", false);
    set(store, "with-db", &[("A", "1")]);

    let (addon, release) = store.create_addon("with-db", postgres(), false).unwrap();
    assert_eq!(addon.app, "with-db");
    assert_eq!(addon.name, "db");
    assert_eq!(addon.hosts, ["db.example.com:5432"]);
    assert_eq!(release.description, "Attach db (postgres:dev)");
    assert_eq!(release.version, 4);
    assert_eq!(release.slug.as_deref(), Some("s2"));
    assert_eq!(
        release.config,
        config(&[
            ("A", "1"),
            ("DATABASE_URL", "postgres://db.example.com/app")
        ])
    );
    assert_eq!(release.addons, ["db"]);
    assert_eq!(store.addons("with-db").unwrap(), [addon]);

    assert!(matches!(
        store.create_addon("with-db", postgres(), false),
        Err(StoreError::AddonExists { .. })
    ));
    let mut clash = postgres();
    clash.name = "db2".into();
    let err = store.create_addon("with-db", clash, false).unwrap_err();
    assert!(
        matches!(&err, StoreError::AddonConfigConflict { var, .. } if var == "DATABASE_URL"),
        "{err}"
    );
    let mut cache = postgres();
    cache.name = "cache".into();
    cache.service = "redis".into();
    cache.config = config(&[("REDIS_URL", "redis://cache")]);
    let (_, r) = store.create_addon("with-db", cache, true).unwrap();
    assert_eq!(
        (r.addons.clone(), r.status),
        (
            vec!["db".to_string(), "cache".to_string()],
            ReleaseStatus::Pending
        )
    );
    store
        .record_release_result("with-db", r.version, true, String::new())
        .unwrap();

    // Invalid add-ons are refused before anything is written.
    let mut bad = postgres();
    bad.name = "Bad_Name".into();
    assert!(matches!(
        store.create_addon("with-db", bad, false),
        Err(StoreError::InvalidAddonName { .. })
    ));
    let mut bad = postgres();
    bad.name = "other".into();
    bad.config = config(&[("PORT", "1")]);
    assert!(matches!(
        store.create_addon("with-db", bad, false),
        Err(StoreError::ReservedConfigName(_))
    ));
    let mut bad = postgres();
    bad.name = "other".into();
    bad.plan = "has space".into();
    assert!(matches!(
        store.create_addon("with-db", bad, false),
        Err(StoreError::InvalidAddon { .. })
    ));
    assert_eq!(versions(store, "with-db").len(), 5);

    let detached = store.destroy_addon("with-db", "db", false).unwrap();
    assert_eq!(detached.description, "Detach db");
    assert_eq!(
        detached.config,
        config(&[("A", "1"), ("REDIS_URL", "redis://cache")])
    );
    assert_eq!(detached.addons, ["cache"]);
    assert_eq!(store.addons("with-db").unwrap().len(), 1);
    assert!(matches!(
        store.destroy_addon("with-db", "db", false),
        Err(StoreError::AddonNotFound { .. })
    ));
}

fn scaling_changes_the_formation_without_a_release(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("scaled").unwrap();
    assert!(store.formation("scaled").unwrap().is_empty());
    let change = |quantity: Option<u32>, size: Option<&str>| ScaleChange {
        quantity,
        size: size.map(str::to_string),
    };

    let formation = store
        .scale(
            "scaled",
            BTreeMap::from([
                ("web".into(), change(Some(2), None)),
                ("worker".into(), change(None, Some("2X"))),
            ]),
        )
        .unwrap();
    let entry = |quantity, size: &str| FormationEntry {
        quantity,
        size: size.into(),
    };
    assert_eq!(
        formation,
        BTreeMap::from([
            ("web".into(), entry(2, "standard-1x")),
            ("worker".into(), entry(0, "standard-2x"))
        ])
    );
    let formation = store
        .scale(
            "scaled",
            BTreeMap::from([("web".into(), change(Some(0), Some("performance-m")))]),
        )
        .unwrap();
    assert_eq!(formation["web"], entry(0, "performance-m"));
    assert_eq!(formation["worker"], entry(0, "standard-2x"));

    // One bad entry refuses the whole change.
    let bad = |c: BTreeMap<String, ScaleChange>| store.scale("scaled", c).unwrap_err();
    let err = bad(BTreeMap::from([
        ("web".into(), change(Some(5), None)),
        ("bad type".into(), change(Some(1), None)),
    ]));
    assert!(matches!(err, StoreError::InvalidProcessType(_)), "{err}");
    let err = bad(BTreeMap::from([(
        "web".into(),
        change(Some(5), Some("huge")),
    )]));
    assert!(matches!(err, StoreError::InvalidDynoSize(_)), "{err}");
    assert!(
        err.to_string().contains("standard-1x"),
        "lists the sizes: {err}"
    );
    let err = bad(BTreeMap::from([(
        "web".into(),
        change(Some(MAX_QUANTITY + 1), None),
    )]));
    assert!(matches!(err, StoreError::QuantityTooLarge { .. }), "{err}");
    assert_eq!(store.formation("scaled").unwrap(), formation);
    assert_eq!(versions(store, "scaled"), [1], "scaling makes no release");
}

fn sleeping_is_toggled_and_defaults_off(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("napper").unwrap();
    assert!(!store.app("napper").unwrap().sleep);
    assert!(store.set_sleep("napper", true).unwrap().sleep);
    assert!(store.app("napper").unwrap().sleep);
    assert!(store.apps().unwrap()[0].sleep);
    assert!(!store.set_sleep("napper", false).unwrap().sleep);
    assert!(store.set_sleep("nope", true).is_err());
}

fn features_are_toggled_and_must_be_known(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("labs").unwrap();
    assert!(store.app("labs").unwrap().features.is_empty());
    let on = store
        .set_feature("labs", "http-fresh-instances", true)
        .unwrap();
    assert!(on.features.contains("http-fresh-instances"));
    // Idempotent, listed with the app, and gone when turned off.
    store
        .set_feature("labs", "http-fresh-instances", true)
        .unwrap();
    assert_eq!(store.apps().unwrap()[0].features.len(), 1);
    assert!(
        store
            .set_feature("labs", "http-fresh-instances", false)
            .unwrap()
            .features
            .is_empty()
    );
    let err = store.set_feature("labs", "warp-drive", true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(
        store
            .set_feature("nope", "http-fresh-instances", true)
            .is_err()
    );
}

fn maintenance_mode_is_toggled(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("maint").unwrap();
    assert!(store.set_maintenance("maint", true).unwrap().maintenance);
    assert!(store.app("maint").unwrap().maintenance);
    assert!(!store.set_maintenance("maint", false).unwrap().maintenance);
    assert!(!store.app("maint").unwrap().maintenance);
    assert_eq!(versions(store, "maint"), [1]);
}

fn domains_are_added_and_removed(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("one").unwrap();
    store.create_app("two").unwrap();
    let d = store.add_domain("one", "WWW.Example.com.").unwrap();
    assert_eq!(
        d,
        Domain {
            app: "one".into(),
            hostname: "www.example.com".into()
        }
    );
    store.add_domain("one", "*.apps.example.com").unwrap();
    assert!(matches!(
        store.add_domain("two", "www.example.com"),
        Err(StoreError::DomainExists { app, .. }) if app == "one"
    ));
    for bad in [
        "",
        "bad host.com",
        "-a.com",
        "a..com",
        "*",
        "a.*.com",
        "under_score.com",
    ] {
        assert!(
            matches!(
                store.add_domain("two", bad),
                Err(StoreError::InvalidHostname { .. })
            ),
            "{bad:?}"
        );
    }
    let hosts: Vec<_> = store
        .domains("one")
        .unwrap()
        .into_iter()
        .map(|d| d.hostname)
        .collect();
    assert_eq!(hosts, ["*.apps.example.com", "www.example.com"]);
    assert!(matches!(
        store.remove_domain("two", "www.example.com"),
        Err(StoreError::DomainNotFound { .. })
    ));
    store.remove_domain("one", "www.EXAMPLE.com").unwrap();
    assert_eq!(store.domains("one").unwrap().len(), 1);
    store.add_domain("two", "www.example.com").unwrap();
}

fn drains_are_added_listed_and_removed_without_releases(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("one").unwrap();
    store.create_app("two").unwrap();
    let first = store
        .add_drain("one", "syslog://logs.example.com:514")
        .unwrap();
    assert_eq!(first.app, "one");
    assert_eq!(first.url, "syslog://logs.example.com:514");
    assert_eq!(first.id.len(), 36, "a UUID: {}", first.id);
    assert!(
        first.token.starts_with("d.") && first.token.len() == 38,
        "{}",
        first.token
    );
    // The same URL once per app, but another app may drain to it too.
    assert!(matches!(
        store.add_drain("one", "syslog://logs.example.com:514"),
        Err(StoreError::DrainExists { .. })
    ));
    store
        .add_drain("two", "syslog://logs.example.com:514")
        .unwrap();
    for bad in [
        "ftp://x:1",
        "syslog://nohost",
        "https://",
        "logs.example.com:514",
    ] {
        let err = store.add_drain("one", bad).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidDrainUrl { .. }),
            "{bad:?}: {err}"
        );
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }
    for i in 2..=5 {
        store
            .add_drain("one", &format!("https://h{i}.example/logs"))
            .unwrap();
    }
    let err = store.add_drain("one", "https://h6.example/").unwrap_err();
    assert!(
        matches!(err, StoreError::TooManyDrains { limit: 5, .. }),
        "{err}"
    );
    let urls: Vec<String> = store
        .drains("one")
        .unwrap()
        .into_iter()
        .map(|d| d.url)
        .collect();
    assert_eq!(
        urls[0], "syslog://logs.example.com:514",
        "oldest first: {urls:?}"
    );
    assert_eq!(urls.len(), 5);

    // Removed by id, token or URL; an unknown one is not found.
    let drains = store.drains("one").unwrap();
    assert_eq!(store.remove_drain("one", &drains[0].id).unwrap(), drains[0]);
    assert_eq!(
        store.remove_drain("one", &drains[1].token).unwrap(),
        drains[1]
    );
    assert_eq!(
        store.remove_drain("one", &drains[2].url).unwrap(),
        drains[2]
    );
    assert!(matches!(
        store.remove_drain("one", &drains[0].id),
        Err(StoreError::DrainNotFound { .. })
    ));
    assert!(matches!(
        store.remove_drain("two", &drains[3].id),
        Err(StoreError::DrainNotFound { .. })
    ));
    assert!(matches!(
        store.drains("nope"),
        Err(StoreError::AppNotFound(_))
    ));
    assert!(matches!(
        store.add_drain("nope", "syslog://h:1"),
        Err(StoreError::AppNotFound(_))
    ));
    // Drains make no release.
    assert_eq!(versions(store, "one"), [1]);

    // They outlive a reopening, and go with their app.
    let store = fresh.reopen();
    assert_eq!(store.drains("one").unwrap(), drains[3..]);
    store.destroy_app("one").unwrap();
    store.create_app("one").unwrap();
    assert!(store.drains("one").unwrap().is_empty());
    assert_eq!(store.drains("two").unwrap().len(), 1);
}

fn reopening_keeps_everything(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("durable").unwrap();
    deploy(store, "durable", "s2", true);
    store
        .record_release_result("durable", 2, true, "out".into())
        .unwrap();
    set(store, "durable", &[("A", "1")]);
    store.create_addon("durable", postgres(), false).unwrap();
    store
        .scale(
            "durable",
            BTreeMap::from([(
                "web".into(),
                ScaleChange {
                    quantity: Some(3),
                    size: None,
                },
            )]),
        )
        .unwrap();
    store.set_maintenance("durable", true).unwrap();
    store.add_domain("durable", "durable.example.com").unwrap();
    let snapshot = |s: &dyn Store| {
        (
            s.apps().unwrap(),
            s.releases("durable").unwrap(),
            s.addons("durable").unwrap(),
            s.formation("durable").unwrap(),
            s.domains("durable").unwrap(),
        )
    };
    let before = snapshot(store);
    let reopened = fresh.reopen();
    assert_eq!(snapshot(&*reopened), before);
}

/// 50 threads each set their own key; `stores` are shared round-robin.
fn concurrent_config_sets(app: &str, stores: &[Arc<dyn Store>]) {
    const THREADS: usize = 50;
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let app = app.to_string();
            std::thread::spawn(move || {
                store
                    .set_config(
                        &app,
                        changes(&[(&format!("KEY_{i}"), Some(&i.to_string()))]),
                        false,
                    )
                    .unwrap()
                    .version
            })
        })
        .collect();
    let mut made: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    made.sort();
    assert_eq!(
        made,
        (2..=THREADS as u64 + 1).collect::<Vec<_>>(),
        "each writer got its own version"
    );

    for store in stores {
        let expected: BTreeSet<String> = (0..THREADS).map(|i| format!("KEY_{i}")).collect();
        let config = store.config(app).unwrap();
        assert_eq!(
            config.keys().cloned().collect::<BTreeSet<_>>(),
            expected,
            "every key landed"
        );
        let releases = store.releases(app).unwrap();
        let versions: Vec<u64> = releases.iter().map(|r| r.version).collect();
        assert_eq!(
            versions,
            (1..=THREADS as u64 + 1).rev().collect::<Vec<_>>(),
            "contiguous"
        );
        // Each release built on the one before it: none lost another's key.
        for r in &releases {
            assert_eq!(r.config.len() as u64, r.version - 1, "v{}", r.version);
        }
    }
}

fn concurrent_writers_through_one_store(fresh: &Fresh) {
    fresh.store.create_app("busy").unwrap();
    concurrent_config_sets("busy", std::slice::from_ref(&fresh.store));
}

fn concurrent_writers_through_two_stores_on_one_database(fresh: &Fresh) {
    let (first, second) = (fresh.store.clone(), fresh.reopen());
    first.create_app("busy").unwrap();
    concurrent_config_sets("busy", &[first, second]);
}

#[test]
fn the_schema_version_is_checked() {
    let (_dir, path, store) = store();
    store.create_app("kept").unwrap();
    drop(store);
    let conn = raw(&path);
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");

    // Reopening at the same version migrates nothing and keeps the data.
    assert_eq!(SqliteStore::open(&path).unwrap().apps().unwrap().len(), 1);

    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    match SqliteStore::open(&path) {
        Err(err @ StoreError::SchemaTooNew { .. }) => {
            let StoreError::SchemaTooNew {
                found, supported, ..
            } = &err
            else {
                unreachable!()
            };
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            assert!(err.to_string().contains("upgrade wasmdyno"), "{err}");
        }
        other => panic!("a newer schema was not refused: {other:?}"),
    }
    // Refusing changed nothing.
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .unwrap();
    assert_eq!(SqliteStore::open(&path).unwrap().apps().unwrap().len(), 1);
}

#[test]
fn other_sqlite_databases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = raw(&path);
    conn.execute_batch("CREATE TABLE notes (body TEXT)")
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::ForeignDatabase { .. }), "{err}");
    assert_eq!(count(&conn, "notes"), 0, "the database was left alone");

    let missing_dir = dir.path().join("no-such-dir").join("state.db");
    assert!(matches!(
        SqliteStore::open(&missing_dir),
        Err(StoreError::Open { .. })
    ));
}

#[test]
fn failpoints_do_nothing_unless_armed() {
    assert!(
        std::env::var_os(FAILPOINT_ENV).is_none(),
        "unit tests must run without {FAILPOINT_ENV}: an armed failpoint aborts the test binary"
    );
    failpoint(FAILPOINT_RELEASE_BEFORE_COMMIT);
    failpoint(FAILPOINT_RELEASE_AFTER_COMMIT);
    failpoint(FAILPOINT_MIGRATION_BEFORE_COMMIT);
    assert!(!failpoint_hit(None, "release.before_commit"));
    assert!(!failpoint_hit(
        Some("release.after_commit"),
        "release.before_commit"
    ));
    assert!(failpoint_hit(
        Some("release.before_commit"),
        "release.before_commit"
    ));
    // And the operations that pass through them still work.
    let (_dir, _path, store) = store();
    store.create_app("failpoints").unwrap();
    set(&store, "failpoints", &[("A", "1")]);
    store.rollback("failpoints", None, false).unwrap();
}

#[test]
fn timestamps_format_as_utc() {
    assert_eq!(format_timestamp(0), "1970-01-01T00:00:00Z");
    assert_eq!(format_timestamp(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(format_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59Z");
    assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
}

#[test]
fn errors_have_kinds_for_status_codes() {
    assert_eq!(
        StoreError::AppNotFound("a".into()).kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        StoreError::AppExists("a".into()).kind(),
        ErrorKind::Conflict
    );
    assert_eq!(StoreError::EmptyConfigChange.kind(), ErrorKind::Invalid);
    assert_eq!(StoreError::Corrupt("x".into()).kind(), ErrorKind::Internal);
}

fn rotating_an_addon_makes_a_release_and_a_destroyed_addon_blocks_rollback(fresh: &Fresh) {
    let store: &dyn Store = &*fresh.store;
    store.create_app("rotated").unwrap();
    deploy(store, "rotated", "s2", false); // v2
    store.create_addon("rotated", postgres(), false).unwrap(); // v3
    let new = config(&[("DATABASE_URL", "postgres://db.example.com/app?v=2")]);
    let (addon, release) = store
        .rotate_addon("rotated", "db", new.clone(), false)
        .unwrap();
    assert_eq!(
        (release.version, release.description.as_str()),
        (4, "Rotate db credentials")
    );
    assert_eq!(release.config["DATABASE_URL"], new["DATABASE_URL"]);
    assert_eq!(addon.config, new);
    assert_eq!(store.addons("rotated").unwrap()[0].config, new);
    // Only the vars it set.
    let err = store
        .rotate_addon("rotated", "db", config(&[("OTHER_URL", "x")]), false)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AddonRotationMismatch { .. }),
        "{err}"
    );
    assert!(matches!(
        store.rotate_addon("rotated", "nope", new.clone(), false),
        Err(StoreError::AddonNotFound { .. })
    ));

    store.destroy_addon("rotated", "db", false).unwrap(); // v5
    let err = store.rollback("rotated", Some(4), false).unwrap_err();
    assert!(
        matches!(&err, StoreError::RollbackToDestroyedAddon { version: 4, addon } if addon == "db"),
        "{err}"
    );
    assert!(err.to_string().contains("destroyed"), "{err}");
    // Releases from before the add-on still roll back.
    assert_eq!(
        store.rollback("rotated", Some(2), false).unwrap().version,
        6
    );
    assert_eq!(
        versions(store, "rotated").len(),
        6,
        "the refused rollback wrote nothing"
    );
}
