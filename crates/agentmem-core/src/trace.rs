//! Access recording: the seam through which a store reports every access to
//! an observer (a trace writer, a learned policy's trainer). Opt-in: a store
//! without a sink pays one branch per operation.

use std::fmt;

use crate::clock::Timestamp;
use crate::types::{AgentId, AgentState, Kind};

/// What was done to a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AccessOp {
    /// A unit was stored (new content, or a new reference to existing content).
    Put = 0,
    /// A unit was read.
    Get = 1,
    /// A reference was released.
    Release = 2,
    /// A message was appended to a conversation (the access is to the
    /// conversation's open chunk).
    Append = 3,
    /// The unit was brought back to hot by a resume prefetch.
    Prefetch = 4,
}

impl AccessOp {
    /// The operation with this code, if any.
    pub const fn from_u8(v: u8) -> Option<AccessOp> {
        match v {
            0 => Some(AccessOp::Put),
            1 => Some(AccessOp::Get),
            2 => Some(AccessOp::Release),
            3 => Some(AccessOp::Append),
            4 => Some(AccessOp::Prefetch),
            _ => None,
        }
    }
}

/// One access, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessEvent {
    /// When it happened, by the store's clock.
    pub time: Timestamp,
    /// A stable 64-bit name of the unit: the first 8 bytes of its content id
    /// (little-endian), or for a conversation's open chunk a name derived
    /// from the conversation and chunk number.
    pub object: u64,
    /// Logical (uncompressed) size in bytes.
    pub size: u32,
    /// The unit's kind.
    pub kind: Kind,
    /// The agent that made the access, if any.
    pub agent: Option<AgentId>,
    /// That agent's state at the time.
    pub agent_state: AgentState,
    /// What was done.
    pub op: AccessOp,
}

/// Receives a store's accesses. Called with the store's lock held, so an
/// implementation must only enqueue (and drop events rather than block when
/// its queue is full).
pub trait AccessSink: Send + Sync + fmt::Debug {
    /// Record one access.
    fn record(&self, event: &AccessEvent);
}
