//! CLOCK (second chance), as libCacheSim's `Clock` with a 1-bit counter.

use super::list::{ListCache, ListRule};
use super::{DList, Node};

/// CLOCK: a hit sets the object's reference bit; eviction looks at the
/// oldest object, and one with its bit set gets the bit cleared and goes
/// back to the head instead of leaving.
pub type Clock = ListCache<ClockRule>;

/// [`Clock`]'s rule: one reference bit per object.
#[derive(Debug)]
pub struct ClockRule {
    referenced: Vec<bool>,
}

impl ListRule for ClockRule {
    fn new(objects: usize) -> Self {
        ClockRule {
            referenced: vec![false; objects],
        }
    }

    #[inline(always)]
    fn on_hit(&mut self, _list: &mut DList, _nodes: &mut [Node], id: u32) {
        self.referenced[id as usize] = true;
    }

    #[inline(always)]
    fn leaves(&mut self, list: &mut DList, nodes: &mut [Node], v: u32) -> bool {
        if self.referenced[v as usize] {
            self.referenced[v as usize] = false;
            list.push_front(nodes, v);
            false
        } else {
            true
        }
    }

    #[inline(always)]
    fn on_insert(&mut self, id: u32) {
        self.referenced[id as usize] = false;
    }
}
