//! Add-ons the platform provisions: a backing service made for one app on a server the operator configured, its
//! credentials handed to the app as a config var (`DATABASE_URL`), its server opened to that app's dynos alone.
//!
//! Each service is a [`Provider`]; `wasmdyno serve` has those whose server is configured
//! (`WASMDYNO_ADDON_POSTGRES_ADMIN_URL` for [`postgres::Postgres`]). An add-on of another service is one a user
//! points at themselves (`addons:create SERVICE --url URL`): nothing is provisioned and its host is an ordinary
//! network destination (public addresses only).

pub(crate) mod postgres;
pub(crate) mod redis;

use std::net::SocketAddr;
use std::sync::Arc;

/// What provisioning made: the URL the app gets (with its credentials), the server's exact address (opened to its
/// dynos), and config vars besides the URL, by suffix (`KEY_PREFIX` becomes `REDIS_KEY_PREFIX` beside
/// `REDIS_URL`).
#[derive(Debug, Clone)]
pub(crate) struct Provisioned {
    pub url: String,
    pub endpoint: SocketAddr,
    pub extra: std::collections::BTreeMap<String, String>,
}

/// Why a provider failed; the message says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ProviderError(pub String);

/// One service the platform provisions.
#[async_trait::async_trait]
pub(crate) trait Provider: Send + Sync {
    /// The service's name (`postgresql`), as add-ons record it.
    fn service(&self) -> &'static str;
    /// The plan an add-on gets when none is named.
    fn default_plan(&self) -> &'static str;
    /// Makes the resource for `app`'s add-on `name` on `plan`.
    async fn provision(
        &self,
        app: &str,
        name: &str,
        plan: &str,
    ) -> Result<Provisioned, ProviderError>;
    /// Removes the resource `url` names (its data goes).
    async fn deprovision(&self, url: &str) -> Result<(), ProviderError>;
    /// New credentials for the resource `url` names; the old ones stop working. The new URL.
    async fn rotate(&self, url: &str) -> Result<String, ProviderError>;
}

/// The services a server provisions, and the names of those it could (to tell a user what to configure).
#[derive(Clone, Default)]
pub(crate) struct Providers {
    configured: Vec<Arc<dyn Provider>>,
}

/// Services the platform provisions when configured, with the variable that configures each.
pub(crate) const KNOWN: &[(&str, &[&str], &str)] = &[
    (
        postgres::SERVICE,
        postgres::ALIASES,
        "WASMDYNO_ADDON_POSTGRES_ADMIN_URL",
    ),
    (
        redis::SERVICE,
        redis::ALIASES,
        "WASMDYNO_ADDON_REDIS_ADMIN_URL",
    ),
];

impl Providers {
    pub(crate) fn new(configured: Vec<Arc<dyn Provider>>) -> Providers {
        Providers { configured }
    }

    /// The canonical name of a provisioned service (`heroku-postgresql` → `postgresql`), or `None` for a service
    /// users point at themselves.
    pub(crate) fn canonical(service: &str) -> Option<&'static str> {
        KNOWN
            .iter()
            .find(|(name, aliases, _)| *name == service || aliases.contains(&service))
            .map(|(name, _, _)| *name)
    }

    /// The provider of `service` (canonical), or what to configure to have one.
    pub(crate) fn get(&self, service: &str) -> Result<Arc<dyn Provider>, ProviderError> {
        if let Some(found) = self.configured.iter().find(|p| p.service() == service) {
            return Ok(found.clone());
        }
        let var = KNOWN
            .iter()
            .find(|(name, _, _)| *name == service)
            .map_or("its provider's setting", |(_, _, var)| var);
        Err(ProviderError(format!(
            "this server provisions no {service} add-ons: start `wasmdyno serve` with {var} set to an admin URL \
             of the server to provision on, or attach one of your own with `addons:create NAME --url URL`"
        )))
    }
}

/// The exact endpoint of a provisioned add-on from its recorded hosts (`ip:port`).
pub(crate) fn endpoints(service: &str, hosts: &[String]) -> Vec<SocketAddr> {
    if Providers::canonical(service).is_none() {
        return Vec::new();
    }
    hosts.iter().filter_map(|h| h.parse().ok()).collect()
}

/// A random secret of `bytes` bytes, hex: passwords, name suffixes.
pub(crate) fn random_hex(bytes: usize) -> Result<String, ProviderError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| ProviderError(format!("no randomness: {e}")))?;
    Ok(hex::encode(buf))
}

/// An identifier from an app or add-on name: lowercase letters, digits and `_`, at most 24.
pub(crate) fn ident(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect()
}

/// The address dynos reach the server `host:port` at (resolved once, when the server starts); `var` names the
/// setting in the error.
pub(crate) fn endpoint(host: &str, port: u16, var: &str) -> Result<SocketAddr, ProviderError> {
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| ProviderError(format!("cannot resolve {host}, the server of {var}")))
}

/// `ip` or `[ip]` for a URL's host.
pub(crate) fn url_host(endpoint: SocketAddr) -> String {
    match endpoint {
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
    }
}
