//! # agentmem-cold
//!
//! The cold tier of agentmem: compressed units on local disk, crash-safe,
//! recoverable and compacting. `agentmem-core` implements its
//! `tier::ColdTier` seam for [`DiskTier`] and persists the store's metadata
//! in it (see `docs/cold-tier.md`).
//!
//! ## Layout
//!
//! A directory holds append-only *segment* files `seg-XXXXXXXX.log` and an
//! index snapshot `index.snap` (see [`format`](mod@format) for the bytes). Every record
//! carries a CRC-32C and its length; a torn or damaged record is detected
//! and never returned as data. The index — key → (segment, offset, length,
//! tag), 16 bytes plus the 32-byte key — lives in RAM.
//!
//! ## Durability
//!
//! A write is *acknowledged* when [`DiskTier::put`] returns. By default
//! ([`Durability::GroupCommit`]) the record is then in the operating system:
//! it survives the process being killed at any instant, and a background
//! thread fsyncs every 10 ms ([`DiskTierBuilder::sync_interval`]), so after
//! a power cut at most the last 10 ms of acknowledged writes can be missing
//! — never half-written. [`Durability::Sync`] (per write, or as the
//! default) returns only after fsync; concurrent writers share one fsync.
//! If an fsync fails, the tier is *poisoned*: the kernel may have dropped
//! the dirty pages, so nothing written since the last good fsync is known
//! to be durable, and further writes fail with [`ColdError::Poisoned`]
//! until it is reopened (as fjall and PostgreSQL do). Reads go on.
//!
//! ## Recovery
//!
//! Open takes an `flock` on the directory (a second writer gets
//! [`ColdError::Locked`]), loads the index snapshot if its checksum holds,
//! and replays only the log written after it; without a snapshot every
//! segment is replayed. A torn tail of the newest segment is cut: a bad
//! record with no whole record after it (or with a zeroed sector before the
//! next, as a power cut leaves pages never written back; see
//! [`format::torn_write`]). A bad record followed by whole ones, or in a
//! segment that is not the newest (segments are fsynced when closed), is
//! damage: opening refuses with [`ColdError::Corrupt`] naming the segment
//! and byte rather than dropping the records after it. The report is in
//! [`ColdStats::recovery`].
//!
//! ## Compaction
//!
//! Overwritten and deleted records are dead bytes. A closed segment whose
//! dead fraction reaches [`DiskTierBuilder::compact_ratio`] is rewritten:
//! each live record is appended again (a compare-and-swap on the index, so
//! a concurrent overwrite wins), the copies are fsynced, a new snapshot is
//! written and the old file removed. Readers hold the file open, so a read
//! racing a removal still succeeds.
//!
//! ## Concurrency
//!
//! One mutex orders appends; the index is behind a read-write lock held
//! only for lookups and updates, never across I/O. A read is an index
//! lookup and one positioned read (`pread`) outside every lock.
//!
//! ## Why a log of our own
//!
//! The access pattern is a put of a compressed unit (1–16 KiB) once when it
//! is demoted, point reads when an agent resumes, and deletes when units are
//! released. Keys are content hashes (no ordering needed), values are
//! immutable. Two embedded engines were considered:
//!
//! - **redb** (B-tree, copy-on-write pages): every commit rewrites the path
//!   of pages to the root and fsyncs twice; it has no group commit across
//!   threads and stores values in pages, so 10 KiB values fragment.
//! - **fjall** (LSM tree): a fine fit for small values, but it brings its
//!   own block cache, memtables and background compaction threads whose RAM
//!   counts against the store's 1 GiB budget, and large values go through
//!   value-log separation anyway — which is what this crate is.
//!
//! A Bitcask-style log (in-memory hash index over append-only files) does
//! exactly one sequential write per put and one `pread` per get, keeps its
//! index at ~50 bytes per unit, and makes crash recovery a linear scan of
//! the tail. The measured comparison (`cargo bench -p agentmem-cold --bench
//! cold`, redb 2 with `Durability::Immediate` per batch vs this log with
//! group commit) is in `docs/cold-tier.md`: gets are as fast in both
//! (1.9 vs 1.6 µs from the page cache), an acknowledged put is 10 µs here
//! with group commit, and a durable put 0.67 ms here vs 1.36 ms for a redb
//! commit.

mod disk;
mod error;
pub mod format;
pub mod storage;

pub use disk::{
    hex, ColdStats, CompactReport, DiskTier, DiskTierBuilder, Durability, RecoveryReport,
    VerifyReport,
};
pub use error::{ColdError, Result};
