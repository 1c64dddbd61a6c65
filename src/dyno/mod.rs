//! The dyno manager: keeps each app's formation running on its current release.
//!
//! [`Manager::reconcile`] converges an app's running dynos to (current release, formation): it starts missing
//! dynos, stops extra ones, and replaces dynos of an older release or another size. Each dyno is a supervisor task
//! that boots the process type's module, runs it, and restarts it when it exits or traps, backing off
//! exponentially on repeated crashes. Every dyno is cycled once a day (with jitter). Stopping is graceful: a worker's
//! stdin reaches end of file and a web dyno's listener stops accepting; a dyno that has not exited when the stop
//! timeout ends is interrupted (R12). State changes and exits are written to the app's log stream as Heroku does.
//!
//! The rooms, along the data flow: `source` (what should run: apps, releases, formations, from a [`Source`]) →
//! `launch` (a release's slug opened once; each dyno's command, environment and platform variables) → `manager`
//! (reconcile, preboot, scale, stop, one-off dynos) → `supervisor` (one dyno's life: boot, run, restart with
//! backoff, cycle, stop); `background` runs non-web dynos on lower-priority threads; `settings` holds the timers,
//! `info` what the manager reports (states, web dynos for the router, errors).

mod background;
mod info;
pub(crate) mod launch;
mod manager;
mod settings;
mod source;
#[cfg(feature = "platform")]
mod store_source;
mod supervisor;

pub(crate) use info::WebDyno;
pub use info::{DynoError, DynoInfo, State};
pub use manager::Manager;
pub use settings::Settings;
pub use source::{AppSpec, ReleaseSpec, Scale, Source, SourceError};
#[cfg(feature = "platform")]
pub(crate) use store_source::StoreSource;
pub use supervisor::Attach;

pub use crate::clock::unix_now;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let settings = Settings {
            backoff_base: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(60),
            ..Settings::default()
        };
        let delays: Vec<u64> = (1..=6).map(|n| settings.backoff(n).as_secs()).collect();
        assert_eq!(delays, [0, 10, 20, 40, 60, 60]);
        assert_eq!(settings.backoff(400), Duration::from_secs(60));
    }
}
