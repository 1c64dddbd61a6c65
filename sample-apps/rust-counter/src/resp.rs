//! A Redis client for one command at a time (RESP2), enough for `AUTH`, `GET` and `SET`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

pub struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    /// Connects to `redis://user:password@host:port/db` and authenticates.
    pub fn open(url: &str) -> Result<Connection, String> {
        let url = crate::url::parse_url(url)?;
        let stream = TcpStream::connect(&url.address).map_err(|e| format!("redis {}: {e}", url.address))?;
        let mut connection = Connection {
            stream: BufReader::new(stream),
        };
        if !url.password.is_empty() {
            let user = if url.user.is_empty() { "default" } else { &url.user };
            connection.command(&["AUTH", user, &url.password])?;
        }
        Ok(connection)
    }

    /// Sends one command; its reply (`None` for nil), or the server's error.
    pub fn command(&mut self, args: &[&str]) -> Result<Option<String>, String> {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .map_err(|e| format!("redis: {e}"))?;
        let mut line = String::new();
        self.stream.read_line(&mut line).map_err(|e| format!("redis: {e}"))?;
        let line = line.trim_end();
        let (kind, rest) = line.split_at(line.len().min(1));
        match kind {
            "+" | ":" => Ok(Some(rest.to_string())),
            "-" => Err(format!("redis: {rest}")),
            "$" => {
                let len: i64 = rest.parse().map_err(|_| "redis: a bad bulk length")?;
                if len < 0 {
                    return Ok(None);
                }
                let mut data = vec![0u8; len as usize + 2];
                self.stream.read_exact(&mut data).map_err(|e| format!("redis: {e}"))?;
                data.truncate(len as usize);
                Ok(Some(String::from_utf8_lossy(&data).into_owned()))
            }
            _ => Err(format!("redis: an unexpected reply {line:?}")),
        }
    }
}
