//! SIEVE (Zhang et al., "SIEVE is Simpler than LRU", NSDI '24): a FIFO queue
//! with one visited bit per entry and a hand that sweeps from old to new,
//! sparing visited entries once. Cheaper than LRU on hits (no list moves).

use super::{ensure_len, EvictionPolicy, KeyList, Links, UnitKey, UnitView, NIL};
use crate::clock::Timestamp;

/// SIEVE eviction.
#[derive(Debug)]
pub struct Sieve {
    links: Vec<Links>,
    /// 0 = untracked, 1 = tracked, 2 = tracked and visited.
    mark: Vec<u8>,
    queue: KeyList,
    /// Next candidate; moves from the tail (oldest) towards the head.
    hand: u32,
}

impl Sieve {
    /// An empty policy.
    pub fn new() -> Self {
        Sieve {
            links: Vec::new(),
            mark: Vec::new(),
            queue: KeyList::new(),
            hand: NIL,
        }
    }

    fn unlink(&mut self, k: u32) {
        if self.hand == k {
            self.hand = self.links[k as usize].prev;
        }
        self.queue.unlink(&mut self.links, k);
        self.mark[k as usize] = 0;
    }
}

impl Default for Sieve {
    fn default() -> Self {
        Self::new()
    }
}

impl EvictionPolicy for Sieve {
    fn name(&self) -> &'static str {
        "sieve"
    }

    fn insert(&mut self, unit: &UnitView) {
        ensure_len(&mut self.links, unit.key, Links::default());
        ensure_len(&mut self.mark, unit.key, 0);
        if self.mark[unit.key.index()] != 0 {
            self.mark[unit.key.index()] = 2;
            return;
        }
        self.mark[unit.key.index()] = 1;
        self.queue.push_front(&mut self.links, unit.key.0);
    }

    fn access(&mut self, unit: &UnitView) {
        if let Some(m) = self.mark.get_mut(unit.key.index()) {
            if *m != 0 {
                *m = 2;
            }
        }
    }

    fn remove(&mut self, key: UnitKey) {
        if self.mark.get(key.index()).copied().unwrap_or(0) != 0 {
            self.unlink(key.0);
        }
    }

    fn victim(&mut self, _now: Timestamp) -> Option<UnitKey> {
        self.queue.tail()?;
        let mut k = if self.hand == NIL {
            self.queue.tail()?
        } else {
            self.hand
        };
        // Terminates: each visited entry passed is cleared, so the second
        // sweep finds an unvisited one at the latest.
        while self.mark[k as usize] == 2 {
            self.mark[k as usize] = 1;
            let prev = self.links[k as usize].prev;
            k = if prev == NIL {
                self.queue.tail()?
            } else {
                prev
            };
        }
        self.hand = self.links[k as usize].prev;
        self.queue.unlink(&mut self.links, k);
        self.mark[k as usize] = 0;
        Some(UnitKey(k))
    }

    fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::conformance::view;

    #[test]
    fn spares_visited_entries_once() {
        let mut p = Sieve::new();
        for k in 0..4 {
            p.insert(&view(k, 1));
        }
        p.access(&view(0, 1));
        p.access(&view(2, 1));
        // Oldest is 0 (visited, spared), then 1 goes.
        assert_eq!(p.victim(Timestamp(0)), Some(UnitKey(1)));
        // Hand continues at 2 (visited, spared), then 3.
        assert_eq!(p.victim(Timestamp(0)), Some(UnitKey(3)));
        // Wraps to the tail: 0's bit was cleared on the first sweep.
        assert_eq!(p.victim(Timestamp(0)), Some(UnitKey(0)));
        assert_eq!(p.victim(Timestamp(0)), Some(UnitKey(2)));
        assert_eq!(p.victim(Timestamp(0)), None);
    }
}
