//! Near-duplicate detection: a bottom-k MinHash sketch over a unit's lines
//! (or fixed windows when it has few lines), so that a new large unit can be
//! stored as a delta against the most similar unit already held.

/// Units smaller than this are not worth a delta.
pub(crate) const MIN_DELTA_SIZE: usize = 4 * 1024;
/// Hashes kept per sketch.
const K: usize = 64;
/// Estimated Jaccard similarity above which a delta is tried.
pub(crate) const MIN_SIMILARITY: f64 = 0.1;

/// The `K` smallest hashes of a unit's pieces, sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sketch(Box<[u64]>);

impl Sketch {
    pub fn of(data: &[u8]) -> Sketch {
        let lines = data.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        let mut hashes: Vec<u64> = if data.iter().filter(|&&b| b == b'\n').count() >= 32 {
            lines.map(hash).collect()
        } else {
            data.chunks(64).map(hash).collect()
        };
        hashes.sort_unstable();
        hashes.dedup();
        hashes.truncate(K);
        Sketch(hashes.into_boxed_slice())
    }

    /// Estimated Jaccard similarity of the two sets the sketches came from.
    pub fn similarity(&self, other: &Sketch) -> f64 {
        // Bottom-k estimator: among the k smallest of the union, the share
        // that is in both.
        let (a, b) = (&self.0, &other.0);
        let (mut i, mut j, mut seen, mut both) = (0, 0, 0, 0);
        while seen < K && (i < a.len() || j < b.len()) {
            match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x == y => {
                    both += 1;
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x < y => i += 1,
                (Some(_), None) => i += 1,
                _ => j += 1,
            }
            seen += 1;
        }
        if seen == 0 {
            0.0
        } else {
            both as f64 / seen as f64
        }
    }
}

fn hash(piece: &[u8]) -> u64 {
    let h = blake3::hash(piece);
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: impl Iterator<Item = String>) -> Vec<u8> {
        lines.flat_map(|l| (l + "\n").into_bytes()).collect()
    }

    #[test]
    fn similar_texts_score_high_and_different_ones_low() {
        let a = text((0..300).map(|i| format!("rule {i}: be careful")));
        let b = text((0..300).map(|i| {
            if i % 10 == 0 {
                format!("changed {i}")
            } else {
                format!("rule {i}: be careful")
            }
        }));
        let c = text((0..300).map(|i| format!("something else entirely {i}")));
        let (sa, sb, sc) = (Sketch::of(&a), Sketch::of(&b), Sketch::of(&c));
        assert!(sa.similarity(&sb) > 0.6, "{}", sa.similarity(&sb));
        assert!(sa.similarity(&sc) < 0.1, "{}", sa.similarity(&sc));
        assert_eq!(sa.similarity(&sa), 1.0);
    }
}
