//! Store-level crash test: a child process puts units and appends messages
//! to a persistent store, checkpoints every few operations and prints what
//! each checkpoint covers; the parent SIGKILLs it at random instants,
//! reopens the store with `Store::open` and checks that everything a
//! completed checkpoint covered reads back byte-exact (agents, states,
//! units, conversations) and that the store is whole.
//!
//! CI: 20 cycles. Longer: `AGENTMEM_STORE_CRASH_CYCLES=500 cargo test --release -p agentmem-core --test crash`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentmem_core::prelude::*;
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "AGENTMEM_STORE_CRASH_DIR";

fn unit(cycle: u64, n: u64) -> Vec<u8> {
    let mut v = vec![0u8; 200 + (n as usize * 97) % 5000];
    let mut h = blake3::Hasher::new();
    h.update(&cycle.to_le_bytes()).update(&n.to_le_bytes());
    h.finalize_xof().fill(&mut v);
    v
}

fn message(agent: usize, i: u64) -> Vec<u8> {
    format!(
        r#"{{"role":"user","content":"agent {agent} says {i} {}"}}"#,
        "x".repeat((i % 300) as usize)
    )
    .into_bytes()
}

#[test]
#[ignore = "the store crash test's child process"]
fn store_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cycle: u64 = std::env::var("AGENTMEM_STORE_CRASH_CYCLE")
        .unwrap()
        .parse()
        .unwrap();
    let store = Store::builder().ram_budget(256 << 10).open(&dir).unwrap();
    // Agent i of this store: created in the first cycle.
    if store.agents().is_empty() {
        for a in 0..4 {
            let id = store
                .register_agent(&format!("a{a}"), &TenantId::new("t"), Importance::default())
                .unwrap();
            store.create_conversation(id).unwrap();
        }
        store.checkpoint().unwrap();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(cycle);
    let mut n = 0u64;
    let mut pending = Vec::new();
    loop {
        let a = rng.random_range(0..4usize);
        let agent = AgentId(a as u32);
        let conv = ConversationId(a as u32);
        if rng.random_bool(0.5) {
            let id = store
                .put(
                    agent,
                    Kind::ToolResult,
                    &unit(cycle, n),
                    Visibility::Private,
                )
                .unwrap();
            pending.push(format!("U {a} {cycle} {n} {id}"));
            n += 1;
        } else {
            let i = store.conversation_len(conv).unwrap();
            store.append(conv, &message(a, i)).unwrap();
            if rng.random_bool(0.1) {
                store.pause(agent).unwrap();
            } else {
                store.set_state(agent, AgentState::WaitingForModel).unwrap();
            }
        }
        if rng.random_bool(0.05) {
            store.checkpoint().unwrap();
            for p in pending.drain(..) {
                println!("{p}");
            }
            let lens: Vec<String> = (0..4)
                .map(|c| {
                    store
                        .conversation_len(ConversationId(c))
                        .unwrap()
                        .to_string()
                })
                .collect();
            println!("C {}", lens.join(" "));
            use std::io::Write;
            std::io::stdout().flush().unwrap();
        }
    }
}

#[test]
fn sigkill_loses_nothing_a_checkpoint_covered() {
    let cycles: u64 = std::env::var("AGENTMEM_STORE_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut units: Vec<(usize, u64, u64, ContentId)> = Vec::new();
    let mut lens = [0u64; 4];
    let mut orphans = 0u64;
    let started = Instant::now();
    for cycle in 0..cycles {
        if cycles <= 20 && started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let mut child = Command::new(&exe)
            .args([
                "store_crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("AGENTMEM_STORE_CRASH_CYCLE", cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(20..250)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in reader.join().unwrap() {
            let f: Vec<&str> = line.split(' ').collect();
            match f[0] {
                "U" => units.push((
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                    ContentId::from_hex(f[4]).unwrap(),
                )),
                "C" => {
                    for (c, l) in f[1..].iter().enumerate() {
                        lens[c] = l.parse().unwrap();
                    }
                }
                _ => {}
            }
        }
        let store = Store::open(dir.path()).unwrap();
        orphans += store.open_report().unwrap().orphans_deleted;
        if store.agents().is_empty() {
            continue; // killed before the first checkpoint
        }
        for &(a, c, n, id) in &units {
            let got = store
                .get_for(AgentId(a as u32), &id)
                .unwrap_or_else(|e| panic!("cycle {cycle}: checkpointed unit {id} lost: {e}"));
            assert_eq!(&got[..], &unit(c, n)[..], "cycle {cycle}: wrong bytes");
        }
        for (c, l) in lens.iter_mut().enumerate() {
            let conv = ConversationId(c as u32);
            let len = store.conversation_len(conv).unwrap();
            assert!(
                len >= *l,
                "cycle {cycle}: conversation {c} has {len} < {l} messages"
            );
            let all = store.read_all(conv).unwrap();
            for (i, m) in all.iter().enumerate() {
                assert_eq!(
                    &m[..],
                    &message(c, i as u64)[..],
                    "cycle {cycle}: message {i}"
                );
            }
            // What the next child will see is what this open has.
            *l = len;
        }
        drop(store);
    }
    assert!(!units.is_empty(), "no checkpoint completed in any cycle");
    // Killed between checkpoints, children leave records no checkpoint
    // names; opening removes them.
    assert!(orphans > 0, "no orphan record was ever cleaned up");
}
