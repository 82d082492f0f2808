//! How the client reports a store that is down, refuses us, throttles or
//! fails: against a closed port and a tiny loopback HTTP server that gives
//! one fixed answer (no S3 server needed).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentmem_remote::{BlockingRemote, RemoteConfig, RemoteError, RemoteRecord, RetryPolicy};
use bytes::Bytes;

/// Generous: the retry budget below is well under a second; this only
/// catches a client that hangs.
const HANG: Duration = Duration::from_secs(60);

fn config(endpoint: &str) -> RemoteConfig {
    RemoteConfig::new("agentmem")
        .endpoint(endpoint)
        .region("garage")
        .credentials("GK000000000000000000000000", "0".repeat(64))
        .allow_http(true)
        .retry(RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            retry_timeout: Duration::from_secs(5),
        })
        .connect_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(2))
}

fn record() -> RemoteRecord {
    RemoteRecord {
        id: [1; 32],
        encoding: 0,
        bytes: Bytes::from_static(b"unit"),
    }
}

/// A loopback server answering every request with `status` and `body`;
/// counts requests. Stops when the returned guard drops.
struct Fixed {
    addr: String,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Drop for Fixed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn fixed(status: &'static str, body: &'static str) -> Fixed {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (h, s) = (hits.clone(), stop.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if s.load(Ordering::Relaxed) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let h = h.clone();
            std::thread::spawn(move || serve(conn, status, body, &h));
        }
    });
    Fixed { addr, hits, stop }
}

fn serve(conn: TcpStream, status: &str, body: &str, hits: &AtomicUsize) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        let mut first = true;
        let mut head = false;
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if first {
                hits.fetch_add(1, Ordering::Relaxed);
                head = line.starts_with("HEAD ");
                first = false;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut sink = vec![0; len];
        if r.read_exact(&mut sink).is_err() {
            return;
        }
        // A HEAD answer has the headers of a GET and no body.
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{}",
            body.len(),
            if head { "" } else { body }
        );
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn a_closed_port_is_unreachable_within_the_retry_budget() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let remote = BlockingRemote::connect(&config(&format!("http://127.0.0.1:{port}"))).unwrap();
    for (what, res) in [
        ("put", remote.put(&record()).map(drop)),
        ("get", remote.get(&[1; 32]).map(drop)),
        ("contains", remote.contains(&[1; 32]).map(drop)),
        ("delete", remote.delete(&[1; 32])),
    ] {
        match res {
            Err(e @ RemoteError::Unreachable { elapsed, .. }) => {
                assert!(e.is_transient());
                assert!(elapsed < HANG, "{what}: {elapsed:?}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn refused_credentials_are_a_typed_error_not_retried() {
    let server = fixed(
        "403 Forbidden",
        "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>no</Message></Error>",
    );
    let remote = BlockingRemote::connect(&config(&format!("http://{}", server.addr))).unwrap();
    let err = remote.get(&[1; 32]).unwrap_err();
    assert!(
        matches!(err, RemoteError::CredentialsRefused { .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(server.hits.load(Ordering::Relaxed), 1, "a 403 was retried");
    let err = remote.put(&record()).unwrap_err();
    assert!(
        matches!(err, RemoteError::CredentialsRefused { .. }),
        "{err:?}"
    );
}

#[test]
fn throttling_is_retried_then_reported_as_throttled() {
    let server = fixed(
        "503 Service Unavailable",
        "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
    );
    let remote = BlockingRemote::connect(&config(&format!("http://{}", server.addr))).unwrap();
    let started = Instant::now();
    let err = remote.get(&[1; 32]).unwrap_err();
    assert!(matches!(err, RemoteError::Throttled { .. }), "{err:?}");
    assert!(started.elapsed() < HANG);
    assert_eq!(
        server.hits.load(Ordering::Relaxed),
        4,
        "1 attempt + 3 retries"
    );

    let server = fixed("429 Too Many Requests", "");
    let remote = BlockingRemote::connect(&config(&format!("http://{}", server.addr))).unwrap();
    let err = remote.put(&record()).unwrap_err();
    assert!(matches!(err, RemoteError::Throttled { .. }), "{err:?}");
}

#[test]
fn a_store_without_quorum_is_unavailable_with_its_status() {
    // What Garage answers when it cannot reach a quorum of its nodes.
    let server = fixed(
        "503 Service Unavailable",
        "<?xml version=\"1.0\"?><Error><Code>ServiceUnavailable</Code><Message>Could not reach quorum of 2.</Message></Error>",
    );
    let remote = BlockingRemote::connect(&config(&format!("http://{}", server.addr))).unwrap();
    let err = remote.contains(&[1; 32]).unwrap_err();
    match err {
        RemoteError::Unavailable { status: 503, .. } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server.hits.load(Ordering::Relaxed),
        4,
        "1 attempt + 3 retries"
    );
    let server = fixed("500 Internal Server Error", "");
    let remote = BlockingRemote::connect(&config(&format!("http://{}", server.addr))).unwrap();
    assert!(matches!(
        remote.put(&record()).unwrap_err(),
        RemoteError::Unavailable { status: 500, .. }
    ));
}
