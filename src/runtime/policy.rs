//! The network policy of a dyno: what a guest may connect to.
//!
//! A guest reaches nothing by default. An app may allow destinations (`network:allow api.example.com:443`, and the
//! hosts of its attached add-ons); even then, an address that is loopback, private, link-local, shared (CGNAT),
//! multicast or unspecified is refused, so a guest never reaches the control API, the router, another app's
//! dynos or the host's network. Names are resolved by the host when the guest connects (with the system's resolver,
//! or the DNS server the operator names), every address they resolve to must be public, and the guest connects to
//! those very addresses.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Destinations a dyno's guests may connect to: `host` or `host:port` (any port when none is given). Even an
/// allowed name is refused when it resolves to an address that is not public (loopback, private, link-local...).
///
/// ```
/// use wasmdyno::{runtime::NetworkPolicy, runtime::RunSpec};
///
/// let mut spec = RunSpec::new(vec!["worker.wasm".into()], Default::default(), Default::default());
/// assert!(spec.network.is_closed(), "a guest reaches nothing by default");
/// spec.network = NetworkPolicy::new(["api.example.com:443"]);
/// assert!(spec.network.allows("api.example.com", 443));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkPolicy {
    allowed: Vec<(String, Option<u16>)>,
    /// Exact addresses the platform opened (its add-ons' servers), allowed even when not public.
    endpoints: Vec<SocketAddr>,
    /// The DNS server destinations are resolved with; the system's resolver when none.
    dns: Option<SocketAddr>,
    /// The longest an outgoing connection may take to open when the guest sets no timeout of its own.
    pub connect_timeout: Duration,
}

