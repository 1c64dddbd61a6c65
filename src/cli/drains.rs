//! `drains`, `drains:add`, `drains:remove`: clients of `/apps/{app}/log-drains`. A drain ships the app's log
//! stream to a syslog server (`syslog://`, `syslog+tls://`) or an HTTP endpoint (`http://`, `https://`), framed as
//! Logplex frames it. Drains make no release.

use std::process::ExitCode;

use clap::Args;

use super::{AppArg, api, block_on, print_json};

/// List an app's log drains.
#[derive(Debug, Args)]
pub(crate) struct DrainsArgs {
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
}

impl DrainsArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let app = self.app.name()?;
        let drains: Vec<serde_json::Value> =
            block_on(api()?.get(&format!("/apps/{app}/log-drains")))?;
        if self.json {
            print_json(&drains)?;
            return Ok(ExitCode::SUCCESS);
        }
        println!("=== {app} Drains");
        for drain in &drains {
            let text = |key: &str| drain[key].as_str().unwrap_or_default().to_owned();
            let status = &drain["status"];
            let mut line = format!("{} ({})", text("url"), text("token"));
            if let Some(error) = status["error"].as_str() {
                line.push_str(&format!("  failing: {error}"));
            }
            if let Some(dropped) = status["dropped"].as_u64().filter(|&n| n > 0) {
                line.push_str(&format!("  {dropped} lines dropped"));
            }
            println!("{line}");
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Add a log drain: syslog://HOST:PORT, syslog+tls://HOST:PORT, http(s)://[USER:PASS@]HOST[:PORT]/PATH.
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    #[command(flatten)]
    app: AppArg,
    /// Where to send the app's logs.
    url: String,
    #[arg(long)]
    json: bool,
}

impl AddArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let app = self.app.name()?;
        let body = serde_json::json!({ "url": self.url });
        let drain: serde_json::Value =
            block_on(api()?.post(&format!("/apps/{app}/log-drains"), &body))?;
        if self.json {
            print_json(&drain)?;
        } else {
            println!("Successfully added drain {}", self.url);
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Remove a log drain, named by its URL, token or id.
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    #[command(flatten)]
    app: AppArg,
    /// The drain's URL (as added), token (d.…) or id.
    drain: String,
}

impl RemoveArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let app = self.app.name()?;
        let path = format!("/apps/{app}/log-drains/{}", percent_encode(&self.drain));
        let drain: serde_json::Value = block_on(api()?.delete(&path))?;
        println!(
            "Successfully removed drain {}",
            drain["url"].as_str().unwrap_or(&self.drain)
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a URL fits in one path segment.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_fit_in_one_path_segment() {
        assert_eq!(
            super::percent_encode("syslog+tls://a.example:6514/x?y=1"),
            "syslog%2Btls%3A%2F%2Fa.example%3A6514%2Fx%3Fy%3D1"
        );
        assert_eq!(super::percent_encode("d.1234-abcd"), "d.1234-abcd");
    }
}
