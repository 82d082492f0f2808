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

/// Tenant beta takes every connection, agent and byte its quotas allow;
/// tenant alpha still connects and works without a single error, and each
/// refusal of beta names the limit, its value and its key.
#[test]
fn tenant_at_its_quotas_does_not_stop_another() {
    use agentmem_client::ErrorCode;
    use common::{ALPHA, BETA};
    let d = Daemon::start(
        "max_connections = 40\nmax_connections_per_tenant = 20\nmax_agents_per_tenant = 25\n\
         max_stored_bytes_per_tenant = \"1 MiB\"\ndata_dir = \"\"",
    );
    let beta = |name: &str| d.options(name).token(BETA).connect();
    let mut held: Vec<_> = (0..20).map(|i| beta(&format!("b-{i}")).unwrap()).collect();
    let e = beta("b-20").unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::LimitReached), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("limit of 20 connections") && msg.contains("max_connections_per_tenant"),
        "{msg}"
    );
    // Agents: five disconnected ones stay registered in their grace time.
    for _ in 0..5 {
        held.pop();
    }
    for i in 20..25 {
        // The daemon sees the closes a moment later.
        let deadline = Instant::now() + Duration::from_secs(10);
        let c = loop {
            match beta(&format!("b-{i}")) {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    assert!(e.to_string().contains("connections"), "{e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        };
        held.push(c);
    }
    held.pop();
    let e = beta("b-25").unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::LimitReached), "{e}");
    assert!(e.to_string().contains("limit of 25 agents"), "{e}");
    // Stored bytes: refused once the once-a-second figure catches up.
    let mut refused = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    while refused.is_none() && Instant::now() < deadline {
        match held[0].put(
            Kind::ToolResult,
            &text(1000 + i, 64 * 1024),
            Visibility::Private,
        ) {
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => refused = Some(e),
        }
        i += 1;
    }
    let e = refused.expect("beta's puts are refused past 1 MiB");
    assert_eq!(e.code(), Some(ErrorCode::LimitReached), "{e}");
    assert!(
        e.to_string().contains("stored bytes")
            && e.to_string().contains("max_stored_bytes_per_tenant"),
        "{e}"
    );
    // Beta at every limit at once; alpha works as if beta were not there.
    let mut errors = 0;
    let mut alphas: Vec<_> = (0..10)
        .filter_map(
            |i| match d.options(&format!("a-{i}")).token(ALPHA).connect() {
                Ok(c) => Some(c),
                Err(_) => {
                    errors += 1;
                    None
                }
            },
        )
        .collect();
    for (n, c) in alphas.iter_mut().enumerate() {
        for j in 0..10 {
            let data = text((n * 100 + j) as u64, 2048);
            let ok = c
                .put(Kind::ToolResult, &data, Visibility::Private)
                .and_then(|id| c.get(&id))
                .map(|u| u.to_vec() == data)
                .unwrap_or(false);
            errors += usize::from(!ok);
        }
    }
    assert_eq!(errors, 0, "alpha saw errors while beta sat at its limits");
    assert_eq!(alphas.len(), 10);
    // Beta is still at its connection limit; alpha was not counted in it.
    assert!(beta("b-late").is_err());
}

/// A connection that says nothing after its handshake is closed after
/// `idle_timeout_secs`, with a frame that says why; one that reads none of
/// its answers is closed after `write_timeout_secs`.
#[test]
fn idle_and_stalled_connections_are_closed() {
    use agentmem_proto::{decode_response, ErrorCode, Response};
    let d = Daemon::start(
        "idle_timeout_secs = 0.5\nwrite_timeout_secs = 1\nmax_frame = 1048576\ndata_dir = \"\"",
    );
    let (mut s, _) = raw::hello(&d.socket, &Hello::new("sleeper"));
    let at = Instant::now();
    let p = raw::read_payload(&mut s).expect("a frame saying why");
    assert!(at.elapsed() >= Duration::from_millis(400));
    match decode_response(&p).unwrap().response {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::LimitReached);
            assert!(e.message.contains("idle_timeout_secs"), "{}", e.message);
        }
        r => panic!("expected an error, got {r:?}"),
    }
    assert!(raw::read_payload(&mut s).is_none(), "then the end");

    let mut c = d.client("staller");
    let conv = c.create_conversation().unwrap();
    for m in 0..8 {
        c.append(conv, &text(m, 100 * 1024)).unwrap();
    }
    drop(c);
    // Its agent is free once the daemon has seen the close.
    let mut s = loop {
        match raw::hello(&d.socket, &Hello::new("staller")) {
            (s, agentmem_proto::HandshakeReply::Welcome(_)) => break s,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut reqs = Vec::new();
    for id in 1..=50 {
        reqs.extend(raw::request(
            id,
            Request::ReadAll {
                conversation: conv.0,
            },
        ));
    }
    let _ = s.write_all(&reqs);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log_text().contains("read none of its answers") {
        assert!(
            Instant::now() < deadline,
            "the stalled connection was not closed; log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An agent named with terminal escape sequences and newlines: every log
/// line shows the name escaped, and a tenant's stats show its own agents
/// and figures only, while root sees every tenant.
#[test]
fn escape_sequences_in_names_reach_no_log_and_stats_stay_per_tenant() {
    use common::{ALPHA, BETA};
    let d = Daemon::start("grace_secs = 0.2\ndata_dir = \"\"");
    let evil = "evil\x1b[2J\x1b]0;owned\x07\nINFO forged line\r";
    let mut b = d.options(evil).token(BETA).connect().unwrap();
    b.put(Kind::ToolResult, &text(5, 4096), Visibility::Private)
        .unwrap();
    let mut a = d.options("alpha-agent").token(ALPHA).connect().unwrap();
    a.put(Kind::ToolResult, &text(6, 4096), Visibility::Private)
        .unwrap();
    let sa = a.stats().unwrap();
    assert_eq!(sa.agents.len(), 1, "{:?}", sa.agents);
    assert_eq!(sa.agents[0].tenant, "alpha");
    assert!(sa.kinds.is_empty() && sa.dedup_hits == 0 && sa.daemon.requests == 0);
    assert_eq!(sa.total_allocated, sa.agents[0].charged_bytes);
    // Root (the test runs as root or as the daemon's user) sees both.
    let mut root = d.client("");
    let all = root.stats().unwrap();
    assert!(all.agents.iter().any(|x| x.name == evil));
    assert!(all.agents.iter().any(|x| x.tenant == "alpha"));
    assert!(!all.kinds.is_empty());
    drop(b);
    // Released after its grace time, with a log line naming it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log_text().contains("released") {
        assert!(Instant::now() < deadline, "{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = d.log_text();
    assert!(
        !log.contains('\x1b') && !log.contains('\x07') && !log.contains('\r'),
        "{log:?}"
    );
    assert!(!log.contains("\nINFO forged"), "{log}");
    assert!(log.contains("evil\\u{1b}[2J"), "{log}");
}
