//! Tiering under failure and under concurrency: a failed spill loses
//! nothing, an operation the redo log refuses is not applied, and pausing a
//! large agent while others work never yields wrong bytes.

use std::sync::Arc;

use agentmem_core::prelude::*;
use agentmem_core::tier::DiskTier;

mod common;
use common::message;

/// The issue 13 reproduction: 64 KiB budget, disk full while an agent's
/// units are demoted, then space comes back. Every victim the failed spill
/// took must be tried again, so the store gets back under its budget.
#[test]
fn a_failed_spill_returns_every_victim_and_the_store_gets_back_under_budget() {
    use agentmem_cold::storage::Faults;
    let (mem, store, a, conv) = common::small_store_on_mem_storage();
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

/// A redo log that cannot take records (a write fault injected through
/// the `Storage` seam makes the first write fail, and the log refuses
/// everything after it): every operation it refuses must leave the store
/// as it was.
#[test]
fn an_operation_the_redo_log_refuses_is_not_applied() {
    use agentmem_cold::storage::{Faults, MemStorage};
    let disk = MemStorage::new();
    let s = Store::builder()
        .checkpoint_every(None)
        .open_storage(Arc::new(disk.clone()))
        .unwrap();
    let t = TenantId::new("t");
    let a = s.register_agent("a", &t, Importance::default()).unwrap();
    let b = s.register_agent("b", &t, Importance::default()).unwrap();
    let kept = s
        .put(a, Kind::ToolResult, &message(1, 1), Visibility::Private)
        .unwrap();
    let conv = s.create_conversation(a).unwrap();
    s.append(conv, &message(1, 2)).unwrap();
    s.sync().unwrap();
    disk.set_faults(Faults {
        fail_writes_after: Some(0),
        ..Faults::default()
    });
    // The first write after it reaches the file and fails there.
    assert!(s.put(a, Kind::Blob, b"first", Visibility::Private).is_err());
    disk.set_faults(Faults::default());
    let before = s.stats();
    let agents = s.agents().len();
    // Every later operation is refused by the log: none may be applied.
    assert!(s.register_agent("c", &t, Importance::default()).is_err());
    assert!(s
        .register_agent("d", &TenantId::new("new tenant"), Importance::default())
        .is_err());
    assert_eq!(s.agents().len(), agents);
    assert!(s
        .put(a, Kind::Blob, b"second", Visibility::Private)
        .is_err());
    assert!(s
        .put(b, Kind::ToolResult, &message(1, 1), Visibility::Private)
        .is_err());
    assert_eq!(s.unit_info(&kept).unwrap().refs, 1);
    assert!(s.share(a, &kept, b).is_err());
    assert!(s.release(a, &kept).is_err());
    assert_eq!(s.unit_info(&kept).unwrap().refs, 1);
    assert!(s.append(conv, &message(1, 3)).is_err());
    assert_eq!(s.conversation_len(conv).unwrap(), 1);
    assert!(s.create_conversation(b).is_err());
    assert!(s.fork_conversation(b, conv, 1).is_err());
    assert!(s.delete_conversation(conv).is_err());
    assert_eq!(s.read_all(conv).unwrap().len(), 1);
    assert!(s.pause(a).is_err());
    assert_eq!(s.agent_info(a).unwrap().state, AgentState::Active);
    assert!(s.set_importance(a, Importance(9)).is_err());
    assert_eq!(s.agent_info(a).unwrap().importance, Importance::default());
    assert!(s.release_agent(b).is_err());
    assert!(s.agent_info(b).is_ok());
    let after = s.stats();
    assert_eq!(after.mem.total_allocated, before.mem.total_allocated);
    assert_eq!(after.conversations, before.conversations);
    assert_eq!(after.dedup_hits, before.dedup_hits);
    assert_eq!(&s.get(&kept).unwrap()[..], &message(1, 1)[..]);
}

/// Bytes of unit `u` of writer `w`, distinct for every (w, u).
fn unit_bytes(w: usize, u: usize, len: usize) -> Vec<u8> {
    let mut out = format!("writer {w} unit {u}: ").into_bytes();
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(&message(w, u * 31 + i));
        i += 1;
    }
    out.truncate(len);
    out
}

