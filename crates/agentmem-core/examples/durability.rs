//! Write throughput of the store under each durability policy, and the time
//! to open a store whose redo log holds N operations, on real messages.
//!
//! Run: `cargo run --release -p agentmem-core --example durability -- [N] [DIR]`
//! (N operations of each kind per policy, default 20,000; `Sync` does at
//! most 3,000 of each; DIR: where the stores go, default a temporary
//! directory — put it on the disk you care about, not tmpfs). Messages come
//! from `$AGENTMEM_DATA/conversations/*.jsonl.zst` (default
//! `../shared/data` beside the repository, else `data/sample`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use agentmem_core::prelude::*;
use agentmem_core::Durability;

#[path = "../benches/support/messages.rs"]
mod messages;
use messages::messages;

struct Run {
    appends: f64,
    puts: f64,
    bytes: u64,
    fsyncs: u64,
    sync: std::time::Duration,
}

fn run(dir: &Path, mode: Durability, msgs: &[Vec<u8>]) -> Run {
    let store = Store::builder()
        .durability(mode)
        .checkpoint_every(None)
        .open(dir)
        .expect("open");
    let agents: Vec<(AgentId, ConversationId)> = (0..10)
        .map(|i| {
            let a = store
                .register_agent(&format!("a{i}"), &TenantId::new("t"), Importance::default())
                .expect("register");
            (a, store.create_conversation(a).expect("conversation"))
        })
        .collect();
    let bytes: u64 = msgs.iter().map(|m| m.len() as u64).sum();
    let t = Instant::now();
    for (i, m) in msgs.iter().enumerate() {
        store.append(agents[i % 10].1, m).expect("append");
    }
    let appends = msgs.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    store.sync().expect("sync");
    let mut sync = t.elapsed();
    let t = Instant::now();
    for (i, m) in msgs.iter().enumerate() {
        // Tool results: real message bytes, made distinct so none dedups.
        let mut m = m.clone();
        m.extend_from_slice(format!(" #{i}").as_bytes());
        store
            .put(agents[i % 10].0, Kind::ToolResult, &m, Visibility::Private)
            .expect("put");
    }
    let puts = msgs.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    store.sync().expect("sync");
    sync += t.elapsed();
    let fsyncs = store.log_fsyncs();
    Run {
        appends,
        puts,
        bytes,
        fsyncs,
        sync,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(20_000, |s| s.parse().expect("N"));
    let tmp;
    let base = match args.next() {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir().expect("tempdir");
            tmp.path().to_path_buf()
        }
    };
    let msgs = messages(n);
    println!(
        "{} real messages, {} bytes (mean {} B), dir {}",
        msgs.len(),
        msgs.iter().map(Vec::len).sum::<usize>(),
        msgs.iter().map(Vec::len).sum::<usize>() / msgs.len().max(1),
        base.display()
    );
    // Warm up (allocator, page cache, code) so the first policy measured
    // is not penalised.
    let warm = base.join("warmup");
    let _ = std::fs::remove_dir_all(&warm);
    run(&warm, Durability::Checkpoint, &msgs);
    let _ = std::fs::remove_dir_all(&warm);
    for (name, mode, count) in [
        ("checkpoint", Durability::Checkpoint, msgs.len()),
        ("group-10ms", Durability::DEFAULT, msgs.len()),
        ("sync", Durability::Sync, msgs.len().min(3000)),
    ] {
        let dir = base.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let r = run(&dir, mode, &msgs[..count]);
        println!(
            "{name:>10}: {count} ops each: append {:>8.0}/s  put {:>8.0}/s  ({:.1} MB/s appended)  log fsyncs {}; Store::sync after each phase {:?} in all",
            r.appends,
            r.puts,
            r.appends * r.bytes as f64 / count as f64 / 1e6,
            r.fsyncs,
            r.sync
        );
    }
    // Recovery: the group-commit store was closed without a checkpoint, so
    // its whole history is in the log.
    let dir = base.join("group-10ms");
    let t = Instant::now();
    let store = Store::open(&dir).expect("reopen");
    let open = t.elapsed();
    let r = store.open_report().expect("report");
    let log_bytes: u64 = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    println!(
        "recovery: {} ops replayed ({:.1} MB of log) in {:?}; whole open {:?} ({:.0} ops/s)",
        r.replayed,
        log_bytes as f64 / 1e6,
        r.replay,
        open,
        r.replayed as f64 / r.replay.as_secs_f64().max(1e-9)
    );
    let t = Instant::now();
    let c = store.checkpoint().expect("checkpoint");
    println!(
        "checkpoint after recovery: {:?} ({} units written); open after it: {:?}",
        t.elapsed(),
        c.units_written,
        {
            drop(store);
            let t = Instant::now();
            drop(Store::open(&dir).expect("open"));
            t.elapsed()
        }
    );
}
