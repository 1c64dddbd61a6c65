//! Add-ons the platform provisions, on a real PostgreSQL server: a database and a role per add-on, its URL in a
//! release, its server open to that app's dynos alone, credentials rotated and the database dropped on destroy.

use crate::postgres::query;
use crate::support::*;

fn database_url(server: &Server, app: &str) -> String {
    server
        .cli(&["config:get", "-a", app, "DATABASE_URL"])
        .ok()
        .stdout
        .trim()
        .to_string()
}

/// `host:port` of an add-on URL.
fn endpoint_of(url: &str) -> String {
    let after_credentials = url.rsplit('@').next().unwrap();
    after_credentials.split('/').next().unwrap().to_string()
}

/// What the app's http-probe says of a TCP connection to `target` from inside a dyno.
fn connect_from(server: &Server, app: &str, target: &str) -> String {
    let (status, response) = server.get(&format!("{app}.localhost"), &format!("/connect?{target}"));
    assert_eq!(status, 200, "{response}");
    // The body comes chunked: `<size>\r\n<text>\r\n0\r\n\r\n`.
    let body = body_of(&response);
    let mut parts = body.split("\r\n");
    match (parts.next(), parts.next()) {
        (Some(size), Some(text)) if usize::from_str_radix(size, 16).is_ok() => text.to_string(),
        _ => body.to_string(),
    }
}

