//! A stand-in for an idle CLI agent, for tests and benchmarks.
//!
//! It builds a realistic heap — real conversations from the shared data,
//! parsed into JSON trees as an agent runtime holds them, plus the system
//! prompts and tool declarations — keeps a timer running while idle (like a
//! CLI's clock, spinner or keep-alive), and answers requests on a Unix socket
//! so resume latency can be timed and memory checked after page-out:
//!
//! - `ping` → `pong`
//! - `render` → a digest of the most recent tenth of the conversations
//!   (what a redraw touches): `render <hex digest> <bytes>`
//! - `verify` → a digest of the whole heap: `verify <hex digest> <bytes>`
//! - `info` → resident bytes and the allocator's heap and free bytes
//!
//! Usage: `agentmem-test-agent --socket PATH [--data DIR] [--index I]
//! [--heap-mb M] [--tick-ms T]`. It prints `ready` on stdout when listening.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Args {
    socket: PathBuf,
    data: PathBuf,
    index: usize,
    heap_mb: u64,
    tick_ms: u64,
}

fn usage(msg: &str) -> ! {
    eprintln!("agentmem-test-agent: {msg}\nusage: agentmem-test-agent --socket PATH [--data DIR] [--index I] [--heap-mb M] [--tick-ms T]");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        socket: PathBuf::new(),
        data: default_data(),
        index: 0,
        heap_mb: 96,
        tick_ms: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it
            .next()
            .unwrap_or_else(|| usage(&format!("{k} needs a value")));
        let num = |v: &str| {
            v.parse::<u64>()
                .unwrap_or_else(|_| usage(&format!("{k}: {v:?} is not a number")))
        };
        match k.as_str() {
            "--socket" => a.socket = v.into(),
            "--data" => a.data = v.into(),
            "--index" => a.index = num(&v) as usize,
            "--heap-mb" => a.heap_mb = num(&v),
            "--tick-ms" => a.tick_ms = num(&v).max(1),
            _ => usage(&format!("unknown option {k}")),
        }
    }
    if a.socket.as_os_str().is_empty() {
        usage("--socket is required");
    }
    a
}

/// The shared data set if it is beside the repository, else the bundled sample.
fn default_data() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shared = root.join("../shared/data");
    if shared.join("conversations").is_dir() {
        shared
    } else {
        root.join("data/sample")
    }
}

fn read_maybe_zst(path: &Path) -> std::io::Result<String> {
    let f = fs::File::open(path)?;
    let mut s = String::new();
    if path.extension().is_some_and(|e| e == "zst") {
        zstd::stream::read::Decoder::new(f)?.read_to_string(&mut s)?;
    } else {
        BufReader::new(f).read_to_string(&mut s)?;
    }
    Ok(s)
}

fn rss_bytes() -> u64 {
    procfs::process::Process::myself()
        .and_then(|p| p.statm())
        .map(|m| m.resident * procfs::page_size())
        .unwrap_or(0)
}

/// FNV-1a: a digest that depends on every byte it is given.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

const FNV0: u64 = 0xcbf29ce484222325;

fn digest(values: &[Value]) -> (u64, usize) {
    let mut h = FNV0;
    let mut n = 0;
    for v in values {
        let s = serde_json::to_string(v).expect("a JSON value serializes");
        h = fnv(h, s.as_bytes());
        n += s.len();
    }
    (h, n)
}

struct Heap {
    conversations: Vec<Value>,
    prompts: Vec<Value>,
}

