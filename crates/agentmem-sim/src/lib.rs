//! # agentmem-sim
//!
//! Access traces, a fast cache simulator, and the learned eviction policy.
//!
//! ## Architecture
//!
//! - [`trace`]: the trace formats (libCacheSim's `oracleGeneral` and
//!   agentmem's agent-aware format), readers for them and for the classic
//!   key-per-line, big-endian and CSV traces, and [`trace::Trace`], a trace
//!   loaded for replay with objects renamed to dense ids and every request's
//!   next request precomputed (which is what makes Belady and 20 M
//!   requests/s possible).
//! - [`policy`]: the simulator's policies over dense ids (FIFO, LRU, LRU-K,
//!   CLOCK, ARC, S3-FIFO, SIEVE, Belady), and an adapter that runs the
//!   store's own policies (semantic, learned) in the simulator.
//! - [`sim`]: replaying a trace against a policy and a size.
//! - [`learned`]: [`LearnedPolicy`], an online model of reuse that the store
//!   runs live as an [`agentmem_core::EvictionPolicy`].
//! - [`writer`]: [`TraceWriter`], an [`agentmem_core::trace::AccessSink`]
//!   that records a store's accesses to an agent-aware trace from a
//!   background thread.
//! - [`workload`]: the agent workload generator replaying real conversations
//!   as many concurrent agent sessions.
//! - [`chart`]: miss ratio against cache size, as SVG.
//!
//! ## Concurrency
//!
//! The simulator is single-threaded per replay (callers run replays in
//! parallel). [`TraceWriter`] is shared by the store's threads; it only
//! pushes to a bounded channel, and its own thread does the writing.

pub mod chart;
mod error;
pub mod learned;
pub mod policy;
pub mod sim;
pub mod trace;
pub mod workload;
pub mod writer;

pub use error::{Error, Result};
pub use learned::LearnedPolicy;
pub use policy::{PolicyName, Unit};
pub use sim::{simulate, Report, SimResult};
pub use trace::{Trace, TraceFormat};
pub use writer::TraceWriter;
