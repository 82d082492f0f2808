//! Eviction policies: which unit leaves a tier when the tier is over budget.
//!
//! The store keeps one policy instance per managed tier (hot → warm, and
//! warm → cold once a cold tier is attached). It tells the policy about every
//! unit entering, being accessed in, and leaving the tier, and about every
//! agent's change of state; when the tier is over budget it asks for victims.
//!
//! One file per policy; every policy passes the conformance suite in
//! `conformance` (run for each of them in this module's tests). Policies
//! written in other crates run the same suite: it is public with the
//! `test-util` cargo feature, meant for dev-dependencies.

use std::fmt;
use std::str::FromStr;

use crate::clock::Timestamp;
use crate::types::{AgentId, AgentState, Importance, Kind};

mod lru;
mod s3fifo;
mod semantic;
mod sieve;

pub use lru::Lru;
pub use s3fifo::S3Fifo;
pub use semantic::Semantic;
pub use sieve::Sieve;

/// A unit's handle inside one store: dense, reused after the unit is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitKey(pub u32);

impl UnitKey {
    /// The key as an index into dense tables.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a policy is told about a unit when it enters or is accessed.
#[derive(Clone, Copy, Debug)]
pub struct UnitView {
    /// The unit.
    pub key: UnitKey,
    /// Its kind.
    pub kind: Kind,
    /// Bytes it occupies in the tier this policy manages.
    pub size: u32,
    /// The one agent that owns it, or `None` when it is shared by several
    /// agents or public (shared units belong to nobody's idle time).
    pub owner: Option<AgentId>,
    /// When this happened.
    pub now: Timestamp,
}

/// What a policy is told about an agent when its state or importance changes.
#[derive(Clone, Copy, Debug)]
pub struct AgentView {
    /// The agent.
    pub agent: AgentId,
    /// Its new state.
    pub state: AgentState,
    /// Its importance.
    pub importance: Importance,
    /// When it entered this state.
    pub since: Timestamp,
}

/// An eviction policy for one tier.
///
/// Contract (checked by `conformance`, public with the `test-util`
/// feature):
/// - `insert` is called for a key that is not tracked; afterwards it is.
///   Calling it for a tracked key counts as an access.
/// - `access` on a tracked key refreshes it; on an untracked key it does nothing.
/// - `remove` stops tracking a key (the store freed or moved the unit);
///   removing an untracked key does nothing.
/// - `victim` returns a tracked key and stops tracking it, or `None` exactly
///   when nothing is tracked. It never returns a key twice without a new
///   `insert` in between, and every tracked key is eventually returned by
///   repeated calls.
/// - `len` is the number of tracked keys.
/// - No method panics on any sequence of calls.
pub trait EvictionPolicy: Send + fmt::Debug {
    /// The policy's name, as accepted by [`PolicyKind::from_str`].
    fn name(&self) -> &'static str;
    /// A unit entered the tier.
    fn insert(&mut self, unit: &UnitView);
    /// A unit in the tier was read or written.
    fn access(&mut self, unit: &UnitView);
    /// A unit left the tier for another reason than being chosen as victim.
    fn remove(&mut self, key: UnitKey);
    /// Choose the next unit to leave the tier, and stop tracking it.
    fn victim(&mut self, now: Timestamp) -> Option<UnitKey>;
    /// An agent changed state or importance. Policies that do not rank by
    /// agent ignore this.
    fn agent_changed(&mut self, _agent: &AgentView) {}
    /// Number of tracked units.
    fn len(&self) -> usize;
    /// Whether no unit is tracked.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The built-in policies, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PolicyKind {
    /// Least recently used.
    Lru,
    /// SIEVE (Zhang et al., NSDI '24).
    Sieve,
    /// S3-FIFO (Yang et al., SOSP '23).
    S3Fifo,
    /// Agent state first, then idle time, then importance. The default.
    #[default]
    Semantic,
}

impl PolicyKind {
    /// Every built-in policy.
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::Lru,
        PolicyKind::Sieve,
        PolicyKind::S3Fifo,
        PolicyKind::Semantic,
    ];

    /// The policy's name.
    pub const fn name(self) -> &'static str {
        match self {
            PolicyKind::Lru => "lru",
            PolicyKind::Sieve => "sieve",
            PolicyKind::S3Fifo => "s3fifo",
            PolicyKind::Semantic => "semantic",
        }
    }

    /// A fresh instance of this policy.
    pub fn build(self) -> Box<dyn EvictionPolicy> {
        match self {
            PolicyKind::Lru => Box::new(Lru::new()),
            PolicyKind::Sieve => Box::new(Sieve::new()),
            PolicyKind::S3Fifo => Box::new(S3Fifo::new()),
            PolicyKind::Semantic => Box::new(Semantic::new()),
        }
    }
}

impl FromStr for PolicyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PolicyKind::ALL
            .into_iter()
            .find(|p| {
                p.name().eq_ignore_ascii_case(s) || (s == "s3-fifo" && *p == PolicyKind::S3Fifo)
            })
            .ok_or_else(|| {
                format!("unknown policy {s:?}; expected one of lru, sieve, s3fifo, semantic")
            })
    }
}

/// An intrusive doubly linked list over dense keys, shared by the list-based
/// policies: O(1) push, unlink and pop with no allocation per operation.
#[derive(Debug, Default)]
pub(crate) struct KeyList {
    head: u32,
    tail: u32,
    len: usize,
}

pub(crate) const NIL: u32 = u32::MAX;

/// Links of one key in one [`KeyList`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Links {
    pub prev: u32,
    pub next: u32,
}

impl Default for Links {
    fn default() -> Self {
        Links {
            prev: NIL,
            next: NIL,
        }
    }
}

impl KeyList {
    pub fn new() -> Self {
        KeyList {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Least recently pushed key.
    pub fn tail(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    pub fn push_front(&mut self, links: &mut [Links], k: u32) {
        links[k as usize] = Links {
            prev: NIL,
            next: self.head,
        };
        if self.head != NIL {
            links[self.head as usize].prev = k;
        } else {
            self.tail = k;
        }
        self.head = k;
        self.len += 1;
    }

    pub fn unlink(&mut self, links: &mut [Links], k: u32) {
        let Links { prev, next } = links[k as usize];
        if prev != NIL {
            links[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            links[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        links[k as usize] = Links::default();
        self.len -= 1;
    }

    pub fn pop_back(&mut self, links: &mut [Links]) -> Option<u32> {
        let t = self.tail()?;
        self.unlink(links, t);
        Some(t)
    }
}

/// Grow a dense table so that `key` is a valid index.
pub(crate) fn ensure_len<T: Clone>(v: &mut Vec<T>, key: UnitKey, fill: T) {
    if v.len() <= key.index() {
        v.resize(key.index() + 1, fill);
    }
}

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_passes_the_conformance_suite() {
        for kind in PolicyKind::ALL {
            conformance::run(kind.name(), &mut || kind.build());
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in PolicyKind::ALL {
            assert_eq!(kind.name().parse::<PolicyKind>().unwrap(), kind);
            assert_eq!(kind.build().name(), kind.name());
        }
        assert!("belady"
            .parse::<PolicyKind>()
            .unwrap_err()
            .contains("unknown policy"));
    }
}
