//! What the hosts of a cluster share through PostgreSQL besides the ledger: slugs (a host that lacks one fetches
//! it chunk by chunk and keeps it only when its bytes hash to the name it was asked for), and the news that
//! something changed (`LISTEN`/`NOTIFY`).

use sha2::{Digest, Sha256};

use super::fixture::TestDatabase;
use super::*;
use crate::slug::SlugStore;

fn sha256_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A host's slug directory on the shared database, and the directory.
fn host(db: &Arc<PgStore>) -> (tempfile::TempDir, SlugStore) {
    let dir = tempfile::tempdir().unwrap();
    let slugs = SlugStore::new(dir.path()).with_shared(db.clone());
    (dir, slugs)
}

/// What a fetch left in a host's directory besides kept slugs (a partial download would show here).
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".tar.gz"))
        .collect()
}

#[test]
fn a_slug_from_another_host_is_kept_only_when_its_bytes_match_its_sha256() {
    let db = TestDatabase::create();
    let pg = Arc::new(PgStore::connect(&db.url).unwrap());

    // Built on one host: kept in the database in chunks (this one spans three).
    let slug: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    let sha = sha256_of(&slug);
    let (_built_dir, built_on) = host(&pg);
    built_on.put(&sha, &slug).unwrap();

    // Another host fetches it whole.
    let (dir, other) = host(&pg);
    let path = other.fetch(&sha);
    assert_eq!(std::fs::read(&path).unwrap(), slug);
    assert!(leftovers(dir.path()).is_empty());

    // Bytes kept under a name they do not hash to (a corrupt row, or a writer that lied) are refused: no file
    // under that name, nothing half-written, and the host asks again next time instead of trusting a copy.
    let claimed = sha256_of(b"some other slug");
    pg.put_slug(&claimed, &slug).unwrap();
    let (dir, third) = host(&pg);
    let path = third.fetch(&claimed);
    assert!(!path.exists(), "a slug whose bytes do not match was kept");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    assert!(!third.fetch(&claimed).exists());

    // A slug no host kept is a missing file, as on one host.
    assert!(!third.fetch(&"0".repeat(64)).exists());
}

/// Waits for `wake` up to `within`; whether it came.
fn woken(wake: &tokio::sync::Notify, within: std::time::Duration) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { tokio::time::timeout(within, wake.notified()).await.is_ok() })
}

#[test]
fn a_change_through_one_host_wakes_the_others_at_once() {
    let db = TestDatabase::create();
    let listening = PgStore::connect(&db.url).unwrap();
    let writer = PgStore::connect(&db.url).unwrap();
    let wake = Arc::new(tokio::sync::Notify::new());
    listening.on_changes(wake.clone());
    let within = std::time::Duration::from_secs(10);
    assert!(woken(&wake, within), "no wake when the listener connected");

    // A write to the ledger through another connection (another host) wakes it; so does each later one.
    for app in ["heard-one", "heard-two"] {
        writer.create_app(app).unwrap();
        assert!(woken(&wake, within), "{app} was not heard");
    }
    writer
        .scale(
            "heard-one",
            BTreeMap::from([(
                "web".to_string(),
                ScaleChange {
                    quantity: Some(2),
                    size: None,
                },
            )]),
        )
        .unwrap();
    assert!(woken(&wake, within), "a scale was not heard");
}

#[test]
fn the_shared_log_history_keeps_each_apps_newest_lines_in_order() {
    let db = TestDatabase::create();
    let pg = PgStore::connect(&db.url).unwrap();
    pg.create_app("kept").unwrap();
    pg.create_app("other").unwrap();
    let line = |app: &str, n: usize| (app.to_string(), format!("{{\"n\":{n}}}"));

    let first: Vec<_> = (0..4).map(|n| line("kept", n)).collect();
    pg.append_log_history(&first, 5).unwrap();
    // Two apps in one batch, and the lines of an app that is gone, left out.
    let second = vec![
        line("kept", 4),
        line("other", 0),
        line("gone", 0),
        line("kept", 5),
        line("kept", 6),
    ];
    pg.append_log_history(&second, 5).unwrap();
    let texts = |lines: Vec<String>| lines.join(" ");
    assert_eq!(
        texts(pg.log_history("kept", 100).unwrap()),
        r#"{"n":2} {"n":3} {"n":4} {"n":5} {"n":6}"#,
        "the newest five, oldest first"
    );
    assert_eq!(
        texts(pg.log_history("kept", 2).unwrap()),
        r#"{"n":5} {"n":6}"#
    );
    assert_eq!(texts(pg.log_history("other", 100).unwrap()), r#"{"n":0}"#);
    assert!(pg.log_history("gone", 100).unwrap().is_empty());

    // Destroying an app takes its history with it.
    pg.destroy_app("other").unwrap();
    assert!(pg.log_history("other", 100).unwrap().is_empty());
}
