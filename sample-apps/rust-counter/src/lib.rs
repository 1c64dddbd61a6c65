//! A visit counter: each request adds one to a row in PostgreSQL (its table made by the `migrate` release
//! command) and keeps the last count in Redis. Both come as add-ons (`DATABASE_URL`, `REDIS_URL` and
//! `REDIS_KEY_PREFIX`), reached over `wasi:sockets` with the small clients in `pg` and `resp`.

mod pg;
mod resp;
mod url;

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct App;

impl wasip2::exports::http::incoming_handler::Guest for App {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let (status, text) = match path.as_str() {
            "/" => match visit() {
                Ok(text) => (200, text),
                Err(e) => (500, format!("error: {e}\n")),
            },
            _ => (404, "not found\n".to_string()),
        };
        respond(response_out, status, &text);
    }
}

/// Counts a visit; the answer names the count in PostgreSQL and what Redis kept of the one before.
fn visit() -> Result<String, String> {
    let database = std::env::var("DATABASE_URL").map_err(|_| "no DATABASE_URL")?;
    let mut db = pg::Connection::open(&database)?;
    let rows = db.query("UPDATE counter SET n = n + 1 WHERE id = 1 RETURNING n")?;
    let count = rows.first().cloned().ok_or("the counter table has no row: run the release command")?;
    let cache = std::env::var("REDIS_URL").map_err(|_| "no REDIS_URL")?;
    let prefix = std::env::var("REDIS_KEY_PREFIX").unwrap_or_default();
    let mut redis = resp::Connection::open(&cache)?;
    let key = format!("{prefix}last");
    let before = redis.command(&["GET", &key])?;
    redis.command(&["SET", &key, &count])?;
    Ok(format!(
        "visits: {count}\ncached before: {}\n",
        before.unwrap_or_else(|| "nothing".into())
    ))
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .expect("valid header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let body = response.body().expect("response body");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("body stream");
    stream.blocking_write_and_flush(text.as_bytes()).expect("write body");
    drop(stream);
    OutgoingBody::finish(body, None).expect("finish body");
}

wasip2::http::proxy::export!(App);
