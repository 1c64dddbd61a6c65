//! The wasmtime side: one engine configuration, the compiled-code cache, and running a guest to completion.
//!
//! Two kinds of guest run here: WASI preview-1 core modules (what `wasm32-wasip1` and Go emit), on our own
//! preview-1 host ([`p1`]), and WASI 0.2 components (commands and `wasi:http` handlers) on wasmtime-wasi's p2 host
//! with our own `wasi:filesystem` linked over its (`p2fs`). Both see the dyno's in-memory filesystem ([`vfs`]).
//! Every guest gets its argv, its environment, its standard streams and its own filesystem, and nothing else: no
//! host directory is ever visible to a guest.

mod cache;
pub mod cgi;
mod component_io;
pub mod http;
mod limits;
pub mod net;
mod outgoing;
pub mod p1;
mod p2fs;
mod policy;
pub mod stdio;
pub mod vfs;
pub mod web;

pub use cache::CacheOutcome;
pub use policy::NetworkPolicy;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use limits::DynoLimiter;
use net::Listener;
use stdio::{Input, Output};
use vfs::{Fs, Image, Quota};

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

/// Memory quotas by dyno size, as Heroku's sizes name them. Parses from its name (`eco`, `standard-1x`, ...) or
/// Heroku's aliases `1X` and `2X`; the default is `standard-1x`.
///
/// ```
/// use wasmdyno::DynoSize;
///
/// let size: DynoSize = "2X".parse()?;
/// assert_eq!(size, DynoSize::Standard2X);
/// assert_eq!(size.name(), "standard-2x");
/// assert_eq!(size.memory(), 1024 * 1024 * 1024);
/// assert_eq!(DynoSize::default(), DynoSize::Standard1X);
/// assert!("huge".parse::<DynoSize>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DynoSize {
    /// `eco`: 512 MiB.
    Eco,
    /// `basic`: 512 MiB.
    Basic,
    /// `standard-1x` (`1X`): 512 MiB, the default.
    #[default]
    Standard1X,
    /// `standard-2x` (`2X`): 1 GiB.
    Standard2X,
    /// `performance-m`: 2.5 GiB.
    PerformanceM,
    /// `performance-l`: 14 GiB.
    PerformanceL,
}

impl DynoSize {
    /// Every size, smallest first.
    ///
    /// ```
    /// assert_eq!(wasmdyno::DynoSize::ALL[0], wasmdyno::DynoSize::Eco);
    /// ```
    pub const ALL: [DynoSize; 6] = [
        DynoSize::Eco,
        DynoSize::Basic,
        DynoSize::Standard1X,
        DynoSize::Standard2X,
        DynoSize::PerformanceM,
        DynoSize::PerformanceL,
    ];

    /// The size's name, as `ps` shows it and [`FromStr`](std::str::FromStr) parses it.
    ///
    /// ```
    /// use wasmdyno::DynoSize;
    /// assert_eq!(DynoSize::PerformanceM.name(), "performance-m");
    /// assert_eq!(DynoSize::PerformanceM.name().parse::<DynoSize>(), Ok(DynoSize::PerformanceM));
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            DynoSize::Eco => "eco",
            DynoSize::Basic => "basic",
            DynoSize::Standard1X => "standard-1x",
            DynoSize::Standard2X => "standard-2x",
            DynoSize::PerformanceM => "performance-m",
            DynoSize::PerformanceL => "performance-l",
        }
    }

    /// The dyno's memory quota in bytes: its linear memories and its filesystem's writes together.
    ///
    /// ```
    /// assert_eq!(wasmdyno::DynoSize::Eco.memory(), 512 * 1024 * 1024);
    /// ```
    pub fn memory(self) -> usize {
        const MB: usize = 1024 * 1024;
        match self {
            DynoSize::Eco | DynoSize::Basic | DynoSize::Standard1X => 512 * MB,
            DynoSize::Standard2X => 1024 * MB,
            DynoSize::PerformanceM => 2560 * MB,
            DynoSize::PerformanceL => 14 * 1024 * MB,
        }
    }
}

