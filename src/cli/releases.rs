//! `releases`, `releases:info`, `releases:output`, `releases:rollback`: clients of `/apps/{app}/releases`.

use std::process::ExitCode;

use clap::Args;

use super::{AppArg, api, block_on, print_json};
use crate::store::{Release, ReleaseStatus};

/// The current release: the newest that succeeded.
pub(crate) fn current(releases: &[Release]) -> Option<&Release> {
    releases
        .iter()
        .filter(|r| r.status == ReleaseStatus::Succeeded)
        .max_by_key(|r| r.version)
}

/// A timestamp (seconds since the epoch) as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn when(unix: i64) -> String {
    crate::store::format_time(unix)
}

fn status_note(release: &Release) -> &'static str {
    match release.status {
        ReleaseStatus::Succeeded => "",
        ReleaseStatus::Pending => " (release command running)",
        ReleaseStatus::Failed => " (release command failed)",
    }
}

fn parse_version(v: &str) -> anyhow::Result<u64> {
    v.strip_prefix('v')
        .unwrap_or(v)
        .parse()
        .map_err(|_| anyhow::anyhow!("{v:?} is not a release version (write v3 or 3)"))
}

/// List an app's releases, newest first.
#[derive(Debug, Args)]
pub(crate) struct ReleasesArgs {
    #[command(flatten)]
    app: AppArg,
    /// How many to show.
    #[arg(short, long, default_value_t = 15)]
    num: usize,
    #[arg(long)]
    json: bool,
}

impl ReleasesArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let releases: Vec<Release> = block_on(api()?.get(&format!("/apps/{name}/releases")))?;
        if self.json {
            print_json(&releases)?;
            return Ok(ExitCode::SUCCESS);
        }
        let current = current(&releases).map(|r| r.version);
        println!(
            "=== {name} Releases{}",
            current
                .map(|v| format!(" - Current: v{v}"))
                .unwrap_or_default()
        );
        let shown: Vec<&Release> = releases.iter().rev().take(self.num).collect();
        let width = shown
            .iter()
            .map(|r| r.description.len() + status_note(r).len())
            .max()
            .unwrap_or(0);
        for release in shown {
            let description = format!("{}{}", release.description, status_note(release));
            println!(
                "v{:<4} {description:width$}  {}",
                release.version,
                when(release.created_at)
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Show one release.
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    app: AppArg,
    /// The release's version (v3 or 3).
    #[arg(value_name = "VERSION")]
    release: String,
    #[arg(long)]
    json: bool,
}

impl InfoArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let version = parse_version(&self.release)?;
        let release: Release = block_on(api()?.get(&format!("/apps/{name}/releases/{version}")))?;
        if self.json {
            print_json(&release)?;
            return Ok(ExitCode::SUCCESS);
        }
        println!("=== Release v{}", release.version);
        println!(
            "Description: {}{}",
            release.description,
            status_note(&release)
        );
        println!("When:        {}", when(release.created_at));
        println!(
            "Status:      {}",
            format!("{:?}", release.status).to_lowercase()
        );
        println!("Slug:        {}", release.slug.as_deref().unwrap_or("none"));
        if !release.addons.is_empty() {
            println!("Add-ons:     {}", release.addons.join(", "));
        }
        println!();
        println!("=== v{} Config Vars", release.version);
        let width = release
            .config
            .keys()
            .map(|k| k.len() + 1)
            .max()
            .unwrap_or(0);
        for (key, value) in &release.config {
            println!("{:width$} {value}", format!("{key}:"));
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Print the output of a release's release phase.
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    #[command(flatten)]
    app: AppArg,
    /// The release's version (v3 or 3).
    #[arg(value_name = "VERSION")]
    release: String,
}

impl OutputArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let version = parse_version(&self.release)?;
        let release: Release = block_on(api()?.get(&format!("/apps/{name}/releases/{version}")))?;
        match release.output {
            Some(output) => print!("{output}"),
            None => eprintln!("v{version} ran no release command"),
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Roll back: a new release with an older release's slug and config (default: the one before the current).
#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    #[command(flatten)]
    app: AppArg,
    /// The release to roll back to (v3 or 3); default: the one before the current.
    #[arg(value_name = "VERSION")]
    release: Option<String>,
}

impl RollbackArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let target = self.release.as_deref().map(parse_version).transpose()?;
        let body = serde_json::json!({ "release": target, "rollback": true });
        let release: Release = block_on(api()?.post(&format!("/apps/{name}/releases"), &body))?;
        eprintln!("Rolling back ⬢ {name}... done, v{}", release.version);
        println!("{}{}", release.description, status_note(&release));
        Ok(ExitCode::from(if release.status == ReleaseStatus::Failed {
            1
        } else {
            0
        }))
    }
}
