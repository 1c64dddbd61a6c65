//! `config`, `config:get`, `config:set` (alias `config:add`), `config:unset`: clients of `/apps/{app}/config-vars`.
//! Each change makes one new release.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use hyper::Method;

use super::{AppArg, api, block_on, print_json};
use crate::api::server::RELEASE_HEADER;

/// Show an app's config vars.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    #[command(flatten)]
    app: AppArg,
    /// Print them as a JSON object.
    #[arg(long)]
    json: bool,
    /// Print them as KEY='value' lines a shell can read.
    #[arg(short, long)]
    shell: bool,
}

impl ConfigArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let config: BTreeMap<String, String> =
            block_on(api()?.get(&format!("/apps/{name}/config-vars")))?;
        if self.json {
            print_json(&config)?;
        } else if self.shell {
            for (key, value) in &config {
                println!("{key}='{}'", value.replace('\'', r"'\''"));
            }
        } else {
            println!("=== {name} Config Vars");
            print_aligned(&config);
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn print_aligned(config: &BTreeMap<String, String>) {
    let width = config.keys().map(|k| k.len() + 1).max().unwrap_or(0);
    for (key, value) in config {
        println!("{:width$} {value}", format!("{key}:"));
    }
}

/// Print one config var's value.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    app: AppArg,
    key: String,
}

impl GetArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let config: BTreeMap<String, String> =
            block_on(api()?.get(&format!("/apps/{name}/config-vars")))?;
        match config.get(&self.key) {
            Some(value) => println!("{value}"),
            None => println!(),
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Set config vars (one new release for all of them).
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    #[command(flatten)]
    app: AppArg,
    #[arg(required = true, value_name = "KEY=VALUE")]
    vars: Vec<String>,
}

impl SetArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let mut changes = BTreeMap::new();
        for var in &self.vars {
            let Some((key, value)) = var.split_once('=') else {
                bail!("{var:?}: expected KEY=VALUE");
            };
            changes.insert(key.to_string(), Some(value.to_string()));
        }
        let keys: Vec<&String> = changes.keys().collect();
        let label = keys
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let version = change(&name, &changes)?;
        eprintln!("Setting {label} and restarting ⬢ {name}... done, v{version}");
        let shown: BTreeMap<String, String> = changes
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        print_aligned(&shown);
        Ok(ExitCode::SUCCESS)
    }
}

/// Unset config vars (one new release for all of them).
#[derive(Debug, Args)]
pub(crate) struct UnsetArgs {
    #[command(flatten)]
    app: AppArg,
    #[arg(required = true, value_name = "KEY")]
    keys: Vec<String>,
}

impl UnsetArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let changes: BTreeMap<String, Option<String>> =
            self.keys.iter().map(|k| (k.clone(), None)).collect();
        let version = change(&name, &changes)?;
        eprintln!(
            "Unsetting {} and restarting ⬢ {name}... done, v{version}",
            self.keys.join(", ")
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// Sends a config change; returns the version of the release it made.
fn change(app: &str, changes: &BTreeMap<String, Option<String>>) -> anyhow::Result<u64> {
    let (_, headers): (BTreeMap<String, String>, _) = block_on(api()?.json_with_headers(
        Method::PATCH,
        &format!("/apps/{app}/config-vars"),
        Some(changes),
    ))?;
    headers
        .get(RELEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("the server did not say which release the change made")
}
