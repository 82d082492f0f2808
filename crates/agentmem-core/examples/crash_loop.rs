//! Restart time in a crash loop: a child process writes continuously (puts
//! and appends from four agents, default durability and checkpoint period)
//! and is SIGKILLed after a while, N times over; each time the parent
//! reopens the store, times the open, and checks every write the child
//! had acknowledged (returned from `put`/`append`) is there, byte-exact.
//!
//! Run: `cargo run --release -p agentmem-core --example crash_loop -- [CYCLES] [MS] [RATE] [DIR]`
//! (default 40 cycles of 1,000 ms of writing each, at RATE put+append
//! pairs a second, default 1,000 — about 2 MB of redo log a second; 0 for
//! as fast as the store goes; DIR: where the store goes, default a
//! temporary directory — put it on the disk you care about). Prints one line per cycle and a summary; exits non-zero if an
//! acknowledged write was lost. The CI version is
//! `tests/redo.rs::opening_checkpoints_what_it_replayed_so_a_crash_loop_does_not_grow_the_log`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentmem_core::prelude::*;

const CHILD: &str = "AGENTMEM_CRASH_LOOP_CHILD";

fn unit(cycle: u64, n: u64) -> Vec<u8> {
    let mut v = vec![0u8; 200 + (n as usize * 97) % 5000];
    let mut h = blake3::Hasher::new();
    h.update(&cycle.to_le_bytes()).update(&n.to_le_bytes());
    h.finalize_xof().fill(&mut v);
    v
}

fn message(agent: usize, i: u64) -> Vec<u8> {
    format!(
        r#"{{"role":"assistant","content":"agent {agent} step {i}: {}"}}"#,
        "y".repeat((i % 700) as usize)
    )
    .into_bytes()
}

fn child(dir: &Path, cycle: u64, rate: u64) {
    let store = Store::open(dir).expect("child open");
    if store.agents().is_empty() {
        for a in 0..4 {
            let id = store
                .register_agent(&format!("a{a}"), &TenantId::new("t"), Importance::default())
                .expect("register");
            store.create_conversation(id).expect("conversation");
        }
        println!("READY");
    }
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    let started = Instant::now();
    loop {
        if rate > 0 {
            let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let a = (n % 4) as usize;
        let id = store
            .put(
                AgentId(a as u32),
                Kind::ToolResult,
                &unit(cycle, n),
                Visibility::Private,
            )
            .expect("put");
        let conv = ConversationId(a as u32);
        // One writer per conversation: its length is the next index.
        let i = store.conversation_len(conv).expect("length");
        assert_eq!(store.append(conv, &message(a, i)).expect("append"), i);
        // Acknowledged: both calls returned.
        writeln!(out, "U {a} {cycle} {n} {id}\nM {a} {i}").expect("stdout");
        if n % 8 == 0 {
            out.flush().expect("stdout");
        }
        n += 1;
    }
}

fn wal_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD) {
        let cycle = std::env::var("AGENTMEM_CRASH_LOOP_CYCLE")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let rate = std::env::var("AGENTMEM_CRASH_LOOP_RATE")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        child(Path::new(&dir), cycle, rate);
        return;
    }
    let mut args = std::env::args().skip(1);
    let cycles: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    let ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("store"));
    let exe = std::env::current_exe().expect("exe");
    let mut units: Vec<(u32, u64, u64, ContentId)> = Vec::new();
    let mut lens = [0u64; 4];
    let (mut worst_open, mut worst_wal, mut lost) = (Duration::ZERO, 0u64, 0u64);
    let mut last_open = Duration::ZERO;
    for cycle in 0..cycles {
        let mut c = Command::new(&exe)
            .env(CHILD, &dir)
            .env("AGENTMEM_CRASH_LOOP_CYCLE", cycle.to_string())
            .env("AGENTMEM_CRASH_LOOP_RATE", rate.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let out = c.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(ms));
        c.kill().expect("SIGKILL");
        c.wait().expect("wait");
        for line in reader.join().expect("reader") {
            let f: Vec<&str> = line.split(' ').collect();
            match f[0] {
                "U" => units.push((
                    f[1].parse().expect("agent"),
                    f[2].parse().expect("cycle"),
                    f[3].parse().expect("n"),
                    ContentId::from_hex(f[4]).expect("id"),
                )),
                "M" => {
                    let a: usize = f[1].parse().expect("agent");
                    lens[a] = lens[a].max(f[2].parse::<u64>().expect("index") + 1);
                }
                _ => {}
            }
        }
        let wal = wal_bytes(&dir);
        let t = Instant::now();
        let store = Store::open(&dir).expect("reopen");
        let open = t.elapsed();
        let rep = store.open_report().expect("report");
        let mut lost_now = 0u64;
        for &(a, cy, n, id) in &units {
            match store.get_for(AgentId(a), &id) {
                Ok(b) if b[..] == unit(cy, n)[..] => {}
                r => {
                    if lost_now == 0 {
                        eprintln!(
                            "cycle {cycle}: unit {id} of cycle {cy} #{n}: {:?}",
                            r.map(|b| b.len())
                        );
                    }
                    lost_now += 1
                }
            }
        }
        for (a, l) in lens.iter_mut().enumerate() {
            let conv = ConversationId(a as u32);
            let len = store.conversation_len(conv).unwrap_or(0);
            lost_now += l.saturating_sub(len);
            if let Ok(all) = store.read_all(conv) {
                for (i, m) in all.iter().enumerate() {
                    if m[..] != message(a, i as u64)[..] {
                        lost_now += 1;
                    }
                }
            }
            *l = len;
        }
        drop(store);
        println!(
            "cycle {cycle:>3}: log {:>8.2} MB before open, open {:>7.1} ms ({} ops replayed in {:.1} ms, checkpoint {:.1} ms), {} units + {} messages checked, {lost_now} lost",
            wal as f64 / 1e6,
            open.as_secs_f64() * 1e3,
            rep.replayed,
            rep.replay.as_secs_f64() * 1e3,
            rep.checkpoint.as_secs_f64() * 1e3,
            units.len(),
            lens.iter().sum::<u64>(),
        );
        worst_open = worst_open.max(open);
        worst_wal = worst_wal.max(wal);
        last_open = open;
        lost += lost_now;
    }
    println!(
        "{cycles} SIGKILL cycles of {ms} ms at {rate} put+append pairs/s: worst open {:.1} ms, last open {:.1} ms, largest redo log {:.2} MB, {} acknowledged puts and {} appends, {lost} lost",
        worst_open.as_secs_f64() * 1e3,
        last_open.as_secs_f64() * 1e3,
        worst_wal as f64 / 1e6,
        units.len(),
        lens.iter().sum::<u64>()
    );
    if lost > 0 {
        std::process::exit(1);
    }
}