impl std::str::FromStr for DynoSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "1x" => "standard-1x",
            "2x" => "standard-2x",
            other => other,
        };
        DynoSize::ALL
            .into_iter()
            .find(|size| size.name() == alias)
            .ok_or_else(|| {
                let names: Vec<_> = DynoSize::ALL.iter().map(|s| s.name()).collect();
                format!("unknown dyno size {s:?} (sizes: {})", names.join(", "))
            })
    }
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

/// Hears a line about a dyno from the platform (for the app's log stream as `wasmdyno[web.1]: ...`), such as
/// `Error R14 (Memory quota exceeded)`; [`RunSpec::platform`] is one.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use wasmdyno::{Report, RunSpec};
///
/// let lines = Arc::new(Mutex::new(Vec::new()));
/// let seen = lines.clone();
/// let report: Report = Arc::new(move |line: &str| seen.lock().unwrap().push(format!("wasmdyno[web.1]: {line}")));
/// let mut spec = RunSpec::new(vec!["web.wasm".into()], Default::default(), Default::default());
/// spec.platform = report.clone();
/// report("Error R14 (Memory quota exceeded)");
/// assert_eq!(lines.lock().unwrap()[0], "wasmdyno[web.1]: Error R14 (Memory quota exceeded)");
/// ```
pub type Report = Arc<dyn Fn(&str) + Send + Sync>;

/// A compiled guest, from [`Runtime::load`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A core module whose `_start` returns at once: `(module (func (export "_start")))`.
/// # const HELLO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm"));
/// let runtime = wasmdyno::Runtime::new(wasmdyno::RuntimeConfig::default())?;
/// let (guest, _) = runtime.load(HELLO)?;
/// assert!(matches!(guest, wasmdyno::Guest::Module(_)));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub enum Guest {
    /// A WASI preview-1 core module.
    Module(Module),
    /// A WASI 0.2 component.
    Component(Component),
}

/// Is `wasm` a component (rather than a core module)? Errors when it is neither.
pub(crate) fn is_component(wasm: &[u8]) -> Result<bool, RuntimeError> {
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Ok(false),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(true),
        _ => Err(RuntimeError::NotWasm),
    }
}

/// How a guest ended, from [`Runtime::run`].
///
/// ```
/// use wasmdyno::Exit;
///
/// assert_eq!(Exit::Status(3).code(), 3);
/// let exit = Exit::Trap("wasm trap: unreachable".into());
/// assert_eq!(exit.code(), 134);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// The guest exited (returned from `_start`/`run`, or called `proc_exit`) with this status.
    Status(i32),
    /// The guest trapped; the text says where and why.
    Trap(String),
}

impl Exit {
    /// The process exit code a command line reports: the guest's own status, or 134 for a trap as
    /// `wasmtime run` does.
    ///
    /// ```
    /// assert_eq!(wasmdyno::Exit::Status(0).code(), 0);
    /// assert_eq!(wasmdyno::Exit::Trap("out of fuel".into()).code(), 134);
    /// ```
    pub fn code(&self) -> i32 {
        match self {
            Exit::Status(code) => *code,
            Exit::Trap(_) => 134,
        }
    }
}

/// What a guest runs with: argv, environment, size, filesystem, streams and limits. Start from [`RunSpec::new`]
/// and set what differs.
///
/// ```
/// use std::collections::BTreeMap;
/// use std::time::Duration;
/// use wasmdyno::{DynoSize, RunSpec};
///
/// let env = BTreeMap::from([("GREETING".to_string(), "hi".to_string())]);
/// let mut spec = RunSpec::new(vec!["hello.wasm".into(), "--loud".into()], env, DynoSize::Eco);
/// spec.deadline = Some(Duration::from_secs(30));
/// assert_eq!(spec.argv[0], "hello.wasm");
/// assert_eq!(spec.env["GREETING"], "hi");
/// assert!(spec.listener.is_none() && spec.port.is_none());
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RunSpec {
    /// argv, with argv\[0\] the module's name.
    pub argv: Vec<String>,
    /// The environment (config vars): the guest sees nothing else of the host's.
    pub env: BTreeMap<String, String>,
    /// The memory quota.
    pub size: DynoSize,
    /// The release's `app/` tree, the guest's `/`.
    pub image: Arc<Image>,
    /// The guest's standard input (closed unless set).
    pub stdin: Input,
    /// Where its standard output goes (discarded unless set).
    pub stdout: Output,
    /// Where its standard error goes (discarded unless set).
    pub stderr: Output,
    /// Where lines about the guest from the platform go (`Error R14 (Memory quota exceeded)`).
    pub platform: Report,
    /// A web dyno's listener: a preview-1 guest gets it at fd 4, announced as `WASMDYNO_LISTEN_FD=4`.
    /// (Components ignore it: they would bind `$PORT` with `wasi:sockets`.)
    pub listener: Option<Listener>,
    /// The longest the guest may run; past it, it is interrupted and its exit is a trap that says so.
    pub deadline: Option<Duration>,
    /// A loopback port a component may listen on with `wasi:sockets` (a web component binding `$PORT`).
    pub port: Option<u16>,
    /// The destinations its outgoing `wasi:http` requests and `wasi:sockets` connections may reach (public
    /// addresses only); by default none.
    pub network: NetworkPolicy,
    /// Flow control on stdout: writes wait for the reader (a CGI response's client).
    pub(crate) stdout_credit: Option<stdio::Credit>,
    /// A quota shared with other runs (a CGI dyno's concurrent requests); a quota of its own by default.
    pub(crate) quota: Option<Arc<Quota>>,
}

