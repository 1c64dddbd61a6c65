//! Drain URLs: `syslog://HOST:PORT`, `syslog+tls://HOST:PORT`, `http://[USER:PASS@]HOST[:PORT][/PATH][?QUERY]` and
//! `https://...`, checked once when a drain is added so that a running drain never meets a URL it cannot use.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The longest drain URL accepted.
pub const MAX_URL_LEN: usize = 2_048;

/// How a drain delivers: RFC 5424 frames over a TCP stream, or batches of them POSTed over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Syslog,
    Http,
}

/// A drain URL, parsed and checked.
#[derive(Clone, PartialEq, Eq)]
pub struct DrainUrl {
    pub protocol: Protocol,
    /// `syslog+tls` and `https`.
    pub tls: bool,
    /// A lowercase DNS name or an IP address (IPv6 without its brackets).
    pub host: String,
    pub port: u16,
    /// HTTP: the request target, the path and query (`/` at least). Syslog: empty.
    pub target: String,
    /// HTTP: the `user:password` of the URL, percent-decoded, sent as Basic authorization.
    pub credentials: Option<(String, String)>,
}

/// Why a string is not a drain URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidDrainUrl(String);

fn invalid(reason: impl Into<String>) -> InvalidDrainUrl {
    InvalidDrainUrl(reason.into())
}

impl DrainUrl {
    pub fn parse(url: &str) -> Result<DrainUrl, InvalidDrainUrl> {
        if url.len() > MAX_URL_LEN {
            return Err(invalid(format!("longer than {MAX_URL_LEN} characters")));
        }
        if let Some(c) = url.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(invalid(format!(
                "{c:?} is not allowed in a drain URL (percent-encode it)"
            )));
        }
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            invalid("give it as syslog://HOST:PORT, syslog+tls://HOST:PORT, http://HOST/PATH or https://HOST/PATH")
        })?;
        let (protocol, tls) = match scheme.to_ascii_lowercase().as_str() {
            "syslog" => (Protocol::Syslog, false),
            "syslog+tls" => (Protocol::Syslog, true),
            "http" => (Protocol::Http, false),
            "https" => (Protocol::Http, true),
            other => {
                return Err(invalid(format!(
                    "unsupported scheme {other:?} (syslog, syslog+tls, http or https)"
                )));
            }
        };
        if rest.contains('#') {
            return Err(invalid("a drain URL has no fragment (#...)"));
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(authority_end);
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let (host, port) = split_host_port(host_port)?;
        let port = match (port, protocol, tls) {
            (Some(port), ..) => port,
            (None, Protocol::Http, false) => 80,
            (None, Protocol::Http, true) => 443,
            (None, Protocol::Syslog, _) => {
                return Err(invalid("a syslog drain needs a port: syslog://HOST:PORT"));
            }
        };
        let (target, credentials) = match protocol {
            Protocol::Syslog => {
                if userinfo.is_some() {
                    return Err(invalid("a syslog drain URL has no user or password"));
                }
                if !matches!(target, "" | "/") {
                    return Err(invalid("a syslog drain URL has no path or query"));
                }
                (String::new(), None)
            }
            Protocol::Http => {
                let target = match target.strip_prefix('?') {
                    Some(_) => format!("/{target}"),
                    None if target.is_empty() => "/".to_owned(),
                    None => target.to_owned(),
                };
                let credentials = userinfo
                    .map(|userinfo| {
                        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                        Ok::<_, InvalidDrainUrl>((percent_decode(user)?, percent_decode(password)?))
                    })
                    .transpose()?;
                (target, credentials)
            }
        };
        Ok(DrainUrl {
            protocol,
            tls,
            host,
            port,
            target,
            credentials,
        })
    }

    /// `host:port`, with an IPv6 address in brackets: the `Host` header and what `connect` is given.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The URL without its password, for diagnostics.
impl fmt::Display for DrainUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match (self.protocol, self.tls) {
            (Protocol::Syslog, false) => "syslog",
            (Protocol::Syslog, true) => "syslog+tls",
            (Protocol::Http, false) => "http",
            (Protocol::Http, true) => "https",
        };
        let user = match &self.credentials {
            Some(_) => "***@",
            None => "",
        };
        write!(f, "{scheme}://{user}{}{}", self.authority(), self.target)
    }
}

impl fmt::Debug for DrainUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DrainUrl({self})")
    }
}

fn split_host_port(host_port: &str) -> Result<(String, Option<u16>), InvalidDrainUrl> {
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (address, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid("an IPv6 address needs its closing bracket"))?;
        address
            .parse::<Ipv6Addr>()
            .map_err(|_| invalid(format!("{address:?} is not an IPv6 address")))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| invalid("expected :PORT after the IPv6 address"))?,
            ),
        };
        (address.to_owned(), port)
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host.to_ascii_lowercase(), Some(port)),
            None => (host_port.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty() {
        return Err(invalid("the URL has no host"));
    }
    if !host.contains(':') && host.parse::<Ipv4Addr>().is_err() && !is_dns_name(&host) {
        return Err(invalid(format!("{host:?} is not a host name")));
    }
    let port = port
        .map(|port| {
            port.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| port.parse::<u16>().ok())
                .flatten()
                .filter(|&port| port != 0)
                .ok_or_else(|| invalid(format!("{port:?} is not a port (1 to 65535)")))
        })
        .transpose()?;
    Ok((host, port))
}

/// Labels of letters, digits, `-` and `_` (which some internal names use), not starting or ending with `-`.
fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn percent_decode(text: &str) -> Result<String, InvalidDrainUrl> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| {
                    invalid("a % in the user or password is not followed by two hex digits")
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("the user or password is not UTF-8"))
}
