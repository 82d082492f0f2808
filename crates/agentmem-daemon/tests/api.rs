//! The client's operations against a real `agentmemd`, access checks,
//! agent exit and reconnect, shutdown, metrics.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use agentmem_client::{ClientError, ErrorCode};
use agentmem_core::{AgentState, ContentId, Kind, Tier, Visibility};
use common::{Daemon, ALPHA, BETA};

fn code(e: ClientError) -> ErrorCode {
    e.code()
        .unwrap_or_else(|| panic!("expected a daemon error, got {e}"))
}

#[test]
fn operations_match_the_embedded_store() {
    let d = Daemon::start("");
    let mut c = d.client("coder-1");
    assert_eq!(
        c.tenant(),
        format!("uid:{}", rustix::process::getuid().as_raw())
    );
    c.ping().unwrap();
    let prompt = common::sample_prompt();
    let p = c
        .put(Kind::SystemPrompt, &prompt, Visibility::Public)
        .unwrap();
    let small = c
        .put(Kind::ToolResult, b"exit 0", Visibility::Private)
        .unwrap();
    // The id is the embedded store's id for the same content and domain.
    let store = agentmem_core::Store::new().unwrap();
    let a = store
        .register_agent("x", &agentmem_core::TenantId::new("t"), Default::default())
        .unwrap();
    assert_eq!(
        store
            .put(a, Kind::SystemPrompt, &prompt, Visibility::Public)
            .unwrap(),
        p
    );

    let big = c.get(&p).unwrap();
    assert!(big.is_shared(), "a 25 KB prompt comes as a shared segment");
    assert_eq!(&big[..], &prompt[..]);
    let inline = c.get(&small).unwrap();
    assert!(!inline.is_shared());
    assert_eq!(&inline[..], b"exit 0");
    assert_eq!(c.get_inline(&p).unwrap(), prompt);
    let info = c.unit_info(&p).unwrap();
    assert_eq!(
        (info.kind, info.visibility, info.logical_bytes),
        (Kind::SystemPrompt, Visibility::Public, prompt.len() as u64)
    );

    let conv = c.create_conversation().unwrap();
    for i in 0..10u64 {
        assert_eq!(
            c.append(conv, format!("message {i}").as_bytes()).unwrap(),
            i
        );
    }
    assert_eq!(c.conversation_len(conv).unwrap(), 10);
    assert_eq!(
        c.read_last(conv, 2).unwrap(),
        vec![b"message 8".to_vec(), b"message 9".to_vec()]
    );
    assert_eq!(
        c.read_messages(conv, 3..5).unwrap(),
        vec![b"message 3".to_vec(), b"message 4".to_vec()]
    );
    assert_eq!(c.read_all(conv).unwrap().len(), 10);
    assert_eq!(
        code(c.read_messages(conv, 5..50).unwrap_err()),
        ErrorCode::OutOfRange
    );

    c.set_state(AgentState::WaitingForHuman).unwrap();
    assert_eq!(c.agent_info().unwrap().state, AgentState::WaitingForHuman);
    c.pause().unwrap();
    assert_eq!(c.unit_info(&small).unwrap().tier, Tier::Warm);
    let r = c.resume().unwrap();
    assert!(r.units >= 1, "{r:?}");
    assert_eq!(c.unit_info(&small).unwrap().tier, Tier::Hot);
    c.set_importance(90).unwrap();
    let me = c.agent_info().unwrap();
    assert_eq!(
        (me.importance, me.state, me.connected),
        (90, AgentState::Active, true)
    );
    c.mark_hot(&p).unwrap();

    let st = c.stats().unwrap();
    assert_eq!(st.agents.len(), 1);
    assert!(st
        .kinds
        .iter()
        .any(|k| k.kind == "system_prompt" && k.units == 1));
    assert!(
        st.daemon.requests > 10 && st.daemon.segments == 1,
        "{:?}",
        st.daemon
    );

    // Dedup across agents of a tenant, then release.
    let mut c2 = d.client("coder-2");
    assert_eq!(
        c2.put(Kind::SystemPrompt, &prompt, Visibility::Public)
            .unwrap(),
        p
    );
    assert_eq!(c2.stats().unwrap().dedup_hits, 1);
    c.release(&small).unwrap();
    assert_eq!(code(c.get(&small).unwrap_err()), ErrorCode::NotFound);
    assert_eq!(code(c.release(&small).unwrap_err()), ErrorCode::NotFound);
    assert_eq!(
        code(c.put(Kind::Blob, b"", Visibility::Private).unwrap_err()),
        ErrorCode::InvalidInput
    );

    // Pipelining: many requests in one write, answers by id, in order.
    let reqs: Vec<_> = (0..50).map(|_| agentmem_proto::Request::Ping).collect();
    let answers = c.pipeline(reqs).unwrap();
    assert_eq!(answers.len(), 50);
    assert!(answers.iter().all(|a| *a == agentmem_proto::Response::Pong));
}

