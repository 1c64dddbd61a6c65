//! The embedding API through `examples/edge_host.rs`: a folder of slugs served with a slug swapped under load, and
//! an edge host following a real `wasmdyno serve`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::support::{Server, TestEnv, assert_switched_without_failures, body_of, exchange, repo};

fn wait_until(what: &str, check: impl FnMut() -> bool) {
    crate::support::wait_until(what, Duration::from_secs(90), check);
}

/// Two slugs of the router-probe guest (`ok web.1 v<release>`) with different sha256s: the same app, packed
/// with two commits.
fn probe_slugs() -> &'static (PathBuf, PathBuf) {
    static SLUGS: OnceLock<(tempfile::TempDir, (PathBuf, PathBuf))> = OnceLock::new();
    &SLUGS
        .get_or_init(|| {
            let env = TestEnv::new();
            let built = env.path("router-probe.slug");
            let dir = repo().join("tests/guests/router-probe");
            env.run(&[
                "build",
                dir.to_str().unwrap(),
                "-o",
                built.to_str().unwrap(),
            ])
            .ok();
            let slug = wasmdyno::Slug::open(&built, Default::default()).unwrap();
            let app = env.path("unpacked");
            for path in slug.manifest().files.keys() {
                let dest = app.join(path);
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::write(dest, slug.file(path).unwrap()).unwrap();
            }
            let pack = |commit: &str| {
                let packed = wasmdyno::slug::pack(
                    &app,
                    wasmdyno::slug::PackOptions {
                        process_types: slug.manifest().process_types.clone(),
                        config_vars: slug.manifest().config_vars.clone(),
                        buildpack: slug.manifest().buildpack.clone(),
                        commit: Some(commit.into()),
                    },
                )
                .unwrap();
                let path = env.path(&format!("{commit}.slug"));
                std::fs::write(&path, packed.bytes).unwrap();
                path
            };
            let slugs = (pack("one"), pack("two"));
            (env.dir, slugs)
        })
        .1
}

/// The example, built once per run.
fn edge_host() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", "edge_host"])
            .current_dir(repo())
            .status()
            .unwrap();
        assert!(status.success(), "cannot build the example");
        let exe = std::env::current_exe().unwrap();
        // target/debug/deps/it-HASH → target/debug/examples/edge_host
        exe.parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples/edge_host")
    })
}

