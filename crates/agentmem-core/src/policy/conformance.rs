//! The test suite every [`EvictionPolicy`] must pass: random operations
//! against a plain set of tracked keys, checking the trait's contract.
//!
//! Compiled for this crate's tests, and for other crates' with the
//! `test-util` feature (as a dev-dependency feature), so that a policy
//! written elsewhere is held to the same contract:
//!
//! ```ignore
//! agentmem_core::policy::conformance::run("mine", &mut || Box::new(Mine::new()));
//! ```

use std::collections::BTreeSet;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{AgentView, EvictionPolicy, UnitKey, UnitView};
use crate::clock::Timestamp;
use crate::types::{AgentId, AgentState, Importance, Kind};

/// A unit view for tests: key `k`, `size` bytes, owned by agent `k % 5`.
pub fn view(k: u32, size: u32) -> UnitView {
    UnitView {
        key: UnitKey(k),
        kind: Kind::Conversation,
        size,
        owner: Some(AgentId(k % 5)),
        now: Timestamp(u64::from(k)),
    }
}

/// Run the suite against fresh instances from `make`; panics, naming
/// `name` and the failed check, when the contract is broken.
pub fn run(name: &str, make: &mut dyn FnMut() -> Box<dyn EvictionPolicy>) {
    empty_policy_has_no_victim(name, make());
    drains_every_key_exactly_once(name, make());
    for seed in 0..20 {
        random_operations(name, make(), seed);
    }
}

fn empty_policy_has_no_victim(name: &str, mut p: Box<dyn EvictionPolicy>) {
    assert_eq!(
        p.victim(Timestamp(0)),
        None,
        "{name}: empty policy gave a victim"
    );
    assert_eq!(p.len(), 0, "{name}");
    p.remove(UnitKey(3));
    p.access(&view(3, 1));
    assert_eq!(p.len(), 0, "{name}: untracked access or remove changed len");
    assert_eq!(p.victim(Timestamp(0)), None, "{name}");
}

fn drains_every_key_exactly_once(name: &str, mut p: Box<dyn EvictionPolicy>) {
    for k in 0..100 {
        p.insert(&view(k, 1 + k % 7));
    }
    for k in (0..100).step_by(3) {
        p.access(&view(k, 1 + k % 7));
    }
    let mut seen = BTreeSet::new();
    while let Some(k) = p.victim(Timestamp(1000)) {
        assert!(seen.insert(k), "{name}: victim {k:?} returned twice");
    }
    assert_eq!(seen.len(), 100, "{name}: not every key was returned");
    assert!(p.is_empty(), "{name}");
}

fn random_operations(name: &str, mut p: Box<dyn EvictionPolicy>, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut model = BTreeSet::new();
    for step in 0..5_000u64 {
        let k = rng.random_range(0..200u32);
        let mut v = view(k, rng.random_range(1..10_000));
        v.now = Timestamp(step);
        if rng.random_bool(0.2) {
            v.owner = None;
        }
        match rng.random_range(0..100) {
            0..=34 => {
                p.insert(&v);
                model.insert(k);
            }
            35..=59 => p.access(&v),
            60..=69 => {
                p.remove(UnitKey(k));
                model.remove(&k);
            }
            70..=74 => p.agent_changed(&AgentView {
                agent: AgentId(k % 5),
                state: AgentState::ALL[rng.random_range(0..AgentState::ALL.len())],
                importance: Importance(rng.random_range(0..=100)),
                since: Timestamp(step),
            }),
            _ => match p.victim(Timestamp(step)) {
                Some(victim) => assert!(
                    model.remove(&victim.0),
                    "{name} seed {seed}: victim {victim:?} was not tracked"
                ),
                None => assert!(
                    model.is_empty(),
                    "{name} seed {seed}: no victim with {} tracked",
                    model.len()
                ),
            },
        }
        assert_eq!(p.len(), model.len(), "{name} seed {seed} step {step}: len");
    }
    while let Some(victim) = p.victim(Timestamp(u64::MAX)) {
        assert!(
            model.remove(&victim.0),
            "{name} seed {seed}: drained untracked"
        );
    }
    assert!(
        model.is_empty(),
        "{name} seed {seed}: keys never evicted: {model:?}"
    );
}
