//! A dyno's resource limits as wasmtime sees them: linear memory and tables draw from the same [`Quota`] as the
//! dyno's filesystem layer, so a dyno of size standard-1x holds 512 MiB of memory, tables and files together; and
//! one store holds a small, fixed number of instances, memories and tables.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use super::Report;
use super::vfs::Quota;

/// Most table elements one instance may hold (function tables of large Go and Rust programs stay far below).
pub(crate) const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// What one table element costs the host (a `funcref` or `externref` is a pointer).
const TABLE_ELEMENT_BYTES: u64 = 8;

/// Most core instances one store may create: a component of a few dozen core modules (an interpreter and its
/// libraries, say) fits; a guest cannot make the host hold thousands.
const MAX_INSTANCES: usize = 100;
/// Most linear memories and tables one store may hold, each.
const MAX_MEMORIES: usize = 16;
const MAX_TABLES: usize = 100;

pub(crate) struct DynoLimiter {
    quota: Arc<Quota>,
    /// Bytes of linear memory and tables this store has taken from the quota; returned when the store is dropped.
    memory: u64,
    /// Hears the R14 line, once per store.
    report: Option<Report>,
}

impl DynoLimiter {
    pub(crate) fn new(quota: Arc<Quota>) -> DynoLimiter {
        DynoLimiter {
            quota,
            memory: 0,
            report: None,
        }
    }

    /// Takes `growth` bytes of `what` from the quota, or says R14 (once) and refuses.
    fn take(&mut self, growth: u64, what: &str) -> bool {
        if self.quota.try_take(growth) {
            self.memory += growth;
            return true;
        }
        if let Some(report) = self.report.take() {
            const MIB: u64 = 1024 * 1024;
            report(&format!(
                "Error R14 (Memory quota exceeded) -> growing {what} by {} MiB would pass the dyno's {} MiB \
                 (memory, tables and files together; {} MiB in use)",
                growth.div_ceil(MIB),
                self.quota.limit() / MIB,
                self.quota.used() / MIB
            ));
        }
        tracing::debug!(
            growth,
            what,
            limit = self.quota.limit(),
            used = self.quota.used(),
            "memory quota exceeded"
        );
        false
    }

    /// Says `Error R14 (Memory quota exceeded)` to `report` the first time a `memory.grow` is refused.
    pub(crate) fn with_report(mut self, report: Report) -> DynoLimiter {
        self.report = Some(report);
        self
    }
}

impl ResourceLimiter for DynoLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.take(desired.saturating_sub(current) as u64, "memory"))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let growth = (desired.saturating_sub(current) as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.take(growth, "a table"))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

impl Drop for DynoLimiter {
    fn drop(&mut self) {
        self.quota.give_back(self.memory);
    }
}

#[cfg(all(test, feature = "platform"))]
mod tests {
    use super::{MAX_MEMORIES, MAX_TABLES};
    use crate::runtime::{Exit, Runtime, RuntimeConfig, RuntimeError};

    /// A command module with `count` copies of `item` (a table or a memory).
    fn guest_with(count: usize, item: &str) -> Vec<u8> {
        let items = item.repeat(count);
        wat::parse_str(format!(r#"(module {items} (func (export "_start")))"#)).unwrap()
    }

    fn run(wasm: &[u8]) -> Result<Exit, RuntimeError> {
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let (guest, _) = runtime.load(wasm)?;
        crate::runtime::run_command(&runtime, &guest, "many.wasm")
    }

    #[test]
    fn a_store_holds_a_bounded_number_of_tables_and_memories() {
        assert_eq!(
            run(&guest_with(MAX_TABLES, "(table 1 funcref)")).unwrap(),
            Exit::Status(0)
        );
        assert_eq!(
            run(&guest_with(MAX_MEMORIES, "(memory 1)")).unwrap(),
            Exit::Status(0)
        );
        // One more: refused, by the validator (a module may declare at most 100 tables) or by the store.
        for (count, item) in [
            (MAX_TABLES + 1, "(table 1 funcref)"),
            (MAX_MEMORIES + 1, "(memory 1)"),
        ] {
            match run(&guest_with(count, item)) {
                Err(RuntimeError::Instantiate(why) | RuntimeError::Compile(why)) => {
                    assert!(why.contains("count"), "{count} × {item}: {why}")
                }
                other => panic!("{count} × {item} instantiated: {other:?}"),
            }
        }
    }
}