/// A running example; its stdout collected, its app addresses read from it.
struct Host {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Host {
    fn start(args: &[&str]) -> Host {
        let mut child = Command::new(edge_host())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let collected = out.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let mut out = collected.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
        Host { child, out }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Where `app` listens, once the host says.
    fn address(&self, app: &str) -> String {
        let prefix = format!("edge_host: {app} on http://");
        let mut found = None;
        wait_until("the app's listener", || {
            found = self.output().lines().find_map(|l| {
                let rest = l.strip_prefix(&prefix)?;
                Some(rest.split(' ').next()?.to_string())
            });
            found.is_some()
        });
        found.unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET / on `addr`; (status, body), status 0 when the connection failed.
fn get(addr: &str, host: &str) -> (u16, String) {
    get_path(addr, host, "/")
}

fn get_path(addr: &str, host: &str, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    match exchange(addr, request.as_bytes(), Duration::from_secs(60)) {
        Ok((status, response)) => (status, body_of(&response).to_string()),
        Err(_) => (0, String::new()),
    }
}

#[test]
fn the_edge_host_example_serves_a_folder_and_swaps_a_slug_without_failing_a_request() {
    let (one, two) = probe_slugs();
    let work = tempfile::tempdir().unwrap();
    let slugs = work.path().join("slugs-in");
    std::fs::create_dir_all(&slugs).unwrap();
    std::fs::copy(one, slugs.join("steady.tar.gz")).unwrap();
    let host = Host::start(&[
        "--dir",
        slugs.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--work",
        work.path().join("work").to_str().unwrap(),
        "--poll-ms",
        "100",
    ]);
    let addr = host.address("steady");
    wait_until("the app to answer", || {
        get(&addr, "steady.localhost").1 == "ok web.1 v1"
    });

    let sent = Arc::new(AtomicUsize::new(0));
    let switched = Arc::new(AtomicBool::new(false));
    let replies = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (sent, switched, replies) = (sent.clone(), switched.clone(), replies.clone());
            let addr = addr.clone();
            std::thread::spawn(move || {
                loop {
                    let n = sent.fetch_add(1, Ordering::SeqCst);
                    if n >= 20_000 || (n >= 400 && switched.load(Ordering::SeqCst)) {
                        return;
                    }
                    let reply = get(&addr, "steady.localhost");
                    if reply.1 == "ok web.1 v2" {
                        switched.store(true, Ordering::SeqCst);
                    }
                    replies.lock().unwrap().push(reply);
                }
            })
        })
        .collect();
    wait_until("some load", || sent.load(Ordering::SeqCst) >= 100);
    // Swap the slug the way a deploy tool would: a new file renamed over the old one.
    std::fs::copy(two, slugs.join("steady.tmp")).unwrap();
    std::fs::rename(slugs.join("steady.tmp"), slugs.join("steady.tar.gz")).unwrap();
    for client in clients {
        client.join().unwrap();
    }
    assert_switched_without_failures(&replies.lock().unwrap(), "ok web.1 v1", "ok web.1 v2");
    // The app's log lines are printed: the router's, and the dyno manager's.
    wait_until("log lines on stdout", || {
        let out = host.output();
        out.contains("steady ") && out.contains("status=200") && out.contains("State changed")
    });
}

#[test]
fn an_edge_host_following_a_server_picks_up_a_new_release() {
    let (one, _) = probe_slugs();
    let server = Server::start();
    server.cli(&["apps:create", "far"]).ok();
    let token = server.token();
    let (status, body) = server.raw(
        "POST",
        "/apps/far/slugs",
        Some(&token),
        std::fs::read(one).unwrap(),
    );
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = server.raw(
        "POST",
        "/apps/far/releases",
        Some(&token),
        serde_json::json!({ "slug": id }).to_string(),
    );
    assert_eq!(status, 201, "{body}");

    // The slug is served to token holders only, and only as a slug of one of the app's releases.
    let (status, _) = server.raw("GET", &format!("/apps/far/slugs/{id}"), None, "");
    assert_eq!(status, 401);
    let (status, _) = server.raw(
        "GET",
        &format!("/apps/far/slugs/{}", "0".repeat(64)),
        Some(&token),
        "",
    );
    assert_eq!(status, 404);

    // The edge holds the follower token: it reads current releases and slugs, nothing else.
    let follower = std::fs::read_to_string(server.env.home().join("follower-token")).unwrap();
    let (status, reply) = server.raw("GET", "/apps/far/current-release", Some(&follower), "");
    assert_eq!(status, 200, "{reply}");
    for (method, path, body) in [
        ("GET", "/apps", ""),
        ("GET", "/apps/far/config-vars", ""),
        ("PATCH", "/apps/far/config-vars", r#"{"EVIL":"1"}"#),
        ("POST", "/apps/far/releases", r#"{"rollback":true}"#),
    ] {
        let (status, reply) = server.raw(method, path, Some(&follower), body);
        assert_eq!(status, 403, "{method} {path}: {reply}");
    }

    let work = tempfile::tempdir().unwrap();
    let host = Host::start(&[
        "--follow",
        &server.api,
        "--token",
        &follower,
        "--app",
        "far",
        "--listen",
        "127.0.0.1:0",
        "--work",
        work.path().to_str().unwrap(),
        "--poll-ms",
        "100",
    ]);
    let addr = host.address("far");
    wait_until("the edge to run release v2", || {
        get(&addr, "far.localhost").1 == "ok web.1 v2"
    });
    // The slug it runs is the one the server has, checked by sha256.
    assert!(
        work.path()
            .join("slugs")
            .join(format!("{id}.tar.gz"))
            .exists()
    );

    // A new release on the server (config only) reaches the edge; no request fails on the way.
    server.cli(&["config:set", "-a", "far", "NEW=1"]).ok();
    let mut seen = Vec::new();
    wait_until("the edge to run release v3", || {
        let reply = get(&addr, "far.localhost");
        seen.push(reply.clone());
        reply.1 == "ok web.1 v3"
    });
    assert!(seen.iter().all(|(status, _)| *status == 200), "{seen:?}");
}

/// A TLS proxy in front of `api` on 127.0.0.1 (the test certificate, for `localhost`); returns its port.
fn tls_proxy(api: &str) -> u16 {
    let api = api.strip_prefix("http://").unwrap().to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let acceptor = crate::support::tls_acceptor();
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, api) = (acceptor.clone(), api.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(&api).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                });
            }
        });
    });
    port
}

