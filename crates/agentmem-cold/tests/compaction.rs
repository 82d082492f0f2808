//! Compaction reclaims dead space while readers and writers go on.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentmem_cold::DiskTier;
use common::key;

fn value(i: u64, gen: u64) -> Vec<u8> {
    let n = 500 + (i as usize * 131) % 4000;
    let mut v: Vec<u8> = (0..n).map(|j| (i as usize + j) as u8).collect();
    v[..8].copy_from_slice(&gen.to_le_bytes());
    v
}

#[test]
fn compaction_under_concurrent_reads_and_writes_keeps_every_live_unit() {
    let dir = tempfile::tempdir().unwrap();
    let t = DiskTier::builder()
        .segment_size(1 << 20)
        .auto_compact(false)
        .open(dir.path())
        .unwrap();
    const N: u64 = 2000;
    for i in 0..N {
        t.put(&key(i), 0, &value(i, 0)).unwrap();
    }
    // Kill most of the early segments' records.
    for i in 0..N {
        if i % 4 != 0 {
            t.delete(&key(i)).unwrap();
        }
    }
    let before = t.stats();
    assert!(before.dead_bytes > before.disk_bytes / 2, "{before:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    // Readers: every live key reads back exactly, all the time.
    for r in 0..2u64 {
        let (t, stop) = (t.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for i in (0..N).step_by(4 * (1 + r as usize)) {
                    if i % 4 == 0 {
                        let (tag, v) = t.get(&key(i)).unwrap().expect("live key");
                        assert_eq!(v, value(i, u64::from(tag)));
                        reads += 1;
                    }
                }
            }
            reads
        }));
    }
    // A writer overwriting live keys with new generations.
    {
        let (t, stop) = (t.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut gen = 1u64;
            while !stop.load(Ordering::Relaxed) {
                for i in (0..N).step_by(40) {
                    t.put(&key(i), gen as u32, &value(i, gen)).unwrap();
                }
                gen += 1;
            }
            gen
        }));
    }
    let mut reclaimed = 0;
    for _ in 0..5 {
        let r = t.compact().unwrap();
        reclaimed += r.reclaimed_bytes;
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for th in threads {
        assert!(th.join().unwrap() > 0);
    }
    assert!(reclaimed > 0, "compaction reclaimed nothing");
    let after = t.stats();
    assert!(after.compacted_segments > 0);
    let check = |t: &DiskTier| {
        for i in 0..N {
            match t.get(&key(i)).unwrap() {
                Some((tag, v)) => {
                    assert_eq!(i % 4, 0, "deleted key {i} came back");
                    assert_eq!(v, value(i, u64::from(tag)));
                }
                None => assert_ne!(i % 4, 0, "live key {i} lost"),
            }
        }
    };
    check(&t);
    assert!(t.verify().is_ok());
    drop(t);
    // And after reopening, with and without the snapshot.
    let t = DiskTier::open(dir.path()).unwrap();
    check(&t);
    drop(t);
    std::fs::remove_file(dir.path().join("index.snap")).unwrap();
    let t = DiskTier::open(dir.path()).unwrap();
    check(&t);
}

#[test]
fn a_small_store_reclaims_dead_space_in_its_only_segment() {
    let dir = tempfile::tempdir().unwrap();
    // Default 64 MiB segments: this store never fills one.
    let t = DiskTier::builder()
        .auto_compact(false)
        .open(dir.path())
        .unwrap();
    const N: u64 = 2000;
    for i in 0..N {
        t.put(&key(i), 0, &value(i, 0)).unwrap();
    }
    for i in 0..N {
        if i % 4 != 0 {
            t.delete(&key(i)).unwrap();
        }
    }
    let before = t.stats();
    assert_eq!(before.segments, 1, "{before:?}");
    let r = t.compact().unwrap();
    assert!(r.rolled_active && r.segments == 1, "{r:?}");
    let after = t.stats();
    assert!(
        after.disk_bytes * 2 < before.disk_bytes,
        "{} !< {} / 2",
        after.disk_bytes,
        before.disk_bytes
    );
    // Nothing to do a second time: too few dead bytes to roll again.
    assert!(!t.compact().unwrap().rolled_active);
    let check = |t: &DiskTier| {
        for i in 0..N {
            let got = t.get(&key(i)).unwrap();
            if i % 4 == 0 {
                assert_eq!(got.unwrap().1, value(i, 0), "key {i}");
            } else {
                assert!(got.is_none(), "deleted key {i} is back");
            }
        }
    };
    check(&t);
    drop(t);
    let t = DiskTier::open(dir.path()).unwrap();
    check(&t);
    assert!(t.verify().is_ok());
}
