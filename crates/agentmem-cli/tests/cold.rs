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

/// A bit flipped a third of the way into the redo log of a crashed store,
/// with whole records after it: `agentmem verify` fails and says which file
/// and byte (today it said OK and the store opened without 41 of 60 units).
#[test]
fn verify_fails_on_a_redo_log_damaged_in_the_middle() {
    use agentmem_core::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = Store::builder()
        .durability(agentmem_core::Durability::Sync)
        .checkpoint_every(None)
        .open(&live)
        .unwrap();
    let a = store
        .register_agent("a", &TenantId::new("t"), Importance::default())
        .unwrap();
    for i in 0..60 {
        let data = format!("tool result {i}: {}", "x".repeat(200 + i * 37));
        store
            .put(a, Kind::ToolResult, data.as_bytes(), Visibility::Private)
            .unwrap();
    }
    // What a SIGKILL leaves: the files as they are now.
    let crashed = dir.path().join("crashed");
    std::fs::create_dir_all(&crashed).unwrap();
    let mut log = None;
    for e in std::fs::read_dir(&live).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_str().unwrap().to_string();
        std::fs::copy(e.path(), crashed.join(&name)).unwrap();
        if name.ends_with(".wal") {
            log = Some(crashed.join(name));
        }
    }
    drop(store);
    let d = crashed.to_str().unwrap();
    let (ok, out, err) = agentmem(&["verify", "--dir", d]);
    assert!(ok, "the intact crash copy fails verify: {out}{err}");
    let log = log.expect("a redo log");
    let mut b = std::fs::read(&log).unwrap();
    let at = b.len() / 3;
    b[at] ^= 0x08;
    std::fs::write(&log, b).unwrap();
    let (ok, out, _) = agentmem(&["verify", "--dir", d]);
    assert!(!ok, "verify passed a damaged redo log: {out}");
    let name = log.file_name().unwrap().to_str().unwrap();
    assert!(
        out.contains("PROBLEM") && out.contains(name) && out.contains("damaged at byte"),
        "{out}"
    );
}
