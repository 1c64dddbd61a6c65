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
//! `manager` (reconcile, preboot, scale, stop; `manager/desired` turns a release into each dyno's `Want`,
//! `manager/one_off` runs `run.N` and `release.N`) → `supervisor` (one dyno's life: boot, run, restart with
//! backoff, cycle, stop; `boot` loads the code it runs, and moves a web dyno from baseline to optimized code). `launch` holds what every kind of dyno shares on its way to a guest: the environment
//! layers, the platform's variables, the command line expanded last. `state` is what the manager and its
//! supervisors share; `background` runs non-web dynos on nicer threads; `settings` holds the timers; `info` is
//! what the manager reports (states, web dynos for the router, errors). No two rooms import each other.

mod background;
mod boot;
mod info;
pub(crate) mod launch;
mod manager;
mod settings;
mod source;
mod state;
#[cfg(feature = "platform")]
mod store_source;
mod supervisor;

pub(crate) use info::WebDyno;
pub use info::{DynoError, DynoInfo, State};
pub use launch::{Prepared, prepare};
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
