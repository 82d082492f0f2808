//! `agentmem simulate` end to end on the bundled sample.

mod common;

use common::agentmem;

fn simulate(args: &[&str]) -> (bool, String, String) {
    agentmem(&[&["simulate"], args].concat())
}

fn json(args: &[&str]) -> serde_json::Value {
    common::json(&[&["simulate"], args].concat())
}

#[test]
fn both_modes_report_the_documented_keys_and_the_store_uses_less_memory() {
    let store = json(&["--agents", "100", "--json"]);
    let naive = json(&["--agents", "100", "--json", "--mode", "naive"]);
    for r in [&store, &naive] {
        for key in [
            "mode",
            "agents",
            "logical_bytes",
            "rss_before_bytes",
            "rss_after_bytes",
        ] {
            assert!(!r[key].is_null(), "missing {key} in {r}");
        }
        for tier in ["hot", "warm", "cold"] {
            assert!(
                r["stored_bytes"][tier].is_u64(),
                "stored_bytes.{tier} in {r}"
            );
        }
        for kind in ["system_prompt", "tool_defs", "conversation"] {
            for f in ["logical", "stored", "ratio"] {
                assert!(!r["kinds"][kind][f].is_null(), "kinds.{kind}.{f} in {r}");
            }
        }
        assert!(r["resume_ms"]["p50"].is_f64() && r["resume_ms"]["p99"].is_f64());
        assert_eq!(r["agents"], 100);
    }
    assert_eq!(store["mode"], "agentmem");
    assert_eq!(naive["mode"], "naive");
    // Same data, same logical bytes.
    assert_eq!(store["logical_bytes"], naive["logical_bytes"]);
    let conv = store["kinds"]["conversation"]["ratio"].as_f64().unwrap();
    assert!(conv > 3.0, "conversation ratio {conv}");
    // At 100 agents the store's fixed costs (zstd's dictionary tables and
    // contexts, about 1.5 MiB) still weigh; at 800 it is over 10x.
    let growth = |r: &serde_json::Value| r["rss_growth_bytes"].as_u64().unwrap();
    assert!(
        growth(&store) * 2 < growth(&naive),
        "store grew {} bytes, naive {}",
        growth(&store),
        growth(&naive)
    );
    assert!(store["verified_units"].as_u64().unwrap() > 100);
}

#[test]
fn too_many_agents_or_bad_data_is_refused_clearly() {
    let (ok, _, err) = simulate(&["--agents", "100000"]);
    assert!(!ok);
    assert!(err.contains("distinct conversations"), "{err}");
    let (ok, _, err) = simulate(&["--data", "/nonexistent/agentmem-data"]);
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");
    let (ok, _, err) = simulate(&["--ram-budget", "lots"]);
    assert!(!ok);
    assert!(err.contains("invalid size"), "{err}");
}

#[test]
fn table_output_names_every_kind() {
    let (ok, out, err) = simulate(&["--agents", "20"]);
    assert!(ok, "{err}");
    for k in ["system_prompt", "tool_defs", "conversation", "resume"] {
        assert!(out.contains(k), "{out}");
    }
}