/// One thread pauses and resumes an agent with 4,000 units (compressing
/// and decoding outside the lock, in batches) while two others put, get
/// and append with their own agents and check every byte they read, under
/// a hot budget, a RAM budget and a cold tier small enough that demotions
/// and spills run all the time.
#[test]
fn pausing_a_large_agent_while_others_work_never_yields_wrong_bytes() {
    use agentmem_cold::storage::MemStorage;
    use std::time::{Duration, Instant};
    let tier = DiskTier::builder()
        .sync_interval(None)
        .open_storage(Arc::new(MemStorage::new()))
        .unwrap();
    let store = Store::builder()
        .hot_budget(8 << 20)
        .ram_budget(20 << 20)
        .cold_tier(Arc::new(tier))
        .checkpoint_every(None)
        .train_dictionaries_after(256 << 10)
        .build()
        .unwrap();
    let t = TenantId::new("t");
    let big = store
        .register_agent("big", &t, Importance::default())
        .unwrap();
    let mut big_units = Vec::new();
    for u in 0..4000 {
        let data = unit_bytes(99, u, 8192);
        big_units.push(
            store
                .put(big, Kind::ToolResult, &data, Visibility::Private)
                .unwrap(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let store = store.clone();
            let t = t.clone();
            std::thread::spawn(move || {
                let a = store
                    .register_agent(&format!("w{w}"), &t, Importance::default())
                    .unwrap();
                let conv = store.create_conversation(a).unwrap();
                let mut ids = Vec::new();
                let mut n = 0usize;
                while Instant::now() < deadline && n < 3000 {
                    let data = unit_bytes(w, n, 512 + (n * 97) % 6000);
                    let id = store
                        .put(a, Kind::ToolResult, &data, Visibility::Private)
                        .unwrap();
                    ids.push((id, n, data.len()));
                    store.append(conv, &message(w, n)).unwrap();
                    let (old, on, olen) = ids[(n * 7919) % ids.len()];
                    assert_eq!(
                        &store.get_for(a, &old).unwrap()[..],
                        &unit_bytes(w, on, olen)[..]
                    );
                    let m = (n * 104_729) % (n + 1);
                    let got = store.read_messages(conv, m as u64..m as u64 + 1).unwrap();
                    assert_eq!(&got[0][..], &message(w, m)[..]);
                    n += 1;
                }
                (a, conv, ids, n)
            })
        })
        .collect();
    let mut cycles = 0;
    while Instant::now() < deadline && cycles < 3 {
        store.pause(big).unwrap();
        let u = (cycles * 1237) % 4000;
        assert_eq!(
            &store.get_for(big, &big_units[u]).unwrap()[..],
            &unit_bytes(99, u, 8192)[..]
        );
        store.resume(big).unwrap();
        cycles += 1;
    }
    let done: Vec<_> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(cycles > 0);
    // Everything reads back exactly.
    for (u, id) in big_units.iter().enumerate() {
        assert_eq!(
            &store.get_for(big, id).unwrap()[..],
            &unit_bytes(99, u, 8192)[..]
        );
    }
    for (w, (a, conv, ids, n)) in done.iter().enumerate() {
        for &(id, un, len) in ids {
            assert_eq!(
                &store.get_for(*a, &id).unwrap()[..],
                &unit_bytes(w, un, len)[..]
            );
        }
        let all = store.read_all(*conv).unwrap();
        assert_eq!(all.len(), *n);
        for (i, m) in all.iter().enumerate() {
            assert_eq!(&m[..], &message(w, i)[..]);
        }
    }
    // Parking every agent leaves nothing hot: no unit was lost to the
    // demotions abandoned along the way.
    store.pause(big).unwrap();
    for (a, ..) in &done {
        store.pause(*a).unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.mem.hot_bytes, 0, "{:?}", stats.mem);
    let units: u64 = stats.tiers.iter().map(|t| t.units).sum();
    let expected = 4000 + done.iter().map(|d| d.2.len() as u64).sum::<u64>();
    assert!(
        units >= expected,
        "{units} units, expected at least {expected}"
    );
}

/// What a SIGKILL leaves: the directory's files as they are now.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Checkpoints switch redo files outside the state lock, so writes land
/// between the image's operation number and the new file: every write
/// acknowledged while checkpoints ran comes back after a crash.
#[test]
fn writes_acknowledged_during_checkpoints_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::builder()
        .checkpoint_every(None)
        .ram_budget(1 << 20)
        .open(dir.path())
        .unwrap();
    let a = s
        .register_agent("a", &TenantId::new("t"), Importance::default())
        .unwrap();
    let conv = s.create_conversation(a).unwrap();
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            for i in 0..400 {
                let data = unit_bytes(5, i, 300 + i * 13 % 3000);
                ids.push((
                    s.put(a, Kind::ToolResult, &data, Visibility::Private)
                        .unwrap(),
                    i,
                    data.len(),
                ));
                s.append(conv, &message(5, i)).unwrap();
            }
            ids
        })
    };
    let mut checkpoints = 0;
    while !writer.is_finished() || checkpoints < 3 {
        s.checkpoint().unwrap();
        checkpoints += 1;
    }
    let ids = writer.join().unwrap();
    // Killed now: what is in the files is all there is.
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    drop(s);
    let r = Store::open(crashed.path()).unwrap();
    for (id, i, len) in ids {
        assert_eq!(&r.get(&id).unwrap()[..], &unit_bytes(5, i, len)[..]);
    }
    let all = r.read_all(conv).unwrap();
    assert_eq!(all.len(), 400);
    for (i, m) in all.iter().enumerate() {
        assert_eq!(&m[..], &message(5, i)[..]);
    }
}
