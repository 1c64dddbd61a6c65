//! `wasmdyno up [DIR]`: the one-command path. Uses the running platform or starts one in the foreground, creates
//! the app if needed, deploys DIR (the first deploy scales `web=1`), prints the app's URL and follows its logs
//! until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::{api, block_on};
use crate::api::client::ClientError;
use crate::store::{App, ReleaseStatus};

/// Start the platform if needed, create the app, deploy DIR, print its URL and follow its logs.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// The app's directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The app's name (default: the directory's name, made valid).
    #[arg(short, long, env = "WASMDYNO_APP")]
    app: Option<String>,
    /// Where a platform started by `up` serves its API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5001")]
    api: std::net::SocketAddr,
    /// Where a platform started by `up` routes HTTP to apps.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5000")]
    listen: std::net::SocketAddr,
}

impl UpArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let dir = self
            .dir
            .canonicalize()
            .with_context(|| format!("no such directory: {}", self.dir.display()))?;
        let name = match self.app {
            Some(name) => name,
            None => default_name(&dir),
        };
        let home = super::home_dir();
        let running = api().is_ok_and(|client| block_on(client.get::<Vec<App>>("/apps")).is_ok());
        if running {
            deploy(&name, &dir)?;
            super::logs::follow(&name)?;
            return Ok(ExitCode::SUCCESS);
        }
        // Start the platform here, deploy once it listens, then serve in the foreground.
        eprintln!("-----> Starting the platform (Ctrl-C stops it)");
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (api_addr, router_addr) = (self.api, self.listen);
        let server_home = home.clone();
        let server = std::thread::spawn(move || {
            tokio.block_on(async {
                let serving =
                    super::serve::serve(router_addr, api_addr, None, None, &server_home, None);
                tokio::pin!(serving);
                // The announcement file appears once the API listens.
                let announced = async {
                    while !crate::api::Announcement::path(&server_home).exists() {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                };
                tokio::select! {
                    result = &mut serving => return result,
                    () = announced => { let _ = ready_tx.send(()); }
                }
                serving.await
            })
        });
        if ready_rx.recv().is_ok() {
            // Follow the app's logs until Ctrl-C stops the platform (which ends the stream).
            match deploy(&name, &dir) {
                Ok(()) => {
                    if let Err(e) = super::logs::follow(&name) {
                        super::report(&e);
                    }
                }
                Err(e) => super::report(&e),
            }
        }
        server.join().expect("the platform thread")?;
        Ok(ExitCode::SUCCESS)
    }
}

fn deploy(name: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let client = api()?;
    match block_on(client.post::<App>("/apps", &serde_json::json!({ "name": name }))) {
        Ok(_) => eprintln!("Creating ⬢ {name}... done"),
        Err(ClientError::Api { id, .. }) if id == "conflict" => {}
        Err(e) => return Err(e.into()),
    }
    let release = super::deploy::deploy(name, dir, None)?;
    if release.status == ReleaseStatus::Succeeded {
        eprintln!(
            "⬢ {name} is at v{}: {}",
            release.version, release.description
        );
    }
    if let Some(url) =
        crate::api::Announcement::read(&super::home_dir()).and_then(|a| a.app_url(name))
    {
        eprintln!("⬢ {name} is served at {url} (Ctrl-C stops following its logs)");
        println!("{url}");
    }
    Ok(())
}

/// An app name from a directory name: lowercase, dashes for anything else, starting with a letter, 3 to 30
/// characters.
fn default_name(dir: &std::path::Path) -> String {
    let raw = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("app")
        .to_lowercase();
    let mut name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name = name.trim_matches('-').to_string();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("app-{name}");
    }
    name.truncate(30);
    let name = name.trim_end_matches('-').to_string();
    if name.len() < 3 {
        format!("{name}-app")
    } else {
        name
    }
}
