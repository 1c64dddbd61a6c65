//! One lock per app for each kind of work that must not overlap (its releases, its builds, its git pushes): made
//! on first use, forgotten with the app.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The locks of one kind of work, by app.
#[derive(Default)]
pub(crate) struct AppLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl AppLocks {
    /// `app`'s lock (made if it has none yet).
    pub(crate) fn of(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.0
            .lock()
            .expect("lock table")
            .entry(app.to_string())
            .or_default()
            .clone()
    }

    /// Forgets `app`'s lock (the app is gone); whoever holds it keeps it until done.
    pub(crate) fn forget(&self, app: &str) {
        self.0.lock().expect("lock table").remove(app);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_lock_per_app_until_forgotten() {
        let locks = super::AppLocks::default();
        let (a, again) = (locks.of("a"), locks.of("a"));
        assert!(std::sync::Arc::ptr_eq(&a, &again));
        assert!(!std::sync::Arc::ptr_eq(&a, &locks.of("b")));
        locks.forget("a");
        assert!(!std::sync::Arc::ptr_eq(&a, &locks.of("a")));
    }
}
