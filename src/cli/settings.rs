//! The server's settings from its environment: `WASMDYNO_*` variables read here, and only here, into the settings
//! structs the library takes. An error names the variable whose value does not parse.

use std::path::PathBuf;
use std::time::Duration;

/// The add-on services this server provisions: PostgreSQL databases on the server of
/// `WASMDYNO_ADDON_POSTGRES_ADMIN_URL` (a role that may create roles and databases), Redis ACL users on the server
/// of `WASMDYNO_ADDON_REDIS_ADMIN_URL` (a user that may manage ACLs).
pub(crate) fn addons() -> Result<crate::addons::Providers, String> {
    let mut configured: Vec<std::sync::Arc<dyn crate::addons::Provider>> = Vec::new();
    if let Ok(url) = std::env::var("WASMDYNO_ADDON_POSTGRES_ADMIN_URL")
        && !url.trim().is_empty()
    {
        let provider =
            crate::addons::postgres::Postgres::new(url.trim()).map_err(|e| e.to_string())?;
        configured.push(std::sync::Arc::new(provider));
    }
    if let Ok(url) = std::env::var("WASMDYNO_ADDON_REDIS_ADMIN_URL")
        && !url.trim().is_empty()
    {
        let provider = crate::addons::redis::Redis::new(url.trim()).map_err(|e| e.to_string())?;
        configured.push(std::sync::Arc::new(provider));
    }
    Ok(crate::addons::Providers::new(configured))
}

/// How this server takes part in a cluster (with `--store postgres://...`): `WASMDYNO_HOST_TIMEOUT` (seconds
/// without a heartbeat before a host is dead, 15), `WASMDYNO_HOST_CAPACITY` (dyno units of 512 MiB; from the
/// machine's memory) and `WASMDYNO_HOST_ID`.
pub(crate) fn cluster() -> Result<crate::cluster::Settings, String> {
    let mut settings = crate::cluster::Settings::default();
    if let Ok(value) = std::env::var("WASMDYNO_HOST_TIMEOUT") {
        settings.host_timeout = value
            .trim()
            .trim_end_matches('s')
            .parse::<f64>()
            .ok()
            .filter(|secs| *secs >= 0.5)
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| {
                format!("WASMDYNO_HOST_TIMEOUT={value:?} is not a number of seconds (0.5 or more)")
            })?;
    }
    if let Some(units) = number("WASMDYNO_HOST_CAPACITY", "a number of dyno units")? {
        settings.capacity = Some(u32::try_from(units).unwrap_or(u32::MAX));
    }
    settings.host_id = std::env::var("WASMDYNO_HOST_ID")
        .ok()
        .filter(|id| !id.trim().is_empty());
    Ok(settings)
}

/// The defaults, overridden by `WASMDYNO_BACKOFF_BASE_MS`, `WASMDYNO_BACKOFF_CAP_MS`, `WASMDYNO_CYCLE_MS`,
/// `WASMDYNO_CYCLE_JITTER_MS`, `WASMDYNO_STOP_TIMEOUT_MS`, `WASMDYNO_BOOT_TIMEOUT_MS` (R10),
/// `WASMDYNO_UNRESPONSIVE_MS` (R18), `WASMDYNO_ATTACH_IDLE_MS`, `WASMDYNO_SLEEP_AFTER_MS`,
/// `WASMDYNO_RELEASE_PHASE_TIMEOUT` (seconds; or `WASMDYNO_RELEASE_PHASE_TIMEOUT_MS`), `WASMDYNO_LOG_RATE`
/// (bytes per second a dyno may log, 1 MiB by default), `WASMDYNO_GUEST_DNS` (`ip:port` of the DNS server for
/// guests' destinations), `WASMDYNO_CONNECT_TIMEOUT_MS` (guests' outgoing connections), and for `wasi:http`
/// web dynos `WASMDYNO_HTTP_INSTANCES` (warm instances per dyno), `WASMDYNO_HTTP_FRESH_INSTANCES` (a new
/// instance per request) and `WASMDYNO_HTTP_DEADLINE_MS` (longest `handle` call). An error names a variable
/// whose value does not parse.
pub(crate) fn manager() -> Result<crate::dyno::Settings, String> {
    let mut settings = crate::dyno::Settings::default();
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
        if let Some(ms) = number(var, "a number of milliseconds")? {
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
        settings.http.max_instances = value
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("WASMDYNO_HTTP_INSTANCES={value:?} is not a positive number"))?;
    }
    if let Ok(value) = std::env::var("WASMDYNO_LOG_RATE") {
        settings.log_rate = value
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                format!("WASMDYNO_LOG_RATE={value:?} is not a positive number of bytes per second")
            })?;
    }
    if let Ok(value) = std::env::var("WASMDYNO_GUEST_DNS") {
        settings.guest_dns = Some(value.trim().parse().map_err(|_| {
            format!("WASMDYNO_GUEST_DNS={value:?} is not an address and port such as 127.0.0.1:53")
        })?);
    }
    if let Ok(value) = std::env::var("WASMDYNO_HTTP_FRESH_INSTANCES") {
        settings.http.fresh_instances = matches!(value.trim(), "1" | "true" | "on" | "yes");
    }
    Ok(settings)
}

