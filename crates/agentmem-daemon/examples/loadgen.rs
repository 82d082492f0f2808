//! Round-trip latency and throughput of agentmemd against the embedded
//! store, in the same run on the same data.
//!
//! ```sh
//! cargo run --release -p agentmem-daemon --example loadgen -- [--data DIR] [--gets N] [--puts N] [--json]
//! ```
//!
//! Starts a daemon in this process on a temporary socket (its own tokio
//! runtime), loads real messages from `DIR/conversations/*.jsonl[.zst]`
//! (default: the bundled sample), then measures:
//! - get of a ~1 KB message: p50/p99 with 1 and 8 clients (threads, one
//!   connection each), and the same through the embedded `Store::get_for`;
//! - put throughput with 8 clients, each putting distinct real messages,
//!   and the same embedded.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use agentmem_client::ConnectOptions;
use agentmem_core::{Importance, Kind, Store, TenantId, Visibility};

struct Opts {
    data: PathBuf,
    gets: usize,
    puts: usize,
    json: bool,
}

fn opts() -> Opts {
    let mut o = Opts {
        data: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample"),
        gets: 20_000,
        puts: 2_000,
        json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data" => o.data = args.next().expect("--data DIR").into(),
            "--gets" => o.gets = args.next().expect("--gets N").parse().expect("a number"),
            "--puts" => o.puts = args.next().expect("--puts N").parse().expect("a number"),
            "--json" => o.json = true,
            other => panic!(
                "unknown argument {other:?}; expected --data DIR, --gets N, --puts N, --json"
            ),
        }
    }
    o
}

