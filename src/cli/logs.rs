//! `logs`: an app's log stream (router, platform and dyno lines), through a log session of the API.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use hyper::Method;
use hyper::body::Bytes;

use super::{AppArg, api, block_on};
use crate::api::client::for_each_line;
use crate::logs::LogLine;

/// Show an app's logs: the last lines, and with --tail the new ones as they come.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    #[command(flatten)]
    app: AppArg,
    /// How many lines of history (at most 1,500).
    #[arg(short = 'n', long = "num", default_value_t = 100)]
    num: usize,
    /// Keep printing new lines until interrupted.
    #[arg(short, long)]
    tail: bool,
    /// Only this process type (`web`) or dyno (`web.1`).
    #[arg(short, long, value_name = "TYPE|DYNO")]
    ps: Option<String>,
    /// Only this dyno.
    #[arg(short, long, value_name = "DYNO")]
    dyno: Option<String>,
    /// Only lines from the app or from the platform.
    #[arg(short, long, value_parser = ["app", "wasmdyno"])]
    source: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

impl LogsArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let app = self.app.name()?;
        let request = serde_json::json!({
            "lines": self.num.min(1500),
            "tail": self.tail,
            "ps": self.ps,
            "dyno": self.dyno,
            "source": self.source,
        });
        stream(&app, &request, self.json)?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Opens a log session for `app` with `request` and prints its lines until the stream ends.
pub(crate) fn stream(app: &str, request: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    let client = api()?;
    block_on(async {
        let session: serde_json::Value = client
            .post(&format!("/apps/{app}/log-sessions"), request)
            .await?;
        let url = session["logplex_url"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let response = client
            .send(Method::GET, &url, "application/json", Bytes::new())
            .await?;
        for_each_line(response.into_body(), |line| {
            let written = if json {
                std::io::stdout().write_all(line)
            } else if let Ok(line) = serde_json::from_slice::<LogLine>(line) {
                writeln!(std::io::stdout(), "{}", for_terminal(&line))
            } else {
                Ok(())
            };
            // The reader went away (`wasmdyno logs -t | head`): stop quietly, as Unix tools do.
            written.is_ok()
        })
        .await;
        Ok::<_, crate::api::client::ClientError>(())
    })?;
    Ok(())
}

/// A line as a terminal should show it: an app's text cannot move the cursor, rewrite what came before (a `\r`
/// over the line's prefix fakes a platform line), reverse its direction, or send escape sequences (OSC 52 writes
/// the clipboard). Such characters are shown escaped, as Rust's `{:?}` does; `--json` keeps the exact text.
fn for_terminal(line: &LogLine) -> String {
    let mut text = String::with_capacity(line.text().len());
    for c in line.text().chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if (c.is_control() && c != '\t') || bidi {
            text.extend(c.escape_debug());
        } else {
            text.push(c);
        }
    }
    format!(
        "{} {}[{}]: {text}",
        crate::logs::time::Rfc3339(line.timestamp()),
        line.source(),
        line.dyno()
    )
}

/// Follows `app`'s stream from its last few lines on (what `up` shows).
pub(crate) fn follow(app: &str) -> anyhow::Result<()> {
    stream(
        app,
        &serde_json::json!({ "lines": 20, "tail": true }),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        let line = LogLine::app(
            "web.1",
            "ok\r2026 wasmdyno[web.1]: fake \u{1b}]52;c;aGk=\u{7}\tdone\u{202e}".into(),
        );
        let shown = for_terminal(&line);
        assert!(
            shown.ends_with(
                "app[web.1]: ok\\r2026 wasmdyno[web.1]: fake \\u{1b}]52;c;aGk=\\u{7}\tdone\\u{202e}"
            ),
            "{shown}"
        );
        assert_eq!(for_terminal(&line).lines().count(), 1);
    }
}
