//! The redo log: what a store acknowledged since its last checkpoint comes
//! back after a crash, with the same content and conversation ids; a torn
//! tail is cut; a log that does not follow the image is refused.

use std::path::{Path, PathBuf};

use agentmem_core::prelude::*;
use agentmem_core::Durability;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn logs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

fn blob(i: usize) -> Vec<u8> {
    let mut v = vec![0u8; 300 + i * 131];
    blake3::Hasher::new()
        .update(&i.to_le_bytes())
        .finalize_xof()
        .fill(&mut v);
    v
}

/// Everything a reader can see of the store.
fn view(s: &Store, convs: &[ConversationId], ids: &[(AgentId, ContentId)]) -> Vec<String> {
    let mut v: Vec<String> = s.agents().iter().map(|a| format!("{a:?}")).collect();
    for &c in convs {
        match s.read_all(c) {
            Ok(m) => {
                let mut h = blake3::Hasher::new();
                for x in &m {
                    h.update(&(x.len() as u64).to_le_bytes()).update(x);
                }
                v.push(format!("{c:?} {} messages {}", m.len(), h.finalize()));
            }
            Err(e) => v.push(format!("{c:?} {e}")),
        }
    }
    for (a, id) in ids {
        match s.get_for(*a, id) {
            Ok(b) => v.push(format!("{id} {}", blake3::hash(&b))),
            Err(e) => v.push(format!("{id} {e}")),
        }
    }
    v
}

#[test]
fn a_crash_after_sync_loses_nothing_and_replay_gives_the_same_ids() {
    for durability in [Durability::Sync, Durability::DEFAULT] {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let store = Store::builder()
            .durability(durability)
            .checkpoint_every(None)
            .open(&live)
            .unwrap();
        let t = TenantId::new("t");
        let a = store
            .register_agent("a", &t, Importance::default())
            .unwrap();
        let b = store.register_agent("b", &t, Importance(7)).unwrap();
        let c = store
            .register_agent("c", &TenantId::new("u"), Importance::default())
            .unwrap();
        // Some work, then a checkpoint, then more work only the log has.
        let ca = store.create_conversation(a).unwrap();
        for i in 0..40 {
            store
                .append(ca, format!("message {i} {}", "y".repeat(i * 10)).as_bytes())
                .unwrap();
        }
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push((
                a,
                store
                    .put(a, Kind::ToolResult, &blob(i), Visibility::Private)
                    .unwrap(),
            ));
        }
        store.checkpoint().unwrap();
        assert_eq!(logs(&live).len(), 1, "the checkpoint cut the log");
        for i in 5..15 {
            ids.push((
                b,
                store
                    .put(b, Kind::Blob, &blob(i), Visibility::Private)
                    .unwrap(),
            ));
        }
        let public = store
            .put(c, Kind::SystemPrompt, &blob(99), Visibility::Public)
            .unwrap();
        ids.push((c, public));
        store.share(a, &ids[0].1, b).unwrap();
        ids.push((b, ids[0].1));
        store.release(a, &ids[1].1).unwrap();
        let forked = store.fork_conversation(b, ca, 25).unwrap();
        let cb = store.create_conversation(b).unwrap();
        store.append(cb, b"hello").unwrap();
        let doomed = store.create_conversation(c).unwrap();
        store.append(doomed, b"gone soon").unwrap();
        store.delete_conversation(doomed).unwrap();
        store.set_state(a, AgentState::RunningTool).unwrap();
        store.pause(b).unwrap();
        store.set_importance(c, Importance(3)).unwrap();
        let gone = store
            .register_agent("gone", &t, Importance::default())
            .unwrap();
        store
            .put(gone, Kind::ToolResult, &blob(50), Visibility::Private)
            .unwrap();
        store.release_agent(gone).unwrap();
        for i in 40..60 {
            store.append(ca, format!("message {i}").as_bytes()).unwrap();
        }
        store.sync().unwrap();
        let (logged, durable) = store.log_position();
        assert!(logged > 0 && durable == logged, "{logged} {durable}");
        let convs = [ca, forked, cb, doomed];
        let before = view(&store, &convs, &ids);
        // The crash: the directory as it is now, store still running.
        let crashed = dir.path().join("crashed");
        copy_dir(&live, &crashed);
        drop(store);
        let s = Store::open(&crashed).unwrap();
        let report = s.open_report().unwrap();
        assert!(report.replayed >= 40, "{report:?}");
        let after = view(&s, &convs, &ids);
        for (x, y) in after.iter().zip(&before) {
            assert_eq!(x, y, "{durability:?}");
        }
        assert_eq!(after.len(), before.len());
        // A new conversation takes the next id, as it would have.
        let next = s.create_conversation(a).unwrap();
        assert_eq!(next, ConversationId(doomed.0 + 1));
        s.append(next, b"after the crash").unwrap();
        let convs = [ca, forked, cb, doomed, next];
        let before = view(&s, &convs, &ids);
        // Closed without a checkpoint: the log keeps the replayed work and
        // the new one, and the next open replays both to the same state.
        drop(s);
        let s = Store::open(&crashed).unwrap();
        assert_eq!(view(&s, &convs, &ids), before);
    }
}