impl RunSpec {
    /// A spec with an empty filesystem, stdin at end of file and output discarded.
    ///
    /// ```
    /// let spec = wasmdyno::RunSpec::new(vec!["app.wasm".into()], Default::default(), Default::default());
    /// assert_eq!(spec.size, wasmdyno::DynoSize::Standard1X);
    /// assert!(spec.deadline.is_none());
    /// ```
    pub fn new(argv: Vec<String>, env: BTreeMap<String, String>, size: DynoSize) -> Self {
        RunSpec {
            argv,
            env,
            size,
            image: Arc::new(Image::new([], [], 0)),
            stdin: Input::closed(),
            stdout: stdio::discard(),
            stderr: stdio::discard(),
            platform: Arc::new(|_: &str| {}),
            listener: None,
            deadline: None,
            port: None,
            network: NetworkPolicy::default(),
            stdout_credit: None,
            quota: None,
        }
    }

    /// Makes the guest a web dyno that accepts connections on `listener` (see [`RunSpec::listener`]).
    ///
    /// ```
    /// use wasmdyno::{Listener, RunSpec};
    ///
    /// let spec = RunSpec::new(vec!["web.wasm".into()], Default::default(), Default::default())
    ///     .with_listener(Listener::new(64));
    /// assert!(spec.listener.is_some());
    /// ```
    pub fn with_listener(mut self, listener: Listener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Gives the guest `image` as its filesystem (usually a slug's: [`Image::from_slug`]).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let app = tempfile::tempdir()?;
    /// # std::fs::write(app.path().join("hello.wasm"), b"\0asm\x01\0\0\0")?;
    /// # let options = wasmdyno::PackOptions {
    /// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
    /// #     ..Default::default()
    /// # };
    /// # let packed = wasmdyno::pack(app.path(), options)?;
    /// use std::sync::Arc;
    /// use wasmdyno::{Image, RunSpec, Slug};
    ///
    /// let slug = Slug::from_bytes(&packed.bytes, Default::default())?;
    /// let spec = RunSpec::new(vec!["hello.wasm".into()], Default::default(), Default::default())
    ///     .with_image(Arc::new(Image::from_slug(&slug)));
    /// # drop(spec);
    /// # Ok(()) }
    /// ```
    pub fn with_image(mut self, image: Arc<Image>) -> Self {
        self.image = image;
        self
    }

    /// Attaches the guest to this process's standard streams (as `wasmdyno run` does).
    ///
    /// ```
    /// let spec = wasmdyno::RunSpec::new(vec!["cat.wasm".into()], Default::default(), Default::default())
    ///     .with_host_stdio();
    /// # drop(spec);
    /// ```
    pub fn with_host_stdio(mut self) -> Self {
        self.stdin = Input::from_reader(std::io::stdin());
        self.stdout = stdio::host_stdout();
        self.stderr = stdio::host_stderr();
        self.platform = Arc::new(|line: &str| eprintln!("{line}"));
        self
    }
}

/// Settings for a [`Runtime`]: the compiled-code cache and the instance allocator. Compiled code is cached under
/// `cache_dir/<engine key>/<module sha256>.cwasm`, the same names in every process and on every machine with the
/// same engine configuration, so a cache can be shared or shipped.
///
/// ```
/// use wasmdyno::{PoolingSettings, RuntimeConfig};
///
/// let config = RuntimeConfig::default()
///     .with_cache_dir(Some("/var/cache/wasmdyno".into()))
///     .with_pooling(Some(PoolingSettings::new(100)));
/// assert!(config.cache_dir.is_some() && config.pooling.is_some());
/// assert!(RuntimeConfig::default().cache_dir.is_none());
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Where compiled code is cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Instances from wasmtime's pooling allocator (slots reserved up front, memory reused copy-on-write)
    /// instead of allocating each on demand. `None`: on demand.
    pub pooling: Option<PoolingSettings>,
}

impl RuntimeConfig {
    /// Caches compiled code in `dir` (`None`: compile every time).
    ///
    /// ```
    /// let config = wasmdyno::RuntimeConfig::default().with_cache_dir(Some("/tmp/code".into()));
    /// assert!(config.cache_dir.is_some());
    /// ```
    pub fn with_cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// Uses the pooling allocator with these settings.
    ///
    /// ```
    /// use wasmdyno::PoolingSettings;
    /// let config = wasmdyno::RuntimeConfig::default().with_pooling(Some(PoolingSettings::new(1000)));
    /// assert_eq!(config.pooling.unwrap().slots, 1000);
    /// ```
    pub fn with_pooling(mut self, pooling: Option<PoolingSettings>) -> Self {
        self.pooling = pooling;
        self
    }
}

/// How wasmtime's pooling allocator is sized. Every slot reserves address space up front (a linear memory slot
/// reserves 4 GiB plus guard pages of virtual memory, not RAM), so `slots` bounds the instances that can live at
/// once: one more fails to instantiate (its dyno crashes with R99). A `wasi:http` dyno holds up to
/// `WASMDYNO_HTTP_INSTANCES` instances, other dynos one.
///
/// ```
/// let pooling = wasmdyno::PoolingSettings::new(256);
/// assert_eq!((pooling.slots, pooling.per_component), (256, 4));
/// let config = wasmdyno::RuntimeConfig::default().with_pooling(Some(pooling));
/// # drop(config);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolingSettings {
    /// Instances (core modules, or components) that can be alive at once.
    pub slots: u32,
    /// Core instances one component may hold; memories and tables are sized from it.
    pub per_component: u32,
    /// Address space reserved per linear memory, the most one memory can grow to. 4 GiB (the default) lets
    /// wasmtime elide bounds checks; less packs more slots into the address space (and into `vm.max_map_count`)
    /// at the cost of explicit checks. The dyno's quota still limits what memories really use.
    pub memory_reservation: u64,
}

