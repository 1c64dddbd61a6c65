//! The router's timers and limits, each a setting so tests provoke every code in milliseconds.

#[allow(unused_imports)]
use super::*;

/// Router timers and limits. Every one is a setting, so tests provoke each code in milliseconds.
///
/// ```
/// use std::time::Duration;
///
/// let mut settings = wasmdyno::RouterSettings::default();
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

impl Settings {
    /// The defaults, overridden by `WASMDYNO_ROUTER_TIMEOUT_MS`, `WASMDYNO_ROUTER_IDLE_TIMEOUT_MS`,
    /// `WASMDYNO_ROUTER_BOOT_TIMEOUT_MS`, `WASMDYNO_ROUTER_MAX_IN_FLIGHT`, `WASMDYNO_ROUTER_MAX_QUEUE`,
    /// `WASMDYNO_ROUTER_MAX_BODY` (bytes), `WASMDYNO_ROUTER_HEADER_TIMEOUT_MS`, `WASMDYNO_ROUTER_MAX_CONNECTIONS`,
    /// `WASMDYNO_ROUTER_MAX_CONNECTIONS_PER_CLIENT` and `WASMDYNO_BASE_DOMAIN`. An error names a variable whose value is not
    /// a number.
    ///
    /// ```
    /// // `WASMDYNO_BASE_DOMAIN=apps.example.com wasmdyno serve` serves apps at `<app>.apps.example.com`.
    /// let settings = wasmdyno::RouterSettings::from_env()?;
    /// println!("apps live under {}", settings.base_domain);
    /// # Ok::<(), String>(())
    /// ```
    pub fn from_env() -> Result<Settings, String> {
        let mut settings = Settings::default();
        let number = |var: &str| -> Result<Option<u64>, String> {
            match std::env::var(var) {
                Ok(value) => value
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{var}={value:?} is not a number")),
                Err(_) => Ok(None),
            }
        };
        for (var, field) in [
            ("WASMDYNO_ROUTER_TIMEOUT_MS", &mut settings.request_timeout),
            (
                "WASMDYNO_ROUTER_IDLE_TIMEOUT_MS",
                &mut settings.idle_timeout,
            ),
            (
                "WASMDYNO_ROUTER_BOOT_TIMEOUT_MS",
                &mut settings.boot_timeout,
            ),
            (
                "WASMDYNO_ROUTER_HEADER_TIMEOUT_MS",
                &mut settings.header_timeout,
            ),
        ] {
            if let Some(ms) = number(var)? {
                *field = Duration::from_millis(ms);
            }
        }
        for (var, field) in [
            ("WASMDYNO_ROUTER_MAX_IN_FLIGHT", &mut settings.max_in_flight),
            ("WASMDYNO_ROUTER_MAX_QUEUE", &mut settings.max_queue),
            (
                "WASMDYNO_ROUTER_MAX_CONNECTIONS",
                &mut settings.connections.total,
            ),
            (
                "WASMDYNO_ROUTER_MAX_CONNECTIONS_PER_CLIENT",
                &mut settings.connections.per_client,
            ),
        ] {
            if let Some(n) = number(var)? {
                *field = usize::try_from(n).unwrap_or(usize::MAX);
            }
        }
        settings.max_in_flight = settings.max_in_flight.max(1);
        settings.max_body = number("WASMDYNO_ROUTER_MAX_BODY")?.or(settings.max_body);
        if let Ok(domain) = std::env::var("WASMDYNO_BASE_DOMAIN") {
            settings.base_domain = domain.trim_matches('.').to_lowercase();
        }
        Ok(settings)
    }
}
