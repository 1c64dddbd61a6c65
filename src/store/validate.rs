//! The rules for names and values the store accepts, kept apart from SQL so every backend applies the same ones.

use std::collections::BTreeMap;

use super::StoreError;

/// The most bytes a config may take, counting every name and value (Heroku's limit).
pub const CONFIG_LIMIT: usize = 32 * 1024;
/// The most dynos of one process type (Heroku's default limit); stops a typo like `web=1000` from starting
/// a thousand instances.
pub const MAX_QUANTITY: u32 = 100;

/// Checks an app name: 3 to 30 lowercase letters, digits and dashes, starting with a letter and not ending with a
/// dash. App names become hostnames (`NAME.localhost`), hence DNS-label rules.
pub fn check_app_name(name: &str) -> Result<(), StoreError> {
    check_label(name, 3, 30).map_err(|reason| StoreError::InvalidAppName {
        name: name.to_owned(),
        reason,
    })
}

/// Checks an add-on name: the app-name rules, from 1 to 60 characters.
pub fn check_addon_name(name: &str) -> Result<(), StoreError> {
    check_label(name, 1, 60).map_err(|reason| StoreError::InvalidAddonName {
        name: name.to_owned(),
        reason,
    })
}

fn check_label(name: &str, min: usize, max: usize) -> Result<(), String> {
    let len = name.chars().count();
    if len < min {
        return Err(format!("must be at least {min} characters long"));
    }
    if len > max {
        return Err(format!("must be at most {max} characters long"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return Err(format!(
            "may only contain lowercase letters, digits and dashes, not {bad:?}"
        ));
    }
    if name.ends_with('-') {
        return Err("must not end with a dash".into());
    }
    Ok(())
}

/// Checks that a config var name is `[A-Za-z_][A-Za-z0-9_]*` and not one the platform sets itself (`PORT`,
/// `DYNO`, `WASMDYNO_*`).
pub fn check_config_name(name: &str) -> Result<(), StoreError> {
    if !crate::vars::is_config_name(name) {
        return Err(StoreError::InvalidConfigName(name.to_owned()));
    }
    if crate::vars::is_platform_var(name) {
        return Err(StoreError::ReservedConfigName(name.to_owned()));
    }
    Ok(())
}

/// Values reach guests as C strings in their environment, where a NUL would silently cut them short.
pub(super) fn check_config_value(name: &str, value: &str) -> Result<(), StoreError> {
    if value.contains('\0') {
        return Err(StoreError::InvalidConfigValue {
            name: name.to_owned(),
            reason: "it contains a NUL character".into(),
        });
    }
    Ok(())
}

/// Checks a whole config as a release would hold it: every name and value, and the total size.
pub(super) fn check_config(config: &BTreeMap<String, String>) -> Result<(), StoreError> {
    for (name, value) in config {
        check_config_name(name)?;
        check_config_value(name, value)?;
    }
    let size: usize = config.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > CONFIG_LIMIT {
        return Err(StoreError::ConfigTooLarge {
            size,
            limit: CONFIG_LIMIT,
        });
    }
    Ok(())
}

/// Describes a config change the way Heroku does: `Set FOO, BAR config vars`, `Unset FOO config var`, or both
/// halves joined for a mixed change.
pub(super) fn describe_config_change(changes: &BTreeMap<String, Option<String>>) -> String {
    let part = |verb: &str, names: Vec<&str>| {
        let noun = if names.len() == 1 {
            "config var"
        } else {
            "config vars"
        };
        format!("{verb} {} {noun}", names.join(", "))
    };
    let set: Vec<&str> = changes
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.as_str())
        .collect();
    let unset: Vec<&str> = changes
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.as_str())
        .collect();
    match (set.is_empty(), unset.is_empty()) {
        (false, true) => part("Set", set),
        (true, false) => part("Unset", unset),
        _ => format!("{}, {}", part("Set", set), part("unset", unset)),
    }
}

/// Checks an add-on's service, plan and hosts (its name and config are checked by the rules above).
pub(super) fn check_addon_fields(
    name: &str,
    service: &str,
    plan: &str,
    hosts: &[String],
) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::InvalidAddon {
        name: name.to_owned(),
        reason,
    };
    let is_token = |s: &str| {
        !s.is_empty() && s.len() <= 100 && !s.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if !is_token(service) {
        return Err(invalid(format!(
            "service {service:?} must be 1 to 100 characters without spaces"
        )));
    }
    if !is_token(plan) {
        return Err(invalid(format!(
            "plan {plan:?} must be 1 to 100 characters without spaces"
        )));
    }
    if let Some(host) = hosts.iter().find(|h| {
        h.is_empty() || h.len() > 260 || h.chars().any(|c| c.is_whitespace() || c.is_control())
    }) {
        return Err(invalid(format!(
            "host {host:?} is not a network destination like db.example.com:5432"
        )));
    }
    Ok(())
}

/// Normalizes a hostname (lowercase, no trailing dot) and checks it: dot-separated labels of letters, digits and
/// dashes, each 1 to 63 characters and not starting or ending with a dash, 253 characters in all; the first label
/// may be `*` for a wildcard domain.
pub fn normalize_hostname(hostname: &str) -> Result<String, StoreError> {
    let normalized = hostname
        .strip_suffix('.')
        .unwrap_or(hostname)
        .to_ascii_lowercase();
    let invalid = |reason: &str| StoreError::InvalidHostname {
        hostname: hostname.to_owned(),
        reason: reason.to_owned(),
    };
    if normalized.is_empty() || normalized.len() > 253 {
        return Err(invalid("must be 1 to 253 characters long"));
    }
    let labels: Vec<&str> = normalized.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        if *label == "*" && i == 0 && labels.len() > 1 {
            continue;
        }
        if label.is_empty() || label.len() > 63 {
            return Err(invalid(
                "each dot-separated part must be 1 to 63 characters long",
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid(
                "may only contain letters, digits, dashes and dots (and a leading `*.` for a wildcard)",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a part must not start or end with a dash"));
        }
    }
    Ok(normalized)
}

/// Normalizes and checks a network destination: `host` or `host:port`, the host a hostname, an IPv4 address or
/// an IPv6 address in brackets.
pub fn check_destination(destination: &str) -> Result<String, StoreError> {
    let text = destination.trim().to_ascii_lowercase();
    let invalid = |reason: &str| StoreError::InvalidDestination {
        destination: destination.to_owned(),
        reason: reason.to_owned(),
    };
    if text.contains("://") || text.contains('/') || text.contains('@') {
        return Err(invalid("give a host or host:port, not a URL"));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid("an IPv6 address needs its closing `]`"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid("not an IPv6 address"));
        }
        (format!("[{host}]"), after.strip_prefix(':'))
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (text.clone(), None),
        }
    };
    if !host.starts_with('[') && host.parse::<std::net::Ipv4Addr>().is_err() {
        let name = normalize_hostname(&host).map_err(|_| invalid("not a valid hostname"))?;
        if name.starts_with("*.") {
            return Err(invalid("wildcards are not allowed"));
        }
    }
    match port {
        None => Ok(host),
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(format!("{host}:{p}")),
            _ => Err(invalid("the port must be a number from 1 to 65535")),
        },
    }
}
