//! The data directory: what agents wrote through the daemon survives a
//! SIGTERM and a restart on the same directory, byte for byte; restored
//! agents wait idle for the grace time; a second daemon on a directory in
//! use fails clearly.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentmem_core::{AgentState, Kind, Visibility};
use common::{Daemon, ALPHA};

/// Bytes no compressor or dedup can fake: a xorshift stream.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn stop(d: &mut Daemon) {
    assert_eq!(
        d.terminate(Duration::from_secs(20)),
        Some(true),
        "agentmemd did not stop cleanly on SIGTERM; log:\n{}",
        d.log_text()
    );
}

#[test]
fn units_agents_and_conversations_survive_sigterm_and_restart() {
    let mut d = Daemon::start("grace_secs = 120");
    let big = noise(7, 40_000); // over share_threshold: served as a memfd segment
    let small = b"private tool result \x00\xff\x01 with binary bytes".to_vec();
    let messages: Vec<Vec<u8>> = (0..50u64)
        .map(|i| {
            if i % 7 == 3 {
                noise(i, 3000)
            } else {
                format!("message {i}: {}", "x".repeat(i as usize)).into_bytes()
            }
        })
        .collect();
    let mut a = d
        .options("writer")
        .token(ALPHA)
        .importance(9)
        .connect()
        .unwrap();
    let agent = a.agent();
    let big_id = a.put(Kind::ToolResult, &big, Visibility::Private).unwrap();
    let small_id = a
        .put(Kind::ToolResult, &small, Visibility::Private)
        .unwrap();
    let public_id = a
        .put(Kind::SystemPrompt, b"you are terse", Visibility::Public)
        .unwrap();
    let conv = a.create_conversation().unwrap();
    for m in &messages {
        a.append(conv, m).unwrap();
    }
    drop(a);
    stop(&mut d);
    let log = d.log_text();
    assert!(log.contains("checkpoint of"), "{log}");

    d.restart();
    let log = d.log_text();
    assert!(
        log.contains("recovered") && log.contains("1 agents"),
        "{log}"
    );

    // Before the agent comes back: it is known, idle, not connected.
    let mut obs = d.options("").token(ALPHA).connect().unwrap();
    let st = obs.stats().unwrap();
    let w = st
        .agents
        .iter()
        .find(|x| x.name == "writer")
        .unwrap_or_else(|| panic!("agent not restored: {st:?}"));
    assert_eq!(w.state, AgentState::Idle);
    assert!(!w.connected);
    assert_eq!(w.importance, 9);
    assert!(!st.daemon.data_dir.is_empty());
    assert!(st.daemon.recovery_secs > 0.0, "{:?}", st.daemon);

    // It reconnects: same agent, every byte back.
    let mut a = d.options("writer").token(ALPHA).connect().unwrap();
    assert!(a.welcome().reattached);
    assert_eq!(a.agent(), agent);
    assert_eq!(a.get(&big_id).unwrap().to_vec(), big);
    assert_eq!(a.get_inline(&small_id).unwrap(), small);
    assert_eq!(&a.get(&public_id).unwrap().to_vec()[..], b"you are terse");
    assert_eq!(a.read_all(conv).unwrap(), messages);
    assert_eq!(a.conversation_len(conv).unwrap(), messages.len() as u64);
    assert_eq!(a.agent_info().unwrap().state, AgentState::Active);
    // And it keeps working: appends go on at the right index.
    assert_eq!(a.append(conv, b"after restart").unwrap(), 50);
    drop(a);

    // A second restart keeps the later work too.
    stop(&mut d);
    d.restart();
    let mut a = d.options("writer").token(ALPHA).connect().unwrap();
    assert_eq!(
        a.read_last(conv, 1).unwrap(),
        vec![b"after restart".to_vec()]
    );
}

