//! Tests every simulator policy must pass: properties that hold for any
//! replacement policy, checked on random traces.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{PolicyName, Unit};
use crate::sim::simulate;
use crate::trace::{Op, Record, Trace};
use agentmem_core::{AgentState, Kind};

fn random_trace(seed: u64, n: usize, keys: u64, agents: bool) -> Trace {
    let mut rng = SmallRng::seed_from_u64(seed);
    let recs: Vec<Record> = (0..n)
        .map(|i| {
            // Skewed keys so that caches get hits.
            let k = (rng.random_range(0.0f64..1.0).powi(3) * keys as f64) as u64;
            let mut r = Record::plain(i as u64 * 1000, k, 1 + (k as u32 * 7919) % 5000);
            if agents {
                r.agent = (k % 9) as u32;
                r.kind = Kind::ALL[(k % 5) as usize];
                r.state = AgentState::ALL[rng.random_range(0..6)];
                if rng.random_bool(0.05) {
                    r.op = Op::AgentState;
                }
            }
            r
        })
        .collect();
    Trace::from_records(format!("random-{seed}"), &recs).unwrap()
}

fn first_request_misses(t: &Trace) -> u64 {
    t.objects as u64
}

#[test]
fn every_policy_has_only_compulsory_misses_when_everything_fits() {
    for seed in 0..4 {
        let t = random_trace(seed, 5_000, 800, seed % 2 == 0);
        for p in PolicyName::ALL {
            for unit in [Unit::Objects, Unit::Bytes] {
                let size = match unit {
                    Unit::Objects => t.objects as u64,
                    Unit::Bytes => t.footprint_bytes,
                };
                let r = simulate(&t, p, size, unit);
                assert_eq!(
                    r.misses,
                    first_request_misses(&t),
                    "{p:?} {unit:?} seed {seed}"
                );
            }
        }
    }
}

#[test]
fn a_one_object_cache_hits_only_on_repeats() {
    let t = random_trace(7, 3_000, 5, true);
    let reqs: Vec<u32> = t
        .reqs
        .iter()
        .filter(|r| r.op.is_request())
        .map(|r| r.id)
        .collect();
    let repeats = reqs.windows(2).filter(|w| w[0] == w[1]).count() as u64;
    for p in PolicyName::ALL {
        let r = simulate(&t, p, 1, Unit::Objects);
        assert_eq!(r.misses, t.requests - repeats, "{p:?}");
    }
}

#[test]
fn objects_larger_than_the_cache_always_miss() {
    let recs: Vec<Record> = (0..100)
        .map(|i| Record::plain(i, i % 3, if i % 3 == 0 { 10_000 } else { 10 }))
        .collect();
    let t = Trace::from_records("big".into(), &recs).unwrap();
    for p in PolicyName::ALL {
        let r = simulate(&t, p, 100, Unit::Bytes);
        // Key 0 (34 requests) never fits; keys 1 and 2 miss once each.
        assert_eq!(r.misses, 34 + 2, "{p:?}");
        assert!(r.byte_miss_ratio > 0.99, "{p:?}");
    }
}

#[test]
fn belady_never_misses_more_than_any_policy_with_equal_sizes() {
    for seed in 10..16 {
        let t = random_trace(seed, 20_000, 2_000, seed % 2 == 0);
        for size in [10, 100, 500] {
            let opt = simulate(&t, PolicyName::Belady, size, Unit::Objects).misses;
            for p in PolicyName::ALL {
                let m = simulate(&t, p, size, Unit::Objects).misses;
                assert!(
                    opt <= m,
                    "{p:?} size {size} seed {seed}: {m} < belady {opt}"
                );
            }
        }
    }
}

#[test]
fn replays_are_deterministic() {
    let t = random_trace(3, 10_000, 1_000, true);
    for p in PolicyName::ALL {
        let a = simulate(&t, p, 20_000, Unit::Bytes);
        let b = simulate(&t, p, 20_000, Unit::Bytes);
        assert_eq!(a, b, "{p:?}");
        assert!(a.misses >= first_request_misses(&t) && a.misses <= t.requests);
    }
}

#[test]
fn learned_is_lru_without_agents() {
    let t = random_trace(5, 20_000, 3_000, false);
    for size in [50, 300, 1000] {
        let lru = simulate(&t, PolicyName::Lru, size, Unit::Objects).misses;
        let learned = simulate(&t, PolicyName::Learned, size, Unit::Objects).misses;
        assert_eq!(lru, learned, "size {size}");
    }
}
