//! `wasmdyno serve --store postgres://…`: the state in PostgreSQL, shared by servers that run at the same time,
//! through the real binary and a real PostgreSQL server (`scripts/test` starts one and sets
//! `WASMDYNO_TEST_POSTGRES_URL`).

use std::collections::BTreeSet;

use crate::support::{Server, TestEnv};

/// A database of its own on the test server, dropped with whatever is still connected to it.
pub struct TestDatabase {
    admin: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create(tag: &str) -> TestDatabase {
        let admin = std::env::var("WASMDYNO_TEST_POSTGRES_URL").expect(
            "the PostgreSQL tests need WASMDYNO_TEST_POSTGRES_URL (scripts/test starts PostgreSQL and sets it)",
        );
        let name = format!("wdit_{tag}_{}", std::process::id());
        execute(
            &admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        execute(&admin, &format!("CREATE DATABASE {name}"));
        let base = admin.rsplit_once('/').expect("a URL with a database").0;
        let url = format!("{base}/{name}");
        TestDatabase { admin, name, url }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .expect("the test server's port")
    }

    /// The URL of this database reached at `host:port` (a proxy) instead of the server itself.
    pub fn url_via(&self, host: &str, port: u16) -> String {
        let (userinfo, _) = self.url.split_once('@').expect("a URL with credentials");
        format!("{userinfo}@{host}:{port}/{}", self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        execute(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn execute(url: &str, sql: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        let driver = tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap();
        drop(client);
        let _ = driver.await;
    });
}

fn versions(server: &Server, app: &str) -> Vec<u64> {
    let releases = server
        .cli(&["releases", "-a", app, "-n", "1000", "--json"])
        .ok()
        .json();
    releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect()
}

#[test]
fn two_servers_share_one_ledger_in_postgres() {
    let db = TestDatabase::create("ledger");
    let vars = [("WASMDYNO_DATABASE_URL", db.url.as_str())];
    let first = Server::start_in(TestEnv::new(), &vars);
    first.cli(&["apps:create", "shared"]).ok();
    first.cli(&["config:set", "-a", "shared", "FIRST=1"]).ok();

    // A second server, with a home of its own, sees the same apps and ledger at once.
    let second = Server::start_in(TestEnv::new(), &vars);
    let apps = second.cli(&["apps", "--json"]).ok().json();
    assert_eq!(apps[0]["name"], "shared", "{apps}");
    assert_eq!(versions(&second, "shared"), [1, 2]);

    // Both write at once: every write gets its own version, none is lost, no gap.
    let writers: Vec<_> = [&first, &second]
        .into_iter()
        .enumerate()
        .flat_map(|(host, server)| {
            (0..4).map(move |i| {
                let key = format!("HOST{host}_KEY{i}=v");
                server.env.cmd(&["config:set", "-a", "shared", &key])
            })
        })
        .map(|mut cmd| std::thread::spawn(move || cmd.output().unwrap()))
        .collect();
    for writer in writers {
        let out = writer.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let expected: Vec<u64> = (1..=10).collect();
    assert_eq!(versions(&first, "shared"), expected);
    assert_eq!(versions(&second, "shared"), expected);
    let config = second
        .cli(&["config", "-a", "shared", "--json"])
        .ok()
        .json();
    let keys: BTreeSet<&str> = config
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 9, "every key landed: {config}");

    // A server stopped and started again (new home, new process) finds everything.
    drop(first);
    let third = Server::start_in(TestEnv::new(), &vars);
    assert_eq!(versions(&third, "shared"), expected);
    third.cli(&["rollback", "-a", "shared", "v2"]).ok();
    assert_eq!(versions(&second, "shared").last(), Some(&11));
}

#[test]
fn a_bad_database_url_stops_serve_with_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = TestEnv::new();
    let out = env
        .cmd(&["serve", "--api", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
        .env(
            "WASMDYNO_DATABASE_URL",
            format!("postgres://wd:s3cret@127.0.0.1:{port}/state"),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach the PostgreSQL state store"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("postgres://wd@127.0.0.1:{port}/state")),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