#[test]
fn a_torn_tail_is_cut_and_a_log_that_skips_operations_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = Store::builder()
        .durability(Durability::Sync)
        .checkpoint_every(None)
        .open(&live)
        .unwrap();
    let a = store
        .register_agent("a", &TenantId::new("t"), Importance::default())
        .unwrap();
    let conv = store.create_conversation(a).unwrap();
    for i in 0..10 {
        store.append(conv, format!("m{i}").as_bytes()).unwrap();
    }
    let torn = dir.path().join("torn");
    copy_dir(&live, &torn);
    drop(store);
    // Half a record at the end, as a crash mid-write leaves it.
    let log = logs(&torn).pop().unwrap();
    let whole = std::fs::metadata(&log).unwrap().len();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 5, 6]).unwrap();
    }
    // Read without opening: the torn tail does not count, the rest does.
    {
        let tier = agentmem_core::tier::DiskTier::builder()
            .read_only(true)
            .open(&torn)
            .unwrap();
        let mut problems = Vec::new();
        agentmem_core::check_references(&tier, &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }
    assert!(std::fs::metadata(&log).unwrap().len() > whole);
    let s = Store::open(&torn).unwrap();
    assert_eq!(s.conversation_len(conv).unwrap(), 10);
    // What was replayed is in the image now: the log starts afresh.
    assert!(!log.exists(), "the replayed log was not checkpointed away");
    s.append(conv, b"after the cut").unwrap();
    s.append(conv, b"and one more").unwrap();
    let flipped = dir.path().join("flipped");
    copy_dir(&torn, &flipped);
    drop(s);
    let s = Store::open(&torn).unwrap();
    assert_eq!(&s.read_last(conv, 1).unwrap()[0][..], b"and one more");
    drop(s);
    // A flipped bit in the last record: that record is torn off too.
    let log = logs(&flipped).pop().unwrap();
    let bytes = std::fs::read(&log).unwrap();
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 2] ^= 0x10;
    std::fs::write(&log, &bad).unwrap();
    let s = Store::open(&flipped).unwrap();
    assert_eq!(s.conversation_len(conv).unwrap(), 11);
    drop(s);
    // A log whose first operations are missing does not follow the image.
    let gap = dir.path().join("gap");
    copy_dir(&live, &gap);
    let log = logs(&gap).pop().unwrap();
    let name = log.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(name, format!("redo-{:016x}.wal", 0));
    std::fs::rename(&log, gap.join(format!("redo-{:016x}.wal", 3))).unwrap();
    let e = Store::open(&gap).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
    // `agentmem verify` (check_references) reports it too; on the intact
    // copy it finds nothing wrong.
    for (d, bad) in [(&gap, true), (&live, false)] {
        let tier = agentmem_core::tier::DiskTier::open(d).unwrap();
        let mut problems = Vec::new();
        agentmem_core::check_references(&tier, &mut problems).unwrap();
        assert_eq!(!problems.is_empty(), bad, "{problems:?}");
    }
}

#[test]
fn checkpoint_mode_logs_nothing_and_loses_what_no_checkpoint_covered() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = Store::builder()
        .durability(Durability::Checkpoint)
        .checkpoint_every(None)
        .open(&live)
        .unwrap();
    let a = store
        .register_agent("a", &TenantId::new("t"), Importance::default())
        .unwrap();
    store.sync().unwrap(); // a checkpoint in this mode
    let id = store
        .put(a, Kind::ToolResult, &blob(1), Visibility::Private)
        .unwrap();
    assert_eq!(store.log_position(), (0, 0));
    let crashed = dir.path().join("crashed");
    copy_dir(&live, &crashed);
    drop(store);
    let s = Store::open(&crashed).unwrap();
    assert_eq!(s.agents().len(), 1);
    assert!(s.get_for(a, &id).is_err());
}

