//! The seam for tiers below RAM.
//!
//! The store keeps hot and warm units itself. A [`ColdTier`], when one is
//! attached, receives warm victims (already compressed) and gives them back
//! on access or when their agent resumes. The store calls it without holding
//! its lock, so an implementation may block on I/O.

use std::fmt;
use std::io;

/// A compressed unit as handed to the cold tier: opaque bytes plus what the
/// store needs to decode them again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColdRecord {
    /// The unit's content id.
    pub id: [u8; 32],
    /// How the bytes are encoded (the store's own tag; store it as is).
    pub encoding: u32,
    /// The encoded bytes.
    pub bytes: Vec<u8>,
}

/// A tier on persistent storage.
pub trait ColdTier: Send + Sync + fmt::Debug {
    /// Store a record; returns once it is acknowledged (durability per the
    /// implementation's documented policy).
    fn put(&self, record: &ColdRecord) -> io::Result<()>;
    /// Read a record back; `Ok(None)` when it is not there. Must never
    /// return damaged bytes: a record failing its checksum is an error.
    fn get(&self, id: &[u8; 32]) -> io::Result<Option<ColdRecord>>;
    /// Forget a record.
    fn delete(&self, id: &[u8; 32]) -> io::Result<()>;
    /// Make every acknowledged put and delete durable (the store calls it
    /// before writing a checkpoint that refers to them). Default: nothing
    /// to do.
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

pub use agentmem_cold::{ColdError, DiskTier};

impl ColdTier for DiskTier {
    fn put(&self, record: &ColdRecord) -> io::Result<()> {
        DiskTier::put(self, &record.id, record.encoding, &record.bytes).map_err(Into::into)
    }

    fn get(&self, id: &[u8; 32]) -> io::Result<Option<ColdRecord>> {
        Ok(
            DiskTier::get(self, id)?.map(|(encoding, bytes)| ColdRecord {
                id: *id,
                encoding,
                bytes,
            }),
        )
    }

    fn delete(&self, id: &[u8; 32]) -> io::Result<()> {
        DiskTier::delete(self, id).map_err(Into::into)
    }

    fn sync(&self) -> io::Result<()> {
        DiskTier::sync(self).map_err(Into::into)
    }
}
