//! The Spin platform interfaces a node serves: key-value stores on the node's embedded store
//! (`spin:key-value/key-value@3.0.0`, async; `fermyon:spin/key-value@2.0.0`, sync) and
//! variables (`spin:variables/variables@3.0.0`, `fermyon:spin/variables@2.0.0`, and the same
//! values through `wasi:config/store`); `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` on
//! the same stores (`wasi_kv`). `wasi:config/store` is linked at `0.2.0-rc.1` by
//! `wasmtime-wasi-config` and here at `0.2.0-draft-2024-09-27` (what Spin SDKs import; the same
//! interface under an older name), both answering the same values.
//!
//! What a module may reach is decided when the module is built ([`AppHost`]): the labels of
//! its `key_value_stores` with their limits and scope, and its variables already resolved
//! (defaults, environment overrides, templates). A guest can open only those labels; any other
//! gets `access-denied`, as in Spin. Every call is bounded: a value's size is checked before it is
//! copied into the store, key listings stop at [`MAX_LISTED_KEYS`], and an invocation holds at
//! most [`MAX_OPEN_STORES`] open stores. Copies made while the guest is polled are charged to
//! its host-memory account like any other host allocation.
//!
//! A store declared fleet-wide carries the node's [`KvReplicas`] in its binding: each write
//! that commits is queued there for the fleet agent to publish (`replica`).
//!
//! The decision worth knowing: reads run inline on the guest's thread (redb reads are served
//! from the page cache and take microseconds), writes run on a blocking thread, because each
//! one is a durable transaction that waits for an fsync.

mod kv3;
mod replica;
mod v2;
mod variables3;
mod wasi_kv;

use std::collections::BTreeMap;
use std::sync::Arc;

use spark_store::{KvLimits, KvUsage, Store};
use wasmtime::component::{HasData, ResourceTable};

pub use kv3::KvHandle;
pub use replica::{KvReplicas, Outgoing};

/// Most stores one invocation holds open at once (`store-table-full` beyond).
pub const MAX_OPEN_STORES: u32 = 16;
/// Most keys one `get-keys` call answers (more: an error saying so).
pub const MAX_LISTED_KEYS: usize = 100_000;
/// Keys per page of `wasi:keyvalue` `list-keys`.
pub const KEYS_PER_PAGE: usize = 1_000;
/// Most keys one `wasi:keyvalue/batch` call takes.
pub const MAX_BATCH_KEYS: usize = 1_000;
/// Most value bytes one `get-many` answers (more: an error saying so).
pub const MAX_BATCH_BYTES: u64 = 16 << 20;

/// One store a module may open.
#[derive(Debug, Clone)]
pub struct KvBinding {
    /// `<application>/<label>`: where its data lives in the node's store.
    pub scope: String,
    /// Its bounds.
    pub limits: KvLimits,
    /// Declared fleet-wide (`fleet = true`): its writes are queued here for the fleet agent.
    pub fleet: Option<Arc<KvReplicas>>,
}

/// What a module's guests reach of their application: its stores and its variables.
#[derive(Clone, Default)]
pub struct AppHost {
    /// The node's store, holding the key-value data (`None`: no store, every open fails).
    pub store: Option<Arc<Store>>,
    /// The labels this module may open.
    pub stores: BTreeMap<String, KvBinding>,
    /// The module's variables, resolved.
    pub variables: BTreeMap<String, String>,
}

impl std::fmt::Debug for AppHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Variables may be secret: only their names.
        f.debug_struct("AppHost")
            .field("stores", &self.stores)
            .field("variables", &self.variables.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AppHost {
    /// How full each of this module's stores is (keys, bytes), by label.
    pub fn usage(&self) -> Vec<(String, KvBinding, KvUsage)> {
        let Some(store) = &self.store else {
            return Vec::new();
        };
        self.stores
            .iter()
            .map(|(label, binding)| {
                let usage = store.kv_usage(&binding.scope).unwrap_or_default();
                (label.clone(), binding.clone(), usage)
            })
            .collect()
    }
}

/// The per-invocation state of the Spin interfaces.
#[derive(Default)]
pub(crate) struct SpinState {
    pub(crate) app: Arc<AppHost>,
    /// What `wasi:config/store` answers: the module's variables and its `config`.
    pub(crate) config: Arc<BTreeMap<String, String>>,
    pub(crate) open_stores: u32,
}

/// `HasData` of the Spin interfaces: the resource table and the invocation's Spin state.
pub(crate) struct SpinHost;

pub(crate) struct SpinView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) state: &'a mut SpinState,
}

impl HasData for SpinHost {
    type Data<'a> = SpinView<'a>;
}

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        world: "spin-host",
        path: "wit/spin",
        with: {
            "spin:key-value/key-value.store": super::KvHandle,
            "fermyon:spin/key-value.store": super::KvHandle,
            "wasi:keyvalue/store.bucket": super::KvHandle,
            "wasi:keyvalue/atomics.cas": super::wasi_kv::Cas,
        },
        imports: {
            "fermyon:spin/key-value.[method]store.set": async | trappable,
            "fermyon:spin/key-value.[method]store.delete": async | trappable,
            "wasi:keyvalue/store.[method]bucket.set": async | trappable,
            "wasi:keyvalue/store.[method]bucket.delete": async | trappable,
            "wasi:keyvalue/atomics.increment": async | trappable,
            "wasi:keyvalue/atomics.swap": async | trappable,
            "wasi:keyvalue/batch.set-many": async | trappable,
            "wasi:keyvalue/batch.delete-many": async | trappable,
            default: trappable,
        },
    });
}

/// Links the Spin interfaces.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<crate::host::Host>,
) -> wasmtime::Result<()> {
    bindings::spin::key_value::key_value::add_to_linker::<_, SpinHost>(
        linker,
        crate::host::Host::spin_view,
    )?;
    bindings::spin::variables::variables::add_to_linker::<_, SpinHost>(
        linker,
        crate::host::Host::spin_view,
    )?;
    bindings::fermyon::spin::key_value::add_to_linker::<_, SpinHost>(
        linker,
        crate::host::Host::spin_view,
    )?;
    bindings::fermyon::spin::variables::add_to_linker::<_, SpinHost>(
        linker,
        crate::host::Host::spin_view,
    )?;
    bindings::wasi::config::store::add_to_linker::<_, SpinHost>(
        linker,
        crate::host::Host::spin_view,
    )?;
    bindings::wasi::keyvalue::store::add_to_linker::<_, SpinHost>(
        linker,
        crate::host::Host::spin_view,
    )?;
    bindings::wasi::keyvalue::atomics::add_to_linker::<_, SpinHost>(
        linker,
        crate::host::Host::spin_view,
    )?;
    bindings::wasi::keyvalue::batch::add_to_linker::<_, SpinHost>(
        linker,
        crate::host::Host::spin_view,
    )?;
    Ok(())
}

impl bindings::wasi::config::store::Host for SpinView<'_> {
    fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, bindings::wasi::config::store::Error>> {
        Ok(Ok(self.state.config.get(&key).cloned()))
    }

    fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, bindings::wasi::config::store::Error>> {
        let all = &self.state.config;
        Ok(Ok(all
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}
