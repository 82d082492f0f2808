//! The daemon backend against a real agentmemd served in this process on a
//! temporary socket.

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agentmem_backend::{AgentState, ErrorKind, Kind, Memory, Visibility};

/// agentmemd on a temp socket; stopped (gracefully) on drop.
struct TestDaemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl TestDaemon {
    fn start() -> TestDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("agentmemd.sock");
        let mut cfg = agentmem_daemon::Config {
            socket: socket.clone(),
            max_frame: 256 * 1024,
            workers: 2,
            ..Default::default()
        };
        cfg.store.max_unit_size = agentmem_daemon::config::Size(64 * 1024);
        let (stop, rx) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(agentmem_daemon::serve(cfg, rx))
                .expect("agentmemd");
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "agentmemd did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        TestDaemon {
            _dir: dir,
            socket,
            stop,
            thread: Some(thread),
        }
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            t.join().expect("daemon thread");
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[test]
fn no_daemon_is_not_running() {
    let e = Memory::connect("/nonexistent/agentmem.sock").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotRunning);
    assert!(e.to_string().contains("agentmemd"), "{e}");
}

#[test]
fn daemon_backend_round_trip_and_errors() {
    let mut d = TestDaemon::start();
    let m = Memory::connect(&d.socket).unwrap();
    let b = m.backend().unwrap();
    assert_eq!(b.name(), "daemon");
    let a = b.register_agent("a", "ignored", 50).unwrap();
    let c = b.register_agent("c", "ignored", 50).unwrap();
    assert_eq!(
        b.register_agent("a", "ignored", 50).unwrap_err().kind(),
        ErrorKind::AccessDenied,
        "one connection per agent name"
    );

    let prompt = vec![b'p'; 40 * 1024]; // large: comes back as a shared segment
    let pa = b
        .put(a, Kind::SystemPrompt, &prompt, Visibility::Private)
        .unwrap();
    let pc = b
        .put(c, Kind::SystemPrompt, &prompt, Visibility::Private)
        .unwrap();
    assert_eq!(pa, pc, "deduplicated within the tenant");
    assert_eq!(&b.get(a, &pa).unwrap()[..], &prompt[..]);
    let s = b.mem_stats().unwrap();
    assert_eq!(s.total_allocated, 2 * prompt.len() as u64);
    assert_eq!(s.total_deduplicated, prompt.len() as u64);

    let secret = b
        .put(a, Kind::ToolResult, b"only for a", Visibility::Private)
        .unwrap();
    // The daemon does not tell "not yours" from "does not exist".
    assert_eq!(
        b.get(c, &secret).unwrap_err().kind(),
        ErrorKind::UnknownUnit
    );
    b.share(a, &secret, c).unwrap();
    assert_eq!(&b.get(c, &secret).unwrap()[..], b"only for a");
    b.mark_hot(c, &secret).unwrap();
    b.release(c, &secret).unwrap();

    assert_eq!(
        b.put(a, Kind::Blob, &vec![1u8; 100 * 1024], Visibility::Private)
            .unwrap_err()
            .kind(),
        ErrorKind::TooLarge
    );
    let e = b
        .put(a, Kind::Blob, &vec![1u8; 1024 * 1024], Visibility::Private)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "over the frame limit: {e}");
    assert_eq!(
        b.put(a, Kind::Blob, b"", Visibility::Private)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );

    let conv = b.create_conversation(a).unwrap();
    for i in 0..100u64 {
        assert_eq!(b.append(conv, format!("m{i}").as_bytes()).unwrap(), i);
    }
    assert_eq!(b.conversation_len(conv).unwrap(), 100);
    let last = b.read_messages(conv, 98..1000).unwrap();
    assert_eq!(last.len(), 2);
    assert_eq!(&last[1][..], b"m99");
    b.set_state(a, AgentState::Paused).unwrap();
    b.set_state(a, AgentState::Active).unwrap();
    assert_eq!(&b.read_messages(conv, 5..6).unwrap()[0][..], b"m5");
    assert_eq!(
        b.append(agentmem_backend::ConversationId(9999), b"x")
            .unwrap_err()
            .kind(),
        ErrorKind::UnknownConversation
    );

    b.release_agent(c).unwrap();
    assert_eq!(b.get(c, &pa).unwrap_err().kind(), ErrorKind::UnknownAgent);

    // The daemon goes away: calls fail with an error, never a crash.
    d.shutdown();
    let e = b.get(a, &pa).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Io | ErrorKind::NotRunning),
        "{e} ({:?})",
        e.kind()
    );
    m.close();
    assert_eq!(m.backend().unwrap_err().kind(), ErrorKind::Closed);
}
