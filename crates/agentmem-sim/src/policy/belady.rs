//! Belady's MIN: evict the object requested furthest in the future.
//!
//! With every object of size 1 this is the optimum for a cache that must
//! admit every missed object (demand paging), and it matches libCacheSim's
//! `Belady` exactly. With variable sizes it is a heuristic bound, not the
//! optimum: the true optimum for variable sizes is NP-hard, and a small
//! object requested late can be worth keeping over a large one requested
//! sooner.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Capacity, SimPolicy};
use crate::trace::Req;

/// Belady's MIN over precomputed next-request positions.
#[derive(Debug)]
pub struct Belady {
    /// Next request position of each resident object.
    next: Vec<u32>,
    weight: Vec<u32>,
    /// (next request, id), furthest first; entries whose next no longer
    /// matches are stale and skipped.
    heap: BinaryHeap<(u32, Reverse<u32>)>,
    used: u64,
    cap: Capacity,
}

impl Belady {
    /// An empty cache for `objects` distinct ids.
    pub fn new(cap: Capacity, objects: usize) -> Self {
        Belady {
            next: vec![0; objects],
            weight: vec![0; objects],
            heap: BinaryHeap::new(),
            used: 0,
            cap,
        }
    }
}

impl SimPolicy for Belady {
    fn request(&mut self, r: &Req) -> bool {
        let id = r.id as usize;
        if self.weight[id] != 0 {
            self.next[id] = r.next;
            self.heap.push((r.next, Reverse(r.id)));
            return true;
        }
        let w = self.cap.weight(r).max(1);
        if w > self.cap.size {
            return false;
        }
        while self.used + w > self.cap.size {
            let Some((n, Reverse(v))) = self.heap.pop() else {
                break;
            };
            let vi = v as usize;
            if self.weight[vi] == 0 || self.next[vi] != n {
                continue;
            }
            self.used -= u64::from(self.weight[vi]);
            self.weight[vi] = 0;
        }
        self.next[id] = r.next;
        self.weight[id] = w as u32;
        self.heap.push((r.next, Reverse(r.id)));
        self.used += w;
        // Stale entries pile up on hits; rebuild before the heap outgrows
        // the resident set by much.
        if self.heap.len() > 4 * self.weight.len().max(1024) {
            let (next, weight) = (&self.next, &self.weight);
            self.heap
                .retain(|&(n, Reverse(v))| weight[v as usize] != 0 && next[v as usize] == n);
        }
        false
    }
}
