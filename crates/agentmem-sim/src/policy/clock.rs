//! CLOCK (second chance), as libCacheSim's `Clock` with a 1-bit counter.

use super::{Capacity, DList, Node, SimPolicy};
use crate::trace::Req;

/// CLOCK: a hit sets the object's reference bit; eviction looks at the
/// oldest object, and one with its bit set gets the bit cleared and goes
/// back to the head instead of leaving.
#[derive(Debug)]
pub struct Clock {
    nodes: Vec<Node>,
    weight: Vec<u32>,
    referenced: Vec<bool>,
    list: DList,
    used: u64,
    cap: Capacity,
}

impl Clock {
    /// An empty cache for `objects` distinct ids.
    pub fn new(cap: Capacity, objects: usize) -> Self {
        Clock {
            nodes: vec![Node::default(); objects],
            weight: vec![0; objects],
            referenced: vec![false; objects],
            list: DList::default(),
            used: 0,
            cap,
        }
    }
}

impl SimPolicy for Clock {
    fn request(&mut self, r: &Req) -> bool {
        let id = r.id as usize;
        if self.weight[id] != 0 {
            self.referenced[id] = true;
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
            if self.referenced[v as usize] {
                self.referenced[v as usize] = false;
                self.list.push_front(&mut self.nodes, v);
            } else {
                self.used -= u64::from(self.weight[v as usize]);
                self.weight[v as usize] = 0;
            }
        }
        self.list.push_front(&mut self.nodes, r.id);
        self.referenced[id] = false;
        self.weight[id] = w as u32;
        self.used += w;
        false
    }
}