#[test]
fn concurrent_writers_and_checkpoints_replay_to_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = Store::builder()
        .ram_budget(512 << 10)
        .checkpoint_every(Some(std::time::Duration::from_millis(7)))
        .open(&live)
        .unwrap();
    let t = TenantId::new("t");
    let agents: Vec<(AgentId, ConversationId)> = (0..4)
        .map(|i| {
            let a = store
                .register_agent(&format!("w{i}"), &t, Importance::default())
                .unwrap();
            (a, store.create_conversation(a).unwrap())
        })
        .collect();
    let ids = std::sync::Mutex::new(Vec::new());
    let forks = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (w, &(a, c)) in agents.iter().enumerate() {
            let store = &store;
            let ids = &ids;
            let forks = &forks;
            s.spawn(move || {
                for i in 0..300 {
                    store
                        .append(c, format!("w{w} m{i} {}", "z".repeat(i % 200)).as_bytes())
                        .unwrap();
                    if i % 3 == 0 {
                        let id = store
                            .put(
                                a,
                                Kind::ToolResult,
                                &blob(w * 1000 + i),
                                Visibility::Private,
                            )
                            .unwrap();
                        ids.lock().unwrap().push((a, id));
                    }
                    if i % 50 == 25 {
                        let f = store.fork_conversation(a, c, i as u64 / 2).unwrap();
                        forks.lock().unwrap().push(f);
                    }
                    if i % 7 == 0 {
                        store.set_state(a, AgentState::WaitingForModel).unwrap();
                        store.set_state(a, AgentState::Active).unwrap();
                    }
                }
            });
        }
    });
    store.sync().unwrap();
    let ids = ids.into_inner().unwrap();
    let mut convs: Vec<ConversationId> = agents.iter().map(|x| x.1).collect();
    convs.extend(forks.into_inner().unwrap());
    let before = view(&store, &convs, &ids);
    // Closed without a final checkpoint (the periodic one keeps running
    // until the drop, so copying the directory meanwhile would not be a
    // point-in-time image): what the last checkpoint missed is replayed.
    drop(store);
    let s = Store::open(&live).unwrap();
    let after = view(&s, &convs, &ids);
    for (x, y) in after.iter().zip(&before) {
        assert_eq!(x, y);
    }
    assert_eq!(after.len(), before.len());
}

/// The issue's case: 60 acknowledged puts, a crash, one bit flipped a third
/// of the way into the redo log. Every later record is whole, so this is
/// damage, not a torn tail: opening refuses, naming the file and offset,
/// and `check_references` (`agentmem verify`) reports it — rather than
/// opening with 19 units and dropping 41 acknowledged ones for good.
#[test]
fn a_damaged_record_followed_by_whole_ones_is_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = Store::builder()
        .durability(Durability::Sync)
        .checkpoint_every(None)
        .open(&live)
        .unwrap();
    let a = store
        .register_agent("a", &TenantId::new("t"), Importance::default())
        .unwrap();
    let ids: Vec<ContentId> = (0..60)
        .map(|i| {
            store
                .put(a, Kind::ToolResult, &blob(i), Visibility::Private)
                .unwrap()
        })
        .collect();
    // The crash: what the killed process left on disk.
    let crashed = dir.path().join("crashed");
    copy_dir(&live, &crashed);
    drop(store);
    let log = logs(&crashed).pop().unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x08;
    std::fs::write(&log, &bytes).unwrap();
    match Store::open(&crashed) {
        Err(Error::Redo(agentmem_core::RedoError::Damaged { file, offset, .. })) => {
            assert_eq!(file, log);
            assert!(
                offset <= at as u64 && at as u64 - offset < 8 + 300 + 60 * 131 + 64,
                "damage at {at}, reported at {offset}"
            );
        }
        Ok(s) => panic!(
            "opened a damaged log; {} of 60 units readable",
            ids.iter().filter(|id| s.get_for(a, id).is_ok()).count()
        ),
        Err(e) => panic!("expected Error::Redo(Damaged), got {e}"),
    }
    let e = Store::open(&crashed).err().unwrap().to_string();
    assert!(
        e.contains(&log.display().to_string()) && e.contains("byte"),
        "{e}"
    );
    // The log was left as it was, for whoever repairs it.
    assert_eq!(std::fs::read(&log).unwrap(), bytes);
    let tier = agentmem_core::tier::DiskTier::builder()
        .read_only(true)
        .open(&crashed)
        .unwrap();
    let mut problems = Vec::new();
    agentmem_core::check_references(&tier, &mut problems).unwrap();
    assert!(
        problems.iter().any(|p| p.contains("damaged at byte")),
        "{problems:?}"
    );
    // The intact directory opens with all 60.
    let s = Store::open(&live).unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(&s.get_for(a, id).unwrap()[..], &blob(i)[..]);
    }
}

