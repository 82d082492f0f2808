//! # agentmem-core
//!
//! The agentmem semantic store as a library.
//!
//! Agent memory is held as *semantic memory units* (SMUs): system prompts,
//! tool definitions, conversation chunks, tool results and blobs. Each unit
//! is named by a [`ContentId`] — the BLAKE3 hash of its bytes within a dedup
//! domain — so identical content is stored once and reference counted.
//! Public content shares one domain; private content is salted per tenant so
//! that one tenant can never learn by a dedup hit what another stores.
//!
//! ```
//! use agentmem_core::prelude::*;
//!
//! let store = Store::builder().ram_budget(64 << 20).build()?;
//! let agent = store.register_agent("coder-1", &TenantId::new("alice"), Importance::default())?;
//! let prompt = store.put(agent, Kind::SystemPrompt, b"You are a careful agent.", Visibility::Public)?;
//! let conv = store.create_conversation(agent)?;
//! store.append(conv, br#"{"role":"user","content":"hi"}"#)?;
//! store.pause(agent)?; // its units are compressed now
//! store.resume(agent)?; // and back in RAM
//! assert_eq!(&store.read_last(conv, 1)?[0][..], br#"{"role":"user","content":"hi"}"#);
//! assert_eq!(&store.get(&prompt)?[..], b"You are a careful agent.");
//! # Ok::<(), agentmem_core::Error>(())
//! ```
//!
//! ## Tiers
//!
//! Units live in [`Tier::Hot`] (plain bytes, served without decoding) or
//! [`Tier::Warm`] (zstd-compressed with a per-kind dictionary trained from the
//! store's own data). The store holds hot bytes under a hot budget and
//! hot + warm bytes under a RAM budget; when over, it asks an
//! [`EvictionPolicy`] for victims and demotes them. Agents that pause or go
//! idle have their units demoted at once; resuming an agent prefetches its
//! units back to hot. The [`tier::ColdTier`] trait is the seam for the disk
//! tier.
//!
//! ## Durability
//!
//! A store opened from a directory ([`Store::open`], or
//! [`StoreBuilder::open_storage`] on any cold-tier `Storage`) logs every
//! mutating call to a redo log before acknowledging it ([`Durability`]:
//! group commit by default, per-call fsync, or checkpoints only) and
//! checkpoints a metadata image into the cold tier periodically. Opening
//! restores the image, replays the log and — if it replayed anything —
//! checkpoints at once, so a crash loop never grows the log. Only what a
//! crash leaves is cut on open (a bad last record with nothing whole after
//! it); a damaged record with whole ones after it is refused with
//! [`RedoError::Damaged`] (or the cold tier's `ColdError::Corrupt`) naming
//! the file and byte. Dictionaries the store trains are logged, so replay
//! numbers versions as the logged run did. Errors keep their type:
//! [`Error::Cold`] holds the cold tier's `ColdError`, [`Error::Redo`] the
//! log's [`RedoError`]. `docs/cold-tier.md` has the details, the tests
//! (among them a model-based crash test with faults injected through the
//! `Storage` seam) and the figures.
//!
//! ## Concurrency
//!
//! A [`Store`] is a cheap handle (an `Arc` inside) that may be cloned and
//! used from many threads. All metadata sits behind one mutex, the *state
//! lock*. It is held for lookups and bookkeeping — hash-table and policy
//! updates, reference counts, cloning `Bytes` handles, copying a written
//! unit's bytes into RAM and its redo record into the log's buffer,
//! hashing a conversation's open chunk (at most 16 KiB) — and never while
//! compressing, decompressing, training or loading a dictionary, reading or
//! writing the disk, or fsyncing. Those follow one pattern: *plan* under
//! the lock (take the plain bytes or frame, the dictionary and the unit's
//! generation), *do the work* outside it, *install* under the lock only if
//! the unit's generation is unchanged (generations are store-wide, so a
//! slot freed and reused meanwhile never matches). A hot unit being
//! compressed is marked in flight so no second thread demotes it. Work on
//! many units (pausing an agent, resuming it, `maintain`, spilling to the
//! cold tier) goes in batches of a few units per lock hold, so other
//! agents' operations get the lock in between; a hot `get` is a hash
//! lookup and a reference count increment.
//!
//! Every mutating operation is checked, logged to the redo log and applied
//! in one hold of the state lock, in that order: an operation the log
//! refuses changes nothing, and log order is apply order. The log's file
//! write happens after the lock is released; a checkpoint takes its image
//! under the lock and switches log files (fsyncs included) after it.
//!
//! Lock order (a thread holding one may only take those after it):
//! the checkpoint gate → `cold_io` (one spiller or checkpoint at a time) →
//! the state lock → the redo log's `sync` → `io` → `buf`. The cold tier's
//! own locks are taken only with the state lock released (except while
//! [`Store::open`] restores an image, before anyone else holds the store). The remaining
//! small locks (last cold error, open report, prefetch queue, thread
//! handles) are leaves, never held while taking another.

pub mod clock;
mod codec;
mod conversation;
mod error;
pub mod policy;
mod redo;
mod similar;
mod stats;
mod store;
pub mod tier;
pub mod trace;
mod types;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use codec::DictionaryInfo;
pub use error::{is_no_space, report as error_report, Error, Result};
pub use policy::{EvictionPolicy, PolicyKind, UnitKey};
pub use redo::{Durability, RedoError};
pub use stats::{AgentStats, KindStats, MemStats, Stats, TierStats};
pub use store::{
    check_references, AgentInfo, CheckpointReport, ContentId, OpenReport, ResumeReport, Store,
    StoreBuilder, UnitInfo, DEFAULT_MAX_UNIT_SIZE,
};
pub use types::{
    AgentId, AgentState, ConversationId, Importance, Kind, TenantId, Tier, Visibility,
};

/// What most users need, in one import.
pub mod prelude {
    pub use crate::{
        AgentId, AgentState, ContentId, ConversationId, Error, Importance, Kind, ManualClock,
        PolicyKind, Result, Stats, Store, StoreBuilder, SystemClock, TenantId, Tier, Visibility,
    };
}
