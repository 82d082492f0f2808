//! Least recently used: the baseline every other policy is measured against.

use super::{ensure_len, EvictionPolicy, KeyList, Links, UnitKey, UnitView};
use crate::clock::Timestamp;

/// Least recently used over an intrusive list: O(1) per operation.
#[derive(Debug)]
pub struct Lru {
    links: Vec<Links>,
    tracked: Vec<bool>,
    list: KeyList,
}

impl Lru {
    /// An empty policy.
    pub fn new() -> Self {
        Lru {
            links: Vec::new(),
            tracked: Vec::new(),
            list: KeyList::new(),
        }
    }
}

impl Default for Lru {
    fn default() -> Self {
        Self::new()
    }
}

impl EvictionPolicy for Lru {
    fn name(&self) -> &'static str {
        "lru"
    }

    fn insert(&mut self, unit: &UnitView) {
        ensure_len(&mut self.links, unit.key, Links::default());
        ensure_len(&mut self.tracked, unit.key, false);
        if self.tracked[unit.key.index()] {
            self.list.unlink(&mut self.links, unit.key.0);
        }
        self.tracked[unit.key.index()] = true;
        self.list.push_front(&mut self.links, unit.key.0);
    }

    fn access(&mut self, unit: &UnitView) {
        if self.tracked.get(unit.key.index()).copied().unwrap_or(false) {
            self.list.unlink(&mut self.links, unit.key.0);
            self.list.push_front(&mut self.links, unit.key.0);
        }
    }

    fn remove(&mut self, key: UnitKey) {
        if self.tracked.get(key.index()).copied().unwrap_or(false) {
            self.list.unlink(&mut self.links, key.0);
            self.tracked[key.index()] = false;
        }
    }

    fn victim(&mut self, _now: Timestamp) -> Option<UnitKey> {
        let k = self.list.pop_back(&mut self.links)?;
        self.tracked[k as usize] = false;
        Some(UnitKey(k))
    }

    fn len(&self) -> usize {
        self.list.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::conformance::view;

    #[test]
    fn evicts_least_recently_used_first() {
        let mut p = Lru::new();
        for k in 0..3 {
            p.insert(&view(k, 10));
        }
        p.access(&view(0, 10));
        assert_eq!(p.victim(Timestamp(0)), Some(UnitKey(1)));
        assert_eq!(p.victim(Timestamp(0)), Some(UnitKey(2)));
        assert_eq!(p.victim(Timestamp(0)), Some(UnitKey(0)));
        assert_eq!(p.victim(Timestamp(0)), None);
    }
}
