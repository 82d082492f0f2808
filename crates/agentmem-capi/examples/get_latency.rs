//! Latency of one `get` of a 1 KiB message, in the Rust paths that the
//! bindings are compared with (scripts/bench-bindings.sh runs this and the
//! Node.js and Python equivalents in one go):
//!
//! - `rust-store`: `agentmem_core::Store::get_for`, the embedded store itself;
//! - `rust-backend`: the same through `agentmem_backend::Backend`;
//! - `c-api`: `agent_read` into a caller's buffer (the C path: handle lookup,
//!   panic boundary, copy).
//!
//! Prints one JSON object per line: `{"path", "ns_per_get_p50", "ns_per_get_min"}`,
//! from 30 batches of 20,000 gets each.
//!
//! `cargo run --release -p agentmem-capi --example get_latency`

use std::time::Instant;

use agentmem::*;
use agentmem_backend::{Backend, EmbeddedBackend, EmbeddedOptions, Kind, Visibility};

const BATCH: u32 = 20_000;
const BATCHES: usize = 30;

/// A 1 KiB JSON message like the agents' own.
pub fn message() -> Vec<u8> {
    let mut m = br#"{"role":"user","content":""#.to_vec();
    let body =
        "I'd like to change my flight to the one leaving two hours later, same fare class please. ";
    while m.len() < 1024 - 2 {
        m.push(body.as_bytes()[m.len() % body.len()]);
    }
    m.extend_from_slice(br#""}"#);
    m.truncate(1024);
    m
}

fn report(path: &str, mut f: impl FnMut()) {
    for _ in 0..BATCH {
        f(); // warm up
    }
    let mut per: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..BATCH {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(BATCH)
        })
        .collect();
    per.sort_by(f64::total_cmp);
    println!(
        r#"{{"path":"{path}","ns_per_get_p50":{:.0},"ns_per_get_min":{:.0}}}"#,
        per[BATCHES / 2],
        per[0]
    );
}

fn main() {
    let msg = message();

    let backend = EmbeddedBackend::open(&EmbeddedOptions::default()).expect("open store");
    let agent = backend
        .register_agent("bench", "default", 50)
        .expect("agent");
    let id = backend
        .put(agent, Kind::Conversation, &msg, Visibility::Private)
        .expect("put");
    let store = backend.store().clone();
    report("rust-store", || {
        let b = store.get_for(agent, &id).expect("get");
        assert_eq!(b.len(), 1024);
    });
    report("rust-backend", || {
        let b = backend.get(agent, &id).expect("get");
        assert_eq!(b.len(), 1024);
    });

    let mut ctx = agentmem_ctx::default();
    let mut a = agentmem_agent::default();
    let mut h = agentmem_smu::default();
    let mut buf = vec![0u8; 4096];
    // SAFETY: every pointer is to a live local of the right type; `buf` has
    // `buf.len()` writable bytes; `msg` has `msg.len()` readable bytes.
    unsafe {
        assert_eq!(
            agentmem_open_embedded(std::ptr::null(), &mut ctx),
            agentmem_result::AGENTMEM_OK
        );
        assert_eq!(
            agent_register(ctx, c"bench".as_ptr(), std::ptr::null(), &mut a),
            agentmem_result::AGENTMEM_OK
        );
        assert_eq!(
            agent_alloc_smu(a, 2, msg.as_ptr().cast(), msg.len(), &mut h),
            agentmem_result::AGENTMEM_OK
        );
    }
    report("c-api", || {
        let mut len = 0usize;
        // SAFETY: as above.
        let r = unsafe { agent_read(h, buf.as_mut_ptr().cast(), buf.len(), &mut len) };
        assert!(r == agentmem_result::AGENTMEM_OK && len == 1024);
    });
    assert_eq!(agentmem_close(ctx), agentmem_result::AGENTMEM_OK);
}
