//! A dyno's resource limits as wasmtime sees them: linear memory draws from the same [`Quota`] as the dyno's
//! filesystem layer, so a dyno of size standard-1x holds 512 MiB of memory and files together.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use super::Report;
use super::vfs::Quota;

/// Most table elements one instance may hold (function tables of large Go and Rust programs stay far below).
pub(crate) const MAX_TABLE_ELEMENTS: usize = 1 << 20;

pub(crate) struct DynoLimiter {
    quota: Arc<Quota>,
    /// Bytes of linear memory this store has taken from the quota; returned when the store is dropped.
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
        let growth = desired.saturating_sub(current) as u64;
        if self.quota.try_take(growth) {
            self.memory += growth;
            Ok(true)
        } else {
            if let Some(report) = self.report.take() {
                const MIB: u64 = 1024 * 1024;
                report(&format!(
                    "Error R14 (Memory quota exceeded) -> growing memory by {} MiB would pass the dyno's {} MiB \
                     (memory and files together; {} MiB in use)",
                    growth.div_ceil(MIB),
                    self.quota.limit() / MIB,
                    self.quota.used() / MIB
                ));
            }
            tracing::debug!(
                current,
                desired,
                limit = self.quota.limit(),
                used = self.quota.used(),
                "memory quota exceeded"
            );
            Ok(false)
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl Drop for DynoLimiter {
    fn drop(&mut self) {
        self.quota.give_back(self.memory);
    }
}
