//! The router's added latency: the Rust `wasi:http` sample answered through wasmdyno's router (routing table,
//! balancing, headers, router log line), against the same component's dyno answered by a bare hyper server
//! that calls its handler in-process. Same process, same loopback transport, one keep-alive connection each,
//! requests one after another; the difference is what the router adds.
//!
//!     cargo bench --bench router [-- REQUESTS]
//!
//! Builds `sample-apps/rust-http` for wasm32-wasip2 with cargo first (into target/bench-guests).

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use wasmdyno::runtime::http::HttpSettings;
use wasmdyno::{Edge, edge::EdgeSettings};
use wasmdyno::{
    Runtime, RuntimeConfig, runtime::DynoSize, runtime::RunSpec, runtime::resolve_module,
};
use wasmdyno::{Slug, slug::Limits, slug::PackOptions, slug::pack};

fn main() {
    let requests: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let wasm = common::build_wasip2_sample("rust-http", "rust_http.wasm");
    let work = tempfile::tempdir().expect("a temporary directory");
    let app = work.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("rust_http.wasm"), &wasm).unwrap();
    let options = PackOptions {
        process_types: BTreeMap::from([("web".to_string(), "rust_http.wasm".to_string())]),
        ..PackOptions::default()
    };
    let packed = pack(&app, options).expect("the app packs");
    let slugs = work.path().join("slugs");
    std::fs::create_dir_all(&slugs).unwrap();
    std::fs::write(slugs.join("hello.slug"), &packed.bytes).unwrap();

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    tokio.block_on(async {
        let runtime = Arc::new(Runtime::new(RuntimeConfig::default()).expect("a runtime"));

        // Through the router, as `wasmdyno serve` and edge hosts run it.
        let edge = Edge::new(
            runtime.clone(),
            work.path().join("edge"),
            EdgeSettings::default(),
        );
        edge.sync_dir(&slugs).await.expect("the slug deploys");
        assert!(edge.wait_up("hello", Duration::from_secs(60)).await);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let routed = listener.local_addr().unwrap();
        tokio::spawn(
            edge.router()
                .clone()
                .serve(listener, std::future::pending()),
        );

        // The same component's dyno, called in-process by a bare hyper server.
        let slug = Slug::from_bytes(&packed.bytes, Limits::default()).unwrap();
        let (_, module) = resolve_module(&slug, "rust_http.wasm").unwrap();
        let (guest, _) = runtime.load(&module).unwrap();
        let mut env = BTreeMap::new();
        env.insert("DYNO".to_string(), "web.1".to_string());
        let spec = RunSpec::new(vec!["rust_http.wasm".into()], env, DynoSize::default());
        let dyno = runtime
            .http_dyno(&guest, spec, HttpSettings::default())
            .unwrap()
            .expect("a wasi:http component");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let direct = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let _ = stream.set_nodelay(true);
                let dyno = dyno.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let dyno = dyno.clone();
                        async move {
                            let response = dyno.handle(req).await.expect("the handler answers");
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });

        println!("{requests} sequential requests on one keep-alive connection each, release build");
        println!("{:44} {:>9} {:>9}", "", "p50", "p99");
        let base = measure(direct, requests).await;
        let through = measure(routed, requests).await;
        for (name, (p50, p99)) in [
            ("handler called in-process (bare hyper)", base),
            ("through wasmdyno's router", through),
        ] {
            println!("{name:44} {:>7.1}µs {:>7.1}µs", micros(p50), micros(p99));
        }
        println!(
            "router adds {:.1}µs at p50 ({:.2}x)",
            micros(through.0) - micros(base.0),
            through.0.as_secs_f64() / base.0.as_secs_f64()
        );
        edge.shutdown().await;
    });
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// p50 and p99 of `requests` GETs of `/` with `Host: hello.localhost`, one after another.
async fn measure(addr: std::net::SocketAddr, requests: usize) -> (Duration, Duration) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut times = Vec::with_capacity(requests);
    for i in 0..requests + 200 {
        let request = hyper::Request::get("/")
            .header("host", "hello.localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.ready().await.expect("the connection stays open");
        let start = Instant::now();
        let response = sender.send_request(request).await.expect("a response");
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.expect("a body");
        // The first 200 warm the instance and the connection.
        if i >= 200 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    (times[times.len() / 2], times[times.len() * 99 / 100])
}
