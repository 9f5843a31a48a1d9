//! `spin:key-value/key-value@3.0.0` (component-model async) on the node's store.

use std::future::ready;

use spark_store::KvWriteError;
use wasmtime::component::{Accessor, FutureReader, Resource, StreamReader};

use super::bindings::spin::key_value::key_value::{self, Error};
use super::{KvBinding, MAX_LISTED_KEYS, MAX_OPEN_STORES, SpinHost, SpinView};

/// An open store, as the guest holds it.
#[derive(Clone)]
pub struct KvHandle {
    label: String,
    binding: KvBinding,
    store: std::sync::Arc<spark_store::Store>,
}

/// What a guest opening `label` gets.
pub(crate) fn open(view: &mut SpinView<'_>, label: &str) -> Result<KvHandle, OpenError> {
    if view.state.open_stores >= MAX_OPEN_STORES {
        return Err(OpenError::TableFull);
    }
    // As Spin does: a label the module does not list is `access-denied`, whether or not
    // another module of the application has it.
    let Some(binding) = view.state.app.stores.get(label) else {
        return Err(OpenError::AccessDenied);
    };
    let Some(store) = view.state.app.store.clone() else {
        return Err(OpenError::Other(
            "the node has no store for key-value data".into(),
        ));
    };
    view.state.open_stores += 1;
    Ok(KvHandle {
        label: label.to_owned(),
        binding: binding.clone(),
        store,
    })
}

/// Why an open failed (mapped onto each interface's error variant).
pub(crate) enum OpenError {
    TableFull,
    AccessDenied,
    Other(String),
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Error {
        match e {
            OpenError::TableFull => Error::StoreTableFull,
            OpenError::AccessDenied => Error::AccessDenied,
            OpenError::Other(m) => Error::Other(m),
        }
    }
}

impl KvHandle {
    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.store
            .kv_get(&self.binding.scope, key)
            .map_err(|e| self.fail(&e))
    }

    pub(crate) fn exists(&self, key: &str) -> Result<bool, String> {
        self.store
            .kv_len(&self.binding.scope, key)
            .map(|l| l.is_some())
            .map_err(|e| self.fail(&e))
    }

    /// Checks the value's size before it is moved to the writer thread.
    pub(crate) async fn set(&self, key: String, value: Vec<u8>) -> Result<(), String> {
        if value.len() as u64 > self.binding.limits.max_value_size {
            return Err(self.limit(&spark_store::KvLimit::ValueTooLarge {
                size: value.len() as u64,
                max: self.binding.limits.max_value_size,
            }));
        }
        let (store, scope, limits) = (
            self.store.clone(),
            self.binding.scope.clone(),
            self.binding.limits,
        );
        let written = tokio::task::spawn_blocking(move || {
            store.kv_set(&scope, &key, &value, &limits).map(|()| key)
        })
        .await
        .map_err(|_| format!("store '{}': the write was interrupted", self.label))?;
        match written {
            Ok(key) => {
                self.replicate(&key);
                Ok(())
            }
            Err(KvWriteError::Limit(limit)) => Err(self.limit(&limit)),
            Err(KvWriteError::Store(e)) => Err(self.fail(&e)),
        }
    }

    pub(crate) async fn delete(&self, key: String) -> Result<(), String> {
        let (store, scope) = (self.store.clone(), self.binding.scope.clone());
        let k = key.clone();
        let existed = tokio::task::spawn_blocking(move || store.kv_delete(&scope, &k))
            .await
            .map_err(|_| format!("store '{}': the delete was interrupted", self.label))?
            .map_err(|e| self.fail(&e))?;
        if existed {
            self.replicate(&key);
        }
        Ok(())
    }

    /// Queues a committed write of `key` for the fleet, when the store is fleet-wide.
    fn replicate(&self, key: &str) {
        if let Some(fleet) = &self.binding.fleet {
            fleet.wrote(&self.binding.scope, key);
        }
    }

    /// Every key, up to [`MAX_LISTED_KEYS`].
    pub(crate) fn keys(&self) -> Result<Vec<String>, String> {
        let bound = MAX_LISTED_KEYS.min(self.binding.limits.max_keys as usize);
        let mut keys = self
            .store
            .kv_keys(&self.binding.scope, None, bound + 1)
            .map_err(|e| self.fail(&e))?;
        if keys.len() > bound {
            keys.truncate(bound);
            return Err(format!(
                "store '{}' has more than {bound} keys: list them in pages (wasi:keyvalue/store list-keys)",
                self.label
            ));
        }
        Ok(keys)
    }

    /// Runs a write of `key` on a blocking thread (it waits for an fsync).
    pub(crate) async fn write<R: Send + 'static>(
        &self,
        key: &str,
        f: impl FnOnce(&spark_store::Store, &str, &spark_store::KvLimits) -> Result<R, KvWriteError>
        + Send
        + 'static,
    ) -> Result<R, String> {
        let (store, scope, limits) = (
            self.store.clone(),
            self.binding.scope.clone(),
            self.binding.limits,
        );
        let written = tokio::task::spawn_blocking(move || f(&store, &scope, &limits))
            .await
            .map_err(|_| format!("store '{}': the write was interrupted", self.label))?;
        match written {
            Ok(r) => {
                self.replicate(key);
                Ok(r)
            }
            Err(KvWriteError::Limit(limit)) => Err(self.limit(&limit)),
            Err(KvWriteError::Store(e)) => Err(self.fail(&e)),
        }
    }

    /// Up to `max` keys after `cursor`.
    pub(crate) fn page(&self, cursor: Option<&str>, max: usize) -> Result<Vec<String>, String> {
        self.store
            .kv_keys(&self.binding.scope, cursor, max)
            .map_err(|e| self.fail(&e))
    }

    /// The largest value this store takes.
    pub(crate) fn max_value_size(&self) -> u64 {
        self.binding.limits.max_value_size
    }

    fn limit(&self, limit: &spark_store::KvLimit) -> String {
        format!("store '{}': {limit}", self.label)
    }

    fn fail(&self, e: &spark_store::StoreError) -> String {
        tracing::warn!(store = %self.label, error = %spark_error::chain(e), "key-value store failed");
        format!("store '{}' is unavailable", self.label)
    }
}

