//! JavaScript apps through the Node.js buildpack (esbuild and ComponentizeJS from npm): `sample-apps/js-hono`, a
//! Hono app with its dependency bundled, as a wasi:http component behind the router, and a Node.js built-in
//! refused at build time by name.

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
