//! First in, first out.

use super::{Capacity, DList, Node, SimPolicy};
use crate::trace::Req;

/// FIFO: hits change nothing; misses evict the oldest insertions.
#[derive(Debug)]
pub struct Fifo {
    nodes: Vec<Node>,
    weight: Vec<u32>,
    list: DList,
    used: u64,
    cap: Capacity,
}

impl Fifo {
    /// An empty cache for `objects` distinct ids.
    pub fn new(cap: Capacity, objects: usize) -> Self {
        Fifo {
            nodes: vec![Node::default(); objects],
            weight: vec![0; objects],
            list: DList::default(),
            used: 0,
            cap,
        }
    }
}

impl SimPolicy for Fifo {
    #[inline]
    fn request(&mut self, r: &Req) -> bool {
        let id = r.id;
        if self.weight[id as usize] != 0 {
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
