//! Config vars given on the command line (`-e K=V`, `--env-file`), checked by the platform's rules for their
//! names before anything runs.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};

use super::Hint;

/// Refuses an environment that names a variable only the platform sets.
pub(super) fn refuse_platform_vars(env: &BTreeMap<String, String>) -> anyhow::Result<()> {
    match env.keys().find(|k| crate::vars::is_platform_var(k)) {
        Some(key) => Err(anyhow::anyhow!(
            "{key} is set by the platform and cannot be given as a config var"
        )
        .context(Hint("remove it from -e / --env-file".into()))),
        None => Ok(()),
    }
}

/// Parses `-e` values: `K=V`, or several separated by `;`.
pub(super) fn parse_env_args(values: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for value in values {
        for pair in value.split(';').filter(|p| !p.trim().is_empty()) {
            let (key, val) = pair
                .split_once('=')
                .with_context(|| format!("-e {pair:?}: expected KEY=VALUE"))?;
            let key = key.trim();
            check_key(key).with_context(|| format!("-e {pair:?}"))?;
            env.insert(key.to_string(), val.to_string());
        }
    }
    Ok(env)
}

fn check_key(key: &str) -> anyhow::Result<()> {
    if !crate::vars::is_config_name(key) {
        bail!(
            "{key:?} is not a valid config var name (letters, digits and _, not starting with a digit)"
        );
    }
    Ok(())
}

/// Parses an env file: `KEY=VALUE` lines, `export ` prefixes, `#` comments, single or double quotes.
pub(super) fn parse_env_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read env file {}", path.display()))?;
    let mut env = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let where_ = || format!("{} line {}", path.display(), index + 1);
        let (key, value) = line
            .split_once('=')
            .with_context(|| format!("{}: expected KEY=VALUE", where_()))?;
        let key = key.trim();
        check_key(key).with_context(where_)?;
        let value = value.trim();
        let value = match value.as_bytes() {
            [b'"', .., b'"'] | [b'\'', .., b'\''] if value.len() >= 2 => &value[1..value.len() - 1],
            _ => value,
        };
        env.insert(key.to_string(), value.to_string());
    }
    Ok(env)
}
