//! S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction",
//! SOSP '23): a small probationary FIFO (10% of the tracked bytes), a main
//! FIFO with reinsertion, and a ghost queue of recently evicted keys so that
//! a unit coming back skips probation. Most one-hit units leave from the
//! small queue without disturbing the main one.

use std::collections::VecDeque;

use super::{ensure_len, EvictionPolicy, KeyList, Links, UnitKey, UnitView};
use crate::clock::Timestamp;

const SMALL: u8 = 1;
const MAIN: u8 = 2;
/// Accesses counted per entry, as in the paper.
const MAX_FREQ: u8 = 3;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    queue: u8,
    freq: u8,
    size: u32,
}

/// S3-FIFO eviction, sized in bytes.
#[derive(Debug)]
pub struct S3Fifo {
    links: Vec<Links>,
    entries: Vec<Entry>,
    small: KeyList,
    main: KeyList,
    small_bytes: u64,
    main_bytes: u64,
    /// Keys recently evicted from the small queue, oldest first; `ghost_count`
    /// says how many times each key is in it (keys are reused after a free,
    /// so the ghost is a hint, as in the paper's hashed ghost).
    ghost: VecDeque<u32>,
    ghost_count: Vec<u8>,
}

impl S3Fifo {
    /// An empty policy.
    pub fn new() -> Self {
        S3Fifo {
            links: Vec::new(),
            entries: Vec::new(),
            small: KeyList::new(),
            main: KeyList::new(),
            small_bytes: 0,
            main_bytes: 0,
            ghost: VecDeque::new(),
            ghost_count: Vec::new(),
        }
    }

    fn in_ghost(&self, k: u32) -> bool {
        self.ghost_count.get(k as usize).copied().unwrap_or(0) > 0
    }

    fn push_ghost(&mut self, k: u32) {
        ensure_len(&mut self.ghost_count, UnitKey(k), 0);
        self.ghost.push_back(k);
        self.ghost_count[k as usize] = self.ghost_count[k as usize].saturating_add(1);
        // The ghost remembers about as many keys as the main queue holds.
        let cap = self.main.len().max(self.small.len()).max(16);
        while self.ghost.len() > cap {
            if let Some(old) = self.ghost.pop_front() {
                let c = &mut self.ghost_count[old as usize];
                *c = c.saturating_sub(1);
            }
        }
    }

    fn detach(&mut self, k: u32) {
        let e = self.entries[k as usize];
        match e.queue {
            SMALL => {
                self.small.unlink(&mut self.links, k);
                self.small_bytes -= u64::from(e.size);
            }
            MAIN => {
                self.main.unlink(&mut self.links, k);
                self.main_bytes -= u64::from(e.size);
            }
            _ => {}
        }
        self.entries[k as usize] = Entry::default();
    }

    fn evict_main(&mut self) -> Option<u32> {
        // Terminates: every reinsertion lowers a frequency, so after at most
        // MAX_FREQ rounds some entry has frequency zero.
        while let Some(k) = self.main.pop_back(&mut self.links) {
            let e = &mut self.entries[k as usize];
            if e.freq > 0 {
                e.freq -= 1;
                self.main.push_front(&mut self.links, k);
            } else {
                self.main_bytes -= u64::from(e.size);
                *e = Entry::default();
                return Some(k);
            }
        }
        None
    }

    fn evict_small(&mut self) -> Option<u32> {
        while let Some(k) = self.small.pop_back(&mut self.links) {
            let e = self.entries[k as usize];
            self.small_bytes -= u64::from(e.size);
            if e.freq >= 1 {
                // Accessed while on probation: promote instead of evicting.
                self.entries[k as usize] = Entry {
                    queue: MAIN,
                    freq: 0,
                    size: e.size,
                };
                self.main.push_front(&mut self.links, k);
                self.main_bytes += u64::from(e.size);
            } else {
                self.entries[k as usize] = Entry::default();
                self.push_ghost(k);
                return Some(k);
            }
        }
        None
    }
}

impl Default for S3Fifo {
    fn default() -> Self {
        Self::new()
    }
}

impl EvictionPolicy for S3Fifo {
    fn name(&self) -> &'static str {
        "s3fifo"
    }

    fn insert(&mut self, unit: &UnitView) {
        ensure_len(&mut self.links, unit.key, Links::default());
        ensure_len(&mut self.entries, unit.key, Entry::default());
        let k = unit.key.0;
        if self.entries[k as usize].queue != 0 {
            self.access(unit);
            return;
        }
        let queue = if self.in_ghost(k) { MAIN } else { SMALL };
        self.entries[k as usize] = Entry {
            queue,
            freq: 0,
            size: unit.size,
        };
        if queue == MAIN {
            self.main.push_front(&mut self.links, k);
            self.main_bytes += u64::from(unit.size);
        } else {
            self.small.push_front(&mut self.links, k);
            self.small_bytes += u64::from(unit.size);
        }
    }

    fn access(&mut self, unit: &UnitView) {
        if let Some(e) = self.entries.get_mut(unit.key.index()) {
            if e.queue != 0 {
                e.freq = (e.freq + 1).min(MAX_FREQ);
            }
        }
    }

    fn remove(&mut self, key: UnitKey) {
        if self.entries.get(key.index()).is_some_and(|e| e.queue != 0) {
            self.detach(key.0);
        }
    }

    fn victim(&mut self, _now: Timestamp) -> Option<UnitKey> {
        let total = self.small_bytes + self.main_bytes;
        let small_full = self.small_bytes * 10 >= total;
        let k = if small_full || self.main.len() == 0 {
            self.evict_small().or_else(|| self.evict_main())
        } else {
            self.evict_main().or_else(|| self.evict_small())
        };
        k.map(UnitKey)
    }

    fn len(&self) -> usize {
        self.small.len() + self.main.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::conformance::view;

    #[test]
    fn one_hit_units_leave_before_reused_ones() {
        let mut p = S3Fifo::new();
        for k in 0..10 {
            p.insert(&view(k, 1));
        }
        p.access(&view(0, 1));
        // 0 was reused on probation: it is promoted, the others go first.
        let order: Vec<u32> = std::iter::from_fn(|| p.victim(Timestamp(0)).map(|k| k.0)).collect();
        assert_eq!(order.last(), Some(&0));
        assert_eq!(order.len(), 10);
    }

    #[test]
    fn ghost_hits_skip_probation() {
        let mut p = S3Fifo::new();
        p.insert(&view(1, 1));
        assert_eq!(p.victim(Timestamp(0)), Some(UnitKey(1)));
        p.insert(&view(1, 1));
        assert_eq!(p.entries[1].queue, MAIN);
    }
}
