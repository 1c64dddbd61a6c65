//! `apps`, `apps:create`, `apps:info`, `apps:destroy`, `maintenance:on|off`: clients of `/apps`.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::{AppArg, api, block_on, print_json};
use crate::store::{App, Release};

/// List apps.
#[derive(Debug, Args)]
pub(crate) struct AppsArgs {
    /// Print the apps as JSON.
    #[arg(long)]
    json: bool,
}

impl AppsArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let apps: Vec<App> = block_on(api()?.get("/apps"))?;
        if self.json {
            print_json(&apps)?;
        } else {
            println!("=== Apps");
            for app in apps {
                println!("{}", app.name);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Create an app (with a random name when none is given).
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Lowercase letters, digits and dashes; starts with a letter; 3 to 30 characters.
    name: Option<String>,
    #[arg(long)]
    json: bool,
}

impl CreateArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let body = serde_json::json!({ "name": self.name });
        let app: App = block_on(api()?.post("/apps", &body))?;
        if self.json {
            print_json(&app)?;
        } else {
            eprintln!("Creating ⬢ {}... done", app.name);
            println!("{}", app.name);
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Show an app.
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
}

impl InfoArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let client = api()?;
        let (app, releases): (App, Vec<Release>) = block_on(async {
            let app = client.get(&format!("/apps/{name}")).await?;
            let releases = client.get(&format!("/apps/{name}/releases")).await?;
            Ok::<_, crate::api::client::ClientError>((app, releases))
        })?;
        let current = super::releases::current(&releases);
        if self.json {
            print_json(&serde_json::json!({ "app": app, "current_release": current }))?;
            return Ok(ExitCode::SUCCESS);
        }
        println!("=== {}", app.name);
        println!("Created:     {}", super::releases::when(app.created_at));
        println!(
            "Maintenance: {}",
            if app.maintenance { "on" } else { "off" }
        );
        println!("Sleep:       {}", if app.sleep { "on" } else { "off" });
        match current {
            Some(release) => {
                println!(
                    "Release:     v{} ({})",
                    release.version, release.description
                );
                if let Some(slug) = &release.slug {
                    println!("Slug:        {slug}");
                }
            }
            None => println!("Release:     none"),
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Destroy an app and everything of it (releases, config, add-ons).
#[derive(Debug, Args)]
pub(crate) struct DestroyArgs {
    #[command(flatten)]
    app: AppArg,
    /// The app's name again, to confirm.
    #[arg(long, value_name = "NAME")]
    confirm: Option<String>,
}

impl DestroyArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        if self.confirm.as_deref() != Some(name.as_str()) {
            bail!("this destroys {name} and everything of it: confirm with --confirm {name}");
        }
        let _: App = block_on(api()?.delete(&format!("/apps/{name}")))?;
        eprintln!("Destroying ⬢ {name} (including all add-ons)... done");
        Ok(ExitCode::SUCCESS)
    }
}

/// Turn maintenance mode on or off: the router answers with a maintenance page (H80) while it is on.
#[derive(Debug, Args)]
pub(crate) struct MaintenanceArgs {
    #[command(flatten)]
    app: AppArg,
}

impl MaintenanceArgs {
    pub(crate) fn run(self, on: bool) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let _: App = block_on(api()?.patch(
            &format!("/apps/{name}"),
            &serde_json::json!({ "maintenance": on }),
        ))?;
        eprintln!(
            "{} maintenance mode for ⬢ {name}... done",
            if on { "Enabling" } else { "Disabling" }
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// Turn sleeping on or off: a sleeping app's web dynos go idle after 30 minutes without requests
/// (`WASMDYNO_SLEEP_AFTER_MS`), and the next request wakes them (it waits while they boot).
#[derive(Debug, Args)]
pub(crate) struct SleepArgs {
    #[command(flatten)]
    app: AppArg,
    /// `on` or `off`.
    #[arg(value_parser = ["on", "off"])]
    mode: String,
}

impl SleepArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let on = self.mode == "on";
        let _: App = block_on(api()?.patch(
            &format!("/apps/{name}"),
            &serde_json::json!({ "sleep": on }),
        ))?;
        eprintln!(
            "Turning sleeping {} for ⬢ {name}... done",
            if on { "on" } else { "off" }
        );
        Ok(ExitCode::SUCCESS)
    }
}
