//! `features`, `features:enable`, `features:disable`: an app's optional behaviours, as Heroku Labs features;
//! clients of `/apps/{app}/features`.

use std::process::ExitCode;

use clap::Args;

use super::{AppArg, api, block_on, print_json};
use crate::api::server::FeatureInfo;

/// List an app's features and whether each is on.
#[derive(Debug, Args)]
pub(crate) struct FeaturesArgs {
    #[command(flatten)]
    app: AppArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl FeaturesArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let features: Vec<FeatureInfo> = block_on(api()?.get(&format!("/apps/{name}/features")))?;
        if self.json {
            print_json(&features)?;
            return Ok(ExitCode::SUCCESS);
        }
        println!("=== ⬢ {name} Features");
        println!("{}", render(&features));
        Ok(ExitCode::SUCCESS)
    }
}

/// `[+] name  description` for each feature, `+` when it is on.
fn render(features: &[FeatureInfo]) -> String {
    let width = features.iter().map(|f| f.name.len()).max().unwrap_or(0);
    features
        .iter()
        .map(|f| {
            let mark = if f.enabled { "+" } else { " " };
            format!("[{mark}] {:width$}  {}", f.name, f.description)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Turn a feature on (the app's web dynos restart to take it up).
#[derive(Debug, Args)]
pub(crate) struct EnableArgs {
    /// The feature (`wasmdyno features` lists them).
    feature: String,
    #[command(flatten)]
    app: AppArg,
}

impl EnableArgs {
    pub(crate) fn run(self, on: bool) -> anyhow::Result<ExitCode> {
        let name = self.app.name()?;
        let _: FeatureInfo = block_on(api()?.patch(
            &format!("/apps/{name}/features/{}", self.feature),
            &serde_json::json!({ "enabled": on }),
        ))?;
        eprintln!(
            "{} {} for ⬢ {name}... done",
            if on { "Enabling" } else { "Disabling" },
            self.feature
        );
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_render_like_heroku_labs() {
        let features = [
            FeatureInfo {
                name: "http-fresh-instances".into(),
                description: "A new instance per request".into(),
                enabled: true,
            },
            FeatureInfo {
                name: "other".into(),
                description: "Something else".into(),
                enabled: false,
            },
        ];
        assert_eq!(
            render(&features),
            "[+] http-fresh-instances  A new instance per request\n[ ] other                 Something else"
        );
    }
}
