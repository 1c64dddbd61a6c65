//! `metrics`: an app's router metrics (throughput by status class, response time percentiles, error codes) minute
//! by minute, as Heroku Metrics charts them; a client of `/apps/{app}/metrics`.

use std::fmt::Write;
use std::process::ExitCode;

use clap::Args;

use super::{AppArg, api, block_on, print_json};
use crate::api::server::AppMetrics;

/// Show an app's router metrics: requests by status class, p50/p95/p99 response times and error codes, per minute.
#[derive(Debug, Args)]
pub(crate) struct MetricsArgs {
    #[command(flatten)]
    app: AppArg,
    /// Only this process type (`web`; `router` counts requests no dyno took).
    #[arg(long = "type", value_name = "TYPE")]
    process_type: Option<String>,
    /// How many of the newest minutes to show (the server keeps a day).
    #[arg(long, default_value_t = 10)]
    minutes: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl MetricsArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let mut path = format!("/apps/{name}/metrics?minutes={}", self.minutes);
        if let Some(kind) = &self.process_type {
            path.push_str(&format!("&type={kind}"));
        }
        let metrics: AppMetrics = block_on(api()?.get(&path))?;
        if self.json {
            print_json(&metrics)?;
        } else {
            print!("{}", render(&name, &metrics));
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// A table per process type: one row a minute, newest first, then the totals since the server started; then
/// each dyno's memory and restarts.
fn render(app: &str, metrics: &AppMetrics) -> String {
    let mut out = String::new();
    if metrics.types.is_empty() {
        let _ = writeln!(out, "=== ⬢ {app} has served no requests yet");
    }
    for s in &metrics.types {
        let _ = writeln!(out, "=== ⬢ {app} {} (per minute, UTC)", s.process_type);
        let _ = writeln!(
            out,
            "{:<6} {:>6} {:>6} {:>6} {:>6} {:>9} {:>9} {:>9}  errors",
            "minute", "2xx", "3xx", "4xx", "5xx", "p50", "p95", "p99"
        );
        for m in &s.minutes {
            let time = crate::store::format_time(m.start);
            let errors: Vec<String> = m.errors.iter().map(|(c, n)| format!("{c}={n}")).collect();
            let _ = writeln!(
                out,
                "{:<6} {:>6} {:>6} {:>6} {:>6} {:>7.1}ms {:>7.1}ms {:>7.1}ms  {}",
                time.get(11..16).unwrap_or(&time),
                m.requests[1],
                m.requests[2],
                m.requests[3],
                m.requests[4],
                m.p50_ms,
                m.p95_ms,
                m.p99_ms,
                errors.join(" ")
            );
        }
        let total: u64 = s.totals.requests.iter().sum();
        let errors: Vec<String> = s
            .totals
            .errors
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        let _ = writeln!(
            out,
            "total  {total} requests since the server started{}{}",
            if errors.is_empty() { "" } else { "; errors " },
            errors.join(" ")
        );
    }
    if !metrics.dynos.is_empty() {
        let _ = writeln!(
            out,
            "=== ⬢ {app} dynos (memory now and the most since it started, CPU time, restarts)"
        );
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        for d in &metrics.dynos {
            let _ = writeln!(
                out,
                "{:<10} {:<9} {:>8.1} MiB {:>8.1} MiB max {:>9.1} s CPU  {} restarts",
                d.name,
                d.state.as_str(),
                mib(d.memory_bytes),
                mib(d.memory_peak_bytes),
                d.cpu_ms as f64 / 1000.0,
                d.restarts
            );
        }
    }
    out
}