fn build_heap(a: &Args) -> Heap {
    let conv_dir = a.data.join("conversations");
    let mut files: Vec<PathBuf> = fs::read_dir(&conv_dir)
        .unwrap_or_else(|e| usage(&format!("reading {}: {e}", conv_dir.display())))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".jsonl"))
        .collect();
    files.sort();
    // Whole files stay in one allocation each (so freeing them leaves no
    // holes in the heap); lines are slices of them.
    let texts: Vec<String> = files
        .iter()
        .map(|f| {
            read_maybe_zst(f).unwrap_or_else(|e| usage(&format!("reading {}: {e}", f.display())))
        })
        .collect();
    let lines: Vec<&str> = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        usage(&format!("no conversations in {}", conv_dir.display()));
    }
    let mut prompts = Vec::new();
    for name in ["system_prompt_variants.json", "tool_declarations.json"] {
        for p in [
            a.data.join("prompts").join(name),
            a.data.join("prompts").join(format!("{name}.zst")),
        ] {
            if let Ok(s) = read_maybe_zst(&p) {
                if let Ok(v) = serde_json::from_str::<Value>(&s) {
                    prompts.push(v);
                }
                break;
            }
        }
    }
    // Each agent starts at its own place in the data, so agents hold
    // different conversations (an agent's history is its own).
    let start = a.index.wrapping_mul(97) % lines.len();
    // The input text is freed after parsing: do not count it.
    let target = (a.heap_mb << 20) + texts.iter().map(|t| t.capacity() as u64).sum::<u64>();
    let mut conversations = Vec::new();
    let mut i = 0;
    while rss_bytes() < target && i < lines.len() * 64 {
        let line = lines[(start + i) % lines.len()];
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
            usage(&format!(
                "conversation line {}: {e}",
                (start + i) % lines.len()
            ))
        });
        conversations.push(v);
        i += 1;
    }
    drop(lines);
    Heap {
        conversations,
        prompts,
    }
}

fn main() {
    let args = parse_args();
    let heap = Arc::new(Mutex::new(build_heap(&args)));
    let _ = fs::remove_file(&args.socket);
    let listener = UnixListener::bind(&args.socket)
        .unwrap_or_else(|e| usage(&format!("listening on {}: {e}", args.socket.display())));

    // The idle timer: a status line redrawn every tick from a small state,
    // as a CLI's clock or spinner does. This is the agent's idle working set.
    let tick = Duration::from_millis(args.tick_ms);
    std::thread::spawn(move || {
        let mut status = vec![0u8; 64 << 10];
        let started = Instant::now();
        let mut n: u64 = 0;
        loop {
            std::thread::sleep(tick);
            n += 1;
            let line = format!(
                "[{:>8.1}s] waiting for input ({n})",
                started.elapsed().as_secs_f64()
            );
            let at = (n as usize * 512) % (status.len() - line.len());
            status[at..at + line.len()].copy_from_slice(line.as_bytes());
            std::hint::black_box(fnv(FNV0, &status[..4096]));
        }
    });

    println!("ready");
    let _ = std::io::stdout().flush();
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let heap = Arc::clone(&heap);
        std::thread::spawn(move || {
            let mut w = match conn.try_clone() {
                Ok(w) => w,
                Err(_) => return,
            };
            for line in BufReader::new(conn).lines() {
                let Ok(line) = line else { return };
                let h = heap.lock().unwrap_or_else(|p| p.into_inner());
                let reply = match line.trim() {
                    "ping" => "pong".to_string(),
                    "render" => {
                        // A redraw: the recent tenth of the history.
                        let n = h.conversations.len();
                        let (d, b) = digest(&h.conversations[n - (n / 10).max(1).min(n)..]);
                        format!("render {d:016x} {b}")
                    }
                    "verify" => {
                        let (d1, b1) = digest(&h.conversations);
                        let (d2, b2) = digest(&h.prompts);
                        format!("verify {:016x} {}", d1 ^ d2.rotate_left(1), b1 + b2)
                    }
                    "info" => {
                        // SAFETY: mallinfo2 only reads the allocator's counters.
                        let mi = unsafe { libc::mallinfo2() };
                        format!(
                            "info rss {} heap {} free {} conversations {}",
                            rss_bytes(),
                            mi.arena + mi.hblkhd,
                            mi.fordblks,
                            h.conversations.len()
                        )
                    }
                    other => format!("error unknown request {other:?}"),
                };
                drop(h);
                if writeln!(w, "{reply}").is_err() {
                    return;
                }
            }
        });
    }
}
