//! The router's timers and limits, each a setting so tests provoke every code in milliseconds.

#[allow(unused_imports)]
use super::*;

/// Router timers and limits. Every one is a setting, so tests provoke each code in milliseconds.
///
/// ```
/// use std::time::Duration;
///
/// let mut settings = wasmdyno::router::Settings::default();
/// settings.request_timeout = Duration::from_secs(10);
/// settings.base_domain = "apps.example.com".into();
/// assert_eq!(settings.max_body, None);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// H12: the dyno must start its response within this time (`WASMDYNO_ROUTER_TIMEOUT_MS`, 30 s).
    pub request_timeout: Duration,
    /// H15: a response body that sends nothing for this long is cut (`WASMDYNO_ROUTER_IDLE_TIMEOUT_MS`, 55 s).
    pub idle_timeout: Duration,
    /// H20: how long a request waits for a starting web dyno to come up (`WASMDYNO_ROUTER_BOOT_TIMEOUT_MS`,
    /// 75 s).
    pub boot_timeout: Duration,
    /// H11: requests a dyno takes at once before more wait in the app's queue (`WASMDYNO_ROUTER_MAX_IN_FLIGHT`,
    /// 50).
    pub max_in_flight: usize,
    /// H11: requests waiting per app for a dyno; one more is refused (`WASMDYNO_ROUTER_MAX_QUEUE`, 200).
    pub max_queue: usize,
    /// 413: the largest request body, in bytes (`WASMDYNO_ROUTER_MAX_BODY`; unlimited by default).
    pub max_body: Option<u64>,
    /// The domain apps live under: `<app>.<base_domain>` (`WASMDYNO_BASE_DOMAIN`, `localhost`).
    pub base_domain: String,
    /// A client must send a whole request head within this time of connecting or of its previous response, or
    /// its connection is closed: slow heads and idle keep-alive connections both end
    /// (`WASMDYNO_ROUTER_HEADER_TIMEOUT_MS`, 30 s, as Heroku's router).
    pub header_timeout: Duration,
    /// Open client connections, in all (`WASMDYNO_ROUTER_MAX_CONNECTIONS`, 10,000) and per client address
    /// (`WASMDYNO_ROUTER_MAX_CONNECTIONS_PER_CLIENT`, 512); one more is answered 503 and closed.
    pub connections: ConnectionLimits,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(55),
            boot_timeout: Duration::from_secs(75),
            max_in_flight: 50,
            max_queue: 200,
            max_body: None,
            base_domain: "localhost".into(),
            header_timeout: Duration::from_secs(30),
            connections: ConnectionLimits {
                total: 10_000,
                per_client: 512,
            },
        }
    }
}