fn handle<'a>(
    view: &'a SpinView<'_>,
    store: &Resource<KvHandle>,
) -> wasmtime::Result<&'a KvHandle> {
    Ok(view.table.get(store)?)
}

/// Runs `f` on the handle (cloned out of the table: the call may await).
fn with_handle<T>(
    accessor: &Accessor<T, SpinHost>,
    store: &Resource<KvHandle>,
) -> wasmtime::Result<KvHandle> {
    accessor.with(|mut access| Ok(handle(&access.get(), store)?.clone()))
}

impl<U> key_value::HostStoreWithStore<U> for SpinHost {
    async fn open(
        accessor: &Accessor<U, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KvHandle>, Error>> {
        accessor.with(|mut access| {
            let mut view = access.get();
            match open(&mut view, &label) {
                Ok(h) => Ok(Ok(view.table.push(h)?)),
                Err(e) => Ok(Err(e.into())),
            }
        })
    }

    async fn get(
        accessor: &Accessor<U, Self>,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let h = with_handle(accessor, &store)?;
        Ok(h.get(&key).map_err(Error::Other))
    }

    async fn set(
        accessor: &Accessor<U, Self>,
        store: Resource<KvHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let h = with_handle(accessor, &store)?;
        Ok(h.set(key, value).await.map_err(Error::Other))
    }

    async fn delete(
        accessor: &Accessor<U, Self>,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let h = with_handle(accessor, &store)?;
        Ok(h.delete(key).await.map_err(Error::Other))
    }

    async fn exists(
        accessor: &Accessor<U, Self>,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let h = with_handle(accessor, &store)?;
        Ok(h.exists(&key).map_err(Error::Other))
    }

    async fn get_keys(
        accessor: &Accessor<U, Self>,
        store: Resource<KvHandle>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), Error>>)> {
        let h = with_handle(accessor, &store)?;
        let (keys, result) = match h.keys() {
            Ok(keys) => (keys, Ok(())),
            Err(e) => (Vec::new(), Err(Error::Other(e))),
        };
        accessor.with(|mut access| {
            let stream = StreamReader::new(&mut access, keys)?;
            let future = FutureReader::new(&mut access, ready(Ok::<_, wasmtime::Error>(result)))?;
            Ok((stream, future))
        })
    }
}

impl key_value::HostStore for SpinView<'_> {
    fn drop(&mut self, store: Resource<KvHandle>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        self.state.open_stores = self.state.open_stores.saturating_sub(1);
        Ok(())
    }
}

impl key_value::Host for SpinView<'_> {}
