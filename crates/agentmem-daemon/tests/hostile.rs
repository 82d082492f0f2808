//! Tenants that attack the daemon's fairness rather than its parser: a
//! client that pipelines and never reads, one that holds every connection
//! it may, one that names itself with escape sequences. Each must cost the
//! others nothing but what the limits allow.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use agentmem_core::{Kind, Visibility};
use agentmem_proto::{Hello, Request};
use common::{raw, Daemon};

/// Distinct, poorly compressible text of `len` bytes.
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

fn rss(d: &Daemon) -> u64 {
    agentmem_daemon::sys::rss_of(&d.pid().to_string()).unwrap()
}

/// Clients that pipeline hundreds of `ReadAll`s of a large conversation
/// and never read an answer: the daemon stops reading them once their
/// unsent answers pass `max_unsent_per_connection`, so its memory grows by
/// at most about that much per connection; a bystander is still served.
#[test]
fn never_reading_clients_hold_bounded_memory() {
    const MAX_FRAME: u64 = 1 << 20;
    const CONNS: usize = 8;
    const REQUESTS: u64 = 300;
    let metrics = common::free_loopback();
    let d = Daemon::start(&format!(
        "max_frame = {MAX_FRAME}\nmax_unsent_per_connection = {}\ndata_dir = \"\"\nmetrics = \"{metrics}\"",
        2 * MAX_FRAME
    ));
    let mut bystander = d.client("bystander");
    let unit = bystander
        .put(Kind::ToolResult, &text(1, 4096), Visibility::Private)
        .unwrap();
    // Each hog owns a conversation of ~900 KiB (one answer just under a
    // frame), made through the ordinary client, then left to reconnect.
    let mut convs = Vec::new();
    for i in 0..CONNS {
        let mut c = d.client(&format!("hog-{i}"));
        let conv = c.create_conversation().unwrap();
        for m in 0..9 {
            c.append(conv, &text((i * 100 + m) as u64, 100 * 1024))
                .unwrap();
        }
        // Paused, its chunks are compressed: every read decodes a fresh
        // copy, so answers really cost memory until written.
        c.pause().unwrap();
        convs.push(conv);
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = rss(&d);
    let mut hogs = Vec::new();
    let mut requests = Vec::new();
    for (i, conv) in convs.iter().enumerate() {
        let (mut s, r) = raw::hello(&d.socket, &Hello::new(format!("hog-{i}")));
        assert!(
            matches!(r, agentmem_proto::HandshakeReply::Welcome(_)),
            "{r:?}"
        );
        requests.clear();
        for id in 1..=REQUESTS {
            requests.extend(raw::request(
                id,
                Request::ReadAll {
                    conversation: conv.0,
                },
            ));
        }
        // 300 × 900 KiB of answers (270 MiB) asked for with a few KiB.
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(&requests);
        hogs.push(s);
    }
    // Let the daemon do all it will do for them.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut peak = 0;
    while Instant::now() < deadline {
        peak = peak.max(rss(&d));
        std::thread::sleep(Duration::from_millis(50));
    }
    let growth = peak.saturating_sub(before);
    let bound = CONNS as u64 * 2 * MAX_FRAME + (16 << 20);
    println!(
        "{CONNS} never-reading clients: daemon RSS {} MiB -> peak {} MiB",
        before >> 20,
        peak >> 20
    );
    assert!(
        growth <= bound,
        "{CONNS} never-reading clients grew the daemon by {} MiB (bound {} MiB)",
        growth >> 20,
        bound >> 20
    );
    // What the daemon held unsent at most, whether or not the store
    // shares those bytes with its own copy.
    let unsent = common::metric(metrics, "agentmem_unsent_answer_bytes_peak").unwrap() as u64;
    println!("unsent answers at most {} MiB", unsent >> 20);
    assert!(
        unsent <= CONNS as u64 * 2 * MAX_FRAME,
        "{} MiB of answers were unsent at once (limit {} MiB)",
        unsent >> 20,
        (CONNS as u64 * 2 * MAX_FRAME) >> 20
    );
    // Others are served meanwhile.
    assert_eq!(bystander.get(&unit).unwrap().to_vec(), text(1, 4096));
    drop(hogs);
    bystander.ping().unwrap();
}