/// A crash loop: open, work, be killed before any periodic checkpoint.
/// Opening checkpoints what it replayed, so each open replays only the
/// previous run's operations and the log does not grow from run to run
/// (before, run N replayed all N runs' operations: after 40 SIGKILLs the log
/// was 60 MB and a restart took 12.8 s).
#[test]
fn opening_checkpoints_what_it_replayed_so_a_crash_loop_does_not_grow_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut cur = dir.path().join("run0");
    let mut expected: Vec<Vec<u8>> = Vec::new();
    for run in 0..6 {
        let store = Store::builder()
            .durability(Durability::Sync)
            .checkpoint_every(None)
            .open(&cur)
            .unwrap();
        let replayed = store.open_report().unwrap().replayed;
        let wal: u64 = logs(&cur)
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        if run > 1 {
            // The previous run's 20 appends, not every run's.
            assert_eq!(replayed, 20, "run {run}");
            assert_eq!(wal, 0, "run {run}: the log still holds what was replayed");
        }
        let conv = if run == 0 {
            let a = store
                .register_agent("a", &TenantId::new("t"), Importance::default())
                .unwrap();
            store.create_conversation(a).unwrap()
        } else {
            ConversationId(0)
        };
        let all = store.read_all(conv).unwrap();
        assert_eq!(all.len(), expected.len(), "run {run}");
        for (m, e) in all.iter().zip(&expected) {
            assert_eq!(&m[..], &e[..]);
        }
        for i in 0..20 {
            let m = format!("run {run} message {i}").into_bytes();
            store.append(conv, &m).unwrap();
            expected.push(m);
        }
        // The crash: what is on disk now, without a checkpoint.
        let next = dir.path().join(format!("run{}", run + 1));
        copy_dir(&cur, &next);
        drop(store);
        cur = next;
    }
}

fn tool_result(i: usize) -> Vec<u8> {
    format!(
        r#"{{"tool":"grep","call":{i},"matches":[{}]}}"#,
        (0..12)
            .map(|j| format!(
                r#"{{"file":"src/mod{}.rs","line":{},"text":"let value_{j} = compute({i}, {j});"}}"#,
                (i * 7 + j) % 23,
                i * 13 + j
            ))
            .collect::<Vec<_>>()
            .join(",")
    )
    .into_bytes()
}

/// A dictionary the store trains itself, then one loaded explicitly, then
/// a crash. Training samples are not in the image, so replay alone would
/// not train at the same point (or at all) and the logged load would find
/// the wrong version number: the store refused to open. The trained one
/// is logged now, and replay installs both in order.
#[test]
fn self_trained_and_loaded_dictionaries_replay_in_install_order() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = Store::builder()
        .durability(Durability::Sync)
        .checkpoint_every(None)
        .train_dictionaries_after(64 << 10)
        .open(&live)
        .unwrap();
    let a = store
        .register_agent("a", &TenantId::new("t"), Importance::default())
        .unwrap();
    let mut ids = Vec::new();
    let mut put = |i: usize| {
        let id = store
            .put(a, Kind::ToolResult, &tool_result(i), Visibility::Private)
            .unwrap();
        ids.push((i, id));
    };
    // Most samples before the checkpoint, the rest only in the log.
    let per = tool_result(0).len();
    let before = (60 << 10) / per;
    for i in 0..before {
        put(i);
    }
    store.checkpoint().unwrap();
    let mut i = before;
    while store.dictionary(Kind::ToolResult, 1).is_none() {
        put(i);
        i += 1;
        assert!(i < before + 200, "no dictionary was trained");
    }
    let raw = store.dictionary(Kind::ToolResult, 1).unwrap();
    store.load_dictionary(Kind::ToolResult, 2, &raw).unwrap();
    for j in i..i + 5 {
        put(j);
    }
    let crashed = dir.path().join("crashed");
    copy_dir(&live, &crashed);
    drop(store);
    let s = Store::builder()
        .train_dictionaries_after(64 << 10)
        .open(&crashed)
        .unwrap_or_else(|e| panic!("reopening after train + load: {e}"));
    assert_eq!(s.dictionary(Kind::ToolResult, 1).unwrap(), raw);
    assert_eq!(s.dictionary(Kind::ToolResult, 2).unwrap(), raw);
    for (i, id) in &ids {
        assert_eq!(&s.get_for(a, id).unwrap()[..], &tool_result(*i)[..]);
    }
}

