//! Cross-tenant probes: a tenant that stores or asks for another tenant's
//! private content neither hits nor gets a faster or different answer.

mod common;

use std::time::{Duration, Instant};

use agentmem_core::{ContentId, Kind, Visibility};
use common::{Daemon, ALPHA, BETA};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn unit(i: usize, salt: &str) -> Vec<u8> {
    // Distinct, realistic tool results of 2 KB.
    let mut s = format!("{{\"tool\":\"search\",\"call\":{i},\"salt\":\"{salt}\",\"rows\":[");
    while s.len() < 2048 {
        s.push_str(&format!(
            "{{\"id\":{},\"v\":\"{:x}\"}},",
            s.len(),
            s.len() * 7919 + i
        ));
    }
    s.push_str("]}");
    s.into_bytes()
}

#[test]
fn other_tenants_content_is_neither_hit_nor_timed() {
    let d = Daemon::start("");
    let mut alpha = d.options("victim").token(ALPHA).connect().unwrap();
    let mut beta = d.options("prober").token(BETA).connect().unwrap();
    const N: usize = 300;
    let secrets: Vec<Vec<u8>> = (0..N).map(|i| unit(i, "secret")).collect();
    let alpha_ids: Vec<ContentId> = secrets
        .iter()
        .map(|s| alpha.put(Kind::ToolResult, s, Visibility::Private).unwrap())
        .collect();
    let hits_before = beta.stats().unwrap().dedup_hits;

    // Interleave probes of content alpha holds ("hit" if dedup leaked) with
    // fresh content ("miss"), so drift in machine load hits both alike.
    let (mut put_hit, mut put_miss, mut get_hit, mut get_miss) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut messages = std::collections::HashSet::new();
    for i in 0..N {
        let fresh = unit(i, "fresh!");
        // Alternate which goes first, so that neither pays for the other.
        for first in [i % 2 == 0, i % 2 == 1] {
            if first {
                let t = Instant::now();
                let id = beta
                    .put(Kind::ToolResult, &secrets[i], Visibility::Private)
                    .unwrap();
                put_hit.push(t.elapsed());
                assert_ne!(
                    id, alpha_ids[i],
                    "a private id must not be the same across tenants"
                );
            } else {
                let t = Instant::now();
                beta.put(Kind::ToolResult, &fresh, Visibility::Private)
                    .unwrap();
                put_miss.push(t.elapsed());
            }
        }

        let t = Instant::now();
        let e = beta.get(&alpha_ids[i]).unwrap_err();
        get_hit.push(t.elapsed());
        let hit_text = e.to_string().replace(&alpha_ids[i].to_hex(), "ID");
        let mut missing = [0u8; 32];
        missing[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        let missing = ContentId::from_bytes(missing);
        let t = Instant::now();
        let e2 = beta.get(&missing).unwrap_err();
        get_miss.push(t.elapsed());
        let miss_text = e2.to_string().replace(&missing.to_hex(), "ID");
        assert_eq!(e.code(), e2.code());
        messages.insert(hit_text);
        messages.insert(miss_text);
    }
    assert_eq!(messages.len(), 1, "answers differ: {messages:?}");
    assert_eq!(
        beta.stats().unwrap().dedup_hits,
        hits_before,
        "beta's puts of alpha's content were deduplicated against it"
    );
    let (ph, pm, gh, gm) = (
        median(&mut put_hit),
        median(&mut put_miss),
        median(&mut get_hit),
        median(&mut get_miss),
    );
    println!("cross-tenant probes, median of {N}: put of alpha's content {ph:?} vs fresh {pm:?}; get of alpha's id {gh:?} vs unknown id {gm:?}");
    // A same-tenant dedup hit, for scale: it skips compression and storage.
    let mut same = Vec::new();
    for s in secrets.iter().take(N) {
        let t = Instant::now();
        alpha.put(Kind::ToolResult, s, Visibility::Private).unwrap();
        same.push(t.elapsed());
    }
    println!(
        "same-tenant dedup hit for comparison: {:?}",
        median(&mut same)
    );
    for (what, a, b) in [("put", ph, pm), ("get", gh, gm)] {
        let ratio = a.as_secs_f64() / b.as_secs_f64();
        assert!(
            (0.67..1.5).contains(&ratio),
            "{what} of another tenant's content answers measurably differently: {a:?} vs {b:?}"
        );
    }
}
