//! The simulator's LRU, FIFO, SIEVE and Belady (and CLOCK and ARC) give the
//! same miss counts as libCacheSim (PyPI `libcachesim` 0.3.5) on the shared
//! classic traces. The reference numbers were produced by
//! `scripts/libcachesim_reference.py` and are committed in
//! `tests/data/libcachesim_reference.json`, so this runs without Python.

use std::collections::HashMap;
use std::path::PathBuf;

use agentmem_sim::{simulate, PolicyName, Trace, Unit};

fn traces_dir() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("../shared/data/traces");
    dir.is_dir().then_some(dir)
}

#[derive(serde::Deserialize)]
struct Reference {
    results: Vec<Row>,
}

#[derive(serde::Deserialize)]
struct Row {
    trace: String,
    requests: u64,
    policy: String,
    cache_size: u64,
    misses: u64,
}

#[test]
fn miss_counts_equal_libcachesim() {
    let Some(dir) = traces_dir() else {
        println!("SKIP: ../shared/data/traces not found beside the repository");
        return;
    };
    let reference: Reference =
        serde_json::from_str(include_str!("data/libcachesim_reference.json")).unwrap();
    let mut traces: HashMap<String, Trace> = HashMap::new();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for row in &reference.results {
        let trace = traces
            .entry(row.trace.clone())
            .or_insert_with(|| Trace::load(&dir.join(&row.trace), None).unwrap());
        assert_eq!(trace.requests, row.requests, "{}", row.trace);
        let policy: PolicyName = row.policy.parse().unwrap();
        let got = simulate(trace, policy, row.cache_size, Unit::Objects).misses;
        if got != row.misses {
            mismatches.push(format!(
                "{} {} size {}: ours {got}, libCacheSim {}",
                row.trace, row.policy, row.cache_size, row.misses
            ));
        }
        checked += 1;
    }
    assert!(checked >= 60, "reference has {checked} rows");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
