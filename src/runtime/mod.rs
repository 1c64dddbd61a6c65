//! The wasmtime side: one engine configuration, the compiled-code cache, and running a guest to completion.
//!
//! Two kinds of guest run here: WASI preview-1 core modules (what `wasm32-wasip1` and Go emit), on our own
//! preview-1 host (`p1`), and WASI 0.2 components (commands and `wasi:http` handlers) on wasmtime-wasi's p2 host
//! with our own `wasi:filesystem` linked over its (`p2fs`). Both see the dyno's in-memory filesystem (`vfs`).
//! Every guest gets its argv, its environment, its standard streams and its own filesystem, and nothing else: no
//! host directory is ever visible to a guest.

pub(crate) mod body;
mod cache;
pub mod cgi;
mod component_io;
mod config;
pub mod http;
mod limits;
mod module;
pub mod net;
mod outgoing;
pub(crate) mod p1;
mod p2fs;
pub(crate) mod policy;
pub(crate) mod preinit;
mod run;
pub(crate) mod share;
pub(crate) mod shell;
mod spec;
pub mod stdio;
mod tier;
pub(crate) mod vfs;
pub mod web;

pub use cache::CacheOutcome;
use config::*;
pub use config::{PoolingSettings, RuntimeConfig};
pub use module::resolve_module;
pub use policy::NetworkPolicy;
pub use spec::{DynoSize, Exit, Report, RunSpec};
pub use tier::{Tiered, Upgrade};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use limits::DynoLimiter;
use net::Listener;
use stdio::{Input, Output};
pub use vfs::Image;
use vfs::Quota;

use crate::slug::Slug;

/// How often the epoch ticks: the granularity at which a running guest yields to the async runtime. Spinning
/// guests as many as the runtime has threads would otherwise hold every thread for a whole tick at a time, and
/// each step of every other app's request waits a tick: at 10 ms, two busy dynos on two cores cut a healthy
/// app's throughput 180-fold (scripts/bench-isolation); at 1 ms a yield costs well under 1% of a spinning guest.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Errors from loading or running guests.
///
/// ```
/// use wasmdyno::{Runtime, RuntimeConfig, RuntimeError};
///
/// let runtime = Runtime::new(RuntimeConfig::default())?;
/// let err = runtime.load(b"not wasm").err().unwrap();
/// assert!(matches!(err, RuntimeError::NotWasm));
/// # Ok::<(), RuntimeError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The bytes are neither a core module nor a component.
    #[error("not a WebAssembly binary (expected a core module or a component)")]
    NotWasm,
    /// Compiling failed (invalid or unsupported WebAssembly); the text says why.
    #[error("cannot compile module: {0}")]
    Compile(String),
    /// Instantiating failed: a missing import or export (no `_start`), or the dyno's quota or the instance pool
    /// is spent.
    #[error("cannot instantiate module: {0}")]
    Instantiate(String),
    /// No module in the slug answers to a command's first word.
    #[error(
        "module {word:?} is not in the slug{}",
        if available.is_empty() { String::new() } else { format!(" (it has: {})", available.join(", ")) }
    )]
    NoSuchModule {
        /// The word as given.
        word: String,
        /// The slug's `.wasm` files.
        available: Vec<String>,
    },
    /// A command (or the command line of the process type it names) that does not parse, or that expands to
    /// nothing.
    #[error("bad command {command:?}: {reason}")]
    BadCommand {
        /// The command as given.
        command: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Any other error from wasmtime (building the engine or the linkers, serializing compiled code).
    #[error(transparent)]
    Wasmtime(wasmtime::Error),
}

/// The cause in a trap's report: its last non-empty line, after wasmtime's backtrace (e.g. "wasm trap: wasm
/// `unreachable` instruction executed").
pub fn trap_cause(report: &str) -> &str {
    report
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("trap")
}

/// A compiled guest, from [`Runtime::load`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A core module whose `_start` returns at once: `(module (func (export "_start")))`.
/// # const HELLO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm"));
/// let runtime = wasmdyno::Runtime::new(wasmdyno::RuntimeConfig::default())?;
/// let (guest, _) = runtime.load(HELLO)?;
/// assert!(matches!(guest, wasmdyno::runtime::Guest::Module(_)));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub enum Guest {
    /// A WASI preview-1 core module.
    Module(Module),
    /// A WASI 0.2 component.
    Component(Component),
}

impl Guest {
    /// The engine that compiled it: an instance of it runs on that engine alone.
    fn engine(&self) -> &Engine {
        match self {
            Guest::Module(module) => module.engine(),
            Guest::Component(component) => component.engine(),
        }
    }
}

/// Is `wasm` a component (rather than a core module)? Errors when it is neither.
pub(crate) fn is_component(wasm: &[u8]) -> Result<bool, RuntimeError> {
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Ok(false),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(true),
        _ => Err(RuntimeError::NotWasm),
    }
}

