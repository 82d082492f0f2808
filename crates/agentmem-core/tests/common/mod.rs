//! Helpers shared by the store's integration tests.
#![allow(dead_code)] // each test file uses its own subset

use std::sync::Arc;

use agentmem_cold::storage::MemStorage;
use agentmem_core::prelude::*;
use agentmem_core::tier::DiskTier;

/// A store with a 64 KiB RAM budget over a cold tier on in-memory storage
/// (faults injectable through the returned `MemStorage`), one agent and
/// one conversation of it.
pub fn small_store_on_mem_storage() -> (MemStorage, Store, AgentId, ConversationId) {
    let mem = MemStorage::new();
    let tier = DiskTier::builder()
        .sync_interval(None)
        .open_storage(Arc::new(mem.clone()))
        .unwrap();
    let store = Store::builder()
        .ram_budget(64 << 10)
        .cold_tier(Arc::new(tier))
        .build()
        .unwrap();
    let a = store
        .register_agent("a", &TenantId::new("t"), Importance::default())
        .unwrap();
    let conv = store.create_conversation(a).unwrap();
    (mem, store, a, conv)
}

/// A JSON chat message for agent `a`, number `i`: hex of a hash stream,
/// so it compresses about 2x, like real tool output.
pub fn message(a: usize, i: usize) -> Vec<u8> {
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
