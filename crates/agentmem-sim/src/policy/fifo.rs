//! First in, first out.

use super::list::{ListCache, ListRule};
use super::{DList, Node};

/// FIFO: hits change nothing; misses evict the oldest insertions.
pub type Fifo = ListCache<FifoRule>;

/// [`Fifo`]'s rule: a hit changes nothing.
#[derive(Debug)]
pub struct FifoRule;

impl ListRule for FifoRule {
    fn new(_objects: usize) -> Self {
        FifoRule
    }

    #[inline(always)]
    fn on_hit(&mut self, _list: &mut DList, _nodes: &mut [Node], _id: u32) {}
}
