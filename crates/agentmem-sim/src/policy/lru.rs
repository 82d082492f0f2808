//! Least recently used.

use super::{Capacity, DList, Node, SimPolicy};
use crate::trace::Req;

/// LRU over dense ids: a hit moves the object to the head, a miss evicts
/// from the tail until the new object fits.
#[derive(Debug)]
pub struct Lru {
    nodes: Vec<Node>,
    /// Weight of each resident object, 0 when not resident.
    weight: Vec<u32>,
    list: DList,
    used: u64,
    cap: Capacity,
}

impl Lru {
    /// An empty cache for `objects` distinct ids.
    pub fn new(cap: Capacity, objects: usize) -> Self {
        Lru {
            nodes: vec![Node::default(); objects],
            weight: vec![0; objects],
            list: DList::default(),
            used: 0,
            cap,
        }
    }
}

impl SimPolicy for Lru {
    #[inline]
    fn request(&mut self, r: &Req) -> bool {
        let id = r.id;
        if self.weight[id as usize] != 0 {
            self.list.move_to_front(&mut self.nodes, id);
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
            self.used -= u64::from(self.weight[v as usize]);
            self.weight[v as usize] = 0;
        }
        self.list.push_front(&mut self.nodes, id);
        self.weight[id as usize] = w as u32;
        self.used += w;
        false
    }
}