#[test]
fn async_client_does_the_same() {
    let d = Daemon::start("");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = d.options("async-agent");
    rt.block_on(async move {
        let mut c = opts.connect_async().await.unwrap();
        c.ping().await.unwrap();
        let prompt = common::sample_prompt();
        let p = c
            .put(Kind::SystemPrompt, &prompt, Visibility::Public)
            .await
            .unwrap();
        let u = c.get(&p).await.unwrap();
        assert!(u.is_shared());
        assert_eq!(&u[..], &prompt[..]);
        let conv = c.create_conversation().await.unwrap();
        c.append(conv, b"hello").await.unwrap();
        assert_eq!(c.read_all(conv).await.unwrap(), vec![b"hello".to_vec()]);
        c.pause().await.unwrap();
        c.resume().await.unwrap();
        assert_eq!(c.stats().await.unwrap().agents.len(), 1);
        let e = c.get(&ContentId::from_bytes([9; 32])).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NotFound));
        let answers = c
            .pipeline(vec![
                agentmem_proto::Request::Ping,
                agentmem_proto::Request::Get { id: *p.as_bytes() },
            ])
            .await
            .unwrap();
        assert_eq!(answers[0], agentmem_proto::Response::Pong);
        assert_eq!(
            answers[1],
            agentmem_proto::Response::Data(prompt.clone().into())
        );
    });
}

#[test]
fn agents_read_only_their_own_shared_and_public_units() {
    let d = Daemon::start("");
    let mut a = d.client("a");
    let mut b = d.client("b");
    let mut x = d.options("x").token(BETA).connect().unwrap();
    assert_eq!(x.tenant(), "beta");

    let private = a
        .put(Kind::ToolResult, b"a's secret result", Visibility::Private)
        .unwrap();
    let public = a
        .put(Kind::ToolDefs, b"[{\"name\":\"grep\"}]", Visibility::Public)
        .unwrap();
    let e = b.get(&private).unwrap_err();
    assert_eq!(code(e), ErrorCode::NotFound);
    let e = b.get(&private).unwrap_err();
    assert!(e.to_string().contains("not shared with this one"), "{e}");
    assert_eq!(
        code(b.unit_info(&private).unwrap_err()),
        ErrorCode::NotFound
    );
    assert_eq!(code(b.mark_hot(&private).unwrap_err()), ErrorCode::NotFound);
    assert_eq!(code(b.release(&private).unwrap_err()), ErrorCode::NotFound);
    assert_eq!(&b.get(&public).unwrap()[..], b"[{\"name\":\"grep\"}]");
    assert_eq!(&x.get(&public).unwrap()[..], b"[{\"name\":\"grep\"}]");

    // Shared within the tenant: readable; across tenants: refused.
    a.share(&private, b.agent()).unwrap();
    assert_eq!(&b.get(&private).unwrap()[..], b"a's secret result");
    assert_eq!(
        code(a.share(&private, x.agent()).unwrap_err()),
        ErrorCode::NotFound
    );
    assert_eq!(code(x.get(&private).unwrap_err()), ErrorCode::NotFound);
    // b cannot share what it was not given... it was; x cannot share a's unit.
    assert_eq!(
        code(x.share(&private, a.agent()).unwrap_err()),
        ErrorCode::NotFound
    );

    // Conversations are their owner's only.
    let conv = a.create_conversation().unwrap();
    a.append(conv, b"mine").unwrap();
    assert_eq!(code(b.read_all(conv).unwrap_err()), ErrorCode::NotFound);
    assert_eq!(
        code(b.append(conv, b"intrusion").unwrap_err()),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(x.conversation_len(conv).unwrap_err()),
        ErrorCode::NotFound
    );

    // Stats list only the caller's tenant unless it is root or the daemon's uid.
    let names: Vec<String> = x
        .stats()
        .unwrap()
        .agents
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, vec!["x".to_string()]);

    // Bad token, and one connection per agent.
    let e = d
        .options("y")
        .token("no-such-token-000000")
        .connect()
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AccessDenied));
    let e = d.options("a").connect().unwrap_err();
    assert!(e.to_string().contains("already connected"), "{e}");
    // An observer (no agent name) may read stats but not store.
    let mut o = d.client("");
    assert!(o.stats().is_ok());
    assert_eq!(
        code(o.put(Kind::Blob, b"x", Visibility::Private).unwrap_err()),
        ErrorCode::AccessDenied
    );
}

