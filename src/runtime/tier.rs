//! The baseline tier: code a web dyno can start on at once while its optimized code is built.
//!
//! Dynos run Cranelift's optimized code. Compiling a large module with it takes seconds (the 9.5 MB Go sample:
//! about 3 s on two cores), and a deploy's first request waits for it. Winch, wasmtime's baseline compiler,
//! compiles the same module about 3x faster, into code that runs slower. With the tier on
//! ([`RuntimeConfig::with_baseline_tier`](super::RuntimeConfig::with_baseline_tier)),
//! [`Runtime::load_tiered`](super::Runtime::load_tiered) gives a module that has no optimized code yet in Winch's
//! code and builds Cranelift's on a background thread; its [`Upgrade`] says when that is ready, and the dyno
//! manager then replaces the dyno (a web dyno with preboot). [`Runtime::load`](super::Runtime::load) never gives
//! baseline code: it waits for a background compile of the same module rather than compiling it twice.
//!
//! A module belongs to the engine that compiled it, so the tier is a second engine with its own linkers and its
//! own cache directory (its compatibility key differs), and an instance cannot change tiers: hence the
//! replacement. The `Runtime` methods of the tier (`load_tiered`, `is_baseline`, choosing the engine a guest runs
//! on) are here too.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, mpsc};

use tokio::sync::watch;
use wasmtime::Engine;

use super::cache::{CodeCache, digest};
use super::{CacheOutcome, Guest, Linkers, Runtime, RuntimeError};

/// Background compiles remembered (under way or done) before the finished ones are forgotten. A finished one
/// holds its code only without a code cache (with one, the code is there).
const REMEMBERED: usize = 16;

/// Says when a guest on baseline code can move to optimized code, from
/// [`Runtime::load_tiered`](super::Runtime::load_tiered). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Upgrade(watch::Receiver<Option<bool>>);

impl Upgrade {
    /// The optimized code is built: loading the module again gives it.
    pub fn is_ready(&self) -> bool {
        *self.0.borrow() == Some(true)
    }

    /// Resolves when the optimized code is built (true), or when building it failed (false: the guest stays on
    /// baseline code).
    pub async fn ready(mut self) -> bool {
        matches!(
            self.0.wait_for(Option::is_some).await.map(|done| *done),
            Ok(Some(true))
        )
    }
}

/// A guest from [`Runtime::load_tiered`](super::Runtime::load_tiered): optimized code, or baseline code with the
/// [`Upgrade`] that says when the optimized code is ready.
pub struct Tiered {
    /// The compiled guest.
    pub guest: Guest,
    /// Whether it came from the cache or was compiled now.
    pub outcome: CacheOutcome,
    /// `Some` while the guest is baseline code.
    pub upgrade: Option<Upgrade>,
}

/// What a background compile of one module came to: `None` when its code went into the code cache (load it from
/// there), the code itself without one, or why it failed.
type Optimized = Result<Option<(Guest, CacheOutcome)>, String>;

/// One module's optimized compile in the background.
struct Optimizing {
    result: Mutex<Option<Optimized>>,
    done: Condvar,
    ready: watch::Sender<Option<bool>>,
}

impl Optimizing {
    /// Records the result. The upgrade is told under the result's lock, so whoever sees the compile done (its
    /// waiters, `is_done`) also sees the upgrade ready.
    fn finish(&self, result: Optimized) {
        let ok = result.is_ok();
        let mut slot = self.result.lock().expect("optimizing");
        *slot = Some(result);
        self.ready.send_replace(Some(ok));
        drop(slot);
        self.done.notify_all();
    }

    /// Blocks until the compile is done.
    fn wait(&self) -> Result<Option<(Guest, CacheOutcome)>, RuntimeError> {
        let mut result = self.result.lock().expect("optimizing");
        loop {
            if let Some(result) = &*result {
                return result.clone().map_err(RuntimeError::Compile);
            }
            result = self.done.wait(result).expect("optimizing");
        }
    }

