//! `fermyon:spin/key-value@2.0.0` and `fermyon:spin/variables@2.0.0` (synchronous; what the
//! PyPI `spin-sdk` and older SDKs import): the same stores and variables as the 3.0.0
//! interfaces, through the same [`KvHandle`].

use wasmtime::component::Resource;

use super::bindings::fermyon::spin::key_value::{self, Error};
use super::bindings::fermyon::spin::variables;
use super::kv3::{OpenError, open};
use super::variables3::lookup;
use super::{KvHandle, SpinView};

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Error {
        match e {
            OpenError::TableFull => Error::StoreTableFull,
            OpenError::AccessDenied => Error::AccessDenied,
            OpenError::Other(m) => Error::Other(m),
        }
    }
}

impl key_value::HostStore for SpinView<'_> {
    fn open(&mut self, label: String) -> wasmtime::Result<Result<Resource<KvHandle>, Error>> {
        match open(self, &label) {
            Ok(h) => Ok(Ok(self.table.push(h)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    fn get(
        &mut self,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self.table.get(&store)?.get(&key).map_err(Error::Other))
    }

    async fn set(
        &mut self,
        store: Resource<KvHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let h = self.table.get(&store)?.clone();
        Ok(h.set(key, value).await.map_err(Error::Other))
    }

    async fn delete(
        &mut self,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let h = self.table.get(&store)?.clone();
        Ok(h.delete(key).await.map_err(Error::Other))
    }

    fn exists(
        &mut self,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        Ok(self.table.get(&store)?.exists(&key).map_err(Error::Other))
    }

    fn get_keys(
        &mut self,
        store: Resource<KvHandle>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        Ok(self.table.get(&store)?.keys().map_err(Error::Other))
    }

    fn drop(&mut self, store: Resource<KvHandle>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        self.state.open_stores = self.state.open_stores.saturating_sub(1);
        Ok(())
    }
}

impl key_value::Host for SpinView<'_> {}

impl variables::Host for SpinView<'_> {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        Ok(
            lookup(self, &name).map_err(|(undefined, m)| match undefined {
                true => variables::Error::Undefined(m),
                false => variables::Error::InvalidName(m),
            }),
        )
    }
}
