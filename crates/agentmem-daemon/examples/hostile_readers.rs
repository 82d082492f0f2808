//! Attack 1 of issue 14 as a benchmark: clients that pipeline `ReadAll`
//! of a large conversation and never read an answer, against the
//! daemon's memory and the latency of a client that behaves.
//!
//! ```sh
//! cargo build --release -p agentmem-daemon --bin agentmemd --example hostile_readers
//! target/release/examples/hostile_readers [--hogs 100] [--requests 100] [--conv-mib 4] [--daemon PATH]
//! ```
//!
//! Starts `agentmemd` (beside this example in `target/release`, or
//! `--daemon PATH`) in RAM-only mode on a temporary socket, then:
//! 1. a bystander puts 1,000 messages of ~1 KiB and measures 5,000 gets
//!    (p50/p99): the baseline;
//! 2. each of `--hogs` agents stores a conversation of `--conv-mib` MiB
//!    (64 KiB messages) through the ordinary client;
//! 3. each hog reconnects on a raw socket, sends `--requests` `ReadAll`s
//!    of its conversation in one write and never reads;
//! 4. for 8 s the daemon's resident memory is sampled (peak) while the
//!    bystander measures 5,000 gets at once (the daemon is serving the
//!    hogs' first answers) and 5,000 more 2 s later (every hog blocked).
//!
//! Prints the daemon's RSS before and at peak, the growth per hog against
//! 2 × max frame, and both get latencies.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentmem_client::ConnectOptions;
use agentmem_core::{Kind, Visibility};
use agentmem_proto::{encode_frame, ClientFrame, Hello, Request, DEFAULT_MAX_FRAME};

struct Opts {
    hogs: usize,
    requests: u64,
    conv_mib: usize,
    daemon: PathBuf,
}

fn opts() -> Opts {
    let exe = std::env::current_exe().expect("own path");
    let mut o = Opts {
        hogs: 100,
        requests: 100,
        conv_mib: 4,
        daemon: exe
            .parent()
            .and_then(|p| p.parent())
            .map(|p| p.join("agentmemd"))
            .expect("target dir"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--hogs" => o.hogs = val().parse().expect("a number"),
            "--requests" => o.requests = val().parse().expect("a number"),
            "--conv-mib" => o.conv_mib = val().parse().expect("a number"),
            "--daemon" => o.daemon = val().into(),
            other => panic!(
                "unknown argument {other:?}; expected --hogs N, --requests N, --conv-mib N, --daemon PATH"
            ),
        }
    }
    o
}

fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

fn rss(pid: u32) -> u64 {
    agentmem_daemon::sys::rss_of(&pid.to_string()).expect("daemon RSS")
}

fn frame<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame("bench", v, DEFAULT_MAX_FRAME, &mut out).unwrap();
    out
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

fn main() {
    let o = opts();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agentmem.sock");
    let config = dir.path().join("agentmemd.toml");
    std::fs::write(
        &config,
        format!(
            "socket = {socket:?}\ndata_dir = \"\"\nlog = \"warn\"\n[store]\nram_budget = \"{} MiB\"\n",
            (o.hogs * o.conv_mib * 2).max(1024)
        ),
    )
    .unwrap();
    let mut daemon = Command::new(&o.daemon)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", o.daemon.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "agentmemd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = daemon.id();
    let connect = |name: &str| {
        ConnectOptions::new(name)
            .socket(&socket)
            .timeout(Some(Duration::from_secs(60)))
            .connect()
            .expect("connect")
    };
    let mut bystander = connect("bystander");
    let ids: Vec<_> = (0..1000)
        .map(|i| {
            bystander
                .put(Kind::ToolResult, &text(i, 1024), Visibility::Private)
                .unwrap()
        })
        .collect();
    let gets = |c: &mut agentmem_client::Client| {
        let mut t = Vec::with_capacity(5000);
        for i in 0..5000 {
            let at = Instant::now();
            c.get(&ids[i % ids.len()]).unwrap();
            t.push(at.elapsed());
        }
        percentiles(t)
    };
    let base = gets(&mut bystander);
    let msg = 64 * 1024;
    let per_conv = o.conv_mib * 1024 * 1024 / msg;
    let mut convs = Vec::new();
    let setup = Instant::now();
    for h in 0..o.hogs {
        let mut c = connect(&format!("hog-{h}"));
        let conv = c.create_conversation().unwrap();
        for m in 0..per_conv {
            c.append(conv, &text((h * 10_000 + m) as u64, msg)).unwrap();
        }
        convs.push(conv);
    }
    eprintln!(
        "setup: {} conversations of {} MiB in {:.1?}",
        o.hogs,
        o.conv_mib,
        setup.elapsed()
    );
    std::thread::sleep(Duration::from_millis(500));
    let before = rss(pid);
    let mut hogs = Vec::new();
    for (h, conv) in convs.iter().enumerate() {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(&frame(&Hello::new(format!("hog-{h}"))))
            .unwrap();
        let mut head = [0u8; 4];
        s.read_exact(&mut head).unwrap();
        let mut welcome = vec![0; u32::from_le_bytes(head) as usize];
        s.read_exact(&mut welcome).unwrap();
        let mut reqs = Vec::new();
        for id in 1..=o.requests {
            reqs.extend(frame(&ClientFrame {
                id,
                request: Request::ReadAll {
                    conversation: conv.0,
                },
            }));
        }
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.write_all(&reqs);
        hogs.push(s);
    }
    let sampler = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(8);
        let mut peak = 0;
        while Instant::now() < end {
            peak = peak.max(rss(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    // While the daemon serves the hogs' first answers (decompressing
    // 4 MiB each), then once every hog is blocked on its full socket.
    let burst = gets(&mut bystander);
    std::thread::sleep(Duration::from_secs(2));
    let attacked = gets(&mut bystander);
    let peak = sampler.join().unwrap();
    let growth = peak.saturating_sub(before);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "{} never-reading clients x {} ReadAll of a {} MiB conversation",
        o.hogs, o.requests, o.conv_mib
    );
    println!(
        "daemon RSS: {:.0} MiB before, {:.0} MiB at peak: +{:.0} MiB, {:.2} MiB per client (bound 2 x max frame = {} MiB)",
        mib(before),
        mib(peak),
        mib(growth),
        mib(growth) / o.hogs as f64,
        2 * (DEFAULT_MAX_FRAME >> 20)
    );
    println!(
        "bystander get: p50 {:.1?} p99 {:.1?} quiet; p50 {:.1?} p99 {:.1?} while the hogs are held ({:.2}x p99); p50 {:.1?} p99 {:.1?} during their first answers",
        base.0,
        base.1,
        attacked.0,
        attacked.1,
        attacked.1.as_secs_f64() / base.1.as_secs_f64(),
        burst.0,
        burst.1,
    );
    drop(hogs);
    let _ = daemon.kill();
    let _ = daemon.wait();
}