/// Every message of every conversation, as compact JSON.
fn messages(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let conv = dir.join("conversations");
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

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Run `per_thread` operations in each of `threads` threads started
/// together; returns every latency and the wall time.
fn run<S: Send + 'static>(
    states: Vec<S>,
    per_thread: usize,
    op: impl Fn(&mut S, usize) + Send + Sync + 'static,
) -> (Vec<Duration>, Duration) {
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(states.len() + 1));
    let handles: Vec<_> = states
        .into_iter()
        .map(|mut s| {
            let op = op.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(per_thread);
                barrier.wait();
                for i in 0..per_thread {
                    let t = Instant::now();
                    op(&mut s, i);
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    (all, t.elapsed())
}

fn main() {
    let o = opts();
    let msgs = messages(&o.data);
    let one_kb = msgs
        .iter()
        .min_by_key(|m| m.len().abs_diff(1024))
        .expect("messages")
        .clone();
    let put_msgs: Arc<Vec<Vec<u8>>> = Arc::new(
        msgs.iter()
            .filter(|m| (256..4096).contains(&m.len()))
            .cloned()
            .collect(),
    );

    // The daemon, in this process.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agentmem.sock");
    let cfg = agentmem_daemon::Config {
        socket: socket.clone(),
        log: "warn".into(),
        // RAM only, like the embedded store it is compared with.
        data_dir: std::path::PathBuf::new(),
        ..Default::default()
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let daemon = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(agentmem_daemon::serve(cfg, stop_rx))
            .unwrap()
    });
    let connect = |name: String| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ConnectOptions::new(name.clone()).socket(&socket).connect() {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("{e}"),
            }
        }
    };

    // Embedded store with the same message.
    let store = Store::new().unwrap();
    let tenant = TenantId::new("bench");
    let mut report = serde_json::Map::new();
    let mut lines = Vec::new();
    for clients in [1usize, 8] {
        // Embedded.
        let agents: Vec<_> = (0..clients)
            .map(|i| {
                store
                    .register_agent(&format!("e{clients}-{i}"), &tenant, Importance::default())
                    .unwrap()
            })
            .collect();
        let id = store
            .put(agents[0], Kind::Conversation, &one_kb, Visibility::Public)
            .unwrap();
        let states: Vec<_> = agents.iter().map(|&a| (store.clone(), a)).collect();
        let (mut emb, _) = run(states, o.gets / clients, move |(s, a), _| {
            std::hint::black_box(s.get_for(*a, &id).unwrap());
        });
        // Daemon.
        let mut cs: Vec<_> = (0..clients)
            .map(|i| connect(format!("d{clients}-{i}")))
            .collect();
        let did = cs[0]
            .put(Kind::Conversation, &one_kb, Visibility::Public)
            .unwrap();
        assert_eq!(did, id);
        for c in &mut cs {
            c.get(&did).unwrap();
        }
        let len = one_kb.len();
        let (mut dae, _) = run(cs, o.gets / clients, move |c, _| {
            assert_eq!(c.get(&did).unwrap().len(), len);
        });
        let (ep50, ep99, dp50, dp99) = (
            pct(&mut emb, 0.5),
            pct(&mut emb, 0.99),
            pct(&mut dae, 0.5),
            pct(&mut dae, 0.99),
        );
        lines.push(format!(
            "get {} B message, {clients} client(s): daemon p50 {:.1} µs p99 {:.1} µs | embedded p50 {:.2} µs p99 {:.2} µs | overhead p50 {:.0}x p99 {:.0}x",
            one_kb.len(),
            us(dp50),
            us(dp99),
            us(ep50),
            us(ep99),
            dp50.as_secs_f64() / ep50.as_secs_f64(),
            dp99.as_secs_f64() / ep99.as_secs_f64()
        ));
        report.insert(
            format!("get_{clients}_clients"),
            serde_json::json!({
                "message_bytes": one_kb.len(),
                "daemon_p50_us": us(dp50), "daemon_p99_us": us(dp99),
                "embedded_p50_us": us(ep50), "embedded_p99_us": us(ep99),
                "overhead_p50": dp50.as_secs_f64() / ep50.as_secs_f64(),
                "overhead_p99": dp99.as_secs_f64() / ep99.as_secs_f64(),
                "samples": dae.len(),
            }),
        );
    }

    // Put throughput, 8 clients, distinct real messages.
    let clients = 8;
    let per = o.puts;
    let bytes_per_round: usize = (0..per * clients)
        .map(|i| put_msgs[i % put_msgs.len()].len() + 12)
        .sum();
    let agents: Vec<_> = (0..clients)
        .map(|i| {
            store
                .register_agent(&format!("ep-{i}"), &tenant, Importance::default())
                .unwrap()
        })
        .collect();
    let pm = put_msgs.clone();
    let states: Vec<_> = agents
        .iter()
        .enumerate()
        .map(|(t, &a)| (store.clone(), a, t))
        .collect();
    let (_, emb_wall) = run(states, per, move |(s, a, t), i| {
        let mut m = pm[(*t * per + i) % pm.len()].clone();
        m.extend_from_slice(format!("#e{:010}", *t * per + i).as_bytes());
        s.put(*a, Kind::Conversation, &m, Visibility::Private)
            .unwrap();
    });
    let cs: Vec<_> = (0..clients)
        .map(|i| (connect(format!("dp-{i}")), i))
        .collect();
    let pm = put_msgs.clone();
    let (_, dae_wall) = run(cs, per, move |(c, t), i| {
        let mut m = pm[(*t * per + i) % pm.len()].clone();
        m.extend_from_slice(format!("#d{:010}", *t * per + i).as_bytes());
        c.put(Kind::Conversation, &m, Visibility::Private).unwrap();
    });
    let n = (clients * per) as f64;
    let (eops, dops) = (n / emb_wall.as_secs_f64(), n / dae_wall.as_secs_f64());
    let mib = bytes_per_round as f64 / (1 << 20) as f64;
    lines.push(format!(
        "put, {clients} clients, {} distinct real messages ({:.1} MiB): daemon {:.0} puts/s ({:.1} MiB/s) | embedded {:.0} puts/s ({:.1} MiB/s) | daemon/embedded {:.2}",
        clients * per,
        mib,
        dops,
        mib / dae_wall.as_secs_f64(),
        eops,
        mib / emb_wall.as_secs_f64(),
        dops / eops
    ));
    report.insert(
        "put_8_clients".into(),
        serde_json::json!({
            "puts": clients * per, "mib": mib,
            "daemon_puts_per_s": dops, "embedded_puts_per_s": eops,
            "daemon_over_embedded": dops / eops,
        }),
    );
    let _ = stop.send(true);
    daemon.join().unwrap();
    if o.json {
        println!("{}", serde_json::Value::Object(report));
    } else {
        for l in lines {
            println!("{l}");
        }
    }
}
