//! `hosts`: the hosts of a cluster and the formation dynos placed on each; a client of `/hosts`.

use std::process::ExitCode;

use clap::Args;

use super::{api, block_on, print_json};
use crate::cluster::HostStatus;

/// List the live hosts of the cluster this server belongs to (servers sharing one PostgreSQL store), with their
/// capacity and the formation dynos placed on each.
#[derive(Debug, Args)]
pub(crate) struct HostsArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl HostsArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let hosts: Vec<HostStatus> = block_on(api()?.get("/hosts"))?;
        if self.json {
            print_json(&hosts)?;
            return Ok(ExitCode::SUCCESS);
        }
        for host in &hosts {
            let this = if host.this { " (this host)" } else { "" };
            println!(
                "=== {}{this}: router {}, API {}, {} dynos of {} units",
                host.id,
                host.router,
                host.api,
                host.dynos.len(),
                host.capacity
            );
            for dyno in &host.dynos {
                println!("{dyno}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
