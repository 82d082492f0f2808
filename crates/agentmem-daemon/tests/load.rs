//! 1000 concurrent connections: all served, none refused, and the daemon's
//! resident memory per idle connection.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;

#[test]
fn thousand_concurrent_connections() {
    let limit = common::raise_fd_limit();
    if limit < 2200 {
        println!(
            "SKIP: the open-file limit is {limit}; 1000 connections need about 2100 descriptors"
        );
        return;
    }
    let d = Daemon::start("max_connections = 2000\nmax_connections_per_tenant = 2000");
    let rss = || agentmem_daemon::sys::rss_of(&d.pid().to_string()).unwrap();
    // Warm up the runtime's threads and buffers with one connection.
    let mut first = d.client("warm-up");
    first.ping().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let before = rss();
    let started = Instant::now();
    const N: usize = 1000;
    // Connect from 8 threads at once, so the connections really overlap
    // with the daemon's accepts.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let opts: Vec<_> = (0..N / 8)
                .map(|i| d.options(&format!("idle-{t}-{i}")))
                .collect();
            std::thread::spawn(move || {
                let mut clients = Vec::new();
                let mut errors = 0;
                for o in opts {
                    match o.connect() {
                        Ok(mut c) => match c.ping() {
                            Ok(()) => clients.push(c),
                            Err(_) => errors += 1,
                        },
                        Err(_) => errors += 1,
                    }
                }
                (clients, errors)
            })
        })
        .collect();
    let mut clients = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (c, e) = t.join().unwrap();
        clients.extend(c);
        errors += e;
    }
    assert_eq!(errors, 0, "connections failed");
    assert_eq!(clients.len(), N);
    let connect_time = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let after = rss();
    // All still open: every one answers again.
    for c in &mut clients {
        c.ping().unwrap();
    }
    let st = first.stats().unwrap();
    assert_eq!(st.daemon.connections, N as u64 + 1);
    println!(
        "{N} concurrent connections in {connect_time:?}, 0 errors; daemon RSS {:.1} MiB -> {:.1} MiB: {} bytes per idle connection (agent registration included)",
        before as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64,
        (after.saturating_sub(before)) / N as u64
    );
    assert!(started.elapsed() < Duration::from_secs(120));
}
