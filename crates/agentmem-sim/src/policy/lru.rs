//! Least recently used.

use super::list::{ListCache, ListRule};
use super::{DList, Node};

/// LRU over dense ids: a hit moves the object to the head, a miss evicts
/// from the tail until the new object fits.
pub type Lru = ListCache<LruRule>;

/// [`Lru`]'s rule: a hit moves the object to the head.
#[derive(Debug)]
pub struct LruRule;

impl ListRule for LruRule {
    fn new(_objects: usize) -> Self {
        LruRule
    }

    #[inline(always)]
    fn on_hit(&mut self, list: &mut DList, nodes: &mut [Node], id: u32) {
        list.move_to_front(nodes, id);
    }
}
