//! A `wasi:http` handler for tests. Paths:
//!   /            "count=N dyno=DYNO" where N counts requests this instance has served (warm reuse shows N > 1)
//!   /echo        the request body back
//!   /log         prints a line to stdout and to stderr, answers "logged"
//!   /trap        traps before responding
//!   /spin        loops forever before responding
//!   /big?n=N     N bytes of 'x', streamed in 64 KiB writes (no content-length; every other answer has one)
//!   /fetch?HOST:PORT    an outgoing wasi:http GET of http://HOST:PORT/: "status N" or "error ..."
//!   /connect?HOST:PORT  a wasi:sockets TCP connection (std's TcpStream): "connected" or "error ..."

use std::sync::atomic::{AtomicU64, Ordering};

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

static SERVED: AtomicU64 = AtomicU64::new(0);

struct Probe;

/// A whole response with its `content-length`, as most frameworks send one.
fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"text/plain".to_vec()),
        ("content-length".to_string(), body.len().to_string().into_bytes()),
    ])
    .expect("valid header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("response body");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("body stream");
    for chunk in body.chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("write body");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finish body");
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let body = request.consume().expect("request body");
    let stream = body.stream().expect("body stream");
    let mut data = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        data.extend_from_slice(&chunk);
    }
    drop(stream);
    IncomingBody::finish(body);
    data
}

impl wasip2::exports::http::incoming_handler::Guest for Probe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let target = request.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        match path {
            "/echo" => {
                let body = read_body(&request);
                respond(out, 200, &body);
            }
            "/log" => {
                println!("a line on stdout");
                eprintln!("a line on stderr");
                respond(out, 200, b"logged");
            }
            "/trap" => panic!("the probe was asked to trap"),
            "/fetch" => respond(out, 200, fetch(query).as_bytes()),
            "/connect" => {
                let text = match std::net::TcpStream::connect(query) {
                    Ok(_) => "connected".to_string(),
                    Err(e) => format!("error {e}"),
                };
                respond(out, 200, text.as_bytes());
            }
            "/spin" => {
                #[allow(clippy::empty_loop)]
                loop {}
            }
            "/big" => {
                let n: usize = query
                    .strip_prefix("n=")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let headers = Fields::new();
                let response = OutgoingResponse::new(headers);
                let outgoing = response.body().expect("response body");
                ResponseOutparam::set(out, Ok(response));
                let stream = outgoing.write().expect("body stream");
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = n;
                while left > 0 {
                    let take = left.min(chunk.len());
                    // blocking_write_and_flush takes at most 4096 bytes at a time.
                    for piece in chunk[..take].chunks(4096) {
                        stream.blocking_write_and_flush(piece).expect("write body");
                    }
                    left -= take;
                }
                drop(stream);
                OutgoingBody::finish(outgoing, None).expect("finish body");
            }
            _ => {
                let dyno = std::env::var("DYNO").unwrap_or_default();
                respond(out, 200, format!("count={served} dyno={dyno}\n").as_bytes());
            }
        }
    }
}

/// GET http://{authority}/ through wasi:http's outgoing handler.
fn fetch(authority: &str) -> String {
    use wasip2::http::types::{OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some("/"));
    match wasip2::http::outgoing_handler::handle(request, None) {
        Err(e) => format!("error {e:?}"),
        Ok(future) => {
            future.subscribe().block();
            match future.get() {
                Some(Ok(Ok(response))) => format!("status {}", response.status()),
                Some(Ok(Err(e))) => format!("error {e:?}"),
                other => format!("error {other:?}"),
            }
        }
    }
}

wasip2::http::proxy::export!(Probe);