impl PoolingSettings {
    /// `slots` instances at once (at least one), components of up to 4 core instances each.
    ///
    /// ```
    /// assert_eq!(wasmdyno::PoolingSettings::new(0).slots, 1);
    /// ```
    pub fn new(slots: u32) -> PoolingSettings {
        PoolingSettings {
            slots: slots.max(1),
            per_component: 4,
            memory_reservation: 4 << 30,
        }
    }

    /// Reserves `bytes` of address space per linear memory (at least 64 KiB, at most 4 GiB).
    ///
    /// ```
    /// let pool = wasmdyno::PoolingSettings::new(1000).with_memory_reservation(1 << 30);
    /// assert_eq!(pool.memory_reservation, 1 << 30);
    /// ```
    pub fn with_memory_reservation(mut self, bytes: u64) -> PoolingSettings {
        self.memory_reservation = bytes.clamp(64 << 10, 4 << 30);
        self
    }

    fn allocation_config(&self) -> wasmtime::PoolingAllocationConfig {
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        let cores = self.slots.saturating_mul(self.per_component);
        pool.total_component_instances(self.slots)
            .total_core_instances(cores)
            .total_memories(cores)
            .total_tables(cores)
            .total_stacks(self.slots)
            .max_core_instances_per_component(self.per_component)
            .max_memories_per_component(self.per_component)
            .max_tables_per_component(self.per_component)
            // A memory can grow as far as its reservation; the dyno's quota limits what it really uses.
            .max_memory_size(self.memory_reservation as usize)
            // Go and large Rust programs have big function tables and instance records.
            .table_elements(limits::MAX_TABLE_ELEMENTS)
            .max_core_instance_size(4 << 20);
        pool
    }
}