#[test]
fn postgres_addons_are_provisioned_isolated_rotated_and_dropped() {
    let admin = std::env::var("WASMDYNO_TEST_POSTGRES_URL")
        .expect("scripts/test starts PostgreSQL and sets WASMDYNO_TEST_POSTGRES_URL");
    // The platform reaches its admin role over TLS (the test server's certificate is self-signed: `require`).
    let over_tls = format!("{admin}?sslmode=require");
    let server = Server::start_in(
        TestEnv::new(),
        &[("WASMDYNO_ADDON_POSTGRES_ADMIN_URL", over_tls.as_str())],
    );
    crate::http::deploy_probe(&server, "shop");
    crate::http::deploy_probe(&server, "other");

    let out = server
        .cli(&["addons:create", "heroku-postgresql", "-a", "shop"])
        .ok();
    assert!(out.stdout.contains("DATABASE_URL"), "{out}");
    let url = database_url(&server, "shop");
    assert!(url.starts_with("postgres://wd_shop_postgresql_"), "{url}");
    let info = server
        .cli(&["addons:info", "-a", "shop", "postgresql"])
        .ok();
    assert!(
        info.stdout.contains("Plan:        postgresql:mini"),
        "{info}"
    );
    assert!(info.stdout.contains("provisioned"), "{info}");
    assert!(
        !info.stdout.contains(&url),
        "credentials are never shown: {info}"
    );
    assert!(
        !logs(&server, "shop").contains(&url),
        "credentials are never logged"
    );

    // The database is real and the app's own.
    query(
        &url,
        "CREATE TABLE visits (n int); INSERT INTO visits VALUES (1)",
    )
    .unwrap();
    assert_eq!(query(&url, "SELECT count(*) FROM visits").unwrap(), ["1"]);
    server
        .cli(&["addons:create", "heroku-postgresql:basic", "-a", "other"])
        .ok();
    let other = database_url(&server, "other");
    let (shop_db, other_db) = (
        url.rsplit('/').next().unwrap().to_string(),
        other.rsplit('/').next().unwrap().to_string(),
    );
    assert_ne!(shop_db, other_db);
    // Each role may hold at most its plan's connections: mini 5, basic 20.
    for (db, cap) in [(&url, "5"), (&other, "20")] {
        let limit = "SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user";
        assert_eq!(query(db, limit).unwrap(), [cap]);
    }
    let crossed = format!("{}/{shop_db}", other.rsplit_once('/').unwrap().0);
    let refused = query(&crossed, "SELECT 1").unwrap_err();
    assert!(refused.contains("permission denied"), "{refused}");

    // Its server is open to the dynos of apps with an add-on there, and nothing else on loopback is.
    let endpoint = endpoint_of(&url);
    wait_until(
        "the new release's dyno reaches its database",
        std::time::Duration::from_secs(30),
        || connect_from(&server, "shop", &endpoint) == "connected",
    );
    let api_port = server.api.rsplit(':').next().unwrap();
    let api = connect_from(&server, "shop", &format!("127.0.0.1:{api_port}"));
    assert!(api.starts_with("error"), "the API stays closed: {api}");
    crate::http::deploy_probe(&server, "stranger");
    let stranger = connect_from(&server, "stranger", &endpoint);
    assert!(
        stranger.starts_with("error"),
        "another app cannot reach it: {stranger}"
    );

    // Rotation: a new release with new credentials; the old ones stop working.
    let out = server
        .cli(&["addons:rotate", "-a", "shop", "postgresql"])
        .ok();
    assert!(out.stderr.contains("done, v"), "{out}");
    let rotated = database_url(&server, "shop");
    assert_ne!(rotated, url);
    assert_eq!(
        query(&rotated, "SELECT count(*) FROM visits").unwrap(),
        ["1"]
    );
    assert!(
        query(&url, "SELECT 1").is_err(),
        "the old password no longer works"
    );
    let releases = server.cli(&["releases", "-a", "shop"]).ok().stdout;
    assert!(
        releases.contains("Rotate postgresql credentials"),
        "{releases}"
    );

    // Destroy needs --confirm, drops the database, and a rollback to a release with it is refused.
    let before = server
        .cli(&["releases", "-a", "shop", "--json"])
        .ok()
        .json();
    let with_addon = before.as_array().unwrap().last().unwrap()["version"]
        .as_u64()
        .unwrap();
    let unconfirmed = server
        .cli(&["addons:destroy", "-a", "shop", "postgresql"])
        .fails();
    assert!(
        unconfirmed.stderr.contains("--confirm shop"),
        "{unconfirmed}"
    );
    // Neither autovacuum at work in the database (its session belongs to no role, which a non-superuser admin may
    // not signal) nor a session of the app's own still open stops the drop. `scripts/start-postgres` has
    // autovacuum visit each database every second; these storage settings keep it at this table for minutes.
    query(
        &rotated,
        "CREATE TABLE churn (n int) WITH (autovacuum_vacuum_cost_delay = 100, \
         autovacuum_vacuum_cost_limit = 1, autovacuum_vacuum_threshold = 0, \
         autovacuum_vacuum_scale_factor = 0); \
         INSERT INTO churn SELECT generate_series(1, 100000); DELETE FROM churn",
    )
    .unwrap();
    let roleless = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{shop_db}' AND usesysid IS NULL"
    );
    wait_until(
        "autovacuum is at work in the add-on's database",
        std::time::Duration::from_secs(30),
        || query(&admin, &roleless).unwrap() != ["0"],
    );
    let open = {
        let rotated = rotated.clone();
        std::thread::spawn(move || query(&rotated, "SELECT pg_sleep(60)"))
    };
    let role = rotated[11..].split(':').next().unwrap().to_string();
    let sessions = format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'");
    wait_until(
        "the app's session is open",
        std::time::Duration::from_secs(10),
        || query(&admin, &sessions).unwrap() == ["1"],
    );
    server
        .cli(&[
            "addons:destroy",
            "-a",
            "shop",
            "postgresql",
            "--confirm",
            "shop",
        ])
        .ok();
    let ended = open.join().unwrap().unwrap_err();
    assert!(ended.contains("terminat"), "{ended}");
    assert!(
        query(&rotated, "SELECT 1").is_err(),
        "the database and its role are gone"
    );
    let exists = query(
        &admin,
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{shop_db}'"),
    )
    .unwrap();
    assert_eq!(exists, ["0"]);
    let refused = server
        .cli(&["rollback", "-a", "shop", &format!("v{with_addon}")])
        .fails();
    assert!(refused.stderr.contains("destroyed"), "{refused}");

    // A URL given for a provisioned service is refused; other services keep taking URLs.
    let mixed = server
        .cli(&[
            "addons:create",
            "postgresql",
            "-a",
            "other",
            "--as",
            "mine",
            "--url",
            "postgres://127.0.0.1:5001/x",
        ])
        .fails();
    assert!(
        mixed.stderr.contains("provisioned by this platform"),
        "{mixed}"
    );
    server
        .cli(&[
            "addons:destroy",
            "-a",
            "other",
            "postgresql",
            "--confirm",
            "other",
        ])
        .ok();
}

#[test]
fn without_a_configured_server_provisioning_says_what_to_set() {
    let server = Server::start();
    server.cli(&["apps:create", "nodb"]).ok();
    let out = server
        .cli(&["addons:create", "heroku-postgresql", "-a", "nodb"])
        .fails();
    assert!(
        out.stderr.contains("WASMDYNO_ADDON_POSTGRES_ADMIN_URL"),
        "{out}"
    );
}

/// Runs one Redis command as the user `url` names; its reply as text, or the server's error.
fn redis_cmd(url: &str, args: &[&str]) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        let value: redis::Value = cmd
            .query_async(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        Ok(match value {
            redis::Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            redis::Value::SimpleString(s) => s,
            redis::Value::Okay => "OK".into(),
            redis::Value::Int(n) => n.to_string(),
            redis::Value::Nil => "(nil)".into(),
            other => format!("{other:?}"),
        })
    })
}

