//! One client's hot gets while another client pauses and resumes an agent
//! with many units, through agentmemd (issue 13's first figure).
//!
//! ```sh
//! cargo run --release -p agentmem-daemon --example pausebench -- [--units N] [--cycles N]
//! ```
//!
//! Starts a daemon in this process on a temporary socket with a temporary
//! data directory (redo log and checkpoints as in production). Client B
//! puts N (default 4,000) private 8 KiB units of real messages from the
//! bundled sample; client A puts a ~1 KiB unit and gets it in a loop on
//! its own thread. B then pauses and resumes, `--cycles` times (default
//! 3). `--workers N` sets the daemon's async worker threads (default:
//! one per core). Printed: A's get latency (p50, p99, max) while B is idle, while B's
//! pause runs and while B's resume runs, and how long B's calls took.
//! Target: p99 at most 1 ms and max at most 5 ms during pause and resume.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentmem_client::ConnectOptions;
use agentmem_core::{Kind, Visibility};

const PHASES: [&str; 3] = ["idle", "pause", "resume"];

/// Every message of the bundled sample, as compact JSON.
fn messages() -> Vec<Vec<u8>> {
    let conv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/conversations");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&conv)
        .unwrap_or_else(|e| panic!("reading {}: {e}", conv.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let raw = std::fs::read(&f).unwrap();
        let text = if f.extension().is_some_and(|e| e == "zst") {
            zstd::decode_all(&raw[..]).unwrap()
        } else {
            raw
        };
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            for m in v["messages"].as_array().into_iter().flatten() {
                out.push(serde_json::to_vec(m).unwrap());
            }
        }
    }
    out
}

fn main() {
    let mut units = 4000usize;
    let mut cycles = 3usize;
    let mut workers = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--units" => units = args.next().expect("--units N").parse().expect("a number"),
            "--cycles" => cycles = args.next().expect("--cycles N").parse().expect("a number"),
            "--workers" => workers = args.next().expect("--workers N").parse().expect("a number"),
            other => {
                panic!("unknown argument {other:?}; expected --units N, --cycles N, --workers N")
            }
        }
    }
    let msgs = messages();
    let one_kib = msgs
        .iter()
        .min_by_key(|m| m.len().abs_diff(1024))
        .unwrap()
        .clone();

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agentmem.sock");
    let cfg = agentmem_daemon::Config {
        socket: socket.clone(),
        log: "warn".into(),
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    let (stop_daemon, stop_rx) = tokio::sync::watch::channel(false);
    let daemon = std::thread::spawn(move || {
        let mut rt = tokio::runtime::Builder::new_multi_thread();
        if workers > 0 {
            rt.worker_threads(workers);
        }
        rt.enable_all()
            .build()
            .unwrap()
            .block_on(agentmem_daemon::serve(cfg, stop_rx))
            .unwrap()
    });
    let connect = |name: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ConnectOptions::new(name).socket(&socket).connect() {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    let mut b = connect("b");
    let mut cursor = 0usize;
    for u in 0..units {
        let mut data = format!("unit {u} of agent b: ").into_bytes();
        while data.len() < 8192 {
            data.extend_from_slice(&msgs[cursor % msgs.len()]);
            cursor += 1;
        }
        data.truncate(8192);
        b.put(Kind::ToolResult, &data, Visibility::Private).unwrap();
    }
    let mut a = connect("a");
    let id = a
        .put(Kind::ToolResult, &one_kib, Visibility::Private)
        .unwrap();

    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (phase, stop) = (phase.clone(), stop.clone());
        let len = one_kib.len();
        std::thread::spawn(move || {
            let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); PHASES.len()];
            while !stop.load(Ordering::Relaxed) {
                let p = phase.load(Ordering::Relaxed);
                let t0 = Instant::now();
                let got = a.get(&id).unwrap();
                let d = t0.elapsed();
                assert_eq!(got.len(), len);
                lat[p].push(d);
            }
            lat
        })
    };
    let mut took: Vec<Vec<Duration>> = vec![Vec::new(); PHASES.len()];
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..cycles {
        for p in [1, 2] {
            phase.store(p, Ordering::Relaxed);
            let t0 = Instant::now();
            if p == 1 {
                b.pause().unwrap();
            } else {
                b.resume().unwrap();
            }
            took[p].push(t0.elapsed());
            phase.store(0, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut lat = reader.join().unwrap();
    let _ = stop_daemon.send(true);
    daemon.join().unwrap();
    println!(
        "agentmemd: client A hot get of {} B while client B ({units} x 8 KiB units) pauses / resumes ({cycles} cycles)",
        one_kib.len()
    );
    println!(
        "{:<8} {:>8} {:>9} {:>9} {:>10} {:>16}",
        "B's op", "gets", "p50 µs", "p99 µs", "max µs", "B's op took ms"
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
            "{:<8} {:>8} {:>9.1} {:>9.1} {:>10.0} {:>16}",
            name,
            l.len(),
            q(0.5),
            q(0.99),
            l.last().unwrap().as_secs_f64() * 1e6,
            op
        );
    }
}
