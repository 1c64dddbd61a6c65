//! `wasmdyno serve --store postgres://…`: the state in PostgreSQL, shared by servers that run at the same time,
//! through the real binary and a real PostgreSQL server (`scripts/test` starts one and sets
//! `WASMDYNO_TEST_POSTGRES_URL`).

use std::collections::BTreeSet;

use crate::support::{Server, TestEnv, versions};

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
        drop_database(&admin, &name);
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
        drop_database(&self.admin, &self.name);
    }
}

/// Drops database `name` on `admin`'s server, ending this role's sessions there first. Not `WITH (FORCE)`: this
/// role may not signal autovacuum, whose session belongs to no role; a plain drop stops autovacuum itself, and
/// is tried again while a session is still leaving.
fn drop_database(admin: &str, name: &str) {
    let end = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{name}' AND usename = current_user AND pid <> pg_backend_pid()"
    );
    let drop = format!("DROP DATABASE IF EXISTS {name}");
    for attempt in 1.. {
        execute(admin, &end);
        match query(admin, &drop) {
            Ok(_) => return,
            Err(e) if attempt < 3 && e.contains("being accessed by other users") => {}
            Err(e) => panic!("{drop} on {admin}: {e}"),
        }
    }
}

/// Runs `sql` as the role and database `url` names; the server's error message if it fails.
pub fn query(url: &str, sql: &str) -> Result<Vec<String>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| {
                e.as_db_error()
                    .map_or(e.to_string(), |d| d.message().to_string())
            })?;
        let driver = tokio::spawn(connection);
        let rows = client.simple_query(sql).await.map_err(|e| {
            e.as_db_error()
                .map_or(e.to_string(), |d| d.message().to_string())
        });
        drop(client);
        let _ = driver.await;
        Ok(rows?
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .collect())
    })
}

fn execute(url: &str, sql: &str) {
    query(url, sql).unwrap_or_else(|e| panic!("{sql} on {url}: {e}"));
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

/// The first column of the first row of `sql` on `url`, as text.
fn query_text(url: &str, sql: &str) -> String {
    query(url, sql)
        .unwrap_or_else(|e| panic!("{sql} on {url}: {e}"))
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// `serve` on a database URL that must fail at start: its stderr.
fn serve_fails(url: &str) -> String {
    let out = TestEnv::new()
        .cmd(&["serve", "--api", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
        .env("WASMDYNO_DATABASE_URL", url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_state_store_speaks_tls_as_libpq_does() {
    let db = TestDatabase::create("tls");
    let admin = std::env::var("WASMDYNO_TEST_POSTGRES_URL").unwrap();
    assert_eq!(
        query_text(&admin, "SHOW ssl"),
        "on",
        "the test server has TLS on"
    );
    let cert = query_text(&admin, "SHOW ssl_cert_file");
    let tag = format!("wdit_tls_{}", std::process::id());

    // `require`: encrypted, whatever the certificate (a self-signed one here).
    let server = Server::start_in(
        TestEnv::new(),
        &[(
            "WASMDYNO_DATABASE_URL",
            &format!("{}?sslmode=require", db.url),
        )],
    );
    server.cli(&["apps:create", "encrypted"]).ok();
    let encrypted = query_text(
        &admin,
        &format!(
            "SELECT bool_and(s.ssl)::text FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = '{tag}' AND a.application_name = 'wasmdyno'"
        ),
    );
    assert_eq!(encrypted, "true", "every connection of the store is TLS");
    drop(server);

    // `verify-full` checks the chain against sslrootcert and the name: the certificate is for localhost.
    let by_name = db.url.replace("@127.0.0.1:", "@localhost:");
    let server = Server::start_in(
        TestEnv::new(),
        &[(
            "WASMDYNO_DATABASE_URL",
            &format!("{by_name}?sslmode=verify-full&sslrootcert={cert}"),
        )],
    );
    server.cli(&["apps:create", "verified"]).ok();
    drop(server);
    let stderr = serve_fails(&format!(
        "{}?sslmode=verify-full&sslrootcert={cert}",
        db.url
    ));
    assert!(
        stderr.contains("cannot reach the PostgreSQL state store")
            && stderr.contains("certificate not valid for name \"127.0.0.1\""),
        "{stderr}"
    );
    // `verify-ca` checks only the chain; the Mozilla roots do not vouch for a self-signed certificate.
    let server = Server::start_in(
        TestEnv::new(),
        &[(
            "WASMDYNO_DATABASE_URL",
            &format!("{}?sslmode=verify-ca&sslrootcert={cert}", db.url),
        )],
    );
    drop(server);
    let stderr = serve_fails(&format!("{by_name}?sslmode=verify-full"));
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");
    let stderr = serve_fails(&format!("{}?sslmode=sometimes", db.url));
    assert!(
        stderr.contains("sslmode=sometimes is not one of"),
        "{stderr}"
    );
}
