//! A minimal HTTP/1.1 server for a wasmdyno web dyno: it accepts on the listener the dyno was given
//! (`WASMDYNO_LISTEN_FD`), one connection at a time, and answers one request per connection:
//!
//! - `GET /file`: `public/hello.txt`, read from the app's own slug;
//! - `GET /env/NAME`: the environment variable NAME (404 if unset);
//! - `GET /big/N`: N bytes of `x` (to test clients that hang up mid-response);
//! - `POST` to any path: the request body, echoed.
//!
//! When the listener is closed (the dyno is stopping), `accept` fails and the server exits 0.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::FromRawFd;

/// The largest request body read.
const MAX_BODY: usize = 1 << 20;

fn main() {
    let Some(fd) = std::env::var("WASMDYNO_LISTEN_FD")
        .ok()
        .and_then(|fd| fd.parse().ok())
    else {
        eprintln!("WASMDYNO_LISTEN_FD is not set: run me as a wasmdyno web dyno");
        std::process::exit(2);
    };
    // SAFETY: the platform hands this descriptor over to the program, and nothing else in it uses the descriptor.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    // The listener comes non-blocking (as Go's runtime needs it); this server blocks in accept.
    if let Err(e) = listener.set_nonblocking(false) {
        eprintln!("cannot make the listener blocking: {e}");
        std::process::exit(1);
    }
    eprintln!("listening on fd {fd}");
    let mut served = 0u64;
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept failed after {served} connections ({e}): stopping");
                return;
            }
        };
        served += 1;
        if let Err(e) = serve(stream) {
            // A client that goes away mid-response costs its own connection, nothing more.
            eprintln!("connection {served}: {e}");
        }
    }
}

fn serve(stream: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let (method, path) = match (words.next(), words.next()) {
        (Some(method), Some(path)) => (method.to_string(), path.to_string()),
        _ => return respond(&stream, 400, "text/plain", b"bad request line\n"),
    };
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(usize::MAX);
        }
    }
    if length > MAX_BODY {
        return respond(&stream, 413, "text/plain", b"body too large\n");
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;

    match (method.as_str(), path.as_str()) {
        ("POST", _) => respond(&stream, 200, "application/octet-stream", &body),
        ("GET", "/file") => match std::fs::read("public/hello.txt") {
            Ok(file) => respond(&stream, 200, "text/plain", &file),
            Err(e) => respond(&stream, 500, "text/plain", format!("{e}\n").as_bytes()),
        },
        ("GET", path) if path.starts_with("/env/") => match std::env::var(&path[5..]) {
            Ok(value) => respond(&stream, 200, "text/plain", value.as_bytes()),
            Err(_) => respond(&stream, 404, "text/plain", b"no such variable\n"),
        },
        ("GET", path) if path.starts_with("/big/") => match path[5..].parse::<usize>() {
            Ok(n) => respond(&stream, 200, "text/plain", &vec![b'x'; n]),
            Err(_) => respond(&stream, 400, "text/plain", b"bad size\n"),
        },
        _ => respond(&stream, 404, "text/plain", b"not found\n"),
    }
}

fn respond(mut stream: &TcpStream, status: u16, kind: &str, body: &[u8]) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Content Too Large",
        _ => "Internal Server Error",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}
