//! JavaScript apps through the Node.js buildpack (esbuild and ComponentizeJS from npm): `sample-apps/js-hono`, a
//! Hono app with its dependency bundled, as a wasi:http component behind the router; a service-worker style
//! `addEventListener('fetch')` app answering many requests per instance; and a Node.js built-in refused at build
//! time by name.

use crate::support::*;

#[test]
fn a_hono_app_serves_text_json_and_forms_with_the_apps_config() {
    let server = Server::start();
    let page = deploy_sample(&server, "hono", "js-hono", &["GREETING=Howdy"], "/");
    let host = "hono.localhost";
    assert_eq!(body_of(&page), "Howdy from Hono on wasmdyno!\n", "{page}");

    // Instances are reused: the second and later requests on one instance answer too.
    for _ in 0..3 {
        let (status, response) = server.get(host, "/api/info");
        assert_eq!(status, 200, "{response}");
        let info: serde_json::Value = serde_json::from_str(body_of(&response)).unwrap();
        assert_eq!(info["dyno"], "web.1", "{info}");
        assert_eq!(info["greeting"], "Howdy", "{info}");
    }

    let (status, response) = server.send(
        host,
        "POST",
        "/echo",
        "application/x-www-form-urlencoded",
        "name=Zo%C3%AB&lang=js",
    );
    assert_eq!(status, 200, "{response}");
    let echoed: serde_json::Value = serde_json::from_str(body_of(&response)).unwrap();
    assert_eq!(echoed["echoed"]["name"], "Zoë", "{echoed}");
    assert_eq!(echoed["echoed"]["lang"], "js", "{echoed}");
}

#[test]
fn a_node_built_in_module_fails_the_build_naming_it() {
    let env = TestEnv::new();
    let app = env.path("nodeonly");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("package.json"),
        r#"{"name": "nodeonly", "type": "module"}"#,
    )
    .unwrap();
    std::fs::write(
        app.join("index.js"),
        "import { readFileSync } from 'fs';\nexport default { fetch() { return new Response(readFileSync('/etc/hostname')); } };\n",
    )
    .unwrap();
    let out = env.run(&["build", app.to_str().unwrap()]);
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("\"fs\" is a Node.js built-in module") && text.contains("index.js"),
        "{text}"
    );
}

/// A service-worker style app (`addEventListener('fetch', ...)`, no package dependencies) answers every request
/// on a warm instance, not only the first: StarlingMonkey's own dispatch serves one request per instance, the
/// buildpack's adapter any number. A handler that throws is a 500 and the next request is answered.
#[test]
fn a_fetch_event_listener_app_answers_many_requests_per_instance() {
    let server = Server::start();
    let app = server.env.path("listener-src");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("package.json"),
        r#"{"name": "sw", "main": "worker.js"}"#,
    )
    .unwrap();
    std::fs::write(
        app.join("worker.js"),
        r#"let served = 0;
addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (url.pathname === '/boom') throw new Error('boom on purpose');
  served += 1;
  event.respondWith(new Response(`served ${served} on ${process.env.DYNO}\n`, { headers: { 'x-path': url.pathname } }));
});
"#,
    )
    .unwrap();
    server.cli(&["apps:create", "sworker"]).ok();
    server
        .cli(&["deploy", "-a", "sworker", app.to_str().unwrap()])
        .ok();
    let host = "sworker.localhost";
    wait_until(
        "the listener app answers",
        std::time::Duration::from_secs(120),
        || server.get(host, "/").0 == 200,
    );
    // One warm instance per dyno at a time for sequential requests: its count goes up.
    let mut counts = Vec::new();
    for _ in 0..4 {
        let (status, response) = server.get(host, "/count");
        assert_eq!(status, 200, "{response}");
        assert!(
            response.to_ascii_lowercase().contains("x-path: /count"),
            "{response}"
        );
        let body = body_of(&response);
        assert!(body.ends_with(" on web.1\n"), "{body}");
        counts.push(
            body.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
    }
    assert!(counts.iter().all(|&c| c >= 1), "{counts:?}");
    assert!(
        counts.windows(2).any(|w| w[1] > w[0]),
        "an instance answered more than one request: {counts:?}"
    );

    let (status, response) = server.get(host, "/boom");
    assert_eq!(status, 500, "{response}");
    let (status, response) = server.get(host, "/after");
    assert_eq!(status, 200, "{response}");
}
