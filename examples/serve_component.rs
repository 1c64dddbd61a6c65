//! A `wasi:http` component served by wasmdyno's runtime alone, on a bare hyper server with no router in front:
//! what `wasmtime serve --max-instance-reuse-count` does, on wasmdyno's warm instances. `scripts/bench-http`
//! measures it beside the router, to show what the router costs and what the `wasi:http` host itself allows.
//!
//!     cargo run --release --no-default-features --example serve_component -- app.wasm 127.0.0.1:8080

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use wasmdyno::runtime::{RunSpec, web::WebHandler};
use wasmdyno::{Runtime, RuntimeConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(path), addr) = (args.next(), args.next()) else {
        return Err("usage: serve_component COMPONENT.wasm [ADDR]".into());
    };
    let addr = addr.unwrap_or_else(|| "127.0.0.1:8080".into());
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let (guest, _) = runtime.load(&std::fs::read(&path)?)?;
    let spec = RunSpec::new(vec![path.clone()], Default::default(), Default::default());
    let Some(dyno) = runtime.http_dyno(&guest, spec, Default::default())? else {
        return Err(format!("{path} exports no wasi:http/incoming-handler").into());
    };
    let handler = Arc::new(WebHandler::Http(dyno));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handler = handler.clone();
                async move {
                    let response = match handler.handle(req).await {
                        Ok(response) => response,
                        Err(failure) => {
                            let text = Full::new(Bytes::from(failure.to_string()));
                            let body = text.map_err(|never| match never {}).boxed_unsync();
                            let mut response = Response::new(body);
                            *response.status_mut() = StatusCode::BAD_GATEWAY;
                            response
                        }
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