fn config_var(server: &Server, app: &str, var: &str) -> String {
    server
        .cli(&["config:get", "-a", app, var])
        .ok()
        .stdout
        .trim()
        .to_string()
}

#[test]
fn redis_addons_are_users_confined_to_their_prefix() {
    let admin = std::env::var("WASMDYNO_TEST_REDIS_URL")
        .expect("scripts/test starts Redis and sets WASMDYNO_TEST_REDIS_URL");
    let server = Server::start_in(
        TestEnv::new(),
        &[("WASMDYNO_ADDON_REDIS_ADMIN_URL", admin.as_str())],
    );
    crate::http::deploy_probe(&server, "cache");
    server.cli(&["apps:create", "neighbour"]).ok();
    server
        .cli(&["addons:create", "heroku-redis", "-a", "cache"])
        .ok();
    server
        .cli(&["addons:create", "redis", "-a", "neighbour"])
        .ok();
    let (url, prefix) = (
        config_var(&server, "cache", "REDIS_URL"),
        config_var(&server, "cache", "REDIS_KEY_PREFIX"),
    );
    assert!(url.starts_with("redis://wd_cache_redis_"), "{url}");
    assert!(
        prefix.starts_with("wd_cache_redis_") && prefix.ends_with(':'),
        "{prefix}"
    );
    let key = format!("{prefix}visits");

    // Its own keys only, and no administrative or dangerous command.
    assert_eq!(redis_cmd(&url, &["SET", &key, "1"]).unwrap(), "OK");
    assert_eq!(redis_cmd(&url, &["INCR", &key]).unwrap(), "2");
    for refused in [
        vec!["SET", "elsewhere", "1"],
        vec!["KEYS", "*"],
        vec!["FLUSHALL"],
        vec!["CONFIG", "GET", "requirepass"],
    ] {
        let err = redis_cmd(&url, &refused).unwrap_err();
        assert!(
            err.contains("NOPERM") || err.contains("permission"),
            "{refused:?}: {err}"
        );
    }
    let neighbour = config_var(&server, "neighbour", "REDIS_URL");
    let err = redis_cmd(&neighbour, &["GET", &key]).unwrap_err();
    assert!(
        err.contains("NOPERM") || err.contains("permission"),
        "{err}"
    );

    // Reachable from its dynos at exactly its address.
    let endpoint = endpoint_of(&url);
    wait_until(
        "the dyno reaches its Redis",
        std::time::Duration::from_secs(30),
        || connect_from(&server, "cache", &endpoint) == "connected",
    );

    // Rotation: the old password stops working; the data stays.
    server.cli(&["addons:rotate", "-a", "cache", "redis"]).ok();
    let rotated = config_var(&server, "cache", "REDIS_URL");
    assert_ne!(rotated, url);
    assert!(redis_cmd(&url, &["GET", &key]).is_err());
    assert_eq!(redis_cmd(&rotated, &["GET", &key]).unwrap(), "2");

    // Destroyed: the user and its keys are gone.
    server
        .cli(&[
            "addons:destroy",
            "-a",
            "cache",
            "redis",
            "--confirm",
            "cache",
        ])
        .ok();
    assert!(redis_cmd(&rotated, &["GET", &key]).is_err());
    assert_eq!(redis_cmd(&admin, &["EXISTS", &key]).unwrap(), "0");
    server
        .cli(&[
            "addons:destroy",
            "-a",
            "neighbour",
            "redis",
            "--confirm",
            "neighbour",
        ])
        .ok();
}

