//! SIEVE (Zhang et al., NSDI '24), with libCacheSim's hand movement.

use super::{Capacity, DList, Node, SimPolicy, NIL};
use crate::trace::Req;

/// SIEVE: new objects enter at the head; a hit sets a visited bit; the hand
/// walks from the tail towards the head, clearing visited bits, and evicts
/// the first unvisited object, then stays where it stopped.
#[derive(Debug)]
pub struct Sieve {
    nodes: Vec<Node>,
    weight: Vec<u32>,
    visited: Vec<bool>,
    list: DList,
    hand: u32,
    used: u64,
    cap: Capacity,
}

impl Sieve {
    /// An empty cache for `objects` distinct ids.
    pub fn new(cap: Capacity, objects: usize) -> Self {
        Sieve {
            nodes: vec![Node::default(); objects],
            weight: vec![0; objects],
            visited: vec![false; objects],
            list: DList::default(),
            hand: NIL,
            used: 0,
            cap,
        }
    }

    fn evict(&mut self) -> bool {
        let mut o = if self.hand != NIL {
            self.hand
        } else {
            self.list.tail
        };
        if o == NIL {
            return false;
        }
        while self.visited[o as usize] {
            self.visited[o as usize] = false;
            let p = self.nodes[o as usize].prev;
            o = if p != NIL { p } else { self.list.tail };
        }
        self.hand = self.nodes[o as usize].prev;
        self.list.unlink(&mut self.nodes, o);
        self.used -= u64::from(self.weight[o as usize]);
        self.weight[o as usize] = 0;
        true
    }
}

impl SimPolicy for Sieve {
    fn request(&mut self, r: &Req) -> bool {
        let id = r.id as usize;
        if self.weight[id] != 0 {
            self.visited[id] = true;
            return true;
        }
        let w = self.cap.weight(r).max(1);
        if w > self.cap.size {
            return false;
        }
        while self.used + w > self.cap.size {
            if !self.evict() {
                break;
            }
        }
        self.list.push_front(&mut self.nodes, r.id);
        self.visited[id] = false;
        self.weight[id] = w as u32;
        self.used += w;
        false
    }
}
