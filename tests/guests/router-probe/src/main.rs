//! A web dyno for the router's tests: an HTTP/1.1 server on the listener the dyno was given
//! (`WASMDYNO_LISTEN_FD`), serving one connection at a time and one request per connection, that behaves well
//! or badly depending on the path:
//!
//! - `GET /`: `ok <DYNO> <WASMDYNO_RELEASE>`;
//! - `GET /conn`: `conn C req R`: this is the C-th connection accepted and the R-th request on it;
//! - `GET /env/NAME`: the environment variable NAME (404 if unset);
//! - `GET /sleep/MS`: answers after MS milliseconds (it says `sleeping MS` on stderr first);
//! - `GET /stall/MS`: sends the head and half the body, waits MS milliseconds, then the rest;
//! - `GET /cut`: promises 100 bytes, sends 10 and closes the connection;
//! - `GET /close`: closes the connection without a response;
//! - `GET /crash`: exits with status 3, no response;
//! - `GET /spin`: loops forever;
//! - `GET /big/N`: N bytes of `x`;
//! - `POST /echo`: the request body (with a Content-Length or chunked), echoed;
//! - `POST /slam`: closes the connection without reading the body;
//! - a request with `Upgrade: P`: answers `101 Switching Protocols` and then echoes every byte until end of stream.
//!
//! `BOOT_DELAY_MS` delays the first accept (a slow boot). `KEEP_ALIVE=1` serves requests on a connection until the
//! client closes it (still one connection at a time, as a single-threaded server does); `CLOSE_QUIETLY=1` closes
//! each connection after one request without saying so in the response (no `Connection: close`).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::OnceLock;
use std::time::Duration;

/// `KEEP_ALIVE=1`: several requests per connection.
fn keep_alive() -> bool {
    static KEEP_ALIVE: OnceLock<bool> = OnceLock::new();
    *KEEP_ALIVE.get_or_init(|| std::env::var("KEEP_ALIVE").is_ok_and(|v| v == "1"))
}

/// `CLOSE_QUIETLY=1`: responses do not say the connection closes after them.
fn close_quietly() -> bool {
    static QUIET: OnceLock<bool> = OnceLock::new();
    *QUIET.get_or_init(|| std::env::var("CLOSE_QUIETLY").is_ok_and(|v| v == "1"))
}

fn main() {
    // `router-probe.wasm worker`: a background dyno that says it is alive twice a second.
    if std::env::args().nth(1).as_deref() == Some("worker") {
        let dyno = std::env::var("DYNO").unwrap_or_default();
        for beat in 1u64.. {
            println!("worker {dyno} beat {beat}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let Some(fd) = std::env::var("WASMDYNO_LISTEN_FD")
        .ok()
        .and_then(|fd| fd.parse().ok())
    else {
        eprintln!("WASMDYNO_LISTEN_FD is not set: run me as a wasmdyno web dyno");
        std::process::exit(2);
    };
    if let Some(ms) = std::env::var("BOOT_DELAY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        eprintln!("booting for {ms} ms");
        std::thread::sleep(Duration::from_millis(ms));
    }
    // SAFETY: the platform hands this descriptor over to the program, and nothing else in it uses the descriptor.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    if let Err(e) = listener.set_nonblocking(false) {
        eprintln!("cannot make the listener blocking: {e}");
        std::process::exit(1);
    }
    eprintln!("listening on fd {fd}");
    for conn in 1.. {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept failed ({e}): stopping");
                return;
            }
        };
        // A client (the router) that goes away costs its own connection, nothing more.
        let _ = serve(stream, conn);
    }
}

/// Serves one connection: one request, or with `KEEP_ALIVE` every request until the client closes it.
fn serve(stream: TcpStream, conn: u64) -> io::Result<()> {
    let mut reader = BufReader::new(&stream);
    for request in 1.. {
        if !serve_request(&mut reader, &stream, conn, request)? || !keep_alive() {
            break;
        }
    }
    Ok(())
}

/// Serves one request; false when the connection is done (the client closed it, or the request closes it).
fn serve_request(
    reader: &mut BufReader<&TcpStream>,
    stream: &TcpStream,
    conn: u64,
    request: u64,
) -> io::Result<bool> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(false);
    }
    let mut words = line.split_whitespace();
    let (method, path) = match (words.next(), words.next()) {
        (Some(method), Some(path)) => (method.to_string(), path.to_string()),
        _ => return Ok(false),
    };
    let mut length = 0usize;
    let mut chunked = false;
    let mut upgrade = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(false);
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.trim().eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("upgrade") {
                upgrade = Some(value.trim().to_string());
            }
        }
    }
    if let Some(protocol) = upgrade {
        let mut out = stream;
        write!(
            out,
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: {protocol}\r\n\r\n"
        )?;
        out.flush()?;
        // Bytes the reader already buffered come first.
        let buffered = reader.buffer().to_vec();
        out.write_all(&buffered)?;
        reader.consume(buffered.len());
        let mut buf = [0u8; 4096];
        loop {
            let n = reader.get_mut().read(&mut buf)?;
            if n == 0 {
                return Ok(false);
            }
            out.write_all(&buf[..n])?;
        }
    }
    if method == "POST" && path == "/slam" {
        return Ok(false);
    }
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        body
    };

    let number = |prefix: &str| path.strip_prefix(prefix).and_then(|n| n.parse::<u64>().ok());
    let answered = match (method.as_str(), path.as_str()) {
        ("POST", "/echo") => respond(stream, 200, &body),
        ("GET", "/conn") => respond(stream, 200, format!("conn {conn} req {request}").as_bytes()),
        ("GET", "/") => {
            let dyno = std::env::var("DYNO").unwrap_or_default();
            let release = std::env::var("WASMDYNO_RELEASE").unwrap_or_default();
            respond(stream, 200, format!("ok {dyno} {release}").as_bytes())
        }
        ("GET", p) if p.starts_with("/env/") => match std::env::var(&p[5..]) {
            Ok(value) => respond(stream, 200, value.as_bytes()),
            Err(_) => respond(stream, 404, b"no such variable"),
        },
        ("GET", p) if p.starts_with("/sleep/") => {
            let ms = number("/sleep/").unwrap_or(0);
            eprintln!("sleeping {ms}");
            std::thread::sleep(Duration::from_millis(ms));
            respond(stream, 200, b"slept")
        }
        ("GET", p) if p.starts_with("/stall/") => {
            let ms = number("/stall/").unwrap_or(0);
            let mut out = stream;
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")?;
            out.flush()?;
            std::thread::sleep(Duration::from_millis(ms));
            out.write_all(b"world")
        }
        ("GET", "/cut") => {
            let mut out = stream;
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")?;
            out.flush()?;
            return Ok(false);
        }
        ("GET", "/close") => return Ok(false),
        ("GET", "/crash") => {
            eprintln!("crashing");
            std::process::exit(3);
        }
        ("GET", "/spin") => {
            eprintln!("spinning");
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        ("GET", p) if p.starts_with("/big/") => {
            let n = number("/big/").unwrap_or(0) as usize;
            respond(stream, 200, &vec![b'x'; n])
        }
        _ => respond(stream, 404, b"not found"),
    };
    answered.map(|()| true)
}

/// A chunked body (extensions and trailers ignored).
fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        line.clear();
        reader.read_line(&mut line)?;
    }
}

fn respond(mut stream: &TcpStream, status: u16, body: &[u8]) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Other",
    };
    let closing = if keep_alive() || close_quietly() {
        ""
    } else {
        "Connection: close\r\n"
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{closing}\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}