/// The engine, its compiled-code cache and the WASI linkers, shared by every dyno of a process. Build one per
/// process ([`Runtime::new`]), [`load`](Runtime::load) a guest, and [`run`](Runtime::run) it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use wasmdyno::{runtime::DynoSize, runtime::Exit, runtime::RunSpec, Runtime, RuntimeConfig};
///
/// // A core module whose `_start` returns at once: `(module (func (export "_start")))`.
/// # const HELLO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm"));
/// let runtime = Runtime::new(RuntimeConfig::default())?;
/// let (guest, _cached) = runtime.load(HELLO)?;
/// let spec = RunSpec::new(vec!["hello.wasm".into()], Default::default(), DynoSize::Eco);
/// let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
/// let exit = tokio.block_on(runtime.run(&guest, spec))?;
/// assert_eq!(exit, Exit::Status(0));
/// # Ok(()) }
/// ```
pub struct Runtime {
    engine: Engine,
    cache: cache::CodeCache,
    linkers: Linkers,
    /// Winch's engine, when web dynos may start on baseline code ([`RuntimeConfig::with_baseline_tier`]).
    baseline: Option<tier::Baseline>,
    /// Whether CGI dynos snapshot a pre-initialized command's initialization ([`RuntimeConfig::with_preinit`]).
    preinit: bool,
    ticker_stop: Arc<AtomicBool>,
}

/// The WASI linkers of one engine.
struct Linkers {
    p1: Linker<P1State>,
    p2: wasmtime::component::Linker<P2State>,
    http: wasmtime::component::Linker<http::HttpState>,
}

impl Linkers {
    fn new(engine: &Engine) -> Result<Linkers, RuntimeError> {
        let mut p1 = Linker::new(engine);
        p1::add_to_linker(&mut p1).map_err(RuntimeError::Wasmtime)?;
        let mut p2 = wasmtime::component::Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut p2).map_err(RuntimeError::Wasmtime)?;
        p2fs::add_to_linker(&mut p2).map_err(RuntimeError::Wasmtime)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut p2)
            .map_err(RuntimeError::Wasmtime)?;
        Ok(Linkers {
            p1,
            p2,
            http: http::linker(engine)?,
        })
    }
}

struct P1State {
    wasi: p1::P1Ctx,
    limits: DynoLimiter,
}

impl p1::P1View for P1State {
    fn p1(&mut self) -> &mut p1::P1Ctx {
        &mut self.wasi
    }
}

struct P2State {
    wasi: WasiCtx,
    table: ResourceTable,
    fs: p2fs::FsCtx,
    /// Outgoing `wasi:http` (a worker calling an API), under the dyno's network policy.
    http: wasmtime_wasi_http::WasiHttpCtx,
    outgoing: outgoing::Outgoing,
    limits: DynoLimiter,
}

impl wasmtime_wasi_http::WasiHttpView for P2State {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outgoing,
        }
    }
}

