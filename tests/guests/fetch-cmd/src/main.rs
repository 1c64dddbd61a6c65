//! `fetch-cmd HOST:PORT`: a WASI 0.2 command that GETs http://HOST:PORT/ through wasi:http's outgoing handler and
//! prints `status N` or `error ...` (what the platform's network policy let through).

use wasip2::http::types::{Fields, OutgoingRequest, Scheme};

fn main() {
    let authority = std::env::args().nth(1).unwrap_or_else(|| "example.com:80".into());
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(&authority));
    let _ = request.set_path_with_query(Some("/"));
    let text = match wasip2::http::outgoing_handler::handle(request, None) {
        Err(e) => format!("error {e:?}"),
        Ok(future) => {
            future.subscribe().block();
            match future.get() {
                Some(Ok(Ok(response))) => format!("status {}", response.status()),
                Some(Ok(Err(e))) => format!("error {e:?}"),
                other => format!("error {other:?}"),
            }
        }
    };
    println!("{text}");
}