/// The engine, its compiled-code cache and the WASI linkers, shared by every dyno of a process. Build one per
/// process ([`Runtime::new`]), [`load`](Runtime::load) a guest, and [`run`](Runtime::run) it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use wasmdyno::{DynoSize, Exit, RunSpec, Runtime, RuntimeConfig};
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
    p1_linker: Linker<P1State>,
    p2_linker: wasmtime::component::Linker<P2State>,
    http_linker: wasmtime::component::Linker<http::HttpState>,
    ticker_stop: Arc<AtomicBool>,
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

/// The one engine configuration of wasmdyno. Compiled code is cached per configuration, so every part of the
/// platform builds its engine here.
#[cfg(test)]
fn engine_config() -> wasmtime::Config {
    engine_config_with(None)
}

fn engine_config_with(pooling: Option<&PoolingSettings>) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    if let Some(pooling) = pooling {
        config.memory_reservation(pooling.memory_reservation);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(
            pooling.allocation_config(),
        ));
    }
    config.wasm_component_model(true);
    // Guests yield to the async runtime on every epoch tick, so a spinning guest never starves other work.
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config
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

        let mut p1_linker = Linker::new(&engine);
        p1::add_to_linker(&mut p1_linker).map_err(RuntimeError::Wasmtime)?;
        let mut p2_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut p2_linker).map_err(RuntimeError::Wasmtime)?;
        p2fs::add_to_linker(&mut p2_linker).map_err(RuntimeError::Wasmtime)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut p2_linker)
            .map_err(RuntimeError::Wasmtime)?;
        let http_linker = http::linker(&engine)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (stop, ticking) = (ticker_stop.clone(), engine.clone());
        std::thread::Builder::new()
            .name("wasmdyno-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .expect("spawn epoch thread");

        Ok(Runtime {
            engine,
            cache,
            p1_linker,
            p2_linker,
            http_linker,
            ticker_stop,
        })
    }

    /// Compiles (or loads from the cache) a module or component, and says which it did: the cache file is
    /// `<cache dir>/<engine key>/<sha256 of wasm>.cwasm`, written the first time and loaded from then on, by this or
    /// any other process with the same engine configuration.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wasmdyno::CacheOutcome;
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
        self.cache.load(&self.engine, wasm)
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
    /// let spec = wasmdyno::RunSpec::new(vec!["hello.wasm".into()], Default::default(), Default::default());
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
        let Some(pre) = http::proxy_pre(&self.http_linker, component)? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(http::HttpDyno::new(pre, spec, settings))))
    }

    /// Runs a command guest to completion.
    ///
    /// Guests get the spec's image as their filesystem (a fresh copy-on-write layer, counted against the quota)
    /// and its streams; components run on wasmtime-wasi's host with our `wasi:filesystem` (`p2fs`).
    ///
    /// ```no_run
    /// # async fn one_off(runtime: &wasmdyno::Runtime) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use wasmdyno::{Exit, Image, RunSpec, Slug};
    ///
    /// let slug = Slug::open("hello.tar.gz".as_ref(), Default::default())?;
    /// let (module, wasm) = wasmdyno::resolve_module(&slug, "hello")?;
    /// let (guest, _) = runtime.load(&wasm)?;
    /// let spec = RunSpec::new(vec![module], Default::default(), Default::default())
    ///     .with_image(Arc::new(Image::from_slug(&slug)))
    ///     .with_host_stdio();
    /// match runtime.run(&guest, spec).await? {
    ///     Exit::Status(code) => println!("exited with {code}"),
    ///     Exit::Trap(why) => println!("trapped: {why}"),
    ///     other => println!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn run(&self, guest: &Guest, spec: RunSpec) -> Result<Exit, RuntimeError> {
        // One budget for the dyno's linear memories and its filesystem layer.
        let quota = spec
            .quota
            .clone()
            .unwrap_or_else(|| Arc::new(Quota::new(spec.size.memory() as u64)));
        let limits = DynoLimiter::new(quota.clone()).with_report(spec.platform.clone());
        match guest {
            Guest::Module(module) => {
                let fs = Arc::new(std::sync::Mutex::new(Fs::new(spec.image.clone(), quota)));
                let mut env = spec.env;
                if spec.listener.is_some() {
                    env.insert("WASMDYNO_LISTEN_FD".into(), p1::LISTEN_FD.to_string());
                }
                let mut wasi =
                    p1::P1Ctx::new(spec.argv, env, fs, spec.stdin, spec.stdout, spec.stderr);
                if let Some(listener) = &spec.listener {
                    wasi = wasi.with_listener(listener);
                }
                if let Some(credit) = spec.stdout_credit {
                    wasi = wasi.with_stdout_credit(credit);
                }
                let state = P1State { wasi, limits };
                let mut store = Store::new(&self.engine, state);
                store.limiter(|s| &mut s.limits);
                yield_on_every_tick(&mut store, spec.deadline);
                let instance = self
                    .p1_linker
                    .instantiate_async(&mut store, module)
                    .await
                    .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
                let start = instance
                    .get_typed_func::<(), ()>(&mut store, "_start")
                    .map_err(|_| {
                        RuntimeError::Instantiate(
                            "the module exports no `_start`: it is not a WASI command".into(),
                        )
                    })?;
                Ok(exit_of(
                    start.call_async(&mut store, ()).await,
                    spec.deadline,
                ))
            }
            Guest::Component(component) => {
                let fs = Arc::new(std::sync::Mutex::new(Fs::new(spec.image.clone(), quota)));
                let mut builder = WasiCtxBuilder::new();
                builder
                    .stdin(component_io::ComponentInput(spec.stdin))
                    .stdout(component_io::ComponentOutput(
                        spec.stdout,
                        spec.stdout_credit.clone(),
                    ))
                    .stderr(component_io::ComponentOutput(spec.stderr, None))
                    .args(&spec.argv)
                    .initial_cwd("/");
                for (key, value) in &spec.env {
                    builder.env(key, value);
                }
                // A web component may listen on its loopback `$PORT`, and any component may connect to the app's
                // allowed destinations; nothing else.
                let reachable = spec.network.resolve_all().await;
                policy::sockets(&mut builder, spec.port, reachable);
                let state = P2State {
                    wasi: builder.build(),
                    table: ResourceTable::new(),
                    fs: p2fs::FsCtx::new(fs),
                    http: wasmtime_wasi_http::WasiHttpCtx::new(),
                    outgoing: outgoing::Outgoing::new(Arc::new(spec.network.clone())),
                    limits,
                };
                let mut store = Store::new(&self.engine, state);
                store.limiter(|s| &mut s.limits);
                yield_on_every_tick(&mut store, spec.deadline);
                let command = wasmtime_wasi::p2::bindings::Command::instantiate_async(
                    &mut store,
                    component,
                    &self.p2_linker,
                )
                .await
                .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
                let result = command.wasi_cli_run().call_run(&mut store).await;
                Ok(match result {
                    Ok(Ok(())) => Exit::Status(0),
                    Ok(Err(())) => Exit::Status(1),
                    Err(err) => exit_of(Err(err), spec.deadline),
                })
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn exit_of(result: wasmtime::Result<()>, deadline: Option<Duration>) -> Exit {
    match result {
        Ok(()) => Exit::Status(0),
        Err(err) => match err.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => Exit::Status(*code),
            None => match (err.downcast_ref::<wasmtime::Trap>(), deadline) {
                (Some(wasmtime::Trap::Interrupt), Some(limit)) => Exit::Trap(format!(
                    "the guest ran past its deadline of {}s and was interrupted",
                    limit.as_secs_f64()
                )),
                _ => Exit::Trap(format!("{err:?}")),
            },
        },
    }
}

/// The CPU policy of a store: on every epoch tick the guest yields to the async runtime, so a spinning guest
/// never holds a thread; past `deadline` (from now) it is interrupted instead.
pub(crate) fn yield_on_every_tick<T: 'static>(store: &mut Store<T>, deadline: Option<Duration>) {
    match deadline {
        None => store.epoch_deadline_async_yield_and_update(1),
        Some(limit) => {
            let end = std::time::Instant::now() + limit;
            store.epoch_deadline_callback(move |_| {
                Ok(if std::time::Instant::now() >= end {
                    wasmtime::UpdateDeadline::Interrupt
                } else {
                    wasmtime::UpdateDeadline::Yield(1)
                })
            });
            store.set_epoch_deadline(1);
        }
    }
}

