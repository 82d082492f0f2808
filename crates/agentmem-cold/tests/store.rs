//! The store with a disk tier attached: warm victims go cold under the RAM
//! budget, come back on access and resume, and are deleted when released.

use std::sync::Arc;

use agentmem_cold::DiskTier;
use agentmem_core::prelude::*;

fn message(a: usize, i: usize) -> Vec<u8> {
    // Hex of a hash stream: compresses about 2x, like real tool output.
    let mut noise = vec![0u8; 100 + (a * 7 + i) % 400];
    blake3::Hasher::new()
        .update(&[a as u8, i as u8, (i >> 8) as u8])
        .finalize_xof()
        .fill(&mut noise);
    let hex: String = noise.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        r#"{{"role":"{}","content":"agent {a} message {i}: {hex}"}}"#,
        if i % 2 == 0 { "user" } else { "assistant" },
    )
    .into_bytes()
}

#[test]
fn units_go_cold_under_the_ram_budget_and_come_back_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let cold = DiskTier::open(dir.path()).unwrap();
    let store = Store::builder()
        .ram_budget(256 << 10)
        .hot_budget(64 << 10)
        .cold_tier(Arc::new(cold.clone()))
        .build()
        .unwrap();
    let tenant = TenantId::new("t");
    let mut agents = Vec::new();
    for a in 0..40 {
        let id = store
            .register_agent(&format!("a{a}"), &tenant, Importance::default())
            .unwrap();
        let conv = store.create_conversation(id).unwrap();
        let blob = store
            .put(
                id,
                Kind::ToolResult,
                &message(a, 999).repeat(20),
                Visibility::Private,
            )
            .unwrap();
        for i in 0..150 {
            store.append(conv, &message(a, i)).unwrap();
        }
        store.pause(id).unwrap();
        agents.push((id, conv, blob, a));
    }
    let stats = store.stats();
    assert!(
        stats.mem.cold_bytes > 0,
        "nothing went cold: {:?}",
        stats.mem
    );
    assert!(
        stats.mem.hot_bytes + stats.mem.warm_bytes <= 256 << 10,
        "over the RAM budget: {:?}",
        stats.mem
    );
    assert!(!cold.is_empty());
    // Every message and unit reads back exactly, from whatever tier.
    for &(id, conv, blob, a) in &agents {
        let all = store.read_all(conv).unwrap();
        assert_eq!(all.len(), 150);
        for (i, m) in all.iter().enumerate() {
            assert_eq!(&m[..], &message(a, i)[..]);
        }
        assert_eq!(
            &store.get_for(id, &blob).unwrap()[..],
            &message(a, 999).repeat(20)[..]
        );
    }
    // Resume brings an agent's units back; appends to a cold open chunk work.
    let (id, conv, _, a) = agents[3];
    let r = store.resume(id).unwrap();
    assert!(r.units > 0);
    store.append(conv, &message(a, 150)).unwrap();
    assert_eq!(
        &store.read_last(conv, 1).unwrap()[0][..],
        &message(a, 150)[..]
    );
    // Releasing agents deletes their cold records.
    let before = cold.len();
    for &(id, ..) in &agents[..20] {
        store.release_agent(id).unwrap();
    }
    // Deletes are applied by the next spill (any write).
    let (id, conv, _, a) = agents[30];
    store.resume(id).unwrap();
    store.append(conv, &message(a, 150)).unwrap();
    assert!(cold.len() < before, "{} !< {before}", cold.len());
    assert!(cold.verify().is_ok());
}
