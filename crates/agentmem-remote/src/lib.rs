//! # agentmem-remote
//!
//! The remote tier (T3) of agentmem on an S3-compatible object store
//! (Garage, MinIO, AWS S3...), and the agent archive format
//! ([`archive`]) used to checkpoint, restore and migrate an agent.
//!
//! ## Objects
//!
//! Each unit is one immutable object under `PREFIX/units/HEX_CONTENT_ID`
//! (see [`RemoteStore::unit_key`]): a small header (magic, format version,
//! content id, body length and BLAKE3, header CRC-32C; layout in the
//! `object` module's docs) then the unit's frame exactly as the store
//! holds it. Because keys are content ids, public content (prompts, tool
//! definitions: one dedup domain for everybody) is stored once for a whole
//! fleet; private content keeps its tenant-salted ids, which only hosts
//! sharing the store secret derive alike.
//!
//! ## Failures
//!
//! Requests go through object_store's S3 client (its SigV4 signing, its
//! retry loop): connection errors, timeouts, 5xx and throttling answers are
//! retried with exponential backoff and jitter, bounded by
//! [`RetryPolicy`] (default: 4 retries, 50 ms doubling to 1 s, none started
//! after 10 s) and each attempt by a request timeout. What is left is a
//! typed [`RemoteError`]: [`RemoteError::Unreachable`],
//! [`RemoteError::Unavailable`] (5xx, e.g. Garage without a quorum),
//! [`RemoteError::Throttled`], [`RemoteError::CredentialsRefused`],
//! [`RemoteError::NotFound`], [`RemoteError::Corrupt`] (our object,
//! damaged) and [`RemoteError::Foreign`] (an object under our key that we
//! did not write).
//!
//! ## APIs
//!
//! [`RemoteStore`] is async. [`BlockingRemote`] wraps it for the store,
//! which is synchronous, over a two-thread tokio runtime of its own, and
//! implements [`RemoteTier`], the seam the store will call (it mirrors
//! `agentmem_core::tier::ColdTier`).
//!
//! ## How local disk becomes a cache of T3 (the plan for the store)
//!
//! Not wired yet: the store's internals are being restructured. The plan:
//!
//! 1. `StoreBuilder::remote_tier(Arc<dyn RemoteTier>)` next to
//!    `cold_tier`, and a disk budget for the cold tier.
//! 2. A sealed unit's frame is uploaded to T3 (`put`, skipped when the
//!    bucket holds it) before its cold record may be dropped; the unit then
//!    remembers "also in T3". Uploads run outside the store lock, like
//!    cold writes, from a queue, with a generation check on install.
//! 3. When the cold tier is over its disk budget, the same eviction policy
//!    that picks warm victims picks cold ones; a victim already in T3 just
//!    loses its local record (the disk is a cache), one not yet in T3 is
//!    uploaded first. Open conversation chunks (mutable) and units of
//!    agents that are working stay local.
//! 4. A read of a unit that is only in T3 fetches it (`get`, checksummed),
//!    installs it warm and, if the disk budget allows, cold again.
//!    Resuming an agent prefetches its T3 units in parallel.
//! 5. Failures: while T3 is unreachable, hot, warm and cold keep serving;
//!    eviction to T3 pauses (the disk may pass its budget, reported in
//!    stats) and a read of a unit that is nowhere else returns the typed
//!    error to the client.
//! 6. Deletion in a shared bucket needs a fleet-wide view (another host may
//!    reference the same public content), so units are never deleted from
//!    T3 by one host's release; a separate sweep with a grace period, over
//!    the manifests every host publishes, removes what nobody references.
//! 7. Dictionaries a frame needs go to T3 too, named by their BLAKE3
//!    ([`RemoteStore::put_dictionary`], under `PREFIX/dicts/`), so that
//!    another host can decode a frame it fetched; the store will map its
//!    own (kind, version) numbers to these hashes.
//!
//! ## Concurrency
//!
//! [`RemoteStore`] and [`BlockingRemote`] are cheap handles (an `Arc`
//! inside) usable from many threads at once; requests share one HTTP
//! connection pool. No lock is held across a request.

pub mod archive;
mod blocking;
mod client;
mod config;
mod error;
mod object;
mod probe;
mod tier;

pub use blocking::BlockingRemote;
pub use client::RemoteStore;
pub use config::{RemoteConfig, RetryPolicy};
pub use error::{Operation, RemoteError, Result};
pub use object::{FORMAT_VERSION as OBJECT_FORMAT_VERSION, HEADER_LEN as OBJECT_HEADER_LEN};
pub use tier::{PutOutcome, RemoteRecord, RemoteTier};

/// The object_store crate this one is built on, for callers that plant or
/// inspect objects directly (tests, tools).
pub use object_store;
