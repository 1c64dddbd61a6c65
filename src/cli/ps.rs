//! `ps`, `ps:scale`, `ps:restart`, `ps:stop`: clients of `/apps/{app}/formation` and `/apps/{app}/dynos`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::{AppArg, api, block_on, print_json};
use crate::api::server::FormationType;
use crate::dyno::DynoInfo;

/// List an app's dynos.
#[derive(Debug, Args)]
pub(crate) struct PsArgs {
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
}

impl PsArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let client = api()?;
        let (dynos, formation): (Vec<DynoInfo>, Vec<FormationType>) = block_on(async {
            Ok::<_, crate::api::client::ClientError>((
                client.get(&format!("/apps/{name}/dynos")).await?,
                client.get(&format!("/apps/{name}/formation")).await?,
            ))
        })?;
        if self.json {
            print_json(&dynos)?;
            return Ok(ExitCode::SUCCESS);
        }
        if dynos.is_empty() {
            println!("No dynos on ⬢ {name}");
        }
        let mut by_type: BTreeMap<&str, Vec<&DynoInfo>> = BTreeMap::new();
        for dyno in &dynos {
            by_type.entry(&dyno.kind).or_default().push(dyno);
        }
        let now = crate::store::unix_now();
        for (kind, mut group) in by_type {
            group.sort_by_key(|d| d.name.split('.').nth(1).and_then(|n| n.parse::<u32>().ok()));
            let size = formation
                .iter()
                .find(|f| f.kind == kind)
                .map_or("standard-1x", |f| f.size.as_str());
            println!(
                "=== {kind} ({size}): {} ({})",
                group[0].command,
                group.len()
            );
            for dyno in group {
                let host = dyno
                    .host
                    .as_deref()
                    .map_or(String::new(), |h| format!(" on host {h}"));
                println!(
                    "{}: {} {} (~ {} ago){host}",
                    dyno.name,
                    dyno.state.as_str(),
                    super::releases::when(dyno.updated_at),
                    ago(now - dyno.updated_at)
                );
            }
            println!();
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn ago(secs: i64) -> String {
    match secs.max(0) {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Scale process types: `web=3`, `worker+1`, `clock-1`, `web=2:standard-2x`; alone, print the formation.
#[derive(Debug, Args)]
pub(crate) struct ScaleArgs {
    #[command(flatten)]
    app: AppArg,
    #[arg(value_name = "TYPE=N[:SIZE]")]
    changes: Vec<String>,
}

impl ScaleArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let client = api()?;
        let path = format!("/apps/{name}/formation");
        let current: Vec<FormationType> = block_on(client.get(&path))?;
        if self.changes.is_empty() {
            println!("{}", summary(&current));
            return Ok(ExitCode::SUCCESS);
        }
        let mut updates = Vec::new();
        for change in &self.changes {
            let (kind, quantity, size) = parse_change(change, &current)?;
            updates.push(serde_json::json!({ "type": kind, "quantity": quantity, "size": size }));
        }
        let formation: Vec<FormationType> =
            block_on(client.patch(&path, &serde_json::json!({ "updates": updates })))?;
        eprintln!("Scaling dynos... done, now running {}", summary(&formation));
        Ok(ExitCode::SUCCESS)
    }
}

/// The scaled process types, `web=2:standard-1x worker=1:eco` (types at 0 are left out).
fn summary(formation: &[FormationType]) -> String {
    let parts: Vec<String> = formation
        .iter()
        .filter(|f| f.quantity > 0)
        .map(|f| format!("{}={}:{}", f.kind, f.quantity, f.size))
        .collect();
    if parts.is_empty() {
        "no dynos".into()
    } else {
        parts.join(" ")
    }
}

/// `web=3`, `web+1`, `web-1`, each optionally `:SIZE`.
fn parse_change(
    change: &str,
    current: &[FormationType],
) -> anyhow::Result<(String, Option<u32>, Option<String>)> {
    let Some(at) = change.find(['=', '+', '-']) else {
        bail!(
            "{change:?}: expected TYPE=N, TYPE+N or TYPE-N, optionally with :SIZE (web=2:standard-2x)"
        );
    };
    let (kind, rest) = change.split_at(at);
    let (op, rest) = rest.split_at(1);
    let (amount, size) = match rest.split_once(':') {
        Some((amount, size)) => (amount, Some(size.to_string())),
        None => (rest, None),
    };
    let quantity = if amount.is_empty() && size.is_some() && op == "=" {
        None
    } else {
        let n: u32 = amount
            .parse()
            .map_err(|_| anyhow::anyhow!("{change:?}: {amount:?} is not a number of dynos"))?;
        let have = current
            .iter()
            .find(|f| f.kind == kind)
            .map_or(0, |f| f.quantity);
        Some(match op {
            "=" => n,
            "+" => have.saturating_add(n),
            _ => have.saturating_sub(n),
        })
    };
    Ok((kind.to_string(), quantity, size))
}

/// Restart dynos: one (`web.1`), a type (`web`), or all.
#[derive(Debug, Args)]
pub(crate) struct RestartArgs {
    #[command(flatten)]
    app: AppArg,
    #[arg(value_name = "DYNO|TYPE")]
    target: Option<String>,
}

impl RestartArgs {
    pub(crate) fn run(self, verb: &str) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let path = match &self.target {
            Some(target) => format!("/apps/{name}/dynos/{target}"),
            None => format!("/apps/{name}/dynos"),
        };
        let _: serde_json::Value = block_on(api()?.delete(&path))?;
        let what = self
            .target
            .as_deref()
            .map_or("all dynos".to_string(), |t| format!("{t} dynos"));
        eprintln!("{verb} {what} on ⬢ {name}... done");
        Ok(ExitCode::SUCCESS)
    }
}

/// Run a one-off dyno in the server, detached: its output goes to the app's logs.
#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub(crate) struct RunDetachedArgs {
    #[command(flatten)]
    app: AppArg,
    /// Config var for this dyno only; repeatable, or `"A=1;B=2"`.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Dyno size (eco, basic, standard-1x, standard-2x, performance-m, performance-l).
    #[arg(short, long)]
    size: Option<String>,
    /// A process type of the current release, or a module in its slug, and its arguments.
    #[arg(required = true, allow_hyphen_values = true, value_name = "COMMAND")]
    command: Vec<String>,
}

impl RunDetachedArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let env = super::env::parse_env_args(&self.env)?;
        let (command, args) = self.command.split_first().expect("clap requires COMMAND");
        let body =
            serde_json::json!({ "command": command, "args": args, "env": env, "size": self.size });
        let dyno: DynoInfo = block_on(api()?.post(&format!("/apps/{name}/dynos"), &body))?;
        eprintln!(
            "Running `{}` on ⬢ {name}... up, {}",
            dyno.command, dyno.name
        );
        eprintln!(
            "Run `wasmdyno logs -a {name} -p {}` to see its output.",
            dyno.name
        );
        println!("{}", dyno.name);
        Ok(ExitCode::SUCCESS)
    }
}