#[test]
fn restored_agents_are_released_after_the_grace_time_unless_they_return() {
    let mut d = Daemon::start("grace_secs = 1.0");
    let mut a = d.options("gone").token(ALPHA).connect().unwrap();
    let id = a
        .put(Kind::Blob, b"held by gone", Visibility::Private)
        .unwrap();
    let mut b = d.options("back").token(ALPHA).connect().unwrap();
    let kept = b
        .put(Kind::Blob, b"held by back", Visibility::Private)
        .unwrap();
    drop((a, b));
    stop(&mut d);
    d.restart();
    // "back" returns at once; "gone" never does.
    let mut b = d.options("back").token(ALPHA).connect().unwrap();
    assert!(b.welcome().reattached);
    let mut obs = d.options("").token(ALPHA).connect().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = obs.stats().unwrap();
        if st.agents.iter().all(|x| x.name != "gone") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restored agent never released: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(&b.get(&kept).unwrap().to_vec()[..], b"held by back");
    let mut a = d.options("gone").token(ALPHA).connect().unwrap();
    assert!(!a.welcome().reattached);
    assert!(a.get(&id).is_err());
}

#[test]
fn a_second_daemon_on_the_same_directory_fails_clearly() {
    let d = Daemon::start("");
    let out = Command::new(env!("CARGO_BIN_EXE_agentmemd"))
        .arg("--config")
        .arg(d.dir.path().join("agentmemd.toml"))
        .arg("--socket")
        .arg(d.dir.path().join("second.sock"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already opened by another agentmem process") && err.contains("data"),
        "{err}"
    );
    // The first one is unharmed.
    d.client("still-here").ping().unwrap();
}

#[test]
fn ram_only_keeps_nothing_across_a_restart() {
    let mut d = Daemon::start("data_dir = \"\"");
    let mut a = d.options("ephemeral").token(ALPHA).connect().unwrap();
    let id = a
        .put(Kind::Blob, b"gone after restart", Visibility::Private)
        .unwrap();
    drop(a);
    stop(&mut d);
    d.restart();
    let mut a = d.options("ephemeral").token(ALPHA).connect().unwrap();
    assert!(!a.welcome().reattached);
    assert!(a.get(&id).is_err());
    assert!(d
        .options("")
        .connect()
        .unwrap()
        .stats()
        .unwrap()
        .daemon
        .data_dir
        .is_empty());
}

#[test]
fn a_new_data_directory_is_private_to_the_daemons_user() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start("");
    let mode = std::fs::metadata(d.dir.path().join("data"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

/// Puts a unit and appends to a conversation as agent "writer", then kills
/// the daemon with SIGKILL (no final checkpoint) and restarts it; returns
/// what the reconnected agent reads back, or `None` if it lost both.
fn write_then_sigkill(extra: &str) -> (Option<Vec<u8>>, Option<Vec<Vec<u8>>>) {
    let mut d = Daemon::start(&format!("grace_secs = 120\ncheckpoint_secs = 0\n{extra}"));
    let body = noise(11, 5000);
    let mut a = d.options("writer").token(ALPHA).connect().unwrap();
    let id = a.put(Kind::ToolResult, &body, Visibility::Private).unwrap();
    let conv = a.create_conversation().unwrap();
    a.append(conv, b"acknowledged before the kill").unwrap();
    drop(a);
    d.restart(); // SIGKILL, then start again on the same directory
    let mut a = d.options("writer").token(ALPHA).connect().unwrap();
    let unit = a.get_inline(&id).ok();
    if let Some(u) = &unit {
        assert_eq!(u, &body, "unit came back with other bytes");
    }
    (unit, a.read_all(conv).ok())
}

#[test]
fn acknowledged_writes_survive_sigkill_under_group_commit_and_not_without_a_log() {
    let (unit, conv) = write_then_sigkill("durability = \"group\"");
    assert!(unit.is_some(), "group commit lost an acknowledged put");
    assert_eq!(
        conv,
        Some(vec![b"acknowledged before the kill".to_vec()]),
        "group commit lost an acknowledged append"
    );
    // With no redo log and no checkpoint since the writes, they are gone:
    // the setting really reaches the store.
    let (unit, conv) = write_then_sigkill("durability = \"checkpoint\"");
    assert!(unit.is_none() && conv.is_none(), "{unit:?} {conv:?}");
}
