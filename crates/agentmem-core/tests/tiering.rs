//! Tiering under failure and under concurrency: a failed spill loses
//! nothing, an operation the redo log refuses is not applied, and pausing a
//! large agent while others work never yields wrong bytes.

use std::sync::Arc;

use agentmem_core::prelude::*;
use agentmem_core::tier::DiskTier;

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

/// The issue 13 reproduction: 64 KiB budget, disk full while an agent's
/// units are demoted, then space comes back. Every victim the failed spill
/// took must be tried again, so the store gets back under its budget.
#[test]
fn a_failed_spill_returns_every_victim_and_the_store_gets_back_under_budget() {
    use agentmem_cold::storage::{Faults, MemStorage};
    let mem = MemStorage::new();
    let tier = DiskTier::builder()
        .sync_interval(None)
        .open_storage(Arc::new(mem.clone()))
        .unwrap();
    let store = Store::builder()
        .ram_budget(64 << 10)
        .cold_tier(Arc::new(tier.clone()))
        .build()
        .unwrap();
    let a = store
        .register_agent("a", &TenantId::new("t"), Importance::default())
        .unwrap();
    let conv = store.create_conversation(a).unwrap();
    let mut blobs = Vec::new();
    mem.set_faults(Faults {
        fail_writes_after: Some(0),
        disk_full: true,
        ..Default::default()
    });
    for i in 0..300 {
        store.append(conv, &message(1, i)).unwrap();
        if i % 10 == 0 {
            let data = message(2, i).repeat(3);
            blobs.push((
                store
                    .put(a, Kind::ToolResult, &data, Visibility::Private)
                    .unwrap(),
                data,
            ));
        }
    }
    store.pause(a).unwrap();
    assert!(store.cold_error().is_some());
    assert!(store.stats().over_budget);
    // Space comes back: the next write's spill moves every unit it needs to.
    mem.set_faults(Faults::default());
    let b = store
        .register_agent("b", &TenantId::new("t"), Importance::default())
        .unwrap();
    store
        .put(b, Kind::Blob, b"space is back", Visibility::Private)
        .unwrap();
    let stats = store.stats();
    assert!(
        !stats.over_budget,
        "still over the budget after space returned: {:?}",
        stats.mem
    );
    assert!(stats.mem.hot_bytes + stats.mem.warm_bytes <= 64 << 10);
    let all = store.read_all(conv).unwrap();
    assert_eq!(all.len(), 300);
    for (i, m) in all.iter().enumerate() {
        assert_eq!(&m[..], &message(1, i)[..]);
    }
    for (id, data) in &blobs {
        assert_eq!(&store.get(id).unwrap()[..], &data[..]);
    }
}
