//! Crash test: a writer child process puts and deletes continuously and
//! prints each acknowledged operation; the parent kills it with SIGKILL at a
//! random instant, reopens the directory and checks that every acknowledged
//! put reads back byte-exact, every acknowledged delete stayed deleted and
//! nothing else appears (half-written or otherwise).
//!
//! CI runs 50 cycles (bounded to about 60 s); a longer run:
//! `AGENTMEM_CRASH_CYCLES=1000 cargo test --release -p agentmem-cold --test crash -- --nocapture`

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agentmem_cold::DiskTier;
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "AGENTMEM_CRASH_CHILD_DIR";

fn key(cycle: u64, n: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&cycle.to_le_bytes());
    h.update(&n.to_le_bytes());
    *h.finalize().as_bytes()
}

/// The value is a function of the key, so any record can be checked.
fn value(key: &[u8; 32]) -> Vec<u8> {
    let len = 1 + (u16::from_le_bytes([key[0], key[1]]) as usize % 8_000);
    let mut out = vec![0u8; len];
    blake3::Hasher::new_keyed(key).finalize_xof().fill(&mut out);
    out
}

fn open(dir: &std::path::Path) -> DiskTier {
    DiskTier::builder()
        .segment_size(1 << 20)
        .snapshot_every(2 << 20)
        .compact_ratio(0.3)
        .open(dir)
        .expect("open")
}

/// The writer. Ignored in normal runs: the crash test starts it.
#[test]
#[ignore = "the crash test's child process"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cycle: u64 = std::env::var("AGENTMEM_CRASH_CYCLE")
        .unwrap()
        .parse()
        .unwrap();
    let t = open(std::path::Path::new(&dir));
    let mut rng = rand::rngs::StdRng::seed_from_u64(cycle);
    let existing = t.keys();
    let out = std::io::stdout();
    let mut n = 0u64;
    loop {
        let op: u32 = rng.random_range(0..100);
        // Delete more once the store is large, so long runs stay bounded.
        let deletes = if existing.len() > 3000 { 60 } else { 30 };
        if op < deletes && !existing.is_empty() {
            let k = existing[rng.random_range(0..existing.len())];
            // The intent first: a delete in flight when killed may or may
            // not have happened.
            println!("d {}", agentmem_cold::hex(&k));
            t.delete(&k).unwrap();
            println!("D {}", agentmem_cold::hex(&k));
        } else if op < deletes + 2 {
            t.compact().unwrap();
        } else if op < deletes + 3 {
            t.snapshot().unwrap();
        } else {
            let k = key(cycle, n);
            n += 1;
            t.put(&k, 7, &value(&k)).unwrap();
            println!("P {}", agentmem_cold::hex(&k));
        }
        use std::io::Write;
        out.lock().flush().unwrap();
    }
}

fn unhex(s: &str) -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    k
}

#[test]
fn sigkill_at_random_instants_loses_no_acknowledged_write() {
    let cycles: u64 = std::env::var("AGENTMEM_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let budget = if cycles <= 50 {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(cycles * 2)
    };
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC0FFEE);
    // key -> present per the acknowledged history
    let mut model: HashMap<[u8; 32], bool> = HashMap::new();
    let started = Instant::now();
    let mut done = 0u64;
    let mut acked_total = 0u64;
    for cycle in 0..cycles {
        if started.elapsed() > budget {
            break;
        }
        let mut child = Command::new(&exe)
            .args([
                "crash_child_writer",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("AGENTMEM_CRASH_CYCLE", cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child is writing, then kill it at a random instant.
        let first = rx.recv_timeout(Duration::from_secs(20));
        let mut lines: Vec<String> = first.into_iter().collect();
        std::thread::sleep(Duration::from_micros(rng.random_range(0..150_000)));
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc_kill(child.id() as i32, 9) };
        assert_eq!(rc, 0, "kill failed");
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        let mut in_flight = None;
        for l in &lines {
            if let Some(h) = l.strip_prefix("P ") {
                model.insert(unhex(h), true);
                acked_total += 1;
            } else if let Some(h) = l.strip_prefix("D ") {
                model.insert(unhex(h), false);
                acked_total += 1;
            } else if let Some(h) = l.strip_prefix("d ") {
                in_flight = Some(unhex(h));
            }
            if l.starts_with('D') {
                in_flight = None;
            }
        }
        // An unacknowledged delete: either outcome is right.
        if let Some(k) = in_flight {
            model.remove(&k);
        }
        // Reopen and check.
        let t = open(dir.path());
        let keys: HashSet<[u8; 32]> = t.keys().into_iter().collect();
        for (k, &present) in &model {
            let got = t.get(k).unwrap();
            if present {
                let (tag, v) = got.unwrap_or_else(|| {
                    panic!(
                        "cycle {cycle}: acknowledged put {} lost; {:?}; files {:?}",
                        agentmem_cold::hex(k),
                        t.stats(),
                        std::fs::read_dir(dir.path())
                            .unwrap()
                            .map(|e| e.unwrap().file_name())
                            .collect::<Vec<_>>()
                    )
                });
                assert_eq!(tag, 7);
                assert_eq!(v, value(k), "cycle {cycle}: wrong bytes");
            } else {
                // Only the one in flight when killed may differ: a delete is
                // acknowledged after it was written, so an acked one holds.
                assert!(got.is_none(), "cycle {cycle}: acknowledged delete undone");
            }
        }
        for k in &keys {
            // Unacknowledged puts may be there, but only whole.
            let (_, v) = t.get(k).unwrap().unwrap();
            assert_eq!(v, value(k), "cycle {cycle}: half-written record");
            model.entry(*k).or_insert(true);
        }
        if cycle % 10 == 9 || cycle + 1 == cycles {
            let v = t.verify();
            assert!(v.is_ok(), "cycle {cycle}: {v:?}");
        }
        drop(t);
        done += 1;
    }
    println!(
        "crash test: {done} cycles, {acked_total} acknowledged operations, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        done >= cycles.min(50),
        "only {done} cycles in the time budget"
    );
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
