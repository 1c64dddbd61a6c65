//! `network`, `network:allow`, `network:deny`: where an app's dynos may connect; clients of
//! `/apps/{app}/network`. Guests reach nothing by default, and never a loopback, private or link-local address.

use std::process::ExitCode;

use clap::Args;

use super::{AppArg, api, block_on, print_json};
use crate::api::server::Destination;

/// List the destinations an app's dynos may connect to (its own and its add-ons').
#[derive(Debug, Args)]
pub(crate) struct NetworkArgs {
    #[command(flatten)]
    app: AppArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl NetworkArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let all: Vec<Destination> = block_on(api()?.get(&format!("/apps/{name}/network")))?;
        if self.json {
            print_json(&all)?;
            return Ok(ExitCode::SUCCESS);
        }
        println!("=== ⬢ {name} Network destinations");
        if all.is_empty() {
            println!(
                "(none: its dynos reach nothing; `wasmdyno network:allow HOST[:PORT]` adds one)"
            );
        }
        let width = all.iter().map(|d| d.destination.len()).max().unwrap_or(0);
        for d in &all {
            println!("{:width$}  {}", d.destination, d.from);
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Let an app's dynos connect to HOST or HOST:PORT (public addresses only; its dynos restart).
#[derive(Debug, Args)]
pub(crate) struct AllowArgs {
    /// `api.example.com`, `api.example.com:443`, `203.0.113.7:5432`, `[2001:db8::1]:80`.
    destination: String,
    #[command(flatten)]
    app: AppArg,
}

impl AllowArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let added: Destination = block_on(api()?.post(
            &format!("/apps/{name}/network"),
            &serde_json::json!({ "destination": self.destination }),
        ))?;
        eprintln!(
            "Allowing {} for ⬢ {name} and restarting its dynos... done",
            added.destination
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// Take back a destination given with `network:allow` (its dynos restart).
#[derive(Debug, Args)]
pub(crate) struct DenyArgs {
    /// The destination as `network` lists it.
    destination: String,
    #[command(flatten)]
    app: AppArg,
}

impl DenyArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let _: Destination = block_on(api()?.delete(&format!(
            "/apps/{name}/network/{}",
            self.destination.trim().to_ascii_lowercase()
        )))?;
        eprintln!(
            "Removing {} for ⬢ {name} and restarting its dynos... done",
            self.destination
        );
        Ok(ExitCode::SUCCESS)
    }
}
