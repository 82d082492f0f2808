//! Helpers shared by the CLI's end-to-end tests: run the `agentmem` binary
//! built for this test run and collect what it said.

#![allow(dead_code)] // each test file uses its own subset

use std::process::Command;

/// Runs `agentmem ARGS…`; returns (exit success, stdout, stderr).
pub fn agentmem(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agentmem"))
        .args(args)
        .output()
        .expect("run agentmem");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `agentmem ARGS…`, which must succeed and print one JSON document.
pub fn json(args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = agentmem(args);
    assert!(ok, "agentmem {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}
