//! The simulator's policies: specialised, allocation-free implementations
//! over the dense object ids of a loaded [`Trace`](crate::trace::Trace).
//!
//! They are separate from the store's [`agentmem_core::EvictionPolicy`]
//! implementations because the simulator must replay tens of millions of
//! requests per second: here an object is an index into flat arrays and the
//! policy decides hits and evictions itself. The store's semantic policy and
//! [`LearnedPolicy`](crate::LearnedPolicy) run through [`adapter::StoreAdapter`],
//! the same code the store runs live.
//!
//! Every policy admits every object that fits (an object larger than the
//! whole cache is a miss and is not cached), as libCacheSim does. One file
//! per policy; all pass the conformance tests in this module.

use std::str::FromStr;

use agentmem_core::AgentState;

use crate::error::{Error, Result};
use crate::trace::Req;

pub mod adapter;
mod arc;
mod belady;
mod clock;
mod fifo;
pub mod list;
mod lru;
mod lruk;
mod s3fifo;
mod sieve;

pub use arc::Arc;
pub use belady::Belady;
pub use clock::{Clock, ClockRule};
pub use fifo::{Fifo, FifoRule};
pub use lru::{Lru, LruRule};
pub use lruk::LruK;
pub use s3fifo::S3Fifo;
pub use sieve::Sieve;

/// A replacement policy replaying a trace.
pub trait SimPolicy {
    /// Serve one request; `true` on a hit. Misses admit the object.
    fn request(&mut self, r: &Req) -> bool;
    /// The request's agent entered `state` at `time` (from agent-state
    /// records). Policies that ignore agents do nothing.
    fn agent_state(&mut self, _agent: u32, _state: AgentState, _time: u64) {}
}

/// How cache size is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Unit {
    /// Every object weighs 1.
    Objects,
    /// Every object weighs its size.
    #[default]
    Bytes,
}

impl FromStr for Unit {
    type Err = Error;
    fn from_str(s: &str) -> Result<Unit> {
        match s {
            "objects" => Ok(Unit::Objects),
            "bytes" => Ok(Unit::Bytes),
            _ => Err(Error::arg("unit", s, "expected objects or bytes")),
        }
    }
}

/// A cache's capacity and how objects are weighed against it.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    /// Capacity in [`Unit`]s.
    pub size: u64,
    /// The unit.
    pub unit: Unit,
}

impl Capacity {
    /// What a request's object weighs.
    #[inline(always)]
    pub fn weight(&self, r: &Req) -> u64 {
        match self.unit {
            Unit::Objects => 1,
            Unit::Bytes => u64::from(r.size),
        }
    }
}

/// The policies, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyName {
    /// First in, first out.
    Fifo,
    /// Least recently used.
    Lru,
    /// LRU-2 (O'Neil et al.), as used by the AIOS agent OS.
    LruK,
    /// CLOCK (second chance, 1-bit).
    Clock,
    /// ARC (Megiddo & Modha).
    Arc,
    /// S3-FIFO (Yang et al., SOSP '23).
    S3Fifo,
    /// SIEVE (Zhang et al., NSDI '24).
    Sieve,
    /// The store's agent-state-first policy.
    Semantic,
    /// [`LearnedPolicy`](crate::LearnedPolicy).
    Learned,
    /// Belady's MIN: optimal for equal sizes, a heuristic bound otherwise.
    Belady,
}

impl PolicyName {
    /// Every policy.
    pub const ALL: [PolicyName; 10] = [
        PolicyName::Fifo,
        PolicyName::Lru,
        PolicyName::LruK,
        PolicyName::Clock,
        PolicyName::Arc,
        PolicyName::S3Fifo,
        PolicyName::Sieve,
        PolicyName::Semantic,
        PolicyName::Learned,
        PolicyName::Belady,
    ];

    /// The name on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            PolicyName::Fifo => "fifo",
            PolicyName::Lru => "lru",
            PolicyName::LruK => "lru-k",
            PolicyName::Clock => "clock",
            PolicyName::Arc => "arc",
            PolicyName::S3Fifo => "s3fifo",
            PolicyName::Sieve => "sieve",
            PolicyName::Semantic => "semantic",
            PolicyName::Learned => "learned",
            PolicyName::Belady => "belady",
        }
    }
}

impl FromStr for PolicyName {
    type Err = Error;
    fn from_str(s: &str) -> Result<PolicyName> {
        let l = s.to_ascii_lowercase();
        let alias = match l.as_str() {
            "lruk" | "lru2" | "lru-2" => "lru-k",
            "s3-fifo" => "s3fifo",
            "opt" | "min" => "belady",
            x => x,
        };
        PolicyName::ALL
            .into_iter()
            .find(|p| p.name() == alias)
            .ok_or_else(|| {
                let names: Vec<&str> = PolicyName::ALL.iter().map(|p| p.name()).collect();
                Error::arg("policy", s, format!("expected one of {}", names.join(", ")))
            })
    }
}

/// End of a [`DList`].
pub(crate) const NIL: u32 = u32::MAX;

/// Links of one object in a [`DList`].
#[derive(Clone, Copy, Debug)]
pub struct Node {
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            prev: NIL,
            next: NIL,
        }
    }
}

/// An intrusive doubly linked list over dense ids (head = most recent).
/// Public (with its [`Node`]s) only so that [`list::ListRule`] can name
/// it; its fields and methods stay private to this crate.
/// Written here rather than borrowed from the store because the store's list
/// is private to it and the simulator's hot loop wants it inlined.
#[derive(Clone, Copy, Debug)]
pub struct DList {
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) len: usize,
}

impl Default for DList {
    fn default() -> Self {
        DList {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

impl DList {
    #[inline(always)]
    pub(crate) fn push_front(&mut self, n: &mut [Node], k: u32) {
        n[k as usize] = Node {
            prev: NIL,
            next: self.head,
        };
        if self.head != NIL {
            n[self.head as usize].prev = k;
        } else {
            self.tail = k;
        }
        self.head = k;
        self.len += 1;
    }

    #[inline(always)]
    pub(crate) fn unlink(&mut self, n: &mut [Node], k: u32) {
        let Node { prev, next } = n[k as usize];
        if prev != NIL {
            n[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            n[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        self.len -= 1;
    }

    #[inline(always)]
    pub(crate) fn move_to_front(&mut self, n: &mut [Node], k: u32) {
        if self.head != k {
            self.unlink(n, k);
            self.push_front(n, k);
        }
    }

    #[inline(always)]
    pub(crate) fn pop_back(&mut self, n: &mut [Node]) -> Option<u32> {
        let t = self.tail;
        if t == NIL {
            return None;
        }
        self.unlink(n, t);
        Some(t)
    }
}

#[cfg(test)]
pub(crate) mod conformance;
