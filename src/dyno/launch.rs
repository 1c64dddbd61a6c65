//! A dyno's environment and command line: config layers first, the platform's own variables over them, and the
//! Procfile command expanded from the finished environment, never before (so `web: app.wasm --port $PORT` sees
//! its port, `$DYNO` its name and `$WASMDYNO_RELEASE` its release in every kind of dyno); and the shapes of what
//! a dyno runs: its [`Want`], and the release's slug opened once for all its dynos ([`Booted`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::procfile::Command;
use crate::runtime::vfs::Image;
use crate::runtime::{DynoSize, Guest};
use crate::slug::Slug;

/// The port a web dyno's `$PORT` names when its connections arrive on a listener (fd 4) rather than on a port.
pub(crate) const LISTENER_PORT: u16 = 5000;

/// The variables only the platform sets in a dyno.
#[derive(Debug, Clone)]
pub(crate) struct PlatformVars {
    /// `DYNO`: `web.1`, `run.7`, `release.3`.
    pub dyno: String,
    /// `WASMDYNO_RELEASE`: `v3`, or a local slug's short hash.
    pub release: String,
    /// `PORT`, for a dyno that serves HTTP.
    pub port: Option<u16>,
}

impl PlatformVars {
    /// The dyno's environment: `config` (slug defaults, release config and overrides, already layered in that
    /// order) with the platform's variables over it, `HOME` among them.
    pub(crate) fn environment(
        &self,
        config: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut env = config.clone();
        env.insert("HOME".into(), "/".into());
        env.insert("DYNO".into(), self.dyno.clone());
        env.insert("WASMDYNO_RELEASE".into(), self.release.clone());
        match self.port {
            Some(port) => env.insert("PORT".into(), port.to_string()),
            None => env.remove("PORT"),
        };
        env
    }
}

/// The argv of `line` in `env`.
pub(crate) fn argv(line: &Command, env: &BTreeMap<String, String>) -> Vec<String> {
    line.expand(&|key| env.get(key).cloned())
}

/// `WASMDYNO_RELEASE` of a dyno run from a slug outside any app: the slug's short hash.
pub(crate) fn local_release(slug_sha256: &str) -> String {
    slug_sha256.chars().take(7).collect()
}

/// A slug made ready to boot dynos from.
pub(super) struct Booted {
    pub(super) slug: Slug,
    pub(super) image: Arc<Image>,
    /// Module path → its compiled guest, loaded once however many dynos boot it at the same moment.
    pub(super) guests: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Guest>>>>,
}

pub(super) struct Want {
    pub(super) kind: String,
    /// The command as shown (`ps`, log lines).
    pub(super) command: String,
    /// The command as run: parsed once, so arguments of one-off dynos keep their exact words.
    pub(super) line: Command,
    pub(super) size: DynoSize,
    pub(super) release: u64,
    pub(super) slug: String,
    pub(super) env: BTreeMap<String, String>,
    pub(super) booted: Arc<Booted>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_variables_win_and_the_command_sees_them() {
        let config = BTreeMap::from([
            ("PORT".to_string(), "1".to_string()),
            ("GREETING".to_string(), "hi".to_string()),
        ]);
        let platform = PlatformVars {
            dyno: "web.2".into(),
            release: "v9".into(),
            port: Some(5000),
        };
        let env = platform.environment(&config);
        let line =
            Command::parse("app.wasm --port $PORT $DYNO ${WASMDYNO_RELEASE} ${GREETING:-x} $HOME")
                .unwrap();
        assert_eq!(
            argv(&line, &env),
            ["app.wasm", "--port", "5000", "web.2", "v9", "hi", "/"]
        );
        let worker = PlatformVars {
            port: None,
            ..platform
        };
        assert!(!worker.environment(&config).contains_key("PORT"));
    }
}
