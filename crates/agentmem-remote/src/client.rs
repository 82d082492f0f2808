//! The async client: one object per unit, under `PREFIX/units/HEX_ID`.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Instant;

use object_store::aws::AmazonS3Builder;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use crate::config::RemoteConfig;
use crate::error::{Operation, RemoteError, Result};
use crate::object::{self, Invalid, HEADER_LEN};
use crate::probe::{ServerStatus, StatusConnector};
use crate::tier::{PutOutcome, RemoteRecord};

/// The remote tier's async client. Cheap to clone (an `Arc` inside).
///
/// Objects are immutable and named by content id, so every operation is
/// idempotent and safe to retry or to run twice from two hosts.
#[derive(Clone, Debug)]
pub struct RemoteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl RemoteStore {
    /// A client for the bucket `cfg` names. Makes no request: a wrong
    /// endpoint or refused credentials show on the first operation.
    pub fn connect(cfg: &RemoteConfig) -> Result<Self> {
        // reqwest is built without a crypto provider of its own; ring is
        // ours. Fails harmlessly when a provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_allow_http(cfg.allow_http)
            .with_http_connector(StatusConnector)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: cfg.retry.initial_backoff,
                    max_backoff: cfg.retry.max_backoff,
                    base: 2.0,
                },
                max_retries: cfg.retry.max_retries,
                retry_timeout: cfg.retry.retry_timeout,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(cfg.allow_http)
                    .with_timeout(cfg.request_timeout)
                    .with_connect_timeout(cfg.connect_timeout),
            );
        if let Some(e) = &cfg.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        match (&cfg.access_key_id, &cfg.secret_access_key) {
            (Some(k), Some(s)) => b = b.with_access_key_id(k).with_secret_access_key(s),
            _ => b = b.with_skip_signature(true),
        }
        let store = b
            .build()
            .map_err(|e| RemoteError::Config(format!("building the S3 client for {cfg:?}: {e}")))?;
        Ok(Self::with_object_store(Arc::new(store), &cfg.prefix))
    }

    /// A client over any [`ObjectStore`] (tests use
    /// [`object_store::memory::InMemory`]).
    pub fn with_object_store(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        RemoteStore {
            inner: Arc::new(Inner {
                store,
                prefix: prefix.trim_matches('/').to_string(),
            }),
        }
    }

    /// The object store underneath.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// The object key of content id `id`.
    pub fn unit_key(&self, id: &[u8; 32]) -> Path {
        let hex = object::hex(id);
        if self.inner.prefix.is_empty() {
            Path::from(format!("units/{hex}"))
        } else {
            Path::from(format!("{}/units/{hex}", self.inner.prefix))
        }
    }

    /// Upload a record unless the bucket already holds it. Content is
    /// immutable, so an existing object in agentmem's format with the same
    /// id is the same record: the upload is skipped. An existing object
    /// that is not agentmem's is an error ([`RemoteError::Foreign`]), never
    /// overwritten.
    ///
    /// The check and the upload are two requests (S3 stores such as Garage
    /// do not all honour `If-None-Match` on PUT); two hosts racing on one
    /// id both upload the same bytes, which is harmless.
    pub async fn put(&self, record: &RemoteRecord) -> Result<PutOutcome> {
        let key = self.unit_key(&record.id);
        self.put_object(&key, &record.id, record.encoding, &record.bytes)
            .await
    }

    async fn put_object(
        &self,
        key: &Path,
        id: &[u8; 32],
        encoding: u32,
        body: &[u8],
    ) -> Result<PutOutcome> {
        let started = Instant::now();
        if self.check_existing(key, id).await? {
            return Ok(PutOutcome::AlreadyPresent);
        }
        let object = object::encode(id, encoding, body);
        self.inner
            .store
            .put(key, PutPayload::from_bytes(object))
            .await
            .map_err(|e| classify(Operation::Put, key, started, e))?;
        Ok(PutOutcome::Uploaded)
    }

    /// The object key of the dictionary whose BLAKE3 is `hash`.
    pub fn dictionary_key(&self, hash: &[u8; 32]) -> Path {
        let hex = object::hex(hash);
        if self.inner.prefix.is_empty() {
            Path::from(format!("dicts/{hex}"))
        } else {
            Path::from(format!("{}/dicts/{hex}", self.inner.prefix))
        }
    }

    /// Upload a compression dictionary unless it is there; it is named by
    /// the BLAKE3 of its bytes (returned), so that a host that fetched a
    /// frame from T3 can fetch the dictionary it needs whatever version
    /// number its own store gives it.
    pub async fn put_dictionary(&self, raw: &[u8]) -> Result<([u8; 32], PutOutcome)> {
        let hash = *blake3::hash(raw).as_bytes();
        let outcome = self
            .put_object(&self.dictionary_key(&hash), &hash, 0, raw)
            .await?;
        Ok((hash, outcome))
    }

    /// Download a dictionary by the BLAKE3 of its bytes; checked whole
    /// (its name is its checksum).
    pub async fn get_dictionary(&self, hash: &[u8; 32]) -> Result<bytes::Bytes> {
        let key = self.dictionary_key(hash);
        let (_, body) = self.get_object(&key, hash).await?;
        Ok(body)
    }

    async fn get_object(
        &self,
        key: &Path,
        id: &[u8; 32],
    ) -> Result<(object::Header, bytes::Bytes)> {
        let started = Instant::now();
        let fetched = async { self.inner.store.get(key).await?.bytes().await };
        let object = fetched
            .await
            .map_err(|e| classify(Operation::Get, key, started, e))?;
        object::decode(object, id).map_err(|i| invalid(key, i))
    }

    /// Whether an object is there, checking its header when it is.
    async fn check_existing(&self, key: &Path, id: &[u8; 32]) -> Result<bool> {
        let started = Instant::now();
        match self.inner.store.get_range(key, 0..HEADER_LEN as u64).await {
            Ok(head) => {
                object::decode_header(&head, id).map_err(|i| invalid(key, i))?;
                Ok(true)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => match classify(Operation::Head, key, started, e) {
                // An empty object has no range to read.
                RemoteError::Other { .. } => match self.inner.store.head(key).await {
                    Ok(meta) => Err(RemoteError::Foreign {
                        key: key.to_string(),
                        detail: format!("only {} bytes long", meta.size),
                    }),
                    Err(e) => Err(classify(Operation::Head, key, started, e)),
                },
                other => Err(other),
            },
        }
    }

    /// Download and check a record: [`RemoteError::NotFound`] when absent,
    /// [`RemoteError::Corrupt`] or [`RemoteError::Foreign`] when the object
    /// is not whole or not agentmem's. Never returns unchecked bytes.
    pub async fn get(&self, id: &[u8; 32]) -> Result<RemoteRecord> {
        let (header, body) = self.get_object(&self.unit_key(id), id).await?;
        Ok(RemoteRecord {
            id: header.id,
            encoding: header.encoding,
            bytes: body,
        })
    }

    /// Whether the bucket holds an object under `id`'s key (not checked:
    /// a HEAD request).
    pub async fn contains(&self, id: &[u8; 32]) -> Result<bool> {
        let key = self.unit_key(id);
        let started = Instant::now();
        match self.inner.store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(classify(Operation::Head, &key, started, e)),
        }
    }

    /// Delete the object under `id`'s key; deleting an absent one is fine.
    pub async fn delete(&self, id: &[u8; 32]) -> Result<()> {
        let key = self.unit_key(id);
        let started = Instant::now();
        match self.inner.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(classify(Operation::Delete, &key, started, e)),
        }
    }
}

