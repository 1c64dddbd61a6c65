//! The dyno manager's timers and limits.

use std::time::Duration;

use crate::runtime::http::HttpSettings;

/// Timers and limits of the dyno manager. Every one is a setting, so tests run them in milliseconds.
///
/// ```
/// use std::time::Duration;
///
/// let mut settings = wasmdyno::dyno::Settings::default();
/// assert_eq!(settings.backoff_base, Duration::from_secs(10));
/// settings.stop_timeout = Duration::from_secs(5);
/// settings.http.max_instances = 4;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Delay before the second restart of a crashing dyno; it doubles with each further crash (the first
    /// restart is immediate).
    pub backoff_base: Duration,
    /// The longest delay between restarts.
    pub backoff_cap: Duration,
    /// How long a dyno runs before it is cycled (plus up to `cycle_jitter`).
    pub cycle_after: Duration,
    /// The most added at random to each dyno's `cycle_after`, so an app's dynos are not all cycled at once.
    pub cycle_jitter: Duration,
    /// How long a stopping dyno has to exit before it is interrupted.
    pub stop_timeout: Duration,
    /// Connections a web dyno's listener queues before the router waits.
    pub listen_backlog: usize,
    /// R10: a web dyno that listens must accept within this time of booting, or it is restarted.
    pub boot_timeout: Duration,
    /// A listening web dyno that accepts no connection for this long while connections wait has stopped making
    /// progress (a Go program spinning in a handler cannot be preempted): it is restarted (R18).
    pub unresponsive_after: Duration,
    /// An attached one-off dyno with no input or output for this long is stopped.
    pub attach_idle: Duration,
    /// How `wasi:http` web dynos keep their instances.
    pub http: HttpSettings,
    /// A sleeping app's web dynos go idle after this long without a request.
    pub sleep_after: Duration,
    /// A release phase still running after this long fails its release (Heroku gives it an hour).
    pub release_phase_timeout: Duration,
    /// The bytes per second a dyno may write to its log stream (stdout and stderr together), with bursts of up
    /// to a second's worth; a dyno writing faster waits, as a program writing to a full pipe does.
    pub log_rate: usize,
    /// The DNS server guests' destinations are resolved with (the system's resolver when none); see
    /// [`NetworkPolicy::with_dns_server`](crate::runtime::NetworkPolicy::with_dns_server).
    pub guest_dns: Option<std::net::SocketAddr>,
    /// How long a guest's outgoing connection may take to open, unless it asks for another timeout.
    pub connect_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            backoff_base: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(20 * 60),
            cycle_after: Duration::from_secs(24 * 3600),
            cycle_jitter: Duration::from_secs(3600),
            stop_timeout: Duration::from_secs(30),
            listen_backlog: 511,
            boot_timeout: Duration::from_secs(60),
            unresponsive_after: Duration::from_secs(30),
            attach_idle: Duration::from_secs(3600),
            http: HttpSettings::default(),
            sleep_after: Duration::from_secs(30 * 60),
            release_phase_timeout: Duration::from_secs(3600),
            log_rate: 1 << 20,
            guest_dns: None,
            connect_timeout: crate::runtime::policy::DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl Settings {
    /// The delay before restart number `crashes` (1 for the first crash).
    pub(crate) fn backoff(&self, crashes: u32) -> Duration {
        if crashes <= 1 {
            return Duration::ZERO;
        }
        let doubled = self
            .backoff_base
            .saturating_mul(1u32 << (crashes - 2).min(30));
        doubled.min(self.backoff_cap)
    }
}
