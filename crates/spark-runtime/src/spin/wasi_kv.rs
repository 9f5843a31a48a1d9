//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` (what the PyPI `spin-sdk` imports) on the
//! same stores as the Spin interfaces: a bucket is a store label. Listings are pages of
//! [`KEYS_PER_PAGE`] keys (the cursor is the last key of the page); a batch takes at most
//! [`MAX_BATCH_KEYS`] keys and `get-many` answers at most [`MAX_BATCH_BYTES`]. A batch write
//! is one transaction per key (the draft does not promise atomicity).

use wasmtime::component::Resource;

use super::bindings::wasi::keyvalue::atomics::{self, CasError};
use super::bindings::wasi::keyvalue::batch;
use super::bindings::wasi::keyvalue::store::{self, Error, KeyResponse};
use super::kv3::{OpenError, open};
use super::{KEYS_PER_PAGE, KvHandle, MAX_BATCH_BYTES, MAX_BATCH_KEYS, SpinView};

/// A compare-and-swap handle: the bucket, the key and the value it was read with.
#[allow(
    unreachable_pub,
    reason = "the generated bindings re-export it (`with`)"
)]
pub struct Cas {
    bucket: KvHandle,
    key: String,
    seen: Option<Vec<u8>>,
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Error {
        match e {
            OpenError::TableFull => Error::Other("too many stores open".into()),
            OpenError::AccessDenied => Error::AccessDenied,
            OpenError::Other(m) => Error::Other(m),
        }
    }
}

fn too_many(keys: usize) -> Result<(), Error> {
    if keys > MAX_BATCH_KEYS {
        return Err(Error::Other(format!(
            "a batch of {keys} keys is over the limit of {MAX_BATCH_KEYS}"
        )));
    }
    Ok(())
}

impl store::Host for SpinView<'_> {
    fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<KvHandle>, Error>> {
        match open(self, &identifier) {
            Ok(h) => Ok(Ok(self.table.push(h)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }
}

impl store::HostBucket for SpinView<'_> {
    fn get(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self.table.get(&bucket)?.get(&key).map_err(Error::Other))
    }

    async fn set(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let h = self.table.get(&bucket)?.clone();
        Ok(h.set(key, value).await.map_err(Error::Other))
    }

    async fn delete(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let h = self.table.get(&bucket)?.clone();
        Ok(h.delete(key).await.map_err(Error::Other))
    }

    fn exists(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        Ok(self.table.get(&bucket)?.exists(&key).map_err(Error::Other))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<KvHandle>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        let h = self.table.get(&bucket)?;
        Ok(h.page(cursor.as_deref(), KEYS_PER_PAGE)
            .map(|keys| KeyResponse {
                cursor: (keys.len() == KEYS_PER_PAGE)
                    .then(|| keys.last().cloned())
                    .flatten(),
                keys,
            })
            .map_err(Error::Other))
    }

    fn drop(&mut self, bucket: Resource<KvHandle>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        self.state.open_stores = self.state.open_stores.saturating_sub(1);
        Ok(())
    }
}

impl atomics::HostCas for SpinView<'_> {
    fn new(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, Error>> {
        let h = self.table.get(&bucket)?.clone();
        let seen = match h.get(&key) {
            Ok(seen) => seen,
            Err(e) => return Ok(Err(Error::Other(e))),
        };
        Ok(Ok(self.table.push(Cas {
            bucket: h,
            key,
            seen,
        })?))
    }

    fn current(&mut self, cas: Resource<Cas>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(Ok(self.table.get(&cas)?.seen.clone()))
    }

    fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl atomics::Host for SpinView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, Error>> {
        let h = self.table.get(&bucket)?.clone();
        let k = key.clone();
        Ok(h.write(&key, move |store, scope, limits| {
            store.kv_increment(scope, &k, delta, limits)
        })
        .await
        .map_err(Error::Other))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), CasError>> {
        let Cas { bucket, key, seen } = self.table.delete(cas)?;
        if value.len() as u64 > bucket.max_value_size() {
            return Ok(Err(CasError::StoreError(Error::Other(format!(
                "a value of {} bytes is over the store's limit of {} bytes per value",
                value.len(),
                bucket.max_value_size()
            )))));
        }
        let (k, expected) = (key.clone(), seen.clone());
        let swapped = bucket
            .write(&key, move |store, scope, limits| {
                store.kv_compare_and_swap(scope, &k, expected.as_deref(), &value, limits)
            })
            .await;
        match swapped {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                let seen = match bucket.get(&key) {
                    Ok(seen) => seen,
                    Err(e) => return Ok(Err(CasError::StoreError(Error::Other(e)))),
                };
                let retry = self.table.push(Cas { bucket, key, seen })?;
                Ok(Err(CasError::CasFailed(retry)))
            }
            Err(e) => Ok(Err(CasError::StoreError(Error::Other(e)))),
        }
    }
}

impl batch::Host for SpinView<'_> {
    fn get_many(
        &mut self,
        bucket: Resource<KvHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, Error>> {
        if let Err(e) = too_many(keys.len()) {
            return Ok(Err(e));
        }
        let h = self.table.get(&bucket)?;
        let mut out = Vec::with_capacity(keys.len());
        let mut bytes = 0u64;
        for key in keys {
            let value = match h.get(&key) {
                Ok(v) => v,
                Err(e) => return Ok(Err(Error::Other(e))),
            };
            bytes += value.as_ref().map_or(0, |v| v.len() as u64);
            if bytes > MAX_BATCH_BYTES {
                return Ok(Err(Error::Other(format!(
                    "get-many would answer more than {MAX_BATCH_BYTES} bytes: ask for fewer keys"
                ))));
            }
            out.push((key, value));
        }
        Ok(Ok(out))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<KvHandle>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), Error>> {
        if let Err(e) = too_many(key_values.len()) {
            return Ok(Err(e));
        }
        let h = self.table.get(&bucket)?.clone();
        for (key, value) in key_values {
            if let Err(e) = h.set(key, value).await {
                return Ok(Err(Error::Other(e)));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<KvHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), Error>> {
        if let Err(e) = too_many(keys.len()) {
            return Ok(Err(e));
        }
        let h = self.table.get(&bucket)?.clone();
        for key in keys {
            if let Err(e) = h.delete(key).await {
                return Ok(Err(Error::Other(e)));
            }
        }
        Ok(Ok(()))
    }
}
