//! Metrics measured where they happen: requests through the router show up per app and process type, minute by
//! minute, in `wasmdyno metrics` and in the Prometheus exposition at `/metrics`.

use crate::http::deploy_probe;
use crate::support::*;

#[test]
fn the_router_measures_every_request_by_type_status_and_code() {
    let server = Server::start();
    deploy_probe(&server, "measured");
    for _ in 0..20 {
        assert_eq!(server.get("measured.localhost", "/").0, 200);
    }
    // A handler that traps: the router answers 503 with an H code.
    assert_eq!(server.get("measured.localhost", "/trap").0, 503);
    server.cli(&["maintenance:on", "-a", "measured"]).ok();
    for _ in 0..3 {
        assert_eq!(server.get("measured.localhost", "/").0, 503);
    }

    let json = server
        .cli(&["metrics", "-a", "measured", "--json"])
        .ok()
        .json();
    let series = json["types"].as_array().unwrap();
    let of = |kind: &str| {
        series
            .iter()
            .find(|s| s["process_type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} series: {json}"))
    };
    let web = of("web");
    // The deploy's readiness checks are requests too: at least the 20 sent here.
    assert!(
        web["totals"]["requests"][1].as_u64().unwrap() >= 20,
        "{web}"
    );
    assert_eq!(web["totals"]["requests"][4], 1, "one 503: {web}");
    let codes = web["totals"]["errors"].as_object().unwrap();
    assert_eq!(
        codes.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        1,
        "{web}"
    );
    let minute = &web["minutes"][0];
    let (p50, p99) = (
        minute["p50_ms"].as_f64().unwrap(),
        minute["p99_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p99 >= p50, "{minute}");
    // Maintenance pages are the router's own answers: no dyno took them.
    let router = of("router");
    assert_eq!(router["totals"]["errors"]["H80"], 3, "{router}");
    assert_eq!(router["totals"]["requests"][4], 3, "{router}");

    // The web dyno's memory: its warm instances' linear memory, counted against its quota (none may be warm now).
    let dyno = &json["dynos"][0];
    assert_eq!(dyno["name"], "web.1", "{json}");
    let (now, peak) = (
        dyno["memory_bytes"].as_u64().unwrap(),
        dyno["memory_peak_bytes"].as_u64().unwrap(),
    );
    assert!(peak > 0 && peak >= now && peak <= 512 << 20, "{dyno}");

    let table = server
        .cli(&["metrics", "-a", "measured", "--type", "web"])
        .ok();
    assert!(table.stdout.contains("=== ⬢ measured web"), "{table}");
    assert!(table.stdout.contains("web.1"), "{table}");
    assert!(!table.stdout.contains("router"), "{table}");
    let out = server.cli(&["metrics", "-a", "nope"]).fails();
    assert!(out.stderr.contains("nope"), "{out}");

    // The exposition parses as Prometheus text and carries the same counts.
    let (status, text) = server.raw("GET", "/metrics", Some(&server.token()), "");
    assert_eq!(status, 200, "{text}");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{name}: {other:?}"),
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    let h80 = sample(
        "wasmdyno_router_errors_total",
        &[("app", "measured"), ("type", "router"), ("code", "H80")],
    );
    assert_eq!(h80, 3.0);
    let ok = sample(
        "wasmdyno_router_requests_total",
        &[("app", "measured"), ("type", "web"), ("status", "2xx")],
    );
    assert!(ok >= 20.0, "{ok}");
    let memory = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "wasmdyno_dyno_memory_peak_bytes" && s.labels.get("dyno") == Some("web.1")
        })
        .unwrap_or_else(|| panic!("no dyno memory in\n{text}"));
    assert!(
        matches!(memory.value, prometheus_parse::Value::Gauge(v) if v > 0.0),
        "{memory:?}"
    );
    // Behind the token, like the rest of the API.
    assert_eq!(server.raw("GET", "/metrics", None, "").0, 401);
}

#[test]
fn a_busy_dyno_shows_its_cpu_time_and_an_idle_one_none() {
    // The spinning worker ignores the stop: interrupt it soon when the server shuts down.
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_STOP_TIMEOUT_MS", "500")]);
    let dir = server.env.path("spin-src");
    probe_app(&dir, "worker: probe.wasm spin\nidle: probe.wasm cat\n");
    server.cli(&["apps:create", "busy"]).ok();
    server
        .cli(&["deploy", "-a", "busy", dir.to_str().unwrap()])
        .ok();
    server
        .cli(&["ps:scale", "-a", "busy", "worker=1", "idle=1"])
        .ok();
    let cpu = |json: &serde_json::Value, dyno: &str| {
        json["dynos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == dyno)
            .and_then(|d| d["cpu_ms"].as_u64())
    };
    let mut last = serde_json::Value::Null;
    wait_until(
        "the spinning worker to show 300 ms of CPU",
        std::time::Duration::from_secs(60),
        || {
            last = server.cli(&["metrics", "-a", "busy", "--json"]).ok().json();
            cpu(&last, "worker.1").is_some_and(|ms| ms >= 300)
        },
    );
    // A worker blocked on stdin runs nothing: a few ticks at boot at most.
    let idle = cpu(&last, "idle.1").expect("the idle dyno");
    assert!(idle < 50, "{last}");
}

#[test]
fn a_metrics_listener_of_its_own_needs_no_token_and_serves_nothing_else() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_METRICS_LISTEN", &addr)]);
    deploy_probe(&server, "scraped");
    assert_eq!(server.get("scraped.localhost", "/").0, 200);
    let get = |path: &str| {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        exchange(
            &addr,
            request.as_bytes(),
            std::time::Duration::from_secs(10),
        )
        .unwrap()
    };
    let (status, response) = get("/metrics");
    assert_eq!(status, 200, "{response}");
    assert!(
        body_of(&response).contains(
            "wasmdyno_router_requests_total{app=\"scraped\",type=\"web\",status=\"2xx\"}"
        ),
        "{response}"
    );
    // Only the metrics: the API is not reachable through this listener.
    assert_eq!(get("/apps").0, 404);
}