/// A slug's command made ready to run as a one-off dyno, from [`Runtime::prepare`]: its module compiled and
/// its spec filled in. Change the spec (streams, deadline, network) and give both to [`Runtime::run`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let app = tempfile::tempdir()?;
/// // A core module whose `_start` returns at once: `(module (func (export "_start")))`.
/// # std::fs::write(app.path().join("hello.wasm"), include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm")))?;
/// # let options = wasmdyno::PackOptions {
/// #     process_types: [("worker".to_string(), "hello.wasm".to_string())].into(),
/// #     ..Default::default()
/// # };
/// # let slug = wasmdyno::Slug::from_bytes(&wasmdyno::pack(app.path(), options)?.bytes, Default::default())?;
/// use std::time::Duration;
/// use wasmdyno::{CacheOutcome, Exit, Runtime, RuntimeConfig};
///
/// let runtime = Runtime::new(RuntimeConfig::default())?;
/// let mut one_off = runtime.prepare(&slug, "worker", &[], Default::default(), Default::default())?;
/// assert!(matches!(one_off.cache, CacheOutcome::Uncached(_)));
/// assert_eq!(one_off.spec.argv, ["hello.wasm"]);
/// one_off.spec.deadline = Some(Duration::from_secs(60));
/// let tokio = tokio::runtime::Runtime::new()?;
/// assert_eq!(tokio.block_on(runtime.run(&one_off.guest, one_off.spec))?, Exit::Status(0));
/// # Ok(()) }
/// ```
#[non_exhaustive]
pub struct Prepared {
    /// The compiled module or component.
    pub guest: Guest,
    /// argv (argv\[0\] the module's path in the slug), the environment, the size and the slug's filesystem.
    pub spec: RunSpec,
    /// Where the compiled code came from.
    pub cache: CacheOutcome,
}

