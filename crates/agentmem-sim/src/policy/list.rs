//! The replacement loop that FIFO, LRU and CLOCK share: one list of
//! resident objects, newest at the head, evicted from the tail. A
//! [`ListRule`] says what differs: what a hit does, and whether the oldest
//! object leaves or gets another round. Generic rather than dynamic so each
//! policy compiles to its own loop, as fast as written out by hand.

use super::{Capacity, DList, Node, SimPolicy};
use crate::trace::Req;

/// What distinguishes one list policy from another.
pub trait ListRule {
    /// A rule for `objects` distinct ids.
    fn new(objects: usize) -> Self;
    /// Resident object `id` was requested again.
    fn on_hit(&mut self, list: &mut DList, nodes: &mut [Node], id: u32);
    /// Oldest object `v` has been taken off the list to make room: `true`
    /// if it leaves the cache; `false` if the rule put it back.
    #[inline(always)]
    fn leaves(&mut self, _list: &mut DList, _nodes: &mut [Node], _v: u32) -> bool {
        true
    }
    /// Object `id` was admitted.
    #[inline(always)]
    fn on_insert(&mut self, _id: u32) {}
}

/// A cache of one list of resident objects run by rule `R`.
#[derive(Debug)]
pub struct ListCache<R> {
    nodes: Vec<Node>,
    /// Weight of each resident object, 0 when not resident.
    weight: Vec<u32>,
    list: DList,
    used: u64,
    cap: Capacity,
    rule: R,
}

impl<R: ListRule> ListCache<R> {
    /// An empty cache for `objects` distinct ids.
    pub fn new(cap: Capacity, objects: usize) -> Self {
        ListCache {
            nodes: vec![Node::default(); objects],
            weight: vec![0; objects],
            list: DList::default(),
            used: 0,
            cap,
            rule: R::new(objects),
        }
    }
}

impl<R: ListRule> SimPolicy for ListCache<R> {
    #[inline]
    fn request(&mut self, r: &Req) -> bool {
        let id = r.id;
        if self.weight[id as usize] != 0 {
            self.rule.on_hit(&mut self.list, &mut self.nodes, id);
            return true;
        }
        let w = self.cap.weight(r).max(1);
        if w > self.cap.size {
            return false;
        }
        while self.used + w > self.cap.size {
            let Some(v) = self.list.pop_back(&mut self.nodes) else {
                break;
            };
            if self.rule.leaves(&mut self.list, &mut self.nodes, v) {
                self.used -= u64::from(self.weight[v as usize]);
                self.weight[v as usize] = 0;
            }
        }
        self.list.push_front(&mut self.nodes, id);
        self.rule.on_insert(id);
        self.weight[id as usize] = w as u32;
        self.used += w;
        false
    }
}
