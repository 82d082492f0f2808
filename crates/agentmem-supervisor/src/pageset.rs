//! Sets of pages of one process, as sorted, disjoint address ranges.

use serde::{Deserialize, Serialize};

/// Sorted, disjoint, non-adjacent `[start, end)` address ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageSet {
    ranges: Vec<(u64, u64)>,
}

impl PageSet {
    /// A set from arbitrary ranges (sorted and merged here).
    pub fn from_ranges(mut v: Vec<(u64, u64)>) -> PageSet {
        v.retain(|r| r.0 < r.1);
        v.sort_unstable();
        let mut s = PageSet::default();
        for (a, b) in v {
            s.push(a, b);
        }
        s
    }

    /// Appends `[a, b)`, which must start at or after every range already held.
    pub fn push(&mut self, a: u64, b: u64) {
        if a >= b {
            return;
        }
        if let Some(last) = self.ranges.last_mut() {
            debug_assert!(a >= last.0, "PageSet::push out of order");
            if a <= last.1 {
                last.1 = last.1.max(b);
                return;
            }
        }
        self.ranges.push((a, b));
    }

    /// The ranges.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Total bytes covered.
    pub fn bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.1 - r.0).sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Everything in `self` that is not in `other`.
    pub fn minus(&self, other: &PageSet) -> PageSet {
        let mut out = PageSet::default();
        let mut j = 0;
        for &(a, b) in &self.ranges {
            let mut s = a;
            while j < other.ranges.len() && other.ranges[j].1 <= s {
                j += 1;
            }
            let mut k = j;
            while s < b {
                if k >= other.ranges.len() || other.ranges[k].0 >= b {
                    out.push(s, b);
                    break;
                }
                let (oa, ob) = other.ranges[k];
                if oa > s {
                    out.push(s, oa);
                }
                s = s.max(ob);
                k += 1;
            }
        }
        out
    }

    /// Everything in `self` that is also in `other`.
    pub fn intersect(&self, other: &PageSet) -> PageSet {
        self.minus(&self.minus(other))
    }

    /// Everything in either.
    pub fn union(&self, other: &PageSet) -> PageSet {
        let mut v = self.ranges.clone();
        v.extend_from_slice(&other.ranges);
        PageSet::from_ranges(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(s: &PageSet) -> std::collections::BTreeSet<u64> {
        s.ranges().iter().flat_map(|&(a, b)| a..b).collect()
    }

    #[test]
    fn set_operations_match_a_model() {
        let mut seed = 12345u64;
        let mut rnd = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..500 {
            let mk = |r: &mut dyn FnMut(u64) -> u64| {
                let v = (0..r(6)).map(|_| {
                    let a = r(60);
                    (a, a + r(12))
                });
                PageSet::from_ranges(v.collect())
            };
            let a = mk(&mut rnd);
            let b = mk(&mut rnd);
            let (ma, mb) = (model(&a), model(&b));
            assert_eq!(model(&a.minus(&b)), ma.difference(&mb).copied().collect());
            assert_eq!(
                model(&a.intersect(&b)),
                ma.intersection(&mb).copied().collect()
            );
            assert_eq!(model(&a.union(&b)), ma.union(&mb).copied().collect());
            assert_eq!(a.bytes() as usize, ma.len());
            for w in a.ranges().windows(2) {
                assert!(w[0].1 < w[1].0, "ranges must be disjoint and non-adjacent");
            }
        }
    }
}
