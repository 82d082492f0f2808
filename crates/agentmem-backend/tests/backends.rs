//! One suite every `Backend` must pass, run on the embedded store and on a
//! real agentmemd served in this process on a temporary socket.

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agentmem_backend::{
    AgentState, Backend, ConversationId, EmbeddedOptions, ErrorKind, Kind, Memory, Visibility,
};

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
            data_dir: PathBuf::new(),
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

/// The contract every backend keeps (see the `Backend` trait), run on each.
fn conformance(b: &dyn Backend, max_unit: usize) {
    let daemon = b.name() == "daemon";
    let tag = std::process::id();
    let a = b.register_agent(&format!("a-{tag}"), "t1", 50).unwrap();
    let c = b.register_agent(&format!("c-{tag}"), "t1", 50).unwrap();

    // Identical content of one tenant is stored once; large units read back
    // whole (through the daemon: as a shared segment).
    let prompt = vec![b'p'; 40 * 1024];
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

    // Private units are read by their holders only, until shared.
    let secret = b
        .put(a, Kind::ToolResult, b"only for a", Visibility::Private)
        .unwrap();
    let refused = b.get(c, &secret).unwrap_err().kind();
    // The daemon does not tell "not yours" from "does not exist".
    let expected = if daemon {
        ErrorKind::UnknownUnit
    } else {
        ErrorKind::AccessDenied
    };
    assert_eq!(refused, expected);
    b.share(a, &secret, c).unwrap();
    assert_eq!(&b.get(c, &secret).unwrap()[..], b"only for a");
    b.mark_hot(c, &secret).unwrap();
    b.release(c, &secret).unwrap();
    b.release(a, &secret).unwrap();
    assert_eq!(
        b.get(a, &secret).unwrap_err().kind(),
        ErrorKind::UnknownUnit
    );
    let public = b
        .put(a, Kind::Blob, b"for all", Visibility::Public)
        .unwrap();
    assert_eq!(&b.get(c, &public).unwrap()[..], b"for all");

    // Bad input: an error of the right kind, never a panic.
    let big = vec![1u8; max_unit + 1];
    assert_eq!(
        b.put(a, Kind::Blob, &big, Visibility::Private)
            .unwrap_err()
            .kind(),
        ErrorKind::TooLarge
    );
    assert_eq!(
        b.put(a, Kind::Blob, b"", Visibility::Private)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    let nobody = agentmem_backend::AgentId(999_999);
    assert_eq!(
        b.put(nobody, Kind::Blob, b"x", Visibility::Private)
            .unwrap_err()
            .kind(),
        ErrorKind::UnknownAgent
    );

    // Conversations: append, length, clamped ranges, across a pause.
    let conv = b.create_conversation(a).unwrap();
    for i in 0..100u64 {
        assert_eq!(b.append(conv, format!("m{i}").as_bytes()).unwrap(), i);
    }
    assert_eq!(b.conversation_len(conv).unwrap(), 100);
    let last = b.read_messages(conv, 98..1000).unwrap();
    assert_eq!(last.len(), 2);
    assert_eq!(&last[1][..], b"m99");
    assert!(b.read_messages(conv, 500..600).unwrap().is_empty());
    b.set_state(a, AgentState::Paused).unwrap();
    b.set_state(a, AgentState::Active).unwrap();
    assert_eq!(&b.read_messages(conv, 5..6).unwrap()[0][..], b"m5");
    assert_eq!(
        b.append(ConversationId(999_999), b"x").unwrap_err().kind(),
        ErrorKind::UnknownConversation
    );

    // A fork holds the parent's first `at` messages and grows on its own.
    let fork = b.fork_conversation(a, conv, 60).unwrap();
    assert_eq!(b.conversation_len(fork).unwrap(), 60);
    assert_eq!(b.append(fork, b"f60").unwrap(), 60);
    assert_eq!(&b.read_messages(fork, 59..61).unwrap()[0][..], b"m59");
    assert_eq!(&b.read_messages(fork, 60..61).unwrap()[0][..], b"f60");
    assert_eq!(&b.read_messages(conv, 60..61).unwrap()[0][..], b"m60");
    assert_eq!(
        b.fork_conversation(a, conv, 101).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );

    // A released agent is gone.
    b.release_agent(c).unwrap();
    assert_eq!(b.get(c, &pa).unwrap_err().kind(), ErrorKind::UnknownAgent);
    assert_eq!(
        b.release_agent(c).unwrap_err().kind(),
        ErrorKind::UnknownAgent
    );
}

#[test]
fn embedded_backend_keeps_the_contract() {
    let m = Memory::embedded(&EmbeddedOptions {
        max_unit_size: 64 * 1024,
        ..Default::default()
    })
    .unwrap();
    conformance(&*m.backend().unwrap(), 64 * 1024);
    m.close().unwrap();
    assert_eq!(m.backend().unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn daemon_backend_keeps_the_contract() {
    let mut d = TestDaemon::start();
    let m = Memory::connect(&d.socket).unwrap();
    let b = m.backend().unwrap();
    assert_eq!(b.name(), "daemon");
    conformance(&*b, 64 * 1024);

    // Daemon-only rules.
    let x = b.register_agent("x", "t", 50).unwrap();
    assert_eq!(
        b.register_agent("x", "t", 50).unwrap_err().kind(),
        ErrorKind::AccessDenied,
        "one connection per agent name"
    );
    let e = b
        .put(x, Kind::Blob, &vec![1u8; 1024 * 1024], Visibility::Private)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "over the frame limit: {e}");
    assert!(e.to_string().contains("max_frame"), "{e}");

    // The daemon goes away: calls fail with an error, never a crash.
    let p = b.put(x, Kind::Blob, b"kept", Visibility::Private).unwrap();
    d.shutdown();
    let e = b.get(x, &p).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Io | ErrorKind::NotRunning),
        "{e} ({:?})",
        e.kind()
    );
    m.close().unwrap();
    assert_eq!(m.backend().unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn embedded_store_in_a_directory_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        dir: Some(dir.path().join("store")),
        max_unit_size: 256 * 1024,
        ..Default::default()
    };
    // Also runs the whole contract on a persistent store.
    let m = Memory::embedded(&opts).unwrap();
    conformance(&*m.backend().unwrap(), 256 * 1024);
    let b = m.backend().unwrap();
    let big: Vec<u8> = (0..100_000u32).map(|i| ((i * 7919) >> 3) as u8).collect();
    let a = b.register_agent("keeper", "t", 80).unwrap();
    let other = b.register_agent("keeper", "other-tenant", 10).unwrap();
    let id = b
        .put(a, Kind::ToolResult, &big, Visibility::Private)
        .unwrap();
    let small = b
        .put(other, Kind::Blob, b"\x00\x01other", Visibility::Private)
        .unwrap();
    let c = b.create_conversation(a).unwrap();
    for i in 0..20u8 {
        b.append(c, &[i; 33]).unwrap();
    }
    drop(b);
    // A second open of the same directory while it is in use fails clearly.
    let e = Memory::embedded(&opts).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.to_string().contains("already opened"), "{e}");
    m.close().unwrap();

    let m = Memory::embedded(&opts).unwrap();
    let b = m.backend().unwrap();
    // Registering the same name and tenant claims the restored agent.
    let a2 = b.register_agent("keeper", "t", 80).unwrap();
    assert_eq!(a2, a);
    assert_eq!(&b.get(a2, &id).unwrap()[..], &big[..]);
    assert_eq!(b.conversation_len(c).unwrap(), 20);
    let msgs = b.read_messages(c, 0..20).unwrap();
    assert!(msgs.iter().enumerate().all(|(i, m)| m[..] == [i as u8; 33]));
    let o2 = b.register_agent("keeper", "other-tenant", 10).unwrap();
    assert_eq!(o2, other);
    assert_eq!(&b.get(o2, &small).unwrap()[..], b"\x00\x01other");
    // A third registration of the name is a new agent.
    let fresh = b.register_agent("keeper", "t", 80).unwrap();
    assert_ne!(fresh, a);
    assert_eq!(
        b.get(fresh, &id).unwrap_err().kind(),
        ErrorKind::AccessDenied
    );
    m.close().unwrap();

    let e = Memory::embedded(&EmbeddedOptions {
        dir: Some(PathBuf::new()),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[test]
fn daemon_backend_finds_the_conversations_of_a_reattached_agent() {
    let mut d = TestDaemon::start();
    let m = Memory::connect(&d.socket).unwrap();
    let b = m.backend().unwrap();
    let a = b.register_agent("returning", "t", 50).unwrap();
    let c = b.create_conversation(a).unwrap();
    b.append(c, b"first").unwrap();
    m.close().unwrap();
    drop(b);
    // A new process (backend) for the same agent, within the grace time.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (m, b, a2) = loop {
        let m = Memory::connect(&d.socket).unwrap();
        let b = m.backend().unwrap();
        match b.register_agent("returning", "t", 50) {
            Ok(a2) => break (m, b, a2),
            // The daemon may not have seen the old connection close yet.
            Err(e) if e.kind() == ErrorKind::AccessDenied && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(a2, a);
    let other = b.register_agent("bystander", "t", 50).unwrap();
    let _ = b.create_conversation(other).unwrap();
    assert_eq!(b.conversation_len(c).unwrap(), 1);
    assert_eq!(b.append(c, b"second").unwrap(), 1);
    let msgs = b.read_messages(c, 0..2).unwrap();
    assert_eq!(
        (&msgs[0][..], &msgs[1][..]),
        (&b"first"[..], &b"second"[..])
    );
    assert_eq!(
        b.conversation_len(ConversationId(4242)).unwrap_err().kind(),
        ErrorKind::UnknownConversation
    );
    m.close().unwrap();
    d.shutdown();
}
