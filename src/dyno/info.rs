//! What the dyno manager reports: dyno states and descriptions, web dynos for the router, errors.

use serde::{Deserialize, Serialize};

use crate::runtime::net::Listener;
use crate::runtime::web::WebHandler;

/// A dyno's state, as `ps` shows it ([`DynoInfo::state`]); it serializes as its name.
///
/// ```
/// use wasmdyno::dyno::State as DynoState;
///
/// assert_eq!(serde_json::to_string(&DynoState::Crashed)?, r#""crashed""#);
/// assert_eq!(serde_json::from_str::<DynoState>(r#""up""#)?, DynoState::Up);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Booting (or restarting, or waking): a listening web dyno stays here until it accepts.
    Starting,
    /// Running; the router sends requests to web dynos in this state only.
    Up,
    /// Its process exited or trapped; it is restarted after its backoff.
    Crashed,
    /// A sleeping app's web dyno with no requests for a while; the next request wakes it.
    Idle,
    /// Stopped, or a one-off dyno that ended.
    Down,
}

impl State {
    /// The state's name: `starting`, `up`, `crashed`, `idle` or `down`.
    ///
    /// ```
    /// assert_eq!(wasmdyno::dyno::State::Up.as_str(), "up");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Up => "up",
            State::Crashed => "crashed",
            State::Idle => "idle",
            State::Down => "down",
        }
    }
}

/// What `ps` and the API report about one dyno ([`Manager::dynos`](super::Manager::dynos), [`Manager::run_one_off`](super::Manager::run_one_off)).
///
/// ```
/// let info: wasmdyno::dyno::DynoInfo = serde_json::from_str(r#"{
///     "name": "web.1", "type": "web", "command": "hello.wasm", "size": "standard-1x",
///     "state": "up", "updated_at": 1700000000, "release": 3
/// }"#)?;
/// assert_eq!((info.kind.as_str(), info.state), ("web", wasmdyno::dyno::State::Up));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DynoInfo {
    /// `web.1`, `worker.2`, `run.3`.
    pub name: String,
    /// Its process type (`run` for a one-off dyno); `type` in JSON.
    #[serde(rename = "type")]
    pub kind: String,
    /// The command it runs, as the Procfile (or `wasmdyno run`) gives it.
    pub command: String,
    /// Its size's name (`standard-1x`).
    pub size: String,
    /// Its state now.
    pub state: State,
    /// Unix seconds of the last state change.
    pub updated_at: i64,
    /// The version of the release it runs.
    pub release: u64,
    /// Bytes of its memory quota in use now: linear memories, tables and files written.
    #[serde(default)]
    pub memory_bytes: u64,
    /// The most it has used since it started (across restarts).
    #[serde(default)]
    pub memory_peak_bytes: u64,
    /// Times it was restarted after exiting or crashing.
    #[serde(default)]
    pub restarts: u32,
    /// Milliseconds of CPU its guests have used since it started, sampled by the 1 ms epoch ticks.
    #[serde(default)]
    pub cpu_ms: u64,
    /// The cluster host it runs on (`None` for a server alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A web dyno the router can send requests to.
#[derive(Clone)]
pub struct WebDyno {
    pub name: String,
    /// Where its requests go: its listener (a program that listens), unless it has a handler.
    pub listener: Listener,
    /// A `wasi:http` or CGI dyno's handler; when set, requests go here and not to the listener.
    pub handler: Option<WebHandler>,
}

/// Why a dyno could not be started.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use wasmdyno::{dyno::AppSpec, DynoError, Logplex, Manager, edge::MemorySource, dyno::ReleaseSpec, Runtime, RuntimeConfig};
///
/// let work = tempfile::tempdir()?;
/// let source = Arc::new(MemorySource::new(work.path()));
/// let runtime = Arc::new(Runtime::new(RuntimeConfig::default())?);
/// let manager = Manager::new(runtime, source.clone(), Default::default(), Logplex::new(), Default::default());
/// let run = || manager.run_one_off("hello", "worker", &[], Default::default(), Default::default(), None);
///
/// source.set(AppSpec::new("hello"), None);
/// let err = run().unwrap_err();
/// assert!(matches!(err, DynoError::Command(_)));
/// assert_eq!(err.to_string(), "hello has no release with a slug yet: deploy first");
///
/// // A release whose slug is not in the source's folder.
/// source.set(AppSpec::new("hello"), Some(ReleaseSpec::new(1, "0".repeat(64))));
/// assert!(matches!(run().unwrap_err(), DynoError::Slug { .. }));
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DynoError {
    /// The release's slug cannot be opened, fails verification, or is not the archive its sha256 names.
    #[error("slug {sha256}: {reason}")]
    Slug {
        /// The sha256 the release names.
        sha256: String,
        /// What is wrong.
        reason: String,
    },
    /// The app has no release with a slug, its source cannot be read, or the command does not resolve.
    #[error("{0}")]
    Command(String),
}