#[test]
fn app_json_sets_up_the_first_deploy() {
    let admin = std::env::var("WASMDYNO_TEST_POSTGRES_URL")
        .expect("scripts/test starts PostgreSQL and sets WASMDYNO_TEST_POSTGRES_URL");
    let server = Server::start_in(
        TestEnv::new(),
        &[("WASMDYNO_ADDON_POSTGRES_ADMIN_URL", admin.as_str())],
    );
    let dir = server.env.path("manifested");
    probe_app(
        &dir,
        "worker: probe.wasm cat\nseed: probe.wasm args seeded $GREETING\n",
    );
    std::fs::write(
        dir.join("app.json"),
        r#"{
            "name": "manifested",
            "env": {
                "GREETING": {"value": "hello"},
                "SECRET_KEY": {"generator": "secret"},
                "API_KEY": {"description": "needed", "required": true}
            },
            "formation": {"worker": {"quantity": 2}},
            "addons": ["heroku-postgresql"],
            "scripts": {"postdeploy": "seed"},
            "frobnicate": 1
        }"#,
    )
    .unwrap();
    server.cli(&["apps:create", "manifested"]).ok();
    let deploy = || {
        server
            .env
            .run(&["deploy", "-a", "manifested", dir.to_str().unwrap()])
    };

    // A required config var the app lacks fails the build, by name.
    let refused = deploy();
    assert_ne!(refused.code, Some(0), "{refused}");
    assert!(refused.stderr.contains("API_KEY"), "{refused}");
    server
        .cli(&["config:set", "-a", "manifested", "API_KEY=k"])
        .ok();

    let out = deploy().ok();
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("unknown key `frobnicate`"), "{said}");
    let config = server
        .cli(&["config", "-a", "manifested", "--json"])
        .ok()
        .json();
    assert_eq!(config["GREETING"], "hello");
    assert_eq!(config["SECRET_KEY"].as_str().unwrap().len(), 64, "{config}");
    assert!(
        config["DATABASE_URL"]
            .as_str()
            .unwrap()
            .starts_with("postgres://"),
        "{config}"
    );
    wait_until(
        "two workers from app.json",
        std::time::Duration::from_secs(30),
        || {
            let ps = server
                .cli(&["ps", "-a", "manifested", "--json"])
                .ok()
                .json();
            ps.as_array()
                .unwrap()
                .iter()
                .filter(|d| d["type"] == "worker" && d["state"] == "up")
                .count()
                == 2
        },
    );
    wait_logs(
        &server,
        "manifested",
        "the postdeploy output",
        std::time::Duration::from_secs(30),
        |logs| logs.contains("seeded") && logs.contains("hello"),
    );

    // A later deploy keeps what the app has: no second add-on, no second postdeploy, the formation as scaled.
    server
        .cli(&["ps:scale", "-a", "manifested", "worker=1"])
        .ok();
    deploy().ok();
    let addons = server
        .cli(&["addons", "-a", "manifested", "--json"])
        .ok()
        .json();
    assert_eq!(addons.as_array().unwrap().len(), 1, "{addons}");
    let formation = server.cli(&["ps:scale", "-a", "manifested"]).ok().stdout;
    assert!(formation.contains("worker=1"), "{formation}");
    server
        .cli(&[
            "addons:destroy",
            "-a",
            "manifested",
            "postgresql",
            "--confirm",
            "manifested",
        ])
        .ok();
}

#[test]
fn the_counter_sample_keeps_its_count_in_postgres_and_redis() {
    let (postgres, redis) = (
        std::env::var("WASMDYNO_TEST_POSTGRES_URL")
            .expect("scripts/test sets WASMDYNO_TEST_POSTGRES_URL"),
        std::env::var("WASMDYNO_TEST_REDIS_URL")
            .expect("scripts/test sets WASMDYNO_TEST_REDIS_URL"),
    );
    let server = Server::start_in(
        TestEnv::new(),
        &[
            ("WASMDYNO_ADDON_POSTGRES_ADMIN_URL", postgres.as_str()),
            ("WASMDYNO_ADDON_REDIS_ADMIN_URL", redis.as_str()),
        ],
    );
    server.cli(&["apps:create", "counter"]).ok();
    // app.json provisions both add-ons before the first release, whose release phase creates the table.
    let dir = repo().join("sample-apps/rust-counter");
    let out = server
        .cli(&["deploy", "-a", "counter", dir.to_str().unwrap()])
        .ok();
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains("migrated: the counter table is ready"),
        "{said}"
    );
    let visit = || {
        let (status, response) = server.get("counter.localhost", "/");
        assert_eq!(status, 200, "{response}");
        response
    };
    wait_until(
        "the counter answers",
        std::time::Duration::from_secs(60),
        || server.get("counter.localhost", "/").0 == 200,
    );
    let first = visit();
    assert!(
        first.contains("visits: 2") && first.contains("cached before: 1"),
        "{first}"
    );
    // The count outlives the dynos and the release.
    server.cli(&["ps:restart", "-a", "counter"]).ok();
    server
        .cli(&["config:set", "-a", "counter", "COLOR=blue"])
        .ok();
    wait_until(
        "the counter answers again",
        std::time::Duration::from_secs(60),
        || {
            let (status, response) = server.get("counter.localhost", "/");
            status == 200 && response.contains("visits: ")
        },
    );
    let later = visit();
    let count: u64 = later
        .split("visits: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(count >= 4, "{later}");
    for name in ["postgresql", "redis"] {
        server
            .cli(&[
                "addons:destroy",
                "-a",
                "counter",
                name,
                "--confirm",
                "counter",
            ])
            .ok();
    }
}
