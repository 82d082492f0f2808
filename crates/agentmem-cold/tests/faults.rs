//! Fault injection: failed writes, short writes, disk full, failed fsync.
//! The tier must surface every failure and never return wrong bytes.

mod common;

use agentmem_cold::storage::{Faults, MemStorage};
use agentmem_cold::{ColdError, DiskTier, Durability};
use common::{key, mem_tier};

fn value(i: u64) -> Vec<u8> {
    let n = 100 + (i as usize * 37) % 3000;
    (0..n).map(|j| (i as usize * 31 + j * 7) as u8).collect()
}

#[test]
fn short_writes_are_completed() {
    let s = MemStorage::new();
    let t = mem_tier(&s);
    s.set_faults(Faults {
        short_writes: true,
        ..Default::default()
    });
    for i in 0..100 {
        t.put(&key(i), 1, &value(i)).unwrap();
    }
    s.set_faults(Faults::default());
    drop(t);
    let t = mem_tier(&s);
    for i in 0..100 {
        assert_eq!(t.get(&key(i)).unwrap().unwrap().1, value(i));
    }
}

#[test]
fn failed_writes_are_errors_and_leave_no_trace() {
    let s = MemStorage::new();
    let t = mem_tier(&s);
    for i in 0..10 {
        t.put(&key(i), 1, &value(i)).unwrap();
    }
    // The next write stores half its bytes, then the one after fails.
    s.set_faults(Faults {
        fail_writes_after: Some(1),
        short_writes: true,
        ..Default::default()
    });
    let e = t.put(&key(10), 1, &value(10)).unwrap_err();
    assert!(matches!(e, ColdError::Io { .. }), "{e}");
    assert!(t.get(&key(10)).unwrap().is_none());
    // Not poisoned: the partial record was cut.
    s.set_faults(Faults::default());
    t.put(&key(11), 1, &value(11)).unwrap();
    drop(t);
    let t = mem_tier(&s);
    assert!(t.get(&key(10)).unwrap().is_none());
    for i in (0..10).chain([11]) {
        assert_eq!(t.get(&key(i)).unwrap().unwrap().1, value(i));
    }
    assert_eq!(t.stats().recovery.truncated_bytes, 0);
    assert!(t.verify().is_ok());
}

#[test]
fn disk_full_is_a_clear_error_and_the_tier_stays_readable() {
    let s = MemStorage::new();
    let t = mem_tier(&s);
    t.put(&key(1), 1, &value(1)).unwrap();
    s.set_faults(Faults {
        fail_writes_after: Some(0),
        disk_full: true,
        ..Default::default()
    });
    let e = t.put(&key(2), 1, &value(2)).unwrap_err();
    assert!(matches!(e, ColdError::DiskFull { .. }), "{e}");
    assert!(e.to_string().contains("no space left"), "{e}");
    assert_eq!(t.get(&key(1)).unwrap().unwrap().1, value(1));
    // Space comes back: writing works again without a reopen.
    s.set_faults(Faults::default());
    t.put(&key(2), 1, &value(2)).unwrap();
    assert_eq!(t.get(&key(2)).unwrap().unwrap().1, value(2));
    let as_io: std::io::Error = ColdError::DiskFull {
        dir: "d".into(),
        what: "w".into(),
    }
    .into();
    assert_eq!(as_io.kind(), std::io::ErrorKind::StorageFull);
}

#[test]
fn failed_fsync_poisons_until_reopened() {
    let s = MemStorage::new();
    let t = mem_tier(&s);
    for i in 0..5 {
        t.put_with(&key(i), 1, &value(i), Durability::Sync).unwrap();
    }
    s.set_faults(Faults {
        fail_syncs_after: Some(0),
        ..Default::default()
    });
    let e = t
        .put_with(&key(5), 1, &value(5), Durability::Sync)
        .unwrap_err();
    assert!(matches!(e, ColdError::Io { .. }), "{e}");
    s.set_faults(Faults::default());
    // Writes stop even though fsync works again…
    let e = t.put(&key(6), 1, &value(6)).unwrap_err();
    assert!(matches!(e, ColdError::Poisoned { .. }), "{e}");
    assert!(e.to_string().contains("reopen"), "{e}");
    assert!(t.stats().poisoned.is_some());
    // …reads go on…
    for i in 0..5 {
        assert_eq!(t.get(&key(i)).unwrap().unwrap().1, value(i));
    }
    // …and a power cut keeps every write acknowledged as synced.
    let after = s.power_cut();
    drop(t);
    let t = mem_tier(&after);
    for i in 0..5 {
        assert_eq!(t.get(&key(i)).unwrap().unwrap().1, value(i));
    }
    t.put(&key(6), 1, &value(6)).unwrap();
    assert!(t.stats().poisoned.is_none());
}

#[test]
fn random_faults_never_yield_wrong_bytes() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let s = MemStorage::new();
    let mut t = mem_tier(&s);
    let mut flipped = false;
    for round in 0..40 {
        s.set_faults(Faults {
            fail_writes_after: rng.random_bool(0.5).then(|| rng.random_range(0..20)),
            short_writes: rng.random_bool(0.3),
            fail_syncs_after: rng.random_bool(0.2).then(|| rng.random_range(0..5)),
            disk_full: rng.random_bool(0.5),
        });
        for _ in 0..30 {
            let i = rng.random_range(0..200u64);
            let r = if rng.random_bool(0.8) {
                t.put_with(&key(i), 0, &value(i), Durability::Sync)
            } else {
                t.delete_with(&key(i), Durability::Sync)
            };
            if let Err(e) = r {
                // Every failure is one of the documented kinds, never a panic.
                assert!(
                    matches!(
                        e,
                        ColdError::Io { .. }
                            | ColdError::DiskFull { .. }
                            | ColdError::Poisoned { .. }
                    ),
                    "{e}"
                );
            }
        }
        if rng.random_bool(0.2) {
            let _ = t.compact();
        }
        // Whatever is there must be exact; flip a random bit now and then.
        if rng.random_bool(0.2) {
            let len = s.file_len("seg-00000001.log").unwrap_or(0);
            if len > 100 {
                flipped = true;
                s.flip_bit(
                    "seg-00000001.log",
                    rng.random_range(32..len),
                    rng.random_range(0..8),
                )
                .unwrap();
            }
        }
        for i in 0..200u64 {
            if let Ok(Some((_, v))) = t.get(&key(i)) {
                assert_eq!(v, value(i), "round {round}: wrong bytes for {i}");
            }
        }
        s.set_faults(Faults::default());
        if t.stats().poisoned.is_some() || round % 10 == 9 {
            drop(t);
            // A flipped bit followed by whole records is refused on open
            // (never cut silently); only a flip can cause that.
            t = match DiskTier::builder()
                .segment_size(1 << 20)
                .sync_interval(None)
                .open_storage(std::sync::Arc::new(s.power_cut()))
            {
                Ok(t) => t,
                Err(ColdError::Corrupt { .. }) if flipped => return,
                Err(e) => panic!("round {round}: reopening failed: {e}"),
            };
            for i in 0..200u64 {
                if let Ok(Some((_, v))) = t.get(&key(i)) {
                    assert_eq!(v, value(i));
                }
            }
            return;
        }
    }
}