    fn is_done(&self) -> bool {
        self.result.lock().expect("optimizing").is_some()
    }
}

struct Job {
    wasm: Vec<u8>,
    into: Arc<Optimizing>,
}

impl Drop for Job {
    /// A job the thread never finished (it is gone) fails, so that nothing waits for it forever.
    fn drop(&mut self) {
        if !self.into.is_done() {
            self.into
                .finish(Err("the optimizing thread stopped".into()));
        }
    }
}

/// The baseline engine, and the optimized compiles under way in the background.
pub(super) struct Baseline {
    pub(super) engine: Engine,
    pub(super) cache: CodeCache,
    pub(super) linkers: Linkers,
    /// Smaller modules are compiled optimized at once: their compile is quick anyway.
    pub(super) min_bytes: usize,
    /// Module sha256 → its optimized compile.
    optimizing: Mutex<HashMap<[u8; 32], Arc<Optimizing>>>,
    /// One compile at a time (each uses every core); the thread ends with the runtime.
    queue: Mutex<mpsc::Sender<Job>>,
}

impl Baseline {
    /// The baseline tier beside the optimized `engine` and its `cache`.
    pub(super) fn new(
        engine: Engine,
        cache: CodeCache,
        cache_root: Option<&std::path::Path>,
        min_bytes: usize,
    ) -> Result<Baseline, RuntimeError> {
        let mut config = super::config::engine_config_with(None);
        config.strategy(wasmtime::Strategy::Winch);
        let baseline = Engine::new(&config).map_err(RuntimeError::Wasmtime)?;
        let (queue, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("wasmdyno-optimize".into())
            .spawn(move || {
                for job in jobs {
                    let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        cache.load(&engine, &job.wasm)
                    }));
                    let result = match compiled {
                        Ok(Ok((guest, outcome @ CacheOutcome::Uncached(_)))) => {
                            Ok(Some((guest, outcome)))
                        }
                        Ok(Ok(_in_the_cache)) => Ok(None),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("the optimizing compiler panicked".into()),
                    };
                    if let Err(e) = &result {
                        tracing::warn!(
                            "cannot build optimized code; staying on baseline code: {e}"
                        );
                    }
                    job.into.finish(result);
                }
            })
            .map_err(|e| {
                RuntimeError::Compile(format!("cannot start the optimizing thread: {e}"))
            })?;
        Ok(Baseline {
            cache: CodeCache::new(cache_root, &baseline),
            linkers: Linkers::new(&baseline)?,
            engine: baseline,
            min_bytes,
            optimizing: Mutex::default(),
            queue: Mutex::new(queue),
        })
    }

    /// The optimized compile of the module whose sha256 is `digest`, if one was started.
    fn started(&self, digest: &[u8; 32]) -> Option<Arc<Optimizing>> {
        self.optimizing
            .lock()
            .expect("optimizing")
            .get(digest)
            .cloned()
    }

    /// A background compile of the module is under way.
    pub(super) fn under_way(&self, digest: &[u8; 32]) -> bool {
        self.started(digest)
            .is_some_and(|started| !started.is_done())
    }

    /// Waits for a background compile of the module, if one was started: its code if the runtime holds it, `None`
    /// if it is in the code cache (or none was started).
    pub(super) fn wait_optimized(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<(Guest, CacheOutcome)>, RuntimeError> {
        match self.started(digest) {
            Some(started) => started.wait(),
            None => Ok(None),
        }
    }

    /// The optimized code of `wasm` if a background compile built it and holds it (there is no code cache), else
    /// baseline code and its upgrade, starting the background compile if none is under way. `None` when Winch
    /// cannot compile the module (a proposal it does not support): the caller compiles optimized code now.
    pub(super) fn load(&self, digest: [u8; 32], wasm: &[u8]) -> Option<Tiered> {
        if let Some(started) = self.started(&digest)
            && started.is_done()
            && let Ok(Some((guest, outcome))) = started.wait()
        {
            return Some(Tiered {
                guest,
                outcome,
                upgrade: None,
            });
        }
        let (guest, outcome) = match self.cache.load_digested(&self.engine, wasm, &digest) {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::debug!("no baseline code ({e}); compiling optimized code now");
                return None;
            }
        };
        let upgrade = self.optimize(digest, wasm);
        Some(Tiered {
            guest,
            outcome,
            upgrade: Some(upgrade),
        })
    }

    /// Starts the optimized compile of `wasm` in the background, unless one was started already.
    fn optimize(&self, digest: [u8; 32], wasm: &[u8]) -> Upgrade {
        let mut optimizing = self.optimizing.lock().expect("optimizing");
        // One under way is joined; a finished one whose code is gone (a cache entry removed) is started again.
        if let Some(started) = optimizing.get(&digest)
            && !started.is_done()
        {
            return Upgrade(started.ready.subscribe());
        }
        if optimizing.len() >= REMEMBERED {
            optimizing.retain(|_, started| !started.is_done());
        }
        let (ready, receiver) = watch::channel(None);
        let into = Arc::new(Optimizing {
            result: Mutex::new(None),
            done: Condvar::new(),
            ready,
        });
        let job = Job {
            wasm: wasm.to_vec(),
            into: into.clone(),
        };
        if self.queue.lock().expect("queue").send(job).is_err() {
            into.finish(Err("the optimizing thread is gone".into()));
        }
        optimizing.insert(digest, into);
        Upgrade(receiver)
    }
}

