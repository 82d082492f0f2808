//! Latency of one `get` of a 1 KiB message, in the Rust paths that the
//! bindings are compared with (scripts/bench-bindings.sh runs this and the
//! Node.js and Python equivalents in one go):
//!
//! - `rust-store`: `agentmem_core::Store::get_for`, the embedded store itself;
//! - `rust-backend`: the same through `agentmem_backend::Backend`;
//! - `c-api`: `agent_read` into a caller's buffer (the C path: handle lookup,
//!   panic boundary, copy).
//!
//! With a socket path argument, the same through agentmemd listening there:
//!
//! - `rust-client-daemon`: `agentmem_client::Client::get`, the Rust client;
//! - `rust-backend-daemon`, `c-api-daemon`: the bindings' paths over it.
//!
//! Prints one JSON object per line: `{"path", "ns_per_get_p50", "ns_per_get_min"}`,
//! from 30 batches of 20,000 gets each (15 of 2,000 through the daemon).
//!
//! `cargo run --release -p agentmem-capi --example get_latency [-- SOCKET]`

use std::time::Instant;

use agentmem::*;
use agentmem_backend::{Backend, EmbeddedBackend, EmbeddedOptions, Kind, Visibility};

/// Gets per batch and batches: (embedded, daemon).
const BATCH: (u32, u32) = (20_000, 2_000);
const BATCHES: (usize, usize) = (30, 15);

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
    let (batch, batches) = if path.ends_with("daemon") {
        (BATCH.1, BATCHES.1)
    } else {
        (BATCH.0, BATCHES.0)
    };
    for _ in 0..batch {
        f(); // warm up
    }
    let mut per: Vec<f64> = (0..batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(batch)
        })
        .collect();
    per.sort_by(f64::total_cmp);
    println!(
        r#"{{"path":"{path}","ns_per_get_p50":{:.0},"ns_per_get_min":{:.0}}}"#,
        per[batches / 2],
        per[0]
    );
}

fn c_api(path: &str, msg: &[u8], socket: Option<&std::ffi::CStr>) {
    let mut ctx = agentmem_ctx::default();
    let mut a = agentmem_agent::default();
    let mut h = agentmem_smu::default();
    let mut buf = vec![0u8; 4096];
    let name = format!("bench-c-{}\0", std::process::id());
    // SAFETY: every pointer is to a live local of the right type; `msg` has
    // `msg.len()` readable bytes; `name` and `socket` are NUL-terminated.
    unsafe {
        let r = match socket {
            Some(s) => agentmem_connect(s.as_ptr(), &mut ctx),
            None => agentmem_open_embedded(std::ptr::null(), &mut ctx),
        };
        assert_eq!(r, agentmem_result::AGENTMEM_OK);
        let r = agent_register(ctx, name.as_ptr().cast(), std::ptr::null(), &mut a);
        assert_eq!(r, agentmem_result::AGENTMEM_OK);
        let r = agent_alloc_smu(a, 2, msg.as_ptr().cast(), msg.len(), &mut h);
        assert_eq!(r, agentmem_result::AGENTMEM_OK);
    }
    report(path, || {
        let mut len = 0usize;
        // SAFETY: `buf` has `buf.len()` writable bytes; `len` is a local.
        let r = unsafe { agent_read(h, buf.as_mut_ptr().cast(), buf.len(), &mut len) };
        assert!(r == agentmem_result::AGENTMEM_OK && len == 1024);
    });
    assert_eq!(agentmem_close(ctx), agentmem_result::AGENTMEM_OK);
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

    c_api("c-api", &msg, None);

    let Some(socket) = std::env::args().nth(1) else {
        return;
    };
    let mut client =
        agentmem_client::ConnectOptions::new(format!("bench-rust-{}", std::process::id()))
            .socket(&socket)
            .connect()
            .expect("connect to agentmemd");
    let id = client
        .put(Kind::Conversation, &msg, Visibility::Private)
        .expect("put");
    report("rust-client-daemon", || {
        let u = client.get(&id).expect("get");
        assert_eq!(u.len(), 1024);
    });
    let m = agentmem_backend::Memory::connect(&socket).expect("connect");
    let b = m.backend().expect("open");
    let agent = b
        .register_agent(
            &format!("bench-backend-{}", std::process::id()),
            "default",
            50,
        )
        .expect("agent");
    let id = b
        .put(agent, Kind::Conversation, &msg, Visibility::Private)
        .expect("put");
    report("rust-backend-daemon", || {
        let u = b.get(agent, &id).expect("get");
        assert_eq!(u.len(), 1024);
    });
    let socket = std::ffi::CString::new(socket).expect("socket path without NUL");
    c_api("c-api-daemon", &msg, Some(&socket));
}
