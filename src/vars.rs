//! Config var names, one definition for the store, the dyno manager, edge hosts and `wasmdyno run`: what a name
//! may be, and which names only the platform sets (`PORT`, `DYNO`, `WASMDYNO_*`; see `dyno/launch.rs`).

/// Is `name` a config var name (`[A-Za-z_][A-Za-z0-9_]*`)?
pub(crate) fn is_config_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Is `name` a variable only the platform sets (`PORT`, `DYNO`, `WASMDYNO_*`)?
pub(crate) fn is_platform_var(name: &str) -> bool {
    name == "PORT" || name == "DYNO" || name.starts_with("WASMDYNO_")
}
