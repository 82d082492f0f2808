//! One agent's heavy operations against another agent's hot gets, embedded.
//!
//! ```sh
//! cargo run --release -p agentmem-core --example contention -- [--units N] [--cycles N]
//! ```
//!
//! A store opened in a temporary directory (redo log and checkpoints as in
//! production). Agent A holds a ~1 KiB unit and reads it in a loop on one
//! thread; agent B holds N (default 4,000) private 8 KiB units of real
//! messages. Another thread makes B pause, resume, checkpoint and run
//! `maintain`, one after the other, `--cycles` times (default 3). The
//! example prints A's get latency (p50, p99, p99.9, max) during each of B's
//! operations and how long each took. The target of issue 13: A's hot get
//! p99 at most 5 µs during pause and resume.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentmem_core::prelude::*;

#[path = "../benches/support/messages.rs"]
mod messages;
use messages::messages;

const PHASES: [&str; 5] = ["idle", "pause", "resume", "checkpoint", "maintain"];

fn main() {
    let mut units = 4000usize;
    let mut cycles = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--units" => units = args.next().expect("--units N").parse().expect("a number"),
            "--cycles" => cycles = args.next().expect("--cycles N").parse().expect("a number"),
            other => panic!("unknown argument {other:?}; expected --units N, --cycles N"),
        }
    }
    let msgs = messages(4000);
    let one_kib = msgs
        .iter()
        .min_by_key(|m| m.len().abs_diff(1024))
        .unwrap()
        .clone();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder()
        .ram_budget(1 << 30)
        .checkpoint_every(None)
        .open(dir.path())
        .unwrap();
    let t = TenantId::new("t");
    let a = store
        .register_agent("a", &t, Importance::default())
        .unwrap();
    let b = store
        .register_agent("b", &t, Importance::default())
        .unwrap();
    let id = store
        .put(a, Kind::ToolResult, &one_kib, Visibility::Private)
        .unwrap();
    // B's units: real messages back to back, 8 KiB each, all distinct.
    let mut cursor = 0usize;
    for u in 0..units {
        let mut data = format!("unit {u} of agent b: ").into_bytes();
        while data.len() < 8192 {
            data.extend_from_slice(&msgs[cursor % msgs.len()]);
            cursor += 1;
        }
        data.truncate(8192);
        store
            .put(b, Kind::ToolResult, &data, Visibility::Private)
            .unwrap();
    }
    store.checkpoint().unwrap();

    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, phase, stop) = (store.clone(), phase.clone(), stop.clone());
        let one_kib = one_kib.clone();
        std::thread::spawn(move || {
            let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); PHASES.len()];
            while !stop.load(Ordering::Relaxed) {
                let p = phase.load(Ordering::Relaxed);
                let t0 = Instant::now();
                let got = store.get_for(a, &id).unwrap();
                let d = t0.elapsed();
                assert_eq!(got.len(), one_kib.len());
                lat[p].push(d);
            }
            lat
        })
    };
    let mut took: Vec<Vec<Duration>> = vec![Vec::new(); PHASES.len()];
    let mut run = |p: usize, f: &mut dyn FnMut()| {
        phase.store(p, Ordering::Relaxed);
        let t0 = Instant::now();
        f();
        took[p].push(t0.elapsed());
        phase.store(0, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..cycles {
        run(1, &mut || store.pause(b).unwrap());
        run(2, &mut || {
            store.resume(b).unwrap();
        });
        // Make B's units dirty again so the checkpoint writes them.
        run(3, &mut || {
            store.checkpoint().unwrap();
        });
        run(4, &mut || {
            store.maintain(usize::MAX).unwrap();
        });
    }
    stop.store(true, Ordering::Relaxed);
    let mut lat = reader.join().unwrap();
    println!(
        "embedded: agent A hot get of {} B while agent B ({units} x 8 KiB units) does each operation ({cycles} cycles)",
        one_kib.len()
    );
    println!(
        "{:<11} {:>9} {:>9} {:>9} {:>11} {:>9} {:>16}",
        "B's op", "gets", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "B's op took ms"
    );
    for (p, name) in PHASES.iter().enumerate() {
        let l = &mut lat[p];
        if l.is_empty() {
            continue;
        }
        l.sort();
        let q = |x: f64| l[((l.len() - 1) as f64 * x) as usize].as_secs_f64() * 1e6;
        let op = if took[p].is_empty() {
            "-".to_string()
        } else {
            let ms: Vec<String> = took[p]
                .iter()
                .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
                .collect();
            ms.join("/")
        };
        println!(
            "{:<11} {:>9} {:>9.2} {:>9.2} {:>11.2} {:>9.0} {:>16}",
            name,
            l.len(),
            q(0.5),
            q(0.99),
            q(0.999),
            l.last().unwrap().as_secs_f64() * 1e6,
            op
        );
    }
}
