//! A PostgreSQL client for simple queries (protocol 3.0), with SCRAM-SHA-256 or cleartext password
//! authentication: enough for a counter.

use std::io::{Read, Write};
use std::net::TcpStream;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub struct Connection {
    stream: TcpStream,
}

impl Connection {
    /// Connects to `postgres://user:password@host:port/database` and authenticates.
    pub fn open(url: &str) -> Result<Connection, String> {
        let url = crate::url::parse_url(url)?;
        let stream = TcpStream::connect(&url.address).map_err(|e| format!("postgres {}: {e}", url.address))?;
        let mut connection = Connection { stream };
        let mut startup = Vec::new();
        startup.extend_from_slice(&196_608i32.to_be_bytes());
        for (key, value) in [("user", url.user.as_str()), ("database", url.path.as_str())] {
            startup.extend_from_slice(key.as_bytes());
            startup.push(0);
            startup.extend_from_slice(value.as_bytes());
            startup.push(0);
        }
        startup.push(0);
        let mut message = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
        message.extend_from_slice(&startup);
        connection.send_raw(&message)?;
        connection.authenticate(&url.password)?;
        Ok(connection)
    }

    fn authenticate(&mut self, password: &str) -> Result<(), String> {
        let mut scram: Option<(String, String)> = None; // (client-first-bare, nonce)
        loop {
            let (kind, body) = self.receive()?;
            match kind {
                b'R' => {
                    let code = i32::from_be_bytes(body[..4].try_into().map_err(|_| "short auth")?);
                    match code {
                        0 => {}
                        3 => {
                            let mut p = password.as_bytes().to_vec();
                            p.push(0);
                            self.send(b'p', &p)?;
                        }
                        10 => {
                            let nonce = nonce();
                            let bare = format!("n=,r={nonce}");
                            let first = format!("n,,{bare}");
                            let mut p = b"SCRAM-SHA-256\0".to_vec();
                            p.extend_from_slice(&(first.len() as i32).to_be_bytes());
                            p.extend_from_slice(first.as_bytes());
                            self.send(b'p', &p)?;
                            scram = Some((bare, nonce));
                        }
                        11 => {
                            let (bare, nonce) = scram.take().ok_or("SCRAM out of order")?;
                            let server_first = String::from_utf8_lossy(&body[4..]).into_owned();
                            let final_message = scram_final(password, &bare, &nonce, &server_first)?;
                            self.send(b'p', final_message.as_bytes())?;
                        }
                        12 => {}
                        other => return Err(format!("postgres asks for authentication {other}, which this client lacks")),
                    }
                }
                b'E' => return Err(error_text(&body)),
                b'Z' => return Ok(()),
                _ => {}
            }
        }
    }

    /// Runs `sql` (one or more statements); the first column of every row returned.
    pub fn query(&mut self, sql: &str) -> Result<Vec<String>, String> {
        let mut q = sql.as_bytes().to_vec();
        q.push(0);
        self.send(b'Q', &q)?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let (kind, body) = self.receive()?;
            match kind {
                b'D' => {
                    if body.len() >= 6 {
                        let len = i32::from_be_bytes(body[2..6].try_into().unwrap());
                        if len >= 0 {
                            let end = 6 + len as usize;
                            rows.push(String::from_utf8_lossy(&body[6..end.min(body.len())]).into_owned());
                        }
                    }
                }
                b'E' => error = Some(error_text(&body)),
                b'Z' => return error.map_or(Ok(rows), Err),
                _ => {}
            }
        }
    }

    fn send(&mut self, kind: u8, body: &[u8]) -> Result<(), String> {
        let mut message = vec![kind];
        message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        message.extend_from_slice(body);
        self.send_raw(&message)
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream.write_all(bytes).map_err(|e| format!("postgres: {e}"))
    }

    fn receive(&mut self) -> Result<(u8, Vec<u8>), String> {
        let mut head = [0u8; 5];
        self.stream.read_exact(&mut head).map_err(|e| format!("postgres: {e}"))?;
        let len = i32::from_be_bytes(head[1..5].try_into().unwrap());
        if !(4..=16 * 1024 * 1024).contains(&len) {
            return Err("postgres: a message of a bad length".into());
        }
        let mut body = vec![0u8; len as usize - 4];
        self.stream.read_exact(&mut body).map_err(|e| format!("postgres: {e}"))?;
        Ok((head[0], body))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.stream.write_all(&[b'X', 0, 0, 0, 4]);
    }
}

/// The message of an ErrorResponse.
fn error_text(body: &[u8]) -> String {
    body.split(|&b| b == 0)
        .find(|field| field.first() == Some(&b'M'))
        .map(|m| format!("postgres: {}", String::from_utf8_lossy(&m[1..])))
        .unwrap_or_else(|| "postgres: an error".into())
}

fn nonce() -> String {
    let bytes = wasip2::random::random::get_random_bytes(18);
    base64(&bytes)
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The client-final message of SCRAM-SHA-256 (RFC 5802) for the server-first message `server_first`.
fn scram_final(password: &str, bare: &str, nonce: &str, server_first: &str) -> Result<String, String> {
    let mut combined = None;
    let mut salt = None;
    let mut iterations = None;
    for part in server_first.split(',') {
        match part.split_at(part.len().min(2)) {
            ("r=", v) => combined = Some(v.to_string()),
            ("s=", v) => salt = Some(unbase64(v)?),
            ("i=", v) => iterations = v.parse::<u32>().ok(),
            _ => {}
        }
    }
    let (combined, salt, iterations) = (
        combined.ok_or("SCRAM: no nonce")?,
        salt.ok_or("SCRAM: no salt")?,
        iterations.ok_or("SCRAM: no iteration count")?,
    );
    if !combined.starts_with(nonce) {
        return Err("SCRAM: the server's nonce does not extend ours".into());
    }
    // PBKDF2-HMAC-SHA256, one block.
    let mut block = salt.clone();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password.as_bytes(), &block);
    let mut salted = u.clone();
    for _ in 1..iterations {
        u = hmac(password.as_bytes(), &u);
        for (s, x) in salted.iter_mut().zip(&u) {
            *s ^= x;
        }
    }
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let without_proof = format!("c=biws,r={combined}");
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
    Ok(format!("{without_proof},p={}", base64(&proof)))
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).ok_or("SCRAM: bad base64")? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}
