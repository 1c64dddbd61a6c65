//! The dyno manager's timers and limits.

use std::time::Duration;

use crate::runtime::http::HttpSettings;

/// Timers and limits of the dyno manager. Every one is a setting, so tests run them in milliseconds.
///
/// ```
/// use std::time::Duration;
///
/// let mut settings = wasmdyno::ManagerSettings::default();
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
    /// The defaults, overridden by `WASMDYNO_BACKOFF_BASE_MS`, `WASMDYNO_BACKOFF_CAP_MS`, `WASMDYNO_CYCLE_MS`,
    /// `WASMDYNO_CYCLE_JITTER_MS`, `WASMDYNO_STOP_TIMEOUT_MS`, `WASMDYNO_BOOT_TIMEOUT_MS` (R10),
    /// `WASMDYNO_UNRESPONSIVE_MS` (R18), `WASMDYNO_ATTACH_IDLE_MS`, `WASMDYNO_SLEEP_AFTER_MS`,
    /// `WASMDYNO_RELEASE_PHASE_TIMEOUT` (seconds; or `WASMDYNO_RELEASE_PHASE_TIMEOUT_MS`), `WASMDYNO_LOG_RATE`
    /// (bytes per second a dyno may log, 1 MiB by default), `WASMDYNO_GUEST_DNS` (`ip:port` of the DNS server for
    /// guests' destinations), `WASMDYNO_CONNECT_TIMEOUT_MS` (guests' outgoing connections), and for `wasi:http`
    /// web dynos `WASMDYNO_HTTP_INSTANCES` (warm instances per dyno), `WASMDYNO_HTTP_FRESH_INSTANCES` (a new
    /// instance per request) and `WASMDYNO_HTTP_DEADLINE_MS` (longest `handle` call). An error names a variable
    /// whose value does not parse.
    ///
    /// ```
    /// // `WASMDYNO_STOP_TIMEOUT_MS=5000 wasmdyno serve` gives dynos 5 s to stop.
    /// let settings = wasmdyno::ManagerSettings::from_env()?;
    /// println!("dynos stop within {:?}", settings.stop_timeout);
    /// # Ok::<(), String>(())
    /// ```
    pub fn from_env() -> Result<Settings, String> {
        let mut settings = Settings::default();
        for (var, field) in [
            ("WASMDYNO_BACKOFF_BASE_MS", &mut settings.backoff_base),
            ("WASMDYNO_BACKOFF_CAP_MS", &mut settings.backoff_cap),
            ("WASMDYNO_CYCLE_MS", &mut settings.cycle_after),
            ("WASMDYNO_CYCLE_JITTER_MS", &mut settings.cycle_jitter),
            ("WASMDYNO_STOP_TIMEOUT_MS", &mut settings.stop_timeout),
            ("WASMDYNO_BOOT_TIMEOUT_MS", &mut settings.boot_timeout),
            ("WASMDYNO_UNRESPONSIVE_MS", &mut settings.unresponsive_after),
            ("WASMDYNO_ATTACH_IDLE_MS", &mut settings.attach_idle),
            ("WASMDYNO_HTTP_DEADLINE_MS", &mut settings.http.deadline),
            ("WASMDYNO_SLEEP_AFTER_MS", &mut settings.sleep_after),
            ("WASMDYNO_CONNECT_TIMEOUT_MS", &mut settings.connect_timeout),
            (
                "WASMDYNO_RELEASE_PHASE_TIMEOUT_MS",
                &mut settings.release_phase_timeout,
            ),
        ] {
            if let Ok(value) = std::env::var(var) {
                let ms: u64 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{var}={value:?} is not a number of milliseconds"))?;
                *field = Duration::from_millis(ms);
            }
        }
        if let Ok(value) = std::env::var("WASMDYNO_RELEASE_PHASE_TIMEOUT") {
            settings.release_phase_timeout = value
                .trim()
                .trim_end_matches('s')
                .parse::<f64>()
                .ok()
                .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
                .ok_or_else(|| {
                    format!("WASMDYNO_RELEASE_PHASE_TIMEOUT={value:?} is not a number of seconds")
                })?;
        }
        if let Ok(value) = std::env::var("WASMDYNO_HTTP_INSTANCES") {
            settings.http.max_instances =
                value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!("WASMDYNO_HTTP_INSTANCES={value:?} is not a positive number")
                    })?;
        }
        if let Ok(value) = std::env::var("WASMDYNO_LOG_RATE") {
            settings.log_rate = value
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!(
                        "WASMDYNO_LOG_RATE={value:?} is not a positive number of bytes per second"
                    )
                })?;
        }
        if let Ok(value) = std::env::var("WASMDYNO_GUEST_DNS") {
            settings.guest_dns = Some(value.trim().parse().map_err(|_| {
                format!(
                    "WASMDYNO_GUEST_DNS={value:?} is not an address and port such as 127.0.0.1:53"
                )
            })?);
        }
        if let Ok(value) = std::env::var("WASMDYNO_HTTP_FRESH_INSTANCES") {
            settings.http.fresh_instances = matches!(value.trim(), "1" | "true" | "on" | "yes");
        }
        Ok(settings)
    }

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
