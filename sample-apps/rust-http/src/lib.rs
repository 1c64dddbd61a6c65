//! A `wasi:http` web app: every request gets a small text response naming its method and path.
//! wasmdyno keeps warm instances of it in each web dyno.

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct App;

impl wasip2::exports::http::incoming_handler::Guest for App {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let method = match request.method() {
            Method::Get => "GET".to_string(),
            Method::Post => "POST".to_string(),
            Method::Put => "PUT".to_string(),
            Method::Delete => "DELETE".to_string(),
            Method::Head => "HEAD".to_string(),
            other => format!("{other:?}"),
        };
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let dyno = std::env::var("DYNO").unwrap_or_else(|_| "unknown".into());
        let body_text = format!("Hello from Rust on wasmdyno ({dyno})\n{method} {path}\n");

        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("valid header");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("response body");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = body.write().expect("body stream");
        stream
            .blocking_write_and_flush(body_text.as_bytes())
            .expect("write body");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish body");
    }
}

wasip2::http::proxy::export!(App);
