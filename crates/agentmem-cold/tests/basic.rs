//! Round trips, reopening, torn tails, bit flips, locks and versions.

mod common;

use std::sync::Arc;

use agentmem_cold::storage::{MemStorage, Storage};
use agentmem_cold::{ColdError, DiskTier, Durability};
use common::{key, mem_tier};

/// Deterministic value of a length derived from the key.
fn value(i: u64) -> Vec<u8> {
    let k = key(i);
    let len = 1 + (u16::from_le_bytes([k[0], k[1]]) as usize % 9000);
    let mut out = Vec::with_capacity(len);
    let mut x = blake3::Hasher::new();
    x.update(&k);
    let mut r = x.finalize_xof();
    out.resize(len, 0);
    r.fill(&mut out);
    out
}

#[test]
fn put_get_delete_and_reopen_with_and_without_snapshot() {
    let s = MemStorage::new();
    let t = mem_tier(&s);
    for i in 0..500 {
        t.put(&key(i), i as u32, &value(i)).unwrap();
    }
    for i in 0..500 {
        if i % 3 == 0 {
            t.delete(&key(i)).unwrap();
        }
    }
    t.put(&key(7), 99, b"overwritten").unwrap();
    let check = |t: &DiskTier| {
        for i in 0..500 {
            let got = t.get(&key(i)).unwrap();
            if i == 7 {
                assert_eq!(got, Some((99, b"overwritten".to_vec())));
            } else if i % 3 == 0 {
                assert_eq!(got, None, "{i} was deleted");
            } else {
                assert_eq!(got, Some((i as u32, value(i))), "{i}");
            }
        }
    };
    check(&t);
    assert!(t.stats().segments > 1, "1 MiB segments must have rotated");
    assert!(t.stats().dead_bytes > 0);
    drop(t);
    // Clean close wrote a snapshot: nothing to replay.
    let t = mem_tier(&s);
    let r = t.stats().recovery;
    assert!(r.from_snapshot);
    assert_eq!(r.replayed_records, 0);
    check(&t);
    drop(t);
    // Without the snapshot, every segment is replayed to the same state.
    s.remove("index.snap").unwrap();
    let t = mem_tier(&s);
    assert!(!t.stats().recovery.from_snapshot);
    check(&t);
    assert!(t.verify().is_ok());
}

#[test]
fn torn_tail_is_cut_and_earlier_records_survive() {
    let s = MemStorage::new();
    let t = mem_tier(&s);
    for i in 0..10 {
        t.put(&key(i), 0, &value(i)).unwrap();
    }
    t.sync().unwrap();
    std::mem::forget(t); // a crash: no closing snapshot, lock leaks
    let crashed = s.power_cut();
    let len = crashed.file_len("seg-00000001.log").unwrap();
    // Tear the last record: cut it in the middle.
    crashed
        .open("seg-00000001.log", false)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let t = mem_tier(&crashed);
    let r = t.stats().recovery;
    assert!(r.truncated_bytes > 0, "{r:?}");
    for i in 0..9 {
        assert_eq!(t.get(&key(i)).unwrap().unwrap().1, value(i));
    }
    assert_eq!(t.get(&key(9)).unwrap(), None);
    // The tier goes on appending after the cut.
    t.put(&key(9), 0, &value(9)).unwrap();
    drop(t);
    let t = mem_tier(&crashed);
    assert_eq!(t.get(&key(9)).unwrap().unwrap().1, value(9));
}

/// A damaged record followed by whole ones is not a torn tail: cutting it
/// would drop every record after it. Opening refuses, naming the segment
/// and the offset; a damaged *last* record is still cut as torn.
#[test]
fn damage_in_the_middle_of_a_segment_is_refused_not_cut() {
    let s = MemStorage::new();
    let t = mem_tier(&s);
    let mut ends = Vec::new();
    for i in 0..10 {
        t.put(&key(i), 0, &value(i)).unwrap();
        ends.push(s.file_len("seg-00000001.log").unwrap());
    }
    t.sync().unwrap();
    std::mem::forget(t); // a crash: no closing snapshot, lock leaks
    let mid = s.power_cut();
    // A bit of record 3's value.
    let at = ends[2] + 48 + 1;
    mid.flip_bit("seg-00000001.log", at, 2).unwrap();
    match DiskTier::builder()
        .segment_size(1 << 20)
        .sync_interval(None)
        .open_storage(Arc::new(mid.clone()))
    {
        Err(ColdError::Corrupt { what, detail }) => {
            assert!(what.contains("seg-00000001.log"), "{what}");
            assert!(detail.contains(&format!("byte {}", ends[2])), "{detail}");
        }
        Ok(t) => panic!("opened with {} of 10 keys: the rest silently cut", t.len()),
        Err(e) => panic!("expected Corrupt, got {e}"),
    }
    // Read-only (`agentmem verify`) refuses the same way.
    assert!(DiskTier::builder()
        .read_only(true)
        .open_storage(Arc::new(mid.clone()))
        .is_err());
    // Nothing was cut.
    assert_eq!(mid.file_len("seg-00000001.log"), Some(ends[9]));
    // The same flip in the last record is a torn tail.
    let last = s.power_cut();
    last.flip_bit("seg-00000001.log", ends[8] + 48 + 1, 2)
        .unwrap();
    let t = mem_tier(&last);
    assert_eq!(t.len(), 9);
    assert!(t.stats().recovery.truncated_bytes > 0);
}

