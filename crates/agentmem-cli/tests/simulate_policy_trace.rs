//! `agentmem simulate --policy learned --trace-out FILE`: the learned policy
//! runs live in the store, and the run's trace replays in `agentmem sim`.

mod common;

use common::*;

#[test]
fn every_policy_runs_live_and_the_learned_run_writes_a_replayable_trace() {
    for policy in ["lru", "sieve", "s3fifo", "semantic"] {
        let r = json(&["simulate", "--agents", "20", "--policy", policy, "--json"]);
        assert_eq!(r["policy"], policy);
        assert!(r["trace_out"].is_null(), "{r}");
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("run.amt");
    let t = trace.to_str().unwrap();
    let r = json(&[
        "simulate",
        "--agents",
        "30",
        "--policy",
        "learned",
        "--ram-budget",
        "2MiB",
        "--trace-out",
        t,
        "--json",
    ]);
    assert_eq!(r["policy"], "learned");
    assert!(r["verified_units"].as_u64().unwrap() > 0, "{r}");
    let written = r["trace_out"]["written"].as_u64().unwrap();
    assert!(written > 100, "{r}");
    // 28-byte records after the 8-byte magic, every one written.
    let len = std::fs::metadata(&trace).unwrap().len();
    assert_eq!(len, 8 + 28 * written, "{r}");

    let s = json(&[
        "sim",
        "--trace",
        t,
        "--sizes",
        "5%,50%",
        "--policies",
        "lru,learned,belady",
        "--json",
    ]);
    assert!(s["requests"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["results"].as_array().unwrap().len(), 6, "{s}");
}

#[test]
fn an_unknown_policy_or_unwritable_trace_is_refused_clearly() {
    let (ok, _, err) = agentmem(&["simulate", "--policy", "belady"]);
    assert!(!ok);
    assert!(err.contains("belady") && err.contains("learned"), "{err}");
    let (ok, _, err) = agentmem(&[
        "simulate",
        "--agents",
        "5",
        "--trace-out",
        "/nonexistent-agentmem-dir/run.amt",
    ]);
    assert!(!ok);
    assert!(err.contains("/nonexistent-agentmem-dir/run.amt"), "{err}");
}