fn invalid(key: &Path, i: Invalid) -> RemoteError {
    match i {
        Invalid::Foreign(detail) => RemoteError::Foreign {
            key: key.to_string(),
            detail,
        },
        Invalid::Corrupt(detail) => RemoteError::Corrupt {
            key: key.to_string(),
            detail,
        },
    }
}

/// Our error for an object_store error, by its variant and by downcasting
/// along its source chain (never by its message).
pub(crate) fn classify(
    op: Operation,
    key: &Path,
    started: Instant,
    e: object_store::Error,
) -> RemoteError {
    let key = key.to_string();
    let elapsed = started.elapsed();
    match e {
        object_store::Error::NotFound { .. } => return RemoteError::NotFound { key },
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            return RemoteError::CredentialsRefused { op, key, source: e }
        }
        _ => {}
    }
    let mut transport = false;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(c) = cur {
        if let Some(s) = c.downcast_ref::<ServerStatus>() {
            return if s.throttled {
                RemoteError::Throttled { op, key, elapsed }
            } else {
                RemoteError::Unavailable {
                    op,
                    key,
                    status: s.status,
                    elapsed,
                }
            };
        }
        if let Some(h) = c.downcast_ref::<HttpError>() {
            transport |= matches!(
                h.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        cur = c.source();
    }
    if transport {
        RemoteError::Unreachable {
            op,
            key,
            elapsed,
            source: e,
        }
    } else {
        RemoteError::Other { op, key, source: e }
    }
}
