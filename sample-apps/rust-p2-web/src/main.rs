//! A web process the Heroku way: a WASI 0.2 component that binds `$PORT` on loopback with `wasi:sockets`
//! (std's `TcpListener`) and answers plain HTTP/1.1. wasmdyno allows it that one port and nothing else.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    // wasmdyno sets PORT for web dynos; anywhere else it falls back to 8080 (which wasmdyno does not allow).
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let listener = match TcpListener::bind(format!("127.0.0.1:{port}")) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot bind 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("listening on $PORT ({port})");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = serve(stream) {
                    eprintln!("connection: {e}");
                }
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

/// One request per connection: read the request line and headers, answer, close.
fn serve(stream: TcpStream) -> std::io::Result<()> {
    // `&TcpStream` reads and writes: WASI has no `dup`, so no `try_clone`.
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(()); // a connection that only checked we listen
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut words = request_line.split_whitespace();
    let (method, path) = (words.next().unwrap_or("?"), words.next().unwrap_or("/"));
    let dyno = std::env::var("DYNO").unwrap_or_default();
    let body = format!("Hello from a Rust component on $PORT ({dyno})\n{method} {path}\n");
    let mut out = &stream;
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}