#[test]
fn exited_agent_is_idle_for_the_grace_time_then_released() {
    let d = Daemon::start("grace_secs = 1.0");
    let mut a = d.options("worker").token(ALPHA).connect().unwrap();
    let id = a
        .put(Kind::ToolResult, b"kept for resume", Visibility::Private)
        .unwrap();
    let agent = a.agent();
    drop(a);
    let mut obs = d.options("").token(ALPHA).connect().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let st = obs.stats().unwrap();
        let w = st.agents.iter().find(|x| x.name == "worker").unwrap();
        if !w.connected {
            assert_eq!(w.state, AgentState::Idle);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "agent never detached");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Back within the grace time: the same agent, with its unit.
    let mut a = d.options("worker").token(ALPHA).connect().unwrap();
    assert!(a.welcome().reattached);
    assert_eq!(a.agent(), agent);
    assert_eq!(&a.get(&id).unwrap()[..], b"kept for resume");
    assert_eq!(a.agent_info().unwrap().state, AgentState::Active);
    drop(a);
    // Gone for good after it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = obs.stats().unwrap();
        if st.agents.iter().all(|x| x.name != "worker") {
            assert_eq!(st.kinds.iter().map(|k| k.units).sum::<u64>(), 0, "{st:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "agent never released");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut a = d.options("worker").token(ALPHA).connect().unwrap();
    assert!(!a.welcome().reattached);
    assert_eq!(code(a.get(&id).unwrap_err()), ErrorCode::NotFound);
}

#[test]
fn client_reconnects_after_the_daemon_restarts() {
    let mut d = Daemon::start("");
    let mut a = d.client("flaky");
    let first_pid = a.welcome().daemon_pid;
    a.put(Kind::Blob, b"before", Visibility::Private).unwrap();
    assert_eq!(d.terminate(Duration::from_secs(15)), Some(true));
    d.restart();
    // The call that finds the connection dead fails (it may or may not
    // have happened); the next one connects again by itself.
    let e = a.ping().unwrap_err();
    assert!(
        matches!(e, ClientError::Disconnected(_) | ClientError::Closed(_)),
        "{e}"
    );
    a.ping().unwrap();
    assert_ne!(a.welcome().daemon_pid, first_pid);
    let id = a.put(Kind::Blob, b"after", Visibility::Private).unwrap();
    assert_eq!(&a.get(&id).unwrap()[..], b"after");
}

#[test]
fn sigterm_stops_gracefully_and_removes_the_socket() {
    let mut d = Daemon::start("");
    let mut c = d.client("busy");
    c.ping().unwrap();
    assert_eq!(
        d.terminate(Duration::from_secs(15)),
        Some(true),
        "log:\n{}",
        d.log_text()
    );
    assert!(!d.socket.exists());
    let e = c.ping().unwrap_err();
    assert!(
        matches!(e, ClientError::Disconnected(_) | ClientError::Closed(_)),
        "{e}"
    );
    let log = d.log_text();
    assert!(
        log.contains("SIGTERM: shutting down") && log.contains("stopped:"),
        "{log}"
    );
}

#[test]
fn metrics_endpoint_serves_prometheus_text_on_loopback() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = Daemon::start(&format!("metrics = \"127.0.0.1:{port}\""));
    let mut c = d.client("m");
    let id = c
        .put(Kind::SystemPrompt, b"prompt", Visibility::Public)
        .unwrap();
    c.get(&id).unwrap();
    let mut s = None;
    for _ in 0..100 {
        if let Ok(x) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s = Some(x);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = s.expect("metrics port");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.0 200 OK"), "{text}");
    for series in [
        "agentmem_stored_bytes{kind=\"system_prompt\",tier=\"hot\"} ",
        "agentmem_dedup_hits_total 0",
        "agentmem_agents{state=\"active\"} 1",
        "agentmem_agent_bytes{agent=\"0\",name=\"m\"",
        "agentmem_request_duration_seconds_bucket{request=\"get\",le=\"+Inf\"} 1",
        "agentmem_request_duration_seconds_count{request=\"put\"} 1",
        "agentmem_daemon_resident_bytes ",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
}

#[test]
fn frame_limits_and_connection_limit_are_clear_errors() {
    let d = Daemon::start("max_connections = 3");
    let mut small = d.options("small").max_frame(4096).connect().unwrap();
    assert_eq!(small.welcome().max_frame, 4096);
    // Too large to send: refused locally, the connection stays usable.
    let e = small
        .put(Kind::Blob, &[1; 5000], Visibility::Private)
        .unwrap_err();
    assert!(matches!(e, ClientError::TooLarge(_)), "{e}");
    // Too large to answer inline: the daemon answers with an error instead.
    let mut big = d.client("big");
    let id = big
        .put(Kind::Conversation, &[2; 6000], Visibility::Public)
        .unwrap();
    let e = small.get_inline(&id).unwrap_err();
    assert_eq!(code(e), ErrorCode::InvalidInput);
    small.ping().unwrap();
    // The fourth connection is refused while three are open.
    let _third = d.client("third");
    let e = d.options("fourth").connect().unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unavailable), "{e}");
    assert!(e.to_string().contains("max_connections"), "{e}");
    drop(big);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while d.options("fourth").connect().is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "a closed connection never freed its slot"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
