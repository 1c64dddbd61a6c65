//! Who may hold a connection: a cap on open connections in all and per client address, so that idle or slow
//! clients run out of their own share, never of the server's file descriptors. A connection over a cap is
//! answered `503` at once and closed; an admitted one holds a [`Permit`] until it closes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connection caps of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections in all.
    pub total: usize,
    /// Open connections from one client address.
    pub per_client: usize,
}

/// The open connections of one listener, by client address.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    limits: ConnectionLimits,
    open: Arc<Mutex<Open>>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
    /// Refusals not yet logged, and when the last log line about them was written.
    refused: u64,
    logged_at: Option<std::time::Instant>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Total,
    PerClient,
}

impl Refused {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refused::Total => "the server holds as many connections as it takes",
            Refused::PerClient => "this client address holds as many connections as one may",
        }
    }
}

/// One admitted connection; gives its place back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    open: Arc<Mutex<Open>>,
    client: IpAddr,
}

impl Admission {
    pub(crate) fn new(limits: ConnectionLimits) -> Admission {
        Admission {
            limits,
            open: Arc::default(),
        }
    }

    /// Admits a connection from `client`, or says which cap it would pass.
    pub(crate) fn admit(&self, client: IpAddr) -> Result<Permit, Refused> {
        let mut open = self.open.lock().expect("admission");
        if open.total >= self.limits.total {
            return Err(open.refuse(Refused::Total, client));
        }
        let mine = open.by_client.entry(client).or_default();
        if *mine >= self.limits.per_client {
            return Err(open.refuse(Refused::PerClient, client));
        }
        *mine += 1;
        open.total += 1;
        Ok(Permit {
            open: self.open.clone(),
            client,
        })
    }
}

impl Open {
    /// Counts a refusal and logs it, at most once a second with how many there were: a flood of connections
    /// must not become a flood of log lines.
    fn refuse(&mut self, why: Refused, client: IpAddr) -> Refused {
        self.refused += 1;
        let now = std::time::Instant::now();
        if self
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= std::time::Duration::from_secs(1))
        {
            tracing::warn!(
                %client,
                refused = self.refused,
                "connections refused: {} (503)",
                why.reason()
            );
            self.refused = 0;
            self.logged_at = Some(now);
        }
        why
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("admission");
        open.total -= 1;
        if let Some(mine) = open.by_client.get_mut(&self.client) {
            *mine -= 1;
            if *mine == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

/// Answers a refused connection `503` without waiting on it (the answer fits a socket's send buffer; a client
/// that reads nothing loses it) and closes it.
pub(crate) fn refuse(stream: tokio::net::TcpStream, why: Refused) {
    let body = format!("{}; try again later\n", why.reason());
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

#[cfg(feature = "platform")]
/// Raises this process's open-file limit to its hard limit (connections are files) and returns the new soft
/// limit.
pub(crate) fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_client_and_places_come_back() {
        let admission = Admission::new(ConnectionLimits {
            total: 3,
            per_client: 2,
        });
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "::1".parse().unwrap());
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refused::PerClient);
        let _third = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).unwrap_err(), Refused::Total);
        drop(first);
        assert!(admission.admit(a).is_ok());
    }

    #[cfg(feature = "platform")]
    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let soft = raise_open_file_limit().unwrap();
        assert!(soft >= 256);
    }
}
