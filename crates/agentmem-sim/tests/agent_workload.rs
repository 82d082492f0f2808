//! On an agent workload generated from the shared conversations, the
//! learned policy misses less than LRU where the workload does not fit, and
//! never less than Belady where Belady is optimal (objects of equal
//! weight). On the classic traces it is LRU exactly.

use std::path::PathBuf;

use agentmem_sim::workload::{generate, load_conversations, WorkloadConfig};
use agentmem_sim::{simulate, PolicyName, Trace, Unit};

fn shared_data() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    dir.is_dir().then_some(dir)
}

#[test]
fn learned_beats_lru_on_generated_agent_traces() {
    let Some(data) = shared_data() else {
        println!("SKIP: ../shared/data not found beside the repository");
        return;
    };
    let convs = load_conversations(&data.join("conversations/tau2_dev.jsonl.zst")).unwrap();
    assert!(convs.len() > 800, "{} conversations", convs.len());
    let cfg = WorkloadConfig {
        agents: 60,
        sessions_per_agent: 2,
        seed: 3,
        ..Default::default()
    };
    let records = generate(&convs, &cfg);
    let trace = Trace::from_records("generated".into(), &records).unwrap();
    assert!(trace.agent_aware && trace.requests > 10_000);
    for pct in [5u64, 15] {
        let size = trace.footprint_bytes * pct / 100;
        let lru = simulate(&trace, PolicyName::Lru, size, Unit::Bytes).misses;
        let learned = simulate(&trace, PolicyName::Learned, size, Unit::Bytes).misses;
        let belady = simulate(&trace, PolicyName::Belady, size, Unit::Bytes).misses;
        println!("{pct}%: lru {lru} learned {learned} belady {belady}");
        // With byte sizes Belady is a size-blind heuristic, which the
        // size-aware learned policy can beat; counted in objects it is the
        // optimum.
        let objects = trace.objects as u64 * pct / 100;
        let learned_objects = simulate(&trace, PolicyName::Learned, objects, Unit::Objects).misses;
        let belady_objects = simulate(&trace, PolicyName::Belady, objects, Unit::Objects).misses;
        assert!(
            belady_objects <= learned_objects,
            "{pct}% of objects: belady {belady_objects} > learned {learned_objects}"
        );
        // Measured 65% and 54% fewer with this seed; demand the 20%.
        assert!(
            learned * 100 <= lru * 80,
            "{pct}%: learned {learned} vs lru {lru}"
        );
    }
}

#[test]
fn learned_is_lru_on_the_classic_traces() {
    let Some(data) = shared_data() else {
        println!("SKIP: ../shared/data not found beside the repository");
        return;
    };
    for name in ["lirs_sprite.trace.gz", "cache2k_web07.trace.xz"] {
        let trace = Trace::load(&data.join("traces").join(name), None).unwrap();
        for size in [100, 1000] {
            let lru = simulate(&trace, PolicyName::Lru, size, Unit::Objects).misses;
            let learned = simulate(&trace, PolicyName::Learned, size, Unit::Objects).misses;
            assert_eq!(lru, learned, "{name} {size}");
        }
    }
}
