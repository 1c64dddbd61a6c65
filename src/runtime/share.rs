//! Web work first. While this process's router is serving requests (one is in flight, or one started within the
//! last [`RECENT`]), a background dyno (worker, clock, one-off or release phase) that keeps the CPU runs [`RUN`]
//! of every [`RUN`] + [`PAUSE`]: a tenth of a core, the share its niceness gives it, but taken in short turns while
//! its thread sleeps in between, so that requests never wait behind it. When the router is idle, background dynos
//! run unthrottled on every core they ask for. Niceness alone (see `dyno/background.rs`) shares the CPU by weight
//! and still let a spinning worker triple a web app's p99 here (`scripts/bench-isolation`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How many epoch ticks (milliseconds) a background guest runs before it pauses, while the router is busy.
pub(crate) const RUN: u64 = 1;
/// How long it then pauses.
pub(crate) const PAUSE: Duration = Duration::from_millis(9);
/// How long after a request started the router still counts as busy (the gaps between a client's requests).
pub(crate) const RECENT: Duration = Duration::from_millis(20);

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// When the last request started, in milliseconds since [`epoch`] (plus one, so that 0 means never).
static LAST_START: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// A request the router is handling, from its head to its response's head: held, background dynos yield.
pub(crate) struct Serving(());

impl Serving {
    pub(crate) fn start() -> Serving {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        LAST_START.store(now_ms(), Ordering::Relaxed);
        Serving(())
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether the router is serving: a request in flight, or one started within [`RECENT`].
pub(crate) fn web_busy() -> bool {
    if IN_FLIGHT.load(Ordering::Relaxed) > 0 {
        return true;
    }
    let last = LAST_START.load(Ordering::Relaxed);
    last != 0 && now_ms().saturating_sub(last) < RECENT.as_millis() as u64
}

/// A background guest's share of the CPU: how many epoch ticks it has run since its last pause, and how many times it
/// paused (shared with whoever watches the dyno).
pub(crate) struct Background {
    ran: u64,
    pauses: std::sync::Arc<AtomicU64>,
}

impl Background {
    pub(crate) fn new(pauses: std::sync::Arc<AtomicU64>) -> Background {
        Background { ran: 0, pauses }
    }

    /// Called on each epoch tick that finds the guest running: how long it should pause now, if at all.
    pub(crate) fn tick(&mut self) -> Option<Duration> {
        self.tick_while(web_busy())
    }

    fn tick_while(&mut self, busy: bool) -> Option<Duration> {
        if !busy {
            self.ran = 0;
            return None;
        }
        self.ran += 1;
        if self.ran < RUN {
            return None;
        }
        self.ran = 0;
        self.pauses.fetch_add(1, Ordering::Relaxed);
        Some(PAUSE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_background_guest_pauses_only_while_requests_are_in_flight() {
        let pauses = Arc::new(AtomicU64::new(0));
        let mut share = Background::new(pauses.clone());
        assert!((0..100).all(|_| share.tick_while(false).is_none()));
        let paused = (0..100)
            .filter(|_| share.tick_while(true).is_some())
            .count();
        assert_eq!(paused as u64, 100 / RUN);
        assert_eq!(pauses.load(Ordering::Relaxed), 100 / RUN);
    }

    #[cfg(feature = "platform")]
    #[test]
    fn a_spinning_background_guest_sleeps_while_the_router_serves() {
        use crate::runtime::{Exit, RunSpec, Runtime, RuntimeConfig};
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let spin = wat::parse_str(r#"(module (func (export "_start") (loop (br 0))))"#).unwrap();
        let (guest, _) = runtime.load(&spin).unwrap();
        let mut spec = RunSpec::new(
            vec!["spin.wasm".into()],
            Default::default(),
            Default::default(),
        );
        spec.deadline = Some(Duration::from_millis(200));
        spec.background = Some(pauses_counter());
        let pauses = spec.background.clone().unwrap();
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let serving = Serving::start();
        let exit = tokio.block_on(runtime.run(&guest, spec)).unwrap();
        drop(serving);
        assert!(matches!(exit, Exit::Trap(_)), "{exit:?}");
        assert!(pauses.load(Ordering::Relaxed) > 0, "it never paused");
    }

    fn pauses_counter() -> Arc<AtomicU64> {
        Arc::new(AtomicU64::new(0))
    }
}
