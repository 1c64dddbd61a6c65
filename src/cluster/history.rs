//! This host's share of the cluster's log history. Every line this host publishes (its dynos', its router's, its
//! API's) is kept for the shared history, at most the newest [`HISTORY_LINES`] per app, and written to the
//! database about once a second ([`FLUSH_EVERY`]). A log session on any host reads that history beside the live
//! hosts' own, so the lines of a host that died stay in the app's history.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::logs::{HISTORY_LINES, LogLine, Logplex};
use crate::store::PgStore;

/// How often a host writes its new lines.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Apps with lines waiting, at most (the platform's apps are fewer; a bound all the same).
const MAX_APPS: usize = 10_000;

/// Lines published since the last write, per app.
#[derive(Default)]
struct Pending(Mutex<HashMap<String, VecDeque<LogLine>>>);

impl Pending {
    /// Keeps `line` (a clone: publishers never wait on the database), dropping the app's oldest past the history.
    fn push(&self, app: &str, line: &LogLine) {
        let mut apps = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !apps.contains_key(app) && apps.len() >= MAX_APPS {
            return;
        }
        let lines = apps.entry(app.to_string()).or_default();
        if lines.len() >= HISTORY_LINES {
            lines.pop_front();
        }
        lines.push_back(line.clone());
    }

    fn take(&self) -> HashMap<String, VecDeque<LogLine>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Starts copying the lines `logplex` is given into `store`'s shared history, until the process ends.
pub(crate) fn ship(store: Arc<PgStore>, logplex: &Logplex) {
    let pending = Arc::new(Pending::default());
    let observed = pending.clone();
    if !logplex.observe(Box::new(move |app, line| observed.push(app, line))) {
        tracing::warn!(
            "the log multiplexer already has an observer: no lines go to the shared history"
        );
        return;
    }
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(FLUSH_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let batch = pending.take();
            if batch.is_empty() {
                continue;
            }
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || write(&store, batch)).await;
        }
    });
}

fn write(store: &PgStore, batch: HashMap<String, VecDeque<LogLine>>) {
    let mut lines = Vec::new();
    for (app, kept) in batch {
        for line in kept {
            if let Ok(text) = serde_json::to_string(&line) {
                lines.push((app.clone(), text));
            }
        }
    }
    if let Err(e) = store.append_log_history(&lines, HISTORY_LINES) {
        // These lines stay in this host's own history while it lives.
        tracing::warn!(
            "cannot keep {} log lines in the shared history: {e}",
            lines.len()
        );
    }
}

/// The lines of `app`'s shared history (its newest [`HISTORY_LINES`]) that `matches`, oldest first, each as a log
/// session sends it (JSON and a newline). Lines that do not parse are left out.
pub(crate) fn read(
    store: &PgStore,
    app: &str,
    matches: impl Fn(&LogLine) -> bool,
) -> Result<Vec<Vec<u8>>, crate::store::StoreError> {
    Ok(store
        .log_history(app, HISTORY_LINES)?
        .into_iter()
        .filter(|text| serde_json::from_str::<LogLine>(text).is_ok_and(|line| matches(&line)))
        .map(|text| {
            let mut bytes = text.into_bytes();
            bytes.push(b'\n');
            bytes
        })
        .collect())
}
