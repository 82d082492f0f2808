//! Arbitrary segment and snapshot files: opening, reading every key and
//! verifying give errors, never a panic or wrong bytes.
#![no_main]

use std::sync::Arc;

use agentmem_cold::storage::{MemStorage, Storage};
use agentmem_cold::DiskTier;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().copied().unwrap_or(0) as usize * data.len() / 256;
    let (seg, snap) = data.split_at(split.min(data.len()));
    let mem = MemStorage::new();
    let f = mem.open("seg-00000001.log", true).unwrap();
    let mut header = agentmem_cold::format::segment_header(1).to_vec();
    header.extend_from_slice(seg);
    f.write_at(&header, 0).unwrap();
    if !snap.is_empty() {
        mem.open("index.snap", true)
            .unwrap()
            .write_at(snap, 0)
            .unwrap();
    }
    let Ok(t) = DiskTier::builder()
        .sync_interval(None)
        .open_storage(Arc::new(mem))
    else {
        return;
    };
    for k in t.keys() {
        let _ = t.get(&k);
    }
    let _ = t.verify();
});
