//! Booting a dyno's module: the code it runs, loaded once per release however many dynos boot at the same moment,
//! and a web dyno's move from baseline code to optimized code.
//!
//! With the runtime's baseline tier on, a web dyno whose module has no optimized code yet boots on Winch's
//! baseline code ([`Runtime::load_tiered`](crate::Runtime::load_tiered)); every other dyno waits for the optimized
//! code. When that is ready, the manager's next reconcile replaces the web dyno as it replaces one of an old
//! release: with preboot, so traffic moves to a successor on optimized code without a moment with no dyno up.

use std::sync::{Arc, Weak};

use super::manager::Manager;
use super::state::Inner;
use super::supervisor::Supervisor;
use super::*;
use crate::runtime::{Guest, Upgrade, resolve_module};

impl Supervisor {
    /// The compiled module this dyno's command names, and its path in the slug. The first word is expanded
    /// in the dyno's environment (with `port` as `$PORT`), as the whole command line is when it runs.
    pub(super) async fn boot(&self, port: Option<u16>) -> Result<(Guest, String), String> {
        let env = self.platform_vars(port).environment(&self.want.env);
        let word = launch::argv(&self.want.line, &env)
            .into_iter()
            .next()
            .ok_or("the command is empty")?;
        let booted = self.want.booted.clone();
        let (module, wasm) = resolve_module(&booted.slug, &word).map_err(|e| e.to_string())?;
        // Only a formation's web dynos may start on baseline code: they are replaced once it is done.
        let tiered = self.listener.is_some() && !self.one_off;
        let key = (module.clone(), tiered);
        let runtime = self.inner.runtime.clone();
        let (guest, upgrade) = loop {
            let cell = booted
                .guests
                .lock()
                .expect("guests")
                .entry(key.clone())
                .or_default()
                .clone();
            // The first dyno to get here loads (or compiles) the module; the others wait for that one result.
            let (runtime, wasm) = (runtime.clone(), wasm.clone());
            let loaded = cell
                .get_or_try_init(|| async {
                    tokio::task::spawn_blocking(move || {
                        if tiered {
                            runtime.load_tiered(&wasm).map(|t| (t.guest, t.upgrade))
                        } else {
                            runtime.load(&wasm).map(|(guest, _)| (guest, None))
                        }
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("{module}: {e}"))
                })
                .await?
                .clone();
            // Baseline code whose optimized code is ready by now: the next load gives the optimized code.
            if loaded.1.as_ref().is_some_and(Upgrade::is_ready) {
                let mut guests = booted.guests.lock().expect("guests");
                if guests.get(&key).is_some_and(|now| Arc::ptr_eq(now, &cell)) {
                    guests.remove(&key);
                }
                continue;
            }
            break loaded;
        };
        *self.upgrade.lock().expect("upgrade") = upgrade.clone();
        if let Some(upgrade) = upgrade {
            self.log("Starting on baseline code while the optimized code is compiled");
            let inner = Arc::downgrade(&self.inner);
            watch_upgrade(inner, &self.app, &self.name, self.upgrade.clone(), upgrade);
        }
        Ok((guest, module))
    }
}

/// When `upgrade` is ready and the dyno still runs that baseline code (it was not stopped or replaced meanwhile),
/// has the manager replace it.
fn watch_upgrade(
    inner: Weak<Inner>,
    app: &str,
    dyno: &str,
    running: Arc<std::sync::Mutex<Option<Upgrade>>>,
    upgrade: Upgrade,
) {
    let (app, dyno) = (app.to_string(), dyno.to_string());
    tokio::spawn(async move {
        if !upgrade.ready().await {
            return;
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let still_baseline = inner
            .apps
            .lock()
            .expect("apps lock")
            .get(&app)
            .and_then(|dynos| dynos.get(&dyno))
            .is_some_and(|d| Arc::ptr_eq(&d.upgrade, &running) && d.upgradable());
        if still_baseline {
            Manager { inner }.reconcile(&app).await;
        }
    });
}
