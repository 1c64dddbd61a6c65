//! How the runtime is built: its compiled-code cache, the pooling allocator's sizes, the engine's configuration.

#[allow(unused_imports)]
use super::*;

/// Settings for a [`Runtime`]: the compiled-code cache and the instance allocator. Compiled code is cached under
/// `cache_dir/<engine key>/<module sha256>.cwasm`, the same names in every process and on every machine with the
/// same engine configuration, so a cache can be shared or shipped.
///
/// ```
/// use wasmdyno::{runtime::PoolingSettings, RuntimeConfig};
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
    /// Web dynos whose module is at least this many bytes may start on Winch's baseline code while Cranelift's
    /// optimized code is built, and are replaced once it is ready ([`Runtime::load_tiered`]). `None` (the
    /// default): every dyno waits for optimized code.
    pub baseline_tier: Option<usize>,
    /// A CGI dyno of a pre-initialized command runs its initialization in every request instead of once
    /// ([`RuntimeConfig::with_preinit`]). `false` (the default): once per dyno.
    pub no_preinit: bool,
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
    /// use wasmdyno::runtime::PoolingSettings;
    /// let config = wasmdyno::RuntimeConfig::default().with_pooling(Some(PoolingSettings::new(1000)));
    /// assert_eq!(config.pooling.unwrap().slots, 1000);
    /// ```
    pub fn with_pooling(mut self, pooling: Option<PoolingSettings>) -> Self {
        self.pooling = pooling;
        self
    }

    /// Lets web dynos whose module is at least `min_bytes` start on baseline code (Winch's, compiled about 3x
    /// faster) while the optimized code is built in the background ([`Runtime::load_tiered`]); `None`: never.
    ///
    /// ```
    /// // Modules of 4 MiB or more (a Go program) start on baseline code; smaller ones compile fast enough.
    /// let config = wasmdyno::RuntimeConfig::default().with_baseline_tier(Some(4 << 20));
    /// assert_eq!(config.baseline_tier, Some(4 << 20));
    /// ```
    pub fn with_baseline_tier(mut self, min_bytes: Option<usize>) -> Self {
        self.baseline_tier = min_bytes;
        self
    }

    /// Whether a CGI dyno of a pre-initialized command (a module exporting `_initialize` and `wasmdyno_start`,
    /// as the Go buildpack builds CGI apps) runs `_initialize` once and starts each request from the state it
    /// left (the default), or runs it in every request.
    ///
    /// ```
    /// let config = wasmdyno::RuntimeConfig::default();
    /// assert!(!config.no_preinit);
    /// assert!(config.with_preinit(false).no_preinit);
    /// ```
    pub fn with_preinit(mut self, on: bool) -> Self {
        self.no_preinit = !on;
        self
    }
}

/// Bytes of a pooled linear memory kept resident when its instance ends. A Go CGI run touches less than 8 MiB;
/// keeping it resident doubled Go CGI's requests/s (`scripts/bench-http`).
const KEEP_RESIDENT: usize = 16 << 20;
/// Unused pooled slots kept warm (their memory resident) before the allocator reuses one.
const WARM_SLOTS: u32 = 32;

/// How wasmtime's pooling allocator is sized. Every slot reserves address space up front (a linear memory slot
/// reserves 4 GiB plus guard pages of virtual memory, not RAM), so `slots` bounds the instances that can live at
/// once: one more fails to instantiate (its dyno crashes with R99). A `wasi:http` dyno holds up to
/// `WASMDYNO_HTTP_INSTANCES` instances, other dynos one. A freed slot keeps the memory its instance wrote
/// resident (up to 16 MiB, in at most 32 unused slots plus those in use) so that the next instance in it, a CGI
/// run for one, takes no page faults: Go CGI serves twice the requests/s pooled.
///
/// ```
/// let pooling = wasmdyno::runtime::PoolingSettings::new(256);
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
    /// assert_eq!(wasmdyno::runtime::PoolingSettings::new(0).slots, 1);
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
    /// let pool = wasmdyno::runtime::PoolingSettings::new(1000).with_memory_reservation(1 << 30);
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
            .max_core_instance_size(4 << 20)
            // A freed slot keeps the memory its instance touched (up to KEEP_RESIDENT, reset in place: with
            // Linux 6.7's PAGEMAP_SCAN only the pages written are), so the next instance in it takes no page
            // faults. Slots used one after another stay bounded: the allocator reuses a warm slot once
            // WARM_SLOTS stand unused, so at most (WARM_SLOTS + instances alive) * KEEP_RESIDENT stays held.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT / 16)
            .max_unused_warm_slots(WARM_SLOTS.min(self.slots))
            .pagemap_scan(wasmtime::Enabled::Auto);
        pool
    }
}

/// The one engine configuration of wasmdyno. Compiled code is cached per configuration, so every part of the
/// platform builds its engine here.
#[cfg(test)]
pub(super) fn engine_config() -> wasmtime::Config {
    engine_config_with(None)
}

pub(super) fn engine_config_with(pooling: Option<&PoolingSettings>) -> wasmtime::Config {
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