#[test]
fn a_flipped_bit_is_an_error_never_data() {
    let s = MemStorage::new();
    let t = mem_tier(&s);
    t.put(&key(1), 5, &value(1)).unwrap();
    t.put(&key(2), 5, &value(2)).unwrap();
    // Flip a bit inside the first record's value.
    s.flip_bit("seg-00000001.log", 32 + 48 + 10, 3).unwrap();
    match t.get(&key(1)) {
        Err(ColdError::Corrupt { .. }) => {}
        other => panic!("expected a corruption error, got {other:?}"),
    }
    assert_eq!(t.get(&key(2)).unwrap().unwrap().1, value(2));
    let v = t.verify();
    assert!(!v.is_ok());
    assert!(v.problems.iter().any(|p| p.contains("checksum")), "{v:?}");
}

#[test]
fn second_open_of_a_directory_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let t = DiskTier::open(dir.path()).unwrap();
    t.put(&key(1), 0, b"x").unwrap();
    let e = DiskTier::open(dir.path()).unwrap_err();
    assert!(matches!(e, ColdError::Locked { .. }), "{e}");
    assert!(e.to_string().contains("already opened"), "{e}");
    drop(t);
    let t = DiskTier::open(dir.path()).unwrap();
    assert_eq!(t.get(&key(1)).unwrap().unwrap().1, b"x");
}

#[test]
fn incompatible_version_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    drop(DiskTier::open(dir.path()).unwrap());
    let seg = dir.path().join("seg-00000001.log");
    let mut b = std::fs::read(&seg).unwrap();
    b[8] = 77;
    std::fs::write(&seg, b).unwrap();
    std::fs::remove_file(dir.path().join("index.snap")).unwrap();
    let e = DiskTier::open(dir.path()).unwrap_err();
    assert!(
        matches!(e, ColdError::Incompatible { found: 77, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("format version 77"), "{e}");
}

#[test]
fn read_only_open_reads_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let t = DiskTier::open(dir.path()).unwrap();
    t.put(&key(3), 1, &value(3)).unwrap();
    drop(t);
    let r = DiskTier::builder()
        .read_only(true)
        .open(dir.path())
        .unwrap();
    assert_eq!(r.get(&key(3)).unwrap().unwrap().1, value(3));
    let e = r.put(&key(4), 0, b"no").unwrap_err();
    assert!(matches!(e, ColdError::OpenedReadOnly { .. }), "{e}");
    // Two readers may share the directory.
    let r2 = DiskTier::builder()
        .read_only(true)
        .open(dir.path())
        .unwrap();
    assert_eq!(r2.len(), 1);
}

#[test]
fn sync_durability_survives_a_power_cut() {
    let s = MemStorage::new();
    let t = mem_tier(&s);
    for i in 0..50 {
        t.put_with(&key(i), 0, &value(i), Durability::Sync).unwrap();
    }
    // Not synced: may be lost in a power cut, but never half there.
    t.put(&key(50), 0, &value(50)).unwrap();
    let after = s.power_cut();
    std::mem::forget(t);
    let t = mem_tier(&after);
    for i in 0..50 {
        assert_eq!(t.get(&key(i)).unwrap().unwrap().1, value(i));
    }
    assert!(t.get(&key(50)).unwrap().is_none());
    assert!(t.verify().is_ok());
}

#[test]
fn group_commit_makes_writes_durable_within_the_interval() {
    let s = MemStorage::new();
    let t = DiskTier::builder()
        .sync_interval(Some(std::time::Duration::from_millis(5)))
        .open_storage(Arc::new(s.clone()))
        .unwrap();
    for i in 0..20 {
        t.put(&key(i), 0, &value(i)).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let after = s.power_cut();
    std::mem::forget(t);
    let t = mem_tier(&after);
    for i in 0..20 {
        assert_eq!(t.get(&key(i)).unwrap().unwrap().1, value(i));
    }
}