impl Default for NetworkPolicy {
    fn default() -> NetworkPolicy {
        NetworkPolicy {
            allowed: Vec::new(),
            endpoints: Vec::new(),
            dns: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// How long an outgoing connection may take to open by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a lookup through [`NetworkPolicy::with_dns_server`]'s server may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0} is not an allowed destination of this app (`wasmdyno network:allow` adds one)")]
    NotAllowed(String),
    #[error("{host} resolves to {addr}, which is not a public address")]
    NotPublic { host: String, addr: IpAddr },
    #[error("cannot resolve {0}")]
    Unresolved(String),
}

impl NetworkPolicy {
    /// A policy allowing `destinations` (`host` or `host:port`, as `network:allow` takes them); entries that do not
    /// parse are skipped.
    ///
    /// ```
    /// use wasmdyno::runtime::NetworkPolicy;
    /// let policy = NetworkPolicy::new(["api.example.com:443", "db.example.com"]);
    /// assert!(policy.allows("API.example.com", 443));
    /// assert!(!policy.allows("api.example.com", 80));
    /// assert!(policy.allows("db.example.com", 5432));
    /// assert!(!NetworkPolicy::default().allows("api.example.com", 443));
    /// ```
    pub fn new<S: AsRef<str>>(destinations: impl IntoIterator<Item = S>) -> NetworkPolicy {
        let allowed = destinations
            .into_iter()
            .filter_map(|d| parse_destination(d.as_ref()))
            .collect();
        NetworkPolicy {
            allowed,
            ..NetworkPolicy::default()
        }
    }

    /// Resolves destinations with the DNS server at `server` (UDP, then TCP for long answers) instead of the
    /// system's resolver: an operator may give guests a resolver of their own. No answer is cached, so each
    /// request sees what the server says now, and is checked for it.
    ///
    /// ```
    /// let policy = wasmdyno::runtime::NetworkPolicy::new(["api.example.com"]).with_dns_server("127.0.0.1:5353".parse()?);
    /// assert!(policy.allows("api.example.com", 443));
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn with_dns_server(mut self, server: SocketAddr) -> NetworkPolicy {
        self.dns = Some(server);
        self
    }

    /// Also allows exactly `endpoint` (an address and port), even when it is loopback or private: a server the
    /// platform provisioned for this app (its add-ons' database), never a name, never another port.
    ///
    /// ```
    /// let db: std::net::SocketAddr = "127.0.0.1:5432".parse()?;
    /// let policy = wasmdyno::runtime::NetworkPolicy::default().with_endpoint(db);
    /// assert!(policy.allows("127.0.0.1", 5432));
    /// assert!(!policy.allows("127.0.0.1", 5001), "only that port");
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn with_endpoint(mut self, endpoint: SocketAddr) -> NetworkPolicy {
        if !self.endpoints.contains(&endpoint) {
            self.endpoints.push(endpoint);
        }
        self
    }

    /// Is `host:port` one of the exact endpoints the platform opened?
    fn endpoint(&self, host: &str, port: u16) -> Option<SocketAddr> {
        let ip: IpAddr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        let addr = SocketAddr::new(ip, port);
        self.endpoints.contains(&addr).then_some(addr)
    }

    /// Does the policy name `host` (and `port`)? Names compare without case and without a trailing dot. The
    /// addresses a name resolves to are checked separately, when a guest connects.
    ///
    /// ```
    /// let policy = wasmdyno::runtime::NetworkPolicy::new(["api.example.com:443", "[2606:4700::1111]:53", "db.example.com"]);
    /// assert!(policy.allows("API.example.com.", 443));
    /// assert!(!policy.allows("api.example.com", 80));
    /// assert!(policy.allows("[2606:4700::1111]", 53));
    /// assert!(policy.allows("db.example.com", 5432), "no port given: any port");
    /// assert!(!policy.allows("example.com", 443));
    /// ```
    pub fn allows(&self, host: &str, port: u16) -> bool {
        if self.endpoint(host, port).is_some() {
            return true;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allowed
            .iter()
            .any(|(h, p)| h == host && p.is_none_or(|p| p == port))
    }

    /// Is nothing allowed?
    ///
    /// ```
    /// use wasmdyno::runtime::NetworkPolicy;
    ///
    /// assert!(NetworkPolicy::default().is_closed());
    /// assert!(NetworkPolicy::new(["not/a destination"]).is_closed(), "entries that do not parse are skipped");
    /// assert!(!NetworkPolicy::new(["api.example.com"]).is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.allowed.is_empty() && self.endpoints.is_empty()
    }

    /// Checks `host:port` against the policy and resolves it; every address must be public.
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        if let Some(endpoint) = self.endpoint(host, port) {
            return Ok(vec![endpoint]);
        }
        if !self.allows(host, port) {
            return Err(Refusal::NotAllowed(format!("{host}:{port}")));
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs = lookup(bare, port, self.dns)
            .await
            .map_err(|_| Refusal::Unresolved(host.to_string()))?;
        if addrs.is_empty() {
            return Err(Refusal::Unresolved(host.to_string()));
        }
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(Refusal::NotPublic {
                host: host.to_string(),
                addr: bad.ip(),
            });
        }
        Ok(addrs)
    }

    /// Resolves every allowed destination now: the addresses a `wasi:sockets` guest may connect to.
    pub(crate) async fn resolve_all(&self) -> Vec<SocketAddr> {
        let mut all = self.endpoints.clone();
        for (host, port) in &self.allowed {
            // A destination without a port is resolved with port 0 and matched on the address alone.
            if let Ok(addrs) = self.resolve(host, port.unwrap_or(0)).await {
                all.extend(addrs.into_iter().map(|a| {
                    if port.is_none() {
                        SocketAddr::new(a.ip(), 0)
                    } else {
                        a
                    }
                }));
            }
        }
        all
    }
}

/// The addresses of `host`: from the DNS server `dns`, or the system's resolver; in unit tests, a stand-in's (a
/// name that rebinds).
async fn lookup(
    host: &str,
    port: u16,
    dns: Option<SocketAddr>,
) -> std::io::Result<Vec<SocketAddr>> {
    #[cfg(test)]
    if let Some(answer) = tests::STAND_IN
        .lock()
        .expect("stand-in resolver")
        .as_mut()
        .and_then(|answer| answer(host, port))
    {
        return Ok(answer);
    }
    match dns {
        Some(server) => lookup_with(server, host, port).await,
        None => Ok(tokio::net::lookup_host((host, port)).await?.collect()),
    }
}

/// The A and AAAA records of `host` from the DNS server at `server`, uncached.
async fn lookup_with(
    server: SocketAddr,
    host: &str,
    port: u16,
) -> std::io::Result<Vec<SocketAddr>> {
    use hickory_resolver::config::{
        LookupIpStrategy, NameServerConfigGroup, ResolverConfig, ResolverOpts,
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let servers = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
    let mut options = ResolverOpts::default();
    options.cache_size = 0;
    options.attempts = 1;
    options.timeout = LOOKUP_TIMEOUT;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    let resolver = hickory_resolver::Resolver::builder_with_config(
        ResolverConfig::from_parts(None, Vec::new(), servers),
        hickory_resolver::name_server::TokioConnectionProvider::default(),
    )
    .with_options(options)
    .build();
    // A name without dots is still a name, not a search-list suffix: ask for it as it is.
    let name = format!("{}.", host.trim_end_matches('.'));
    let found = resolver
        .lookup_ip(name)
        .await
        .map_err(std::io::Error::other)?;
    Ok(found.iter().map(|ip| SocketAddr::new(ip, port)).collect())
}

/// What a component may do with `wasi:sockets`: listen on its loopback `port` (a web component binding `$PORT`)
/// and connect to the `reachable` addresses (an allowed destination resolved, port 0 for any port, or an endpoint
/// the platform opened); nothing else.
pub(crate) fn sockets(
    builder: &mut wasmtime_wasi::WasiCtxBuilder,
    port: Option<u16>,
    reachable: Vec<SocketAddr>,
) {
    use wasmtime_wasi::sockets::SocketAddrUse;
    if port.is_none() && reachable.is_empty() {
        return; // wasmtime-wasi's default: every address refused
    }
    let reachable = std::sync::Arc::new(reachable);
    let connects = !reachable.is_empty();
    builder.allow_tcp(true).allow_ip_name_lookup(connects);
    builder.socket_addr_check(move |addr, usage| {
        let reachable = reachable.clone();
        Box::pin(async move {
            let own_port = port == Some(addr.port()) && addr.ip().is_loopback();
            match usage {
                SocketAddrUse::TcpBind => {
                    own_port || (connects && addr.port() == 0 && addr.ip().is_unspecified())
                }
                SocketAddrUse::TcpListen => own_port,
                // The router's connections, from loopback.
                SocketAddrUse::TcpAccept => port.is_some() && addr.ip().is_loopback(),
                // An exact address and port (a resolved destination, or an endpoint the platform opened, which may be
                // private); any port only of a public address.
                SocketAddrUse::TcpConnect => reachable.iter().any(|r| {
                    r.ip() == addr.ip()
                        && (r.port() == addr.port() || (r.port() == 0 && is_public(addr.ip())))
                }),
                _ => false,
            }
        })
    });
}

/// `host` or `host:port` (IPv6 literals in brackets), lowercased.
fn parse_destination(text: &str) -> Option<(String, Option<u16>)> {
    let text = text.trim().to_ascii_lowercase();
    if text.is_empty() || text.contains('/') || text.contains('@') {
        return None;
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            Some((host.to_string(), Some(port.parse().ok()?)))
        }
        Some(_) => Some((text.clone(), None)), // a bare IPv6 address
        None => Some((text.clone(), None)),
    }
}

/// Is `ip` a public unicast address (not loopback, private, link-local, shared, multicast, documentation or
/// unspecified)?
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::from(
                    (u32::from(hi) << 16) | u32::from(lo),
                ))
            };
            // Addresses that carry an IPv4 address are as public as it is: IPv4-compatible (`::a.b.c.d`),
            // NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:aabb:ccdd::`).
            if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_public(embedded(s[6], s[7]));
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public(embedded(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return is_public(embedded(s[1], s[2]));
            }
            let first = s[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed by some)
                || (first == 0x64 && s[1] == 0xff9b) // NAT64 for local use (64:ff9b:1::/48)
                || (first == 0x2001 && s[1] == 0) // Teredo: an IPv4 address, obscured
                || first == 0x2001 && s[1] == 0x0db8) // documentation
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Answers lookups in place of the system resolver while set: `None` from it means "ask the system".
    pub(crate) type StandIn = Box<dyn FnMut(&str, u16) -> Option<Vec<SocketAddr>> + Send>;
    pub(crate) static STAND_IN: std::sync::Mutex<Option<StandIn>> = std::sync::Mutex::new(None);

    #[test]
    fn private_and_special_addresses_are_never_public() {
        for addr in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "2001:db8::1",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::8.8.8.8",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "fec0::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(!is_public(addr.parse().unwrap()), "{addr}");
        }
        for addr in [
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(addr.parse().unwrap()), "{addr}");
        }
    }

    #[test]
    fn destinations_parse_with_and_without_ports() {
        let policy = NetworkPolicy::new([
            "Api.Example.com:443",
            "[2606:4700::1111]:53",
            "db",
            "bad/path",
        ]);
        assert!(policy.allows("api.example.com", 443));
        assert!(!policy.allows("api.example.com", 444));
        assert!(policy.allows("[2606:4700::1111]", 53));
        assert!(policy.allows("db", 1));
        assert!(!policy.allows("bad", 80));
    }

    #[tokio::test]
    async fn allowed_names_that_resolve_privately_are_refused() {
        let policy = NetworkPolicy::new(["127.0.0.1:8080", "localhost"]);
        assert_eq!(
            policy.resolve("127.0.0.1", 8080).await,
            Err(Refusal::NotPublic {
                host: "127.0.0.1".into(),
                addr: "127.0.0.1".parse().unwrap()
            })
        );
        assert!(matches!(
            policy.resolve("localhost", 80).await,
            Err(Refusal::NotPublic { .. })
        ));
        assert!(matches!(
            policy.resolve("example.com", 80).await,
            Err(Refusal::NotAllowed(_))
        ));
        assert!(policy.resolve_all().await.is_empty());
    }
}