#[test]
fn an_edge_host_follows_a_server_over_https_with_a_private_ca() {
    let (one, _) = probe_slugs();
    let server = Server::start();
    server.cli(&["apps:create", "tls"]).ok();
    crate::router::release_slug(&server, "tls", one);
    let port = tls_proxy(&server.api);
    let ca = server.env.path("ca.pem");
    std::fs::write(&ca, crate::support::TEST_CA).unwrap();
    let follower = std::fs::read_to_string(server.env.home().join("follower-token")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let url = format!("https://localhost:{port}");
    let host = Host::start(&[
        "--follow",
        &url,
        "--ca-file",
        ca.to_str().unwrap(),
        "--token",
        &follower,
        "--app",
        "tls",
        "--listen",
        "127.0.0.1:0",
        "--work",
        work.path().to_str().unwrap(),
        "--poll-ms",
        "100",
    ]);
    let addr = host.address("tls");
    wait_until("the edge to run release v2", || {
        get(&addr, "tls.localhost").1 == "ok web.1 v2"
    });

    // Without the CA, the server's certificate is not trusted and nothing is pulled.
    let untrusting = Host::start(&[
        "--follow",
        &url,
        "--token",
        &follower,
        "--app",
        "tls",
        "--listen",
        "127.0.0.1:0",
        "--work",
        tempfile::tempdir().unwrap().path().to_str().unwrap(),
        "--poll-ms",
        "100",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !untrusting.output().contains("edge_host: tls on"),
        "{}",
        untrusting.output()
    );
}

/// The embedding API in-process: an `Edge` scales a process type up and down and sets config vars as a new
/// release, with real dynos answering through its router on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_edge_scales_a_process_type_and_sets_config_vars() {
    use wasmdyno::{
        Edge, EdgeError, Runtime, RuntimeConfig, dyno::AppSpec, dyno::ReleaseSpec,
        dyno::State as DynoState, edge::EdgeSettings, runtime::DynoSize,
    };

    let (one, _) = probe_slugs();
    let work = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let edge = Edge::new(Arc::new(runtime), work.path(), EdgeSettings::default());
    let slug = edge
        .source()
        .add_slug(&std::fs::read(one).unwrap(), None, Default::default())
        .unwrap();
    let release = ReleaseSpec::new(1, slug.sha256()).scale("web", 1, DynoSize::Eco);
    edge.deploy(AppSpec::new("hello"), Some(release)).await;
    assert!(edge.wait_up("hello", Duration::from_secs(90)).await);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let serving = tokio::spawn(
        edge.router()
            .clone()
            .serve(listener, std::future::pending()),
    );
    let request = |path: &'static str| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || get_path(&addr, "hello.localhost", path))
    };
    let dynos = |edge: &Edge| -> Vec<(String, u64, String, DynoState)> {
        edge.manager()
            .dynos("hello")
            .into_iter()
            .map(|d| (d.name, d.release, d.size, d.state))
            .collect()
    };
    async fn settle(edge: &Edge, done: impl Fn(&Edge) -> bool) {
        for _ in 0..900 {
            if done(edge) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the dynos never settled: {:?}",
            edge.manager().dynos("hello")
        );
    }

    // Up: two web dynos of release 1.
    edge.scale("hello", "web", 2, DynoSize::Eco).await.unwrap();
    assert!(edge.wait_up("hello", Duration::from_secs(90)).await);
    let names: Vec<_> = dynos(&edge).into_iter().map(|d| d.0).collect();
    assert_eq!(names, ["web.1", "web.2"]);
    assert_eq!(request("/").await.unwrap().0, 200);

    // Config vars make release 2; the dynos are replaced and see them.
    let version = edge
        .set_config("hello", [("GREETING", Some("hi"))])
        .await
        .unwrap();
    assert_eq!(version, 2);
    settle(&edge, |edge| {
        let now = dynos(edge);
        now.len() == 2 && now.iter().all(|d| d.1 == 2 && d.3 == DynoState::Up)
    })
    .await;
    assert_eq!(request("/env/GREETING").await.unwrap(), (200, "hi".into()));
    assert!(request("/").await.unwrap().1.ends_with(" v2"));

    // Another size replaces them; 0 stops them all.
    edge.scale("hello", "web", 1, DynoSize::Basic)
        .await
        .unwrap();
    settle(&edge, |edge| {
        let now = dynos(edge);
        now.len() == 1 && now[0].2 == "basic" && now[0].3 == DynoState::Up
    })
    .await;
    edge.scale("hello", "web", 0, DynoSize::Basic)
        .await
        .unwrap();
    settle(&edge, |edge| dynos(edge).is_empty()).await;

    // Unknown process types and config vars the platform sets are refused.
    let err = edge
        .scale("hello", "clock", 1, DynoSize::Eco)
        .await
        .unwrap_err();
    assert!(matches!(err, EdgeError::Invalid(_)), "{err}");
    let err = edge
        .set_config("hello", [("PORT", Some("80"))])
        .await
        .unwrap_err();
    assert!(matches!(err, EdgeError::Invalid(_)), "{err}");

    // An app without a release cannot be scaled.
    let err = edge
        .scale("nope", "web", 1, DynoSize::Eco)
        .await
        .unwrap_err();
    assert!(matches!(err, EdgeError::NoRelease(_)), "{err}");
    serving.abort();
    edge.shutdown().await;
}
