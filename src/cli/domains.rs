//! `domains`, `domains:add`, `domains:remove`: clients of `/apps/{app}/domains`. Every app answers at
//! `<app>.<base domain>`; custom domains route more hostnames to it (point their DNS at the router with a CNAME to
//! the default domain, or anything else that reaches the router's address).

use std::process::ExitCode;

use clap::Args;

use super::{AppArg, api, block_on, print_json};
use crate::router::DomainInfo;

/// List an app's domains: its default domain and its custom domains.
#[derive(Debug, Args)]
pub(crate) struct DomainsArgs {
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
}

impl DomainsArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let app = self.app.name()?;
        let domains: Vec<DomainInfo> = block_on(api()?.get(&format!("/apps/{app}/domains")))?;
        if self.json {
            print_json(&domains)?;
            return Ok(ExitCode::SUCCESS);
        }
        print!("{}", render(&app, &domains));
        Ok(ExitCode::SUCCESS)
    }
}

/// Heroku's layout: the default domain, then a table of custom domains and their DNS targets.
fn render(app: &str, domains: &[DomainInfo]) -> String {
    let mut out = format!("=== {app} Default Domain\n");
    for domain in domains.iter().filter(|d| d.kind != "custom") {
        out.push_str(&format!("{}\n", domain.hostname));
    }
    let custom: Vec<&DomainInfo> = domains.iter().filter(|d| d.kind == "custom").collect();
    if custom.is_empty() {
        return out;
    }
    out.push_str(&format!("\n=== {app} Custom Domains\n"));
    let header = ["Domain Name", "DNS Record Type", "DNS Target"];
    let rows: Vec<[String; 3]> = custom
        .iter()
        .map(|d| {
            [
                d.hostname.clone(),
                "CNAME".to_string(),
                d.cname.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1) = (width(0), width(1));
    out.push_str(&format!(
        "{:<w0$}  {:<w1$}  {}\n",
        header[0], header[1], header[2]
    ));
    for [name, kind, target] in rows {
        out.push_str(&format!("{name:<w0$}  {kind:<w1$}  {target}\n"));
    }
    out
}

/// Route a custom hostname to an app.
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    #[command(flatten)]
    app: AppArg,
    /// The hostname, such as www.example.com (or *.example.com for every name one level under it).
    hostname: String,
    #[arg(long)]
    json: bool,
}

impl AddArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let app = self.app.name()?;
        let body = serde_json::json!({ "hostname": self.hostname });
        let domain: DomainInfo = block_on(api()?.post(&format!("/apps/{app}/domains"), &body))?;
        eprintln!("Adding {} to ⬢ {app}... done", domain.hostname);
        if self.json {
            print_json(&domain)?;
        } else if let Some(target) = &domain.cname {
            eprintln!(
                "Configure your app's DNS provider to point to the DNS Target {target} (a CNAME), or to the router's address."
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Stop routing a custom hostname to an app.
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    #[command(flatten)]
    app: AppArg,
    hostname: String,
}

impl RemoveArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let app = self.app.name()?;
        let path = format!("/apps/{app}/domains/{}", self.hostname);
        let domain: DomainInfo = block_on(api()?.delete(&path))?;
        eprintln!("Removing {} from ⬢ {app}... done", domain.hostname);
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_render_like_heroku() {
        let domain = |hostname: &str, kind: &str| DomainInfo {
            hostname: hostname.into(),
            kind: kind.into(),
            cname: (kind == "custom").then(|| "hello.localhost".into()),
            app: "hello".into(),
        };
        let only_default = render("hello", &[domain("hello.localhost", "default")]);
        assert_eq!(only_default, "=== hello Default Domain\nhello.localhost\n");
        let all = render(
            "hello",
            &[
                domain("hello.localhost", "default"),
                domain("www.example.com", "custom"),
                domain("*.example.org", "custom"),
            ],
        );
        assert_eq!(
            all,
            "=== hello Default Domain\nhello.localhost\n\n=== hello Custom Domains\n\
             Domain Name      DNS Record Type  DNS Target\n\
             www.example.com  CNAME            hello.localhost\n\
             *.example.org    CNAME            hello.localhost\n"
        );
    }
}
