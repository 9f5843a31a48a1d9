//! The per-invocation host state (`T` in `Store<T>`): WASI contexts, the resource table,
//! the outbound policy, memory accounting, the execution budget and the inference state
//! (`wasi:nn`, served by `spark-nn`).
//!
//! One `Host` lives exactly as long as one request or job run; nothing in it is shared with
//! another invocation except read-only configuration behind `Arc`s.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::budget::Budget;
use crate::outbound::OutboundHooks;

/// Store data for one invocation.
pub struct Host {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) hooks: OutboundHooks,
    pub(crate) config: Arc<WasiConfigVariables>,
    pub(crate) memory: MemoryLimiter,
    pub(crate) budget: Arc<Budget>,
    /// This invocation's `wasi:nn` state (disabled when the node runs no inference host).
    pub(crate) nn: spark_nn::NnInvocation,
    /// Epoch ticks since the guest last gave its worker thread away.
    pub(crate) ticks_since_yield: u32,
    /// Key-value stores and variables (the Spin interfaces).
    pub(crate) spin: crate::spin::SpinState,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl Host {
    pub(crate) fn config_view(&mut self) -> WasiConfig<'_> {
        WasiConfig::from(&*self.config)
    }

    pub(crate) fn spin_view(&mut self) -> crate::spin::SpinView<'_> {
        crate::spin::SpinView {
            table: &mut self.table,
            state: &mut self.spin,
        }
    }

    pub(crate) fn nn_view(&mut self) -> spark_nn::NnView<'_> {
        self.nn.view(&mut self.table)
    }
}

/// Caps the total linear memory of one instance (all its memories together) and remembers
/// whether the cap was hit, so a failed allocation is reported as "memory limit", not as an
/// anonymous trap.
pub(crate) struct MemoryLimiter {
    limit: usize,
    in_use: usize,
    pub(crate) exceeded: bool,
}

/// Tables may grow to this many elements (a guard against runaway `table.grow`).
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> MemoryLimiter {
        MemoryLimiter {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            in_use: 0,
            exceeded: false,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Linear memory the instance holds now, across its memories.
    pub(crate) fn in_use(&self) -> usize {
        self.in_use
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.in_use - current.min(self.in_use) + desired;
        if total > self.limit {
            self.exceeded = true;
            wasmtime::bail!(
                "memory limit exceeded: growing to {desired} bytes would use {total} of {} bytes",
                self.limit
            );
        }
        self.in_use = total;
        Ok(true)
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
