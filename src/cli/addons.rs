//! `addons`, `addons:create` (`addons:add`), `addons:info`, `addons:destroy`: clients of `/apps/{app}/addons`. An add-on sets config vars (such
//! as `DATABASE_URL`) in a new release, and its host joins the app's allowed network destinations.

use std::process::ExitCode;

use clap::Args;

use super::{AppArg, api, block_on, print_json};
use crate::store::{Addon, Release};

/// List an app's add-ons.
#[derive(Debug, Args)]
pub(crate) struct AddonsArgs {
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
}

impl AddonsArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let addons: Vec<Addon> = block_on(api()?.get(&format!("/apps/{name}/addons")))?;
        if self.json {
            print_json(&addons)?;
            return Ok(ExitCode::SUCCESS);
        }
        println!("=== {name} Add-ons");
        for addon in addons {
            let vars: Vec<&str> = addon.config.keys().map(String::as_str).collect();
            println!(
                "{}  {}:{}  {}",
                addon.name,
                addon.service,
                addon.plan,
                vars.join(", ")
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Attach an add-on.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    app: AppArg,
    /// SERVICE or SERVICE:PLAN.
    plan: String,
    /// The add-on's name (default: the service).
    #[arg(long = "as", value_name = "NAME")]
    name: Option<String>,
    /// The URL the add-on's config var holds (for a service of your own; postgresql is provisioned).
    #[arg(long)]
    url: Option<String>,
}

impl CreateArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let app = self.app.name()?;
        let body = serde_json::json!({ "plan": self.plan, "name": self.name, "url": self.url });
        let addon: Addon = block_on(api()?.post(&format!("/apps/{app}/addons"), &body))?;
        let vars: Vec<&str> = addon.config.keys().map(String::as_str).collect();
        eprintln!("Creating {} on ⬢ {app}... done", addon.name);
        println!("Created {} as {}", addon.name, vars.join(", "));
        Ok(ExitCode::SUCCESS)
    }
}

/// Show one add-on: its service and plan, the config vars it sets (names only) and the hosts it opens.
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    app: AppArg,
    /// The add-on's name (`wasmdyno addons` lists them).
    name: String,
    /// Print JSON (config var values included).
    #[arg(long)]
    json: bool,
}

impl InfoArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let app = self.app.name()?;
        let addon: Addon = block_on(api()?.get(&format!("/apps/{app}/addons/{}", self.name)))?;
        if self.json {
            print_json(&addon)?;
            return Ok(ExitCode::SUCCESS);
        }
        let vars: Vec<&str> = addon.config.keys().map(String::as_str).collect();
        println!("=== {}", addon.name);
        println!("Attachments: {app}::{}", vars.join(", "));
        println!("Plan:        {}:{}", addon.service, addon.plan);
        let provisioned = crate::addons::Providers::canonical(&addon.service).is_some();
        println!(
            "State:       {}",
            if provisioned {
                "provisioned"
            } else {
                "attached (URL given)"
            }
        );
        println!("Hosts:       {}", addon.hosts.join(", "));
        Ok(ExitCode::SUCCESS)
    }
}

/// Detach an add-on (its config vars go in a new release). A PostgreSQL add-on the platform provisioned is
/// destroyed with its data: give --confirm APP.
#[derive(Debug, Args)]
pub(crate) struct DestroyArgs {
    #[command(flatten)]
    app: AppArg,
    name: String,
    /// The app's name again, to confirm that a provisioned add-on's data goes.
    #[arg(long, value_name = "APP")]
    confirm: Option<String>,
}

impl DestroyArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let app = self.app.name()?;
        let addon: Addon = block_on(api()?.get(&format!("/apps/{app}/addons/{}", self.name)))?;
        let provisioned = crate::addons::Providers::canonical(&addon.service).is_some();
        if provisioned && self.confirm.as_deref() != Some(app.as_str()) {
            anyhow::bail!(
                "this destroys {} ({}:{}) and all its data; to proceed, run again with --confirm {app}",
                addon.name,
                addon.service,
                addon.plan
            );
        }
        let release: Release =
            block_on(api()?.delete(&format!("/apps/{app}/addons/{}", self.name)))?;
        eprintln!(
            "Destroying {} on ⬢ {app}... done, v{}",
            self.name, release.version
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// New credentials for a provisioned add-on: the old ones stop working, and the app gets the new ones in a new
/// release (its dynos restart with them).
#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    #[command(flatten)]
    app: AppArg,
    /// The add-on's name (`wasmdyno addons` lists them).
    name: String,
}

impl RotateArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let app = self.app.name()?;
        let release: Release = block_on(api()?.post(
            &format!("/apps/{app}/addons/{}/rotate", self.name),
            &serde_json::json!({}),
        ))?;
        eprintln!(
            "Rotating the credentials of {} on ⬢ {app}... done, v{}",
            self.name, release.version
        );
        Ok(ExitCode::SUCCESS)
    }
}
