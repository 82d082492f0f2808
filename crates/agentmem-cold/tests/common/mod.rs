//! Helpers shared by the cold tier's tests.

#![allow(dead_code)] // each test file uses its own subset

use std::sync::Arc;

use agentmem_cold::storage::MemStorage;
use agentmem_cold::DiskTier;

/// The key of record `i`.
pub fn key(i: u64) -> [u8; 32] {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

/// A tier on in-memory storage `s` (1 MiB segments, no background fsync),
/// so a test can reopen the same "disk" or inject faults into it.
pub fn mem_tier(s: &MemStorage) -> DiskTier {
    DiskTier::builder()
        .segment_size(1 << 20)
        .sync_interval(None)
        .open_storage(Arc::new(s.clone()))
        .expect("open")
}
