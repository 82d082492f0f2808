//! The seam the store will call: [`RemoteTier`], mirroring
//! `agentmem_core::tier::ColdTier`.

use std::fmt;

use bytes::Bytes;

use crate::error::Result;

/// A unit's frame as handed to the remote tier: opaque bytes plus the
/// store's encoding tag (the same fields as `agentmem_core::tier::ColdRecord`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRecord {
    /// The unit's content id.
    pub id: [u8; 32],
    /// How the bytes are encoded (the store's own tag; stored as is).
    pub encoding: u32,
    /// The encoded bytes.
    pub bytes: Bytes,
}

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was uploaded.
    Uploaded,
    /// The bucket already held it (content is immutable: nothing sent).
    AlreadyPresent,
}

/// A tier in an object store shared by a fleet of hosts.
///
/// Same contract as `ColdTier`, with two differences that come from the
/// store being remote and shared: `put` may find the record already there
/// (another host uploaded the same content: ids are content hashes), and
/// errors are typed ([`crate::RemoteError`]) so that the store can tell
/// "unreachable, try later" ([`crate::RemoteError::is_transient`]) from
/// "this object is damaged or not ours".
///
/// The store calls it without holding its lock; every method may block for
/// up to the configured retry budget.
pub trait RemoteTier: Send + Sync + fmt::Debug {
    /// Store a record unless it is there already. Returns once the object
    /// store acknowledged the upload (S3 semantics: then readable by every
    /// host).
    fn put(&self, record: &RemoteRecord) -> Result<PutOutcome>;
    /// Read a record back; `Ok(None)` when it is not there. Never returns
    /// damaged bytes: an object failing its checksum is an error.
    fn get(&self, id: &[u8; 32]) -> Result<Option<RemoteRecord>>;
    /// Whether the record is there (without reading it).
    fn contains(&self, id: &[u8; 32]) -> Result<bool>;
    /// Forget a record. Only for content no host of the fleet references
    /// (see the crate docs: deletion needs a fleet-wide view).
    fn delete(&self, id: &[u8; 32]) -> Result<()>;
}