/// The defaults, overridden by `WASMDYNO_ROUTER_TIMEOUT_MS`, `WASMDYNO_ROUTER_IDLE_TIMEOUT_MS`,
/// `WASMDYNO_ROUTER_BOOT_TIMEOUT_MS`, `WASMDYNO_ROUTER_MAX_IN_FLIGHT`, `WASMDYNO_ROUTER_MAX_QUEUE`,
/// `WASMDYNO_ROUTER_MAX_BODY` (bytes), `WASMDYNO_ROUTER_HEADER_TIMEOUT_MS`, `WASMDYNO_ROUTER_MAX_CONNECTIONS`,
/// `WASMDYNO_ROUTER_MAX_CONNECTIONS_PER_CLIENT` and `WASMDYNO_BASE_DOMAIN`. An error names a variable whose value is not
/// a number.
pub(crate) fn router() -> Result<crate::router::Settings, String> {
    let mut settings = crate::router::Settings::default();
    let number = |var: &str| number(var, "a number");
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

/// The defaults, overridden by `WASMDYNO_DRAIN_BUFFER_LINES`, `WASMDYNO_DRAIN_TIMEOUT_MS`,
/// `WASMDYNO_DRAIN_BACKOFF_BASE_MS`, `WASMDYNO_DRAIN_BACKOFF_CAP_MS` and `WASMDYNO_DRAIN_CA_FILE`.
pub(crate) fn drains() -> Result<crate::logs::drain::DrainSettings, String> {
    let mut settings = crate::logs::drain::DrainSettings::default();
    let number = |var: &str| number(var, "a whole number");
    if let Some(lines) = number("WASMDYNO_DRAIN_BUFFER_LINES")? {
        settings.buffer_lines = usize::try_from(lines.max(1)).unwrap_or(usize::MAX);
    }
    for (var, field) in [
        ("WASMDYNO_DRAIN_TIMEOUT_MS", &mut settings.timeout),
        ("WASMDYNO_DRAIN_BACKOFF_BASE_MS", &mut settings.backoff_base),
        ("WASMDYNO_DRAIN_BACKOFF_CAP_MS", &mut settings.backoff_cap),
    ] {
        if let Some(ms) = number(var)? {
            *field = Duration::from_millis(ms);
        }
    }
    if let Some(path) = std::env::var_os("WASMDYNO_DRAIN_CA_FILE").filter(|p| !p.is_empty()) {
        settings.ca_file = Some(PathBuf::from(path));
    }
    Ok(settings)
}

/// The whole number `var` holds, if it is set; an error saying it is not `what` when it does not parse.
fn number(var: &str, what: &str) -> Result<Option<u64>, String> {
    match std::env::var(var) {
        Ok(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{var}={value:?} is not {what}")),
        Err(_) => Ok(None),
    }
}
