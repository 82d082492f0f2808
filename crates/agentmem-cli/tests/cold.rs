//! `agentmem simulate --dir` and `agentmem verify` end to end.

mod common;

use common::agentmem;

#[test]
fn simulate_with_a_cold_tier_then_verify_catches_damage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("store");
    let d = d.to_str().unwrap();
    let (ok, out, err) = agentmem(&[
        "simulate",
        "--agents",
        "40",
        "--ram-budget",
        "128KiB",
        "--dir",
        d,
        "--json",
    ]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(r["stored_bytes"]["cold"].as_u64().unwrap() > 0, "{r}");
    let c = &r["cold"];
    for k in [
        "bytes_written",
        "disk_bytes",
        "live_bytes",
        "recovery_ms",
        "checkpoint_ms",
    ] {
        assert!(!c[k].is_null(), "cold.{k} missing: {c}");
    }
    assert_eq!(c["verified_after_reopen"], r["verified_units"]);
    // A second run into the same directory is refused without --fresh.
    let (ok, _, err) = agentmem(&["simulate", "--agents", "5", "--dir", d]);
    assert!(!ok && err.contains("--fresh"), "{err}");

    let (ok, out, err) = agentmem(&["verify", "--dir", d]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("OK"), "{out}");

    // Flip one byte in the middle of the segment: verify must fail.
    let seg = std::path::Path::new(d).join("seg-00000001.log");
    let mut b = std::fs::read(&seg).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&seg, b).unwrap();
    let (ok, out, _) = agentmem(&["verify", "--dir", d]);
    assert!(!ok, "verify passed a damaged store: {out}");
    assert!(out.contains("PROBLEM"), "{out}");

    let (ok, _, err) = agentmem(&["verify", "--dir", "/nonexistent/agentmem"]);
    assert!(!ok && err.contains("not a directory"), "{err}");
}