/// The redo log goes through the cold tier's `Storage` seam: a write or
/// fsync failure injected there is a typed error, writes stop after it,
/// and a power cut keeps every write acknowledged before it.
#[test]
fn redo_log_faults_through_the_storage_seam() {
    use agentmem_cold::storage::{Faults, MemStorage};
    for fail_sync in [false, true] {
        let disk = MemStorage::new();
        let store = Store::builder()
            .durability(Durability::Sync)
            .checkpoint_every(None)
            .open_storage(std::sync::Arc::new(disk.clone()))
            .unwrap();
        let a = store
            .register_agent("a", &TenantId::new("t"), Importance::default())
            .unwrap();
        let mut acked = Vec::new();
        for i in 0..5 {
            acked.push((
                i,
                store
                    .put(a, Kind::ToolResult, &blob(i), Visibility::Private)
                    .unwrap(),
            ));
        }
        disk.set_faults(Faults {
            fail_writes_after: (!fail_sync).then_some(0),
            fail_syncs_after: fail_sync.then_some(0),
            ..Faults::default()
        });
        let e = store
            .put(a, Kind::ToolResult, &blob(5), Visibility::Private)
            .unwrap_err();
        assert!(
            matches!(&e, Error::Redo(agentmem_core::RedoError::Io { .. })),
            "{e:?}"
        );
        assert!(e.to_string().contains("redo-"), "{e}");
        disk.set_faults(Faults::default());
        let e = store
            .put(a, Kind::ToolResult, &blob(6), Visibility::Private)
            .unwrap_err();
        assert!(
            matches!(&e, Error::Redo(agentmem_core::RedoError::Stopped { .. })),
            "{e:?}"
        );
        let after = disk.power_cut();
        std::mem::forget(store); // the crash
        let s = Store::builder()
            .checkpoint_every(None)
            .open_storage(std::sync::Arc::new(after))
            .unwrap();
        for (i, id) in &acked {
            assert_eq!(&s.get_for(a, id).unwrap()[..], &blob(*i)[..]);
        }
    }
}

/// One error model: a cold-tier failure reaches the caller as
/// `Error::Cold` with the cold tier's own typed error (here: disk full),
/// not an `io::Error` whose kind must be guessed from its text.
#[test]
fn cold_tier_failures_keep_their_type() {
    use agentmem_cold::storage::{Faults, MemStorage};
    use agentmem_cold::ColdError;
    let disk = MemStorage::new();
    let store = Store::builder()
        .durability(Durability::Checkpoint)
        .checkpoint_every(None)
        .open_storage(std::sync::Arc::new(disk.clone()))
        .unwrap();
    let a = store
        .register_agent("a", &TenantId::new("t"), Importance::default())
        .unwrap();
    store
        .put(a, Kind::ToolResult, &blob(1), Visibility::Private)
        .unwrap();
    disk.set_faults(Faults {
        fail_writes_after: Some(0),
        disk_full: true,
        ..Faults::default()
    });
    let e = store.checkpoint().unwrap_err();
    assert!(
        matches!(&e, Error::Cold(ColdError::DiskFull { .. })),
        "{e:?}"
    );
    let source = std::error::Error::source(&e).expect("a source");
    assert!(source.to_string().contains("no space left"), "{source}");
    disk.set_faults(Faults::default());
}