impl Runtime {
    /// Prepares a one-off dyno of `slug`, as `wasmdyno run COMMAND ARGS...` does: `command` is a process type of
    /// the slug's Procfile (with `args` appended), a command line, or a module path. The guest's environment is
    /// the slug's config vars, then `env`, with `HOME=/`, `DYNO` from `env` or else `run.1`, and
    /// `WASMDYNO_RELEASE` from `env` or else the slug's short hash; variable references in the command expand
    /// from the finished environment. Compiling can take a while for a big module (the first time,
    /// without a cache): async callers run this on a blocking thread.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let app = tempfile::tempdir()?;
    /// // A core module whose `_start` returns at once: `(module (func (export "_start")))`.
    /// # std::fs::write(app.path().join("hello.wasm"), include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm")))?;
    /// # let options = wasmdyno::PackOptions {
    /// #     process_types: [("worker".to_string(), "hello.wasm --from ${GREETING}".to_string())].into(),
    /// #     config_vars: [("HOME".to_string(), "/app".to_string())].into(),
    /// #     ..Default::default()
    /// # };
    /// # let slug = wasmdyno::Slug::from_bytes(&wasmdyno::pack(app.path(), options)?.bytes, Default::default())?;
    /// use std::collections::BTreeMap;
    /// use wasmdyno::{DynoSize, Exit, Runtime, RuntimeConfig};
    ///
    /// let runtime = Runtime::new(RuntimeConfig::default())?;
    /// let env = BTreeMap::from([("GREETING".to_string(), "hi".to_string())]);
    /// let one_off = runtime.prepare(&slug, "worker", &["--once".into()], env, DynoSize::Eco)?;
    /// assert_eq!(one_off.spec.argv, ["hello.wasm", "--from", "hi", "--once"]);
    /// assert_eq!(one_off.spec.env["DYNO"], "run.1");
    /// assert_eq!(one_off.spec.env["WASMDYNO_RELEASE"], &slug.sha256()[..7]);
    /// assert_eq!(one_off.spec.env["HOME"], "/", "as every dyno has it, whatever the config vars say");
    /// let exit = tokio::runtime::Runtime::new()?.block_on(runtime.run(&one_off.guest, one_off.spec))?;
    /// assert_eq!(exit, Exit::Status(0));
    /// # Ok(()) }
    /// ```
    pub fn prepare(
        &self,
        slug: &Slug,
        command: &str,
        args: &[String],
        env: BTreeMap<String, String>,
        size: DynoSize,
    ) -> Result<Prepared, RuntimeError> {
        let line = crate::procfile::Command::resolve(&slug.manifest().process_types, command, args)
            .map_err(|e| RuntimeError::BadCommand {
                command: command.to_string(),
                reason: e.to_string(),
            })?;
        // As every dyno has them: `/` is home, DYNO is the caller's or `run.1`, WASMDYNO_RELEASE the caller's or
        // the slug's short hash, PORT only the caller's; never a config var's.
        let platform = crate::dyno::launch::PlatformVars {
            dyno: env.get("DYNO").cloned().unwrap_or_else(|| "run.1".into()),
            release: env
                .get("WASMDYNO_RELEASE")
                .cloned()
                .unwrap_or_else(|| crate::dyno::launch::local_release(slug.sha256())),
            port: env.get("PORT").and_then(|port| port.parse().ok()),
        };
        let mut layered = slug.manifest().config_vars.clone();
        layered.extend(env);
        let full_env = platform.environment(&layered);
        let mut argv = crate::dyno::launch::argv(&line, &full_env);
        let Some(word) = argv.first() else {
            return Err(RuntimeError::BadCommand {
                command: line.as_str().to_string(),
                reason: "it expands to nothing".into(),
            });
        };
        let (module, wasm) = resolve_module(slug, word)?;
        let (guest, cache) = self.load(&wasm)?;
        // argv[0] names the module that runs, as the guest sees it (`app.wat` in a Procfile runs `app.wasm`).
        argv[0] = module;
        let spec = RunSpec::new(argv, full_env, size).with_image(Arc::new(Image::from_slug(slug)));
        Ok(Prepared { guest, spec, cache })
    }
}

