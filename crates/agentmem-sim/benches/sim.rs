//! Simulator throughput and the learned policy's cost per decision.
//!
//! `cargo bench -p agentmem-sim --bench sim`

use std::hint::black_box;
use std::path::PathBuf;

use agentmem_core::policy::{AgentView, UnitView};
use agentmem_core::{AgentId, AgentState, EvictionPolicy, Importance, Kind, Timestamp, UnitKey};
use agentmem_sim::trace::Record;
use agentmem_sim::{simulate, LearnedPolicy, PolicyName, Trace, Unit};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// 2 M requests over 200 k keys with a skewed popularity.
fn synthetic() -> Trace {
    let mut rng = SmallRng::seed_from_u64(1);
    let recs: Vec<Record> = (0..2_000_000u64)
        .map(|i| {
            let k = (rng.random_range(0.0f64..1.0).powi(4) * 200_000.0) as u64;
            Record::plain(i, k, 1)
        })
        .collect();
    Trace::from_records("synthetic".into(), &recs).unwrap()
}

fn replay(c: &mut Criterion) {
    let mut traces = vec![synthetic()];
    let orm = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/traces/cache2k_orm-busy.trace.xz");
    if orm.exists() {
        traces.push(Trace::load(&orm, None).unwrap());
    }
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    for t in &traces {
        let name = t.name.rsplit('/').next().unwrap_or("trace").to_string();
        g.throughput(Throughput::Elements(t.requests));
        for p in [PolicyName::Lru, PolicyName::Fifo, PolicyName::Sieve] {
            g.bench_function(format!("{}/{name}/10000", p.name()), |b| {
                b.iter(|| black_box(simulate(t, p, 10_000, Unit::Objects)))
            });
        }
    }
    g.finish();
}

/// One decision of the live policy: the store asks for a victim and puts a
/// unit in its place, as it does when a tier is over budget, with 10 000
/// units owned by 200 agents in assorted states.
fn learned_decision(c: &mut Criterion) {
    let mut p = LearnedPolicy::new();
    let mut rng = SmallRng::seed_from_u64(2);
    let mut t = 0u64;
    let view = |k: u32, t: u64| UnitView {
        key: UnitKey(k),
        kind: Kind::ALL[(k % 5) as usize],
        size: 100 + k % 4000,
        owner: (k % 10 != 0).then_some(AgentId(k % 200)),
        now: Timestamp(t),
    };
    for k in 0..10_000u32 {
        t += 1_000;
        p.insert(&view(k, t));
    }
    let mut next_key = 10_000u32;
    let mut g = c.benchmark_group("learned");
    g.throughput(Throughput::Elements(1));
    g.bench_function("victim_and_insert", |b| {
        b.iter(|| {
            t += 1_000;
            if rng.random_bool(0.05) {
                p.agent_changed(&AgentView {
                    agent: AgentId(rng.random_range(0..200)),
                    state: AgentState::ALL[rng.random_range(0..6)],
                    importance: Importance::default(),
                    since: Timestamp(t),
                });
            }
            let v = p.victim(Timestamp(t));
            // Reuse the freed key, as the store reuses dense keys.
            let k = v.map_or(next_key, |v| v.0);
            next_key += u32::from(v.is_none());
            p.insert(&view(k, t));
            black_box(v)
        })
    });
    g.bench_function("access", |b| {
        b.iter(|| {
            t += 1_000;
            let k = rng.random_range(0..10_000u32);
            p.access(&view(k, t));
        })
    });
    g.finish();
}

criterion_group!(benches, replay, learned_decision);
criterion_main!(benches);
