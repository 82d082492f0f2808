//! LRU-K with K = 2 (O'Neil, O'Neil & Weikum, SIGMOD '93), the policy the
//! AIOS agent operating system uses for agent memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Capacity, DList, Node, SimPolicy};
use crate::trace::Req;

const NONE: u64 = u64::MAX;

/// LRU-2: evicts the object whose second most recent request is oldest.
/// Objects requested only once (infinite backward 2-distance) go first, in
/// LRU order. Request history is kept for evicted objects too (an unbounded
/// retained-information period; the trace's ids are dense, so it is one
/// array).
#[derive(Debug)]
pub struct LruK {
    /// Position of the last and the second-to-last request, per object.
    last: Vec<u64>,
    penult: Vec<u64>,
    weight: Vec<u32>,
    /// Resident objects with fewer than two requests, LRU order.
    once: DList,
    nodes: Vec<Node>,
    in_once: Vec<bool>,
    /// Resident objects with two or more requests: (penultimate, id),
    /// oldest first; stale entries are skipped.
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    clock: u64,
    used: u64,
    cap: Capacity,
}

impl LruK {
    /// An empty cache for `objects` distinct ids.
    pub fn new(cap: Capacity, objects: usize) -> Self {
        LruK {
            last: vec![NONE; objects],
            penult: vec![NONE; objects],
            weight: vec![0; objects],
            once: DList::default(),
            nodes: vec![Node::default(); objects],
            in_once: vec![false; objects],
            heap: BinaryHeap::new(),
            clock: 0,
            used: 0,
            cap,
        }
    }

    fn evict_one(&mut self) -> bool {
        if let Some(v) = self.once.pop_back(&mut self.nodes) {
            self.in_once[v as usize] = false;
            self.used -= u64::from(self.weight[v as usize]);
            self.weight[v as usize] = 0;
            return true;
        }
        while let Some(Reverse((p, v))) = self.heap.pop() {
            let vi = v as usize;
            if self.weight[vi] != 0 && !self.in_once[vi] && self.penult[vi] == p {
                self.used -= u64::from(self.weight[vi]);
                self.weight[vi] = 0;
                return true;
            }
        }
        false
    }

    fn record(&mut self, id: u32) {
        let i = id as usize;
        self.clock += 1;
        if self.last[i] != NONE {
            self.penult[i] = self.last[i];
        }
        self.last[i] = self.clock;
    }

    fn place(&mut self, id: u32) {
        let i = id as usize;
        if self.penult[i] == NONE {
            self.once.push_front(&mut self.nodes, id);
            self.in_once[i] = true;
        } else {
            self.heap.push(Reverse((self.penult[i], id)));
        }
    }
}

impl SimPolicy for LruK {
    fn request(&mut self, r: &Req) -> bool {
        let id = r.id;
        let i = id as usize;
        if self.weight[i] != 0 {
            if self.in_once[i] {
                self.once.unlink(&mut self.nodes, id);
                self.in_once[i] = false;
            }
            self.record(id);
            self.place(id);
            return true;
        }
        self.record(id);
        let w = self.cap.weight(r).max(1);
        if w > self.cap.size {
            return false;
        }
        while self.used + w > self.cap.size {
            if !self.evict_one() {
                break;
            }
        }
        self.weight[i] = w as u32;
        self.used += w;
        self.place(id);
        if self.heap.len() > 4 * self.weight.len().max(1024) {
            let (p, wt, once) = (&self.penult, &self.weight, &self.in_once);
            self.heap.retain(|&Reverse((q, v))| {
                wt[v as usize] != 0 && !once[v as usize] && p[v as usize] == q
            });
        }
        false
    }
}