/// Finds the module a command's first word names: `app.wasm`, `./bin/app.wasm`, `/app/app.wasm`, `app`
/// (for `app.wasm`), or `app.wat` (built to `app.wasm`). Returns the module's path in the slug and its bytes.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let app = tempfile::tempdir()?;
/// # std::fs::write(app.path().join("hello.wasm"), b"\0asm\x01\0\0\0")?;
/// # let options = wasmdyno::PackOptions {
/// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
/// #     ..Default::default()
/// # };
/// # let packed = wasmdyno::pack(app.path(), options)?;
/// let slug = wasmdyno::Slug::from_bytes(&packed.bytes, Default::default())?;
/// for word in ["hello", "hello.wasm", "hello.wat", "/app/hello.wasm"] {
///     let (path, _wasm) = wasmdyno::resolve_module(&slug, word)?;
///     assert_eq!(path, "hello.wasm");
/// }
/// assert!(wasmdyno::resolve_module(&slug, "other").is_err());
/// # Ok(()) }
/// ```
pub fn resolve_module(slug: &Slug, word: &str) -> Result<(String, Arc<[u8]>), RuntimeError> {
    let trimmed = word
        .strip_prefix("/app/")
        .unwrap_or(word)
        .trim_start_matches('/');
    let mut candidates = vec![trimmed.to_string()];
    if let Some(stem) = trimmed.strip_suffix(".wat") {
        candidates.push(format!("{stem}.wasm"));
    } else if !trimmed.ends_with(".wasm") {
        candidates.push(format!("{trimmed}.wasm"));
    }
    for candidate in candidates {
        if let Some(path) = crate::slug::normalize(&candidate)
            && let Some(bytes) = slug.file(&path)
            && is_component(&bytes).is_ok()
        {
            return Ok((path, bytes));
        }
    }
    let available = slug
        .manifest()
        .files
        .keys()
        .filter(|p| p.ends_with(".wasm"))
        .cloned()
        .collect();
    Err(RuntimeError::NoSuchModule {
        word: word.to_string(),
        available,
    })
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