impl Runtime {
    /// The engine and linkers `guest` runs on: the baseline tier's for Winch's code, else the optimized one's.
    pub(super) fn tier_of(&self, guest: &Guest) -> (&Engine, &Linkers) {
        match &self.baseline {
            Some(baseline) if Engine::same(guest.engine(), &baseline.engine) => {
                (&baseline.engine, &baseline.linkers)
            }
            _ => (&self.engine, &self.linkers),
        }
    }

    /// Whether `guest` is baseline code, from [`load_tiered`](Self::load_tiered).
    ///
    /// ```
    /// # const HELLO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm"));
    /// let runtime = wasmdyno::Runtime::new(wasmdyno::RuntimeConfig::default())?;
    /// let (guest, _) = runtime.load(HELLO)?;
    /// assert!(!runtime.is_baseline(&guest));
    /// # Ok::<(), wasmdyno::RuntimeError>(())
    /// ```
    pub fn is_baseline(&self, guest: &Guest) -> bool {
        self.baseline
            .as_ref()
            .is_some_and(|b| Engine::same(guest.engine(), &b.engine))
    }

    /// Like [`load`](Self::load), for a dyno that should start as soon as it can: with the baseline tier on
    /// ([`RuntimeConfig::with_baseline_tier`]), a module (of at least the tier's size) with no optimized code yet
    /// comes as Winch's baseline code, compiled about 3x faster, while Cranelift's optimized code is built on a
    /// background thread; the [`Upgrade`] says when that is ready, and loading the module again then gives it.
    /// Without the tier, for a smaller module, or for a module Winch cannot compile, this is `load`.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A core module whose `_start` returns at once: `(module (func (export "_start")))`.
    /// # const HELLO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm"));
    /// use wasmdyno::{Runtime, RuntimeConfig};
    ///
    /// let runtime = Runtime::new(RuntimeConfig::default().with_baseline_tier(Some(0)))?;
    /// let first = runtime.load_tiered(HELLO)?;
    /// assert!(runtime.is_baseline(&first.guest));
    /// let upgrade = first.upgrade.expect("optimized code is on its way");
    /// assert!(tokio::runtime::Runtime::new()?.block_on(upgrade.ready()));
    /// let then = runtime.load_tiered(HELLO)?;
    /// assert!(!runtime.is_baseline(&then.guest) && then.upgrade.is_none());
    /// # Ok(()) }
    /// ```
    pub fn load_tiered(&self, wasm: &[u8]) -> Result<Tiered, RuntimeError> {
        if let Some(baseline) = self.baseline.as_ref().filter(|b| wasm.len() >= b.min_bytes) {
            let digest = digest(wasm);
            // Optimized code in the cache (from an earlier run, or a compile finished), unless one is under way.
            if !baseline.under_way(&digest)
                && let Some((guest, outcome)) = self.cache.cached(&self.engine, wasm, &digest)
            {
                return Ok(Tiered {
                    guest,
                    outcome,
                    upgrade: None,
                });
            }
            if let Some(tiered) = baseline.load(digest, wasm) {
                return Ok(tiered);
            }
        }
        let (guest, outcome) = self.load(wasm)?;
        Ok(Tiered {
            guest,
            outcome,
            upgrade: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Exit, RuntimeConfig};
    use super::*;

    const HELLO: &[u8] = include_bytes!("../../tests/guests/doc/hello.wasm");
    const ECHO: &[u8] = include_bytes!("../../tests/guests/doc/echo.wasm");

    fn run(runtime: &Runtime, guest: &Guest) -> Exit {
        super::super::run_command(runtime, guest, "hello.wasm").unwrap()
    }

    #[test]
    fn a_module_runs_on_baseline_code_until_its_optimized_code_is_built() {
        let cache = tempfile::tempdir().unwrap();
        let config = RuntimeConfig::default()
            .with_cache_dir(Some(cache.path().to_path_buf()))
            .with_baseline_tier(Some(0));
        let runtime = Runtime::new(config.clone()).unwrap();
        let first = runtime.load_tiered(HELLO).unwrap();
        assert!(runtime.is_baseline(&first.guest));
        assert_eq!(run(&runtime, &first.guest), Exit::Status(0));
        let upgrade = first.upgrade.expect("the optimized code is on its way");
        let tokio = tokio::runtime::Runtime::new().unwrap();
        assert!(tokio.block_on(upgrade.clone().ready()));
        assert!(upgrade.is_ready());

        // Once built, the optimized code comes from the cache, and runs.
        let then = runtime.load_tiered(HELLO).unwrap();
        assert!(!runtime.is_baseline(&then.guest) && then.upgrade.is_none());
        assert!(
            matches!(then.outcome, CacheOutcome::Hit(_)),
            "{:?}",
            then.outcome
        );
        assert_eq!(run(&runtime, &then.guest), Exit::Status(0));

        // `load` never gives baseline code: it waits for a compile under way rather than compiling again.
        let echo = runtime.load_tiered(ECHO).unwrap();
        assert!(echo.upgrade.is_some());
        let (loaded, _) = runtime.load(ECHO).unwrap();
        assert!(!runtime.is_baseline(&loaded));
        assert!(echo.upgrade.unwrap().is_ready());

        // Another process on the same cache starts on the optimized code at once.
        let again = Runtime::new(config).unwrap().load_tiered(HELLO).unwrap();
        assert!(again.upgrade.is_none() && matches!(again.outcome, CacheOutcome::Hit(_)));
    }

    #[test]
    fn without_a_cache_the_built_code_is_kept_in_memory() {
        let runtime = Runtime::new(RuntimeConfig::default().with_baseline_tier(Some(0))).unwrap();
        let first = runtime.load_tiered(HELLO).unwrap();
        let tokio = tokio::runtime::Runtime::new().unwrap();
        assert!(tokio.block_on(first.upgrade.unwrap().ready()));
        let then = runtime.load_tiered(HELLO).unwrap();
        assert!(!runtime.is_baseline(&then.guest) && then.upgrade.is_none());
        assert!(matches!(then.outcome, CacheOutcome::Uncached(_)));
    }
}
