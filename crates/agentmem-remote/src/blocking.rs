//! The blocking facade the (synchronous) store uses.

use std::sync::{mpsc, Arc};

use crate::client::RemoteStore;
use crate::config::RemoteConfig;
use crate::error::{RemoteError, Result};
use crate::tier::{PutOutcome, RemoteRecord, RemoteTier};

/// [`RemoteStore`] behind blocking calls, on a small tokio runtime of its
/// own (two worker threads). Cheap to clone.
///
/// Each call runs on that runtime and the calling thread waits on a
/// channel, so it works from any thread, including one that belongs to
/// another tokio runtime (agentmemd's); it then blocks that thread for the
/// duration of the request, like any other blocking I/O.
#[derive(Clone, Debug)]
pub struct BlockingRemote {
    client: RemoteStore,
    handle: tokio::runtime::Handle,
    _runtime: Option<Arc<OwnedRuntime>>,
}

/// A runtime shut down without waiting, so that the last handle may be
/// dropped anywhere (dropping a runtime inside another one panics).
#[derive(Debug)]
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl BlockingRemote {
    /// A blocking client for the bucket `cfg` names.
    pub fn connect(cfg: &RemoteConfig) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("agentmem-remote")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Config(format!("starting the remote tier's runtime: {e}")))?;
        // object_store's client must be built inside a runtime.
        let client = {
            let _guard = runtime.enter();
            RemoteStore::connect(cfg)?
        };
        Ok(BlockingRemote {
            client,
            handle: runtime.handle().clone(),
            _runtime: Some(Arc::new(OwnedRuntime(Some(runtime)))),
        })
    }

    /// A blocking facade over an existing client, running its requests on
    /// the runtime of `handle` (which the caller keeps alive).
    pub fn from_client(client: RemoteStore, handle: tokio::runtime::Handle) -> Self {
        BlockingRemote {
            client,
            handle,
            _runtime: None,
        }
    }

    /// The async client.
    pub fn client(&self) -> &RemoteStore {
        &self.client
    }

    fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().map_err(|_| {
            RemoteError::Config("the remote tier's runtime shut down during a request".into())
        })?
    }

    /// See [`RemoteStore::put`].
    pub fn put(&self, record: &RemoteRecord) -> Result<PutOutcome> {
        let (c, r) = (self.client.clone(), record.clone());
        self.run(async move { c.put(&r).await })
    }

    /// See [`RemoteStore::get`].
    pub fn get(&self, id: &[u8; 32]) -> Result<RemoteRecord> {
        let (c, id) = (self.client.clone(), *id);
        self.run(async move { c.get(&id).await })
    }

    /// See [`RemoteStore::put_dictionary`].
    pub fn put_dictionary(&self, raw: &[u8]) -> Result<([u8; 32], PutOutcome)> {
        let (c, raw) = (self.client.clone(), raw.to_vec());
        self.run(async move { c.put_dictionary(&raw).await })
    }

    /// See [`RemoteStore::get_dictionary`].
    pub fn get_dictionary(&self, hash: &[u8; 32]) -> Result<bytes::Bytes> {
        let (c, hash) = (self.client.clone(), *hash);
        self.run(async move { c.get_dictionary(&hash).await })
    }

    /// See [`RemoteStore::contains`].
    pub fn contains(&self, id: &[u8; 32]) -> Result<bool> {
        let (c, id) = (self.client.clone(), *id);
        self.run(async move { c.contains(&id).await })
    }

    /// See [`RemoteStore::delete`].
    pub fn delete(&self, id: &[u8; 32]) -> Result<()> {
        let (c, id) = (self.client.clone(), *id);
        self.run(async move { c.delete(&id).await })
    }
}

impl RemoteTier for BlockingRemote {
    fn put(&self, record: &RemoteRecord) -> Result<PutOutcome> {
        BlockingRemote::put(self, record)
    }

    fn get(&self, id: &[u8; 32]) -> Result<Option<RemoteRecord>> {
        match BlockingRemote::get(self, id) {
            Ok(r) => Ok(Some(r)),
            Err(RemoteError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn contains(&self, id: &[u8; 32]) -> Result<bool> {
        BlockingRemote::contains(self, id)
    }

    fn delete(&self, id: &[u8; 32]) -> Result<()> {
        BlockingRemote::delete(self, id)
    }
}
