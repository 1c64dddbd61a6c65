//! The control-plane HTTP API of `wasmdyno serve`, shaped like Heroku's Platform API where it fits, and the typed
//! client the CLI uses.
//!
//! Resources: `/apps`, `/apps/{app}` (PATCH: maintenance, sleep), `/apps/{app}/config-vars`,
//! `/apps/{app}/releases[/{version}]`, `/apps/{app}/current-release`, `/apps/{app}/slugs[/{sha256}]`,
//! `/apps/{app}/builds`, `/apps/{app}/addons[/{name}]`, `/apps/{app}/formation[/{type}]`,
//! `/apps/{app}/dynos[/{dyno}]` (POST with `attach` upgrades to [`attach`]'s framed stream),
//! `/apps/{app}/log-sessions`, `/apps/{app}/log-drains`, `/apps/{app}/domains[/{hostname}]`,
//! `/apps/{app}/features[/{name}]`. Every request carries
//! `Authorization: Bearer <token>`; the server writes its address and the token into `$WASMDYNO_HOME` so the CLI
//! on the same machine finds both. Errors are `{"id": "not_found", "message": "..."}` with the matching status.
//!
//! The same listener serves each app's git repository at `/git/{app}.git` (git's smart HTTP, see `crate::git`),
//! where git authenticates with HTTP Basic: the token is the password.

pub mod attach;
pub mod client;
pub(crate) mod listener;
pub mod server;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file in `$WASMDYNO_HOME` where a running server announces itself.
pub const SERVER_FILE: &str = "server.json";
/// The file in `$WASMDYNO_HOME` holding the API token (mode 0600).
pub const TOKEN_FILE: &str = "token";
/// The file in `$WASMDYNO_HOME` holding the follower token (mode 0600): it reads apps' current releases and
/// their slugs, what an edge host following the server needs, and nothing else.
pub const FOLLOWER_TOKEN_FILE: &str = "follower-token";
/// The lock that keeps a second server off the same home.
pub const LOCK_FILE: &str = "serve.lock";

/// What `server.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Announcement {
    /// Base URL of the API, e.g. `http://127.0.0.1:5001`.
    pub api: String,
    /// Address of the router, e.g. `127.0.0.1:5000`.
    #[serde(default)]
    pub router: Option<String>,
    /// The domain apps live under (`WASMDYNO_BASE_DOMAIN`), `localhost` when absent.
    #[serde(default)]
    pub base_domain: Option<String>,
    pub pid: u32,
}

impl Announcement {
    pub fn path(home: &Path) -> PathBuf {
        home.join(SERVER_FILE)
    }

    /// The server announced in `home`, if one is.
    pub fn read(home: &Path) -> Option<Announcement> {
        let text = std::fs::read_to_string(Announcement::path(home)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Where the router serves `app`: `http://<app>.<base domain>:<router port>/`.
    pub fn app_url(&self, app: &str) -> Option<String> {
        let port = self.router.as_deref()?.rsplit_once(':')?.1;
        let domain = self.base_domain.as_deref().unwrap_or("localhost");
        Some(format!("http://{app}.{domain}:{port}/"))
    }
}

/// An API error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub id: String,
    pub message: String,
}

/// One line of a build's streamed output (`application/x-ndjson`): progress lines, then one result or error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildEvent {
    Line(String),
    Release(crate::store::Release),
    Error(ErrorBody),
}