impl p2fs::FsView for P2State {
    fn dyno_fs(&mut self) -> p2fs::FsCtxView<'_> {
        p2fs::FsCtxView {
            ctx: &self.fs,
            table: &mut self.table,
        }
    }
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Runtime {
    /// Builds the engine (with the pooling allocator when `config` says so), its compiled-code cache and the WASI
    /// linkers. A background thread ticks the engine's epoch until the runtime is dropped.
    ///
    /// ```
    /// let runtime = wasmdyno::Runtime::new(wasmdyno::RuntimeConfig::default())?;
    /// # drop(runtime);
    /// # Ok::<(), wasmdyno::RuntimeError>(())
    /// ```
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let engine = Engine::new(&engine_config_with(config.pooling.as_ref()))
            .map_err(RuntimeError::Wasmtime)?;
        let cache = cache::CodeCache::new(config.cache_dir.as_deref(), &engine);
        let linkers = Linkers::new(&engine)?;
        // Without the tier (a host Winch does not support) every dyno waits for optimized code, as before.
        let baseline = config.baseline_tier.and_then(|min_bytes| {
            let dir = config.cache_dir.as_deref();
            tier::Baseline::new(engine.clone(), cache.clone(), dir, min_bytes)
                .map_err(|e| tracing::warn!("no baseline tier, dynos wait for optimized code: {e}"))
                .ok()
        });

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking: Vec<Engine> = std::iter::once(engine.clone())
            .chain(baseline.as_ref().map(|b| b.engine.clone()))
            .collect();
        std::thread::Builder::new()
            .name("wasmdyno-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &ticking {
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawn epoch thread");

        Ok(Runtime {
            engine,
            cache,
            linkers,
            baseline,
            preinit: !config.no_preinit,
            ticker_stop,
        })
    }

    /// Compiles (or loads from the cache) a module or component, and says which it did: the cache file is
    /// `<cache dir>/<engine key>/<sha256 of wasm>.cwasm`, written the first time and loaded from then on, by this or
    /// any other process with the same engine configuration.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wasmdyno::runtime::CacheOutcome;
    /// use wasmdyno::{Runtime, RuntimeConfig};
    ///
    /// // A core module whose `_start` returns at once: `(module (func (export "_start")))`.
    /// # const HELLO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm"));
    /// let cache = tempfile::tempdir()?;
    /// let config = RuntimeConfig::default().with_cache_dir(Some(cache.path().to_path_buf()));
    /// let (_, first) = Runtime::new(config.clone())?.load(HELLO)?;
    /// let CacheOutcome::Compiled(path, _) = first else { panic!("{first:?}") };
    /// let (_, second) = Runtime::new(config)?.load(HELLO)?;
    /// assert_eq!(second, CacheOutcome::Hit(path));
    /// # Ok(()) }
    /// ```
    pub fn load(&self, wasm: &[u8]) -> Result<(Guest, CacheOutcome), RuntimeError> {
        let Some(baseline) = &self.baseline else {
            return self.cache.load(&self.engine, wasm);
        };
        // Optimized code being built in the background for the baseline tier is waited for, not built twice.
        let digest = cache::digest(wasm);
        if let Some(held) = baseline.wait_optimized(&digest)? {
            return Ok(held);
        }
        self.cache.load_digested(&self.engine, wasm, &digest)
    }

    /// A `wasi:http` web dyno of `guest`, if it is a component exporting `wasi:http/incoming-handler`
    /// (`Ok(None)` for any other guest). Its instances get the spec's argv, environment and output streams; the
    /// spec's size is the memory quota they share; its `platform` hears about instances that trap.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A core module whose `_start` returns at once: `(module (func (export "_start")))`.
    /// # const HELLO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm"));
    /// let runtime = wasmdyno::Runtime::new(wasmdyno::RuntimeConfig::default())?;
    /// let (guest, _) = runtime.load(HELLO)?;
    /// let spec = wasmdyno::runtime::RunSpec::new(vec!["hello.wasm".into()], Default::default(), Default::default());
    /// // A core module is no `wasi:http` handler.
    /// assert!(runtime.http_dyno(&guest, spec, Default::default())?.is_none());
    /// # Ok(()) }
    /// ```
    pub fn http_dyno(
        &self,
        guest: &Guest,
        spec: RunSpec,
        settings: http::HttpSettings,
    ) -> Result<Option<Arc<http::HttpDyno>>, RuntimeError> {
        let Guest::Component(component) = guest else {
            return Ok(None);
        };
        let Some(pre) = http::proxy_pre(&self.tier_of(guest).1.http, component)? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(http::HttpDyno::new(pre, spec, settings))))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The CPU policy of a store: on every epoch tick the guest yields to the async runtime, so a spinning guest
/// never holds a thread; past `deadline` (from now) it is interrupted instead. Each tick that finds the guest
/// running adds one to `cpu`: a sample of its CPU time in milliseconds ([`EPOCH_TICK`]), unbiased however short
/// its runs are. A `background` guest also pauses while the router serves requests ([`share`]), and counts its
/// pauses there.
pub(crate) fn yield_on_every_tick<T: 'static>(
    store: &mut Store<T>,
    deadline: Option<Duration>,
    cpu: Option<Arc<std::sync::atomic::AtomicU64>>,
    background: Option<Arc<std::sync::atomic::AtomicU64>>,
) {
    let end = deadline.map(|limit| std::time::Instant::now() + limit);
    let mut background = background.map(share::Background::new);
    store.epoch_deadline_callback(move |_| {
        if let Some(cpu) = &cpu {
            cpu.fetch_add(1, Ordering::Relaxed);
        }
        Ok(match end {
            Some(end) if std::time::Instant::now() >= end => wasmtime::UpdateDeadline::Interrupt,
            _ => match background.as_mut().and_then(share::Background::tick) {
                Some(pause) => {
                    wasmtime::UpdateDeadline::YieldCustom(1, Box::pin(tokio::time::sleep(pause)))
                }
                None => wasmtime::UpdateDeadline::Yield(1),
            },
        })
    });
    store.set_epoch_deadline(1);
}

/// Runs `guest` as the command `name` (no environment, no streams) to its end, on a tokio runtime of its own: the
/// runtime's unit tests' way to run a guest.
#[cfg(test)]
pub(crate) fn run_command(
    runtime: &Runtime,
    guest: &Guest,
    name: &str,
) -> Result<Exit, RuntimeError> {
    let spec = RunSpec::new(vec![name.into()], Default::default(), Default::default());
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    tokio.block_on(runtime.run(guest, spec))
}

#[cfg(all(test, feature = "platform"))]
mod tests {
    /// The doc examples' guests (`tests/guests/doc/*.wasm`) are their `.wat` sources, compiled.
    #[test]
    fn doc_guests_match_their_sources() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests/doc");
        for name in ["hello", "echo"] {
            let source = dir.join(format!("{name}.wat"));
            let compiled = std::fs::read(dir.join(format!("{name}.wasm"))).unwrap();
            assert_eq!(
                wat::parse_file(&source).unwrap(),
                compiled,
                "{name}.wasm is stale: wasmdyno wat2wasm {name}.wat {name}.wasm"
            );
        }
    }
}
