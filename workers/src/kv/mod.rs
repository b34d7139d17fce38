//! `wasi:keyvalue` (0.2.0-draft: store, atomics, batch) for workers, backed by a [`KvStore`]
//! per worker that is local to the edge and kept across restarts. Any bucket name opens a
//! bucket of that worker; workers never see each other's data.

mod store;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

pub use store::{KvError, KvQuota, KvStore};

/// Longest key a worker may use.
const MAX_KEY_BYTES: usize = 1024;
/// Largest value a worker may store.
const MAX_VALUE_BYTES: usize = 1 << 20;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "outpost:workers/keyvalue-host",
        imports: { default: trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::OpenBucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::GuestError,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store as wit};

/// A bucket a worker opened: its name in the worker's store.
pub struct OpenBucket {
    name: String,
}

/// What a key-value call can fail with, before it is turned into the guest's error variant.
pub enum GuestError {
    Refused(String),
    Host(wasmtime::Error),
}

impl From<wasmtime::component::ResourceTableError> for GuestError {
    fn from(error: wasmtime::component::ResourceTableError) -> Self {
        GuestError::Host(error.into())
    }
}

impl From<KvError> for GuestError {
    fn from(error: KvError) -> Self {
        GuestError::Refused(error.to_string())
    }
}

/// The key-value part of a worker's per-request state.
pub struct KvView<'a> {
    pub store: &'a Arc<KvStore>,
    pub table: &'a mut ResourceTable,
}

fn check_key(key: &str) -> Result<(), GuestError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(GuestError::Refused(format!(
            "keys are at most {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), GuestError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(GuestError::Refused(format!(
            "values are at most {MAX_VALUE_BYTES} bytes"
        )));
    }
    Ok(())
}

impl KvView<'_> {
    fn bucket(&self, bucket: &Resource<OpenBucket>) -> Result<String, GuestError> {
        Ok(self.table.get(bucket)?.name.clone())
    }
}

impl wit::Host for KvView<'_> {
    fn open(&mut self, identifier: String) -> Result<Resource<OpenBucket>, GuestError> {
        check_key(&identifier)?;
        Ok(self.table.push(OpenBucket { name: identifier })?)
    }

    fn convert_error(&mut self, error: GuestError) -> wasmtime::Result<wit::Error> {
        match error {
            GuestError::Refused(reason) => Ok(wit::Error::Other(reason)),
            GuestError::Host(error) => Err(error),
        }
    }
}

impl wit::HostBucket for KvView<'_> {
    fn get(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, GuestError> {
        let name = self.bucket(&bucket)?;
        Ok(self.store.get(&name, &key))
    }

    fn set(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), GuestError> {
        check_key(&key)?;
        check_value(&value)?;
        let name = self.bucket(&bucket)?;
        Ok(self.store.write(&name, vec![(key, Some(value))])?)
    }

    fn delete(&mut self, bucket: Resource<OpenBucket>, key: String) -> Result<(), GuestError> {
        let name = self.bucket(&bucket)?;
        Ok(self.store.write(&name, vec![(key, None)])?)
    }

    fn exists(&mut self, bucket: Resource<OpenBucket>, key: String) -> Result<bool, GuestError> {
        let name = self.bucket(&bucket)?;
        Ok(self.store.exists(&name, &key))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<OpenBucket>,
        cursor: Option<u64>,
    ) -> Result<wit::KeyResponse, GuestError> {
        let name = self.bucket(&bucket)?;
        let keys = self.store.keys(&name);
        // One page of up to 1000 keys; the cursor is where the next page starts.
        const PAGE: usize = 1000;
        let start = usize::try_from(cursor.unwrap_or(0))
            .unwrap_or(usize::MAX)
            .min(keys.len());
        let end = start.saturating_add(PAGE).min(keys.len());
        Ok(wit::KeyResponse {
            keys: keys[start..end].to_vec(),
            cursor: (end < keys.len()).then_some(end as u64),
        })
    }

    fn drop(&mut self, bucket: Resource<OpenBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    fn increment(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, GuestError> {
        check_key(&key)?;
        let name = self.bucket(&bucket)?;
        Ok(self.store.increment(&name, &key, delta)?)
    }
}

impl batch::Host for KvView<'_> {
    fn get_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, GuestError> {
        let name = self.bucket(&bucket)?;
        Ok(keys
            .into_iter()
            .map(|key| self.store.get(&name, &key).map(|value| (key, value)))
            .collect())
    }

    fn set_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), GuestError> {
        for (key, value) in &key_values {
            check_key(key)?;
            check_value(value)?;
        }
        let name = self.bucket(&bucket)?;
        let changes = key_values.into_iter().map(|(k, v)| (k, Some(v))).collect();
        Ok(self.store.write(&name, changes)?)
    }

    fn delete_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> Result<(), GuestError> {
        let name = self.bucket(&bucket)?;
        let changes = keys.into_iter().map(|k| (k, None)).collect();
        Ok(self.store.write(&name, changes)?)
    }
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Adds `wasi:keyvalue` to `linker`, with `view` giving each call its worker's store.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<_, HasKv>(linker, view)?;
    atomics::add_to_linker::<_, HasKv>(linker, view)?;
    batch::add_to_linker::<_, HasKv>(linker, view)?;
    Ok(())
}
