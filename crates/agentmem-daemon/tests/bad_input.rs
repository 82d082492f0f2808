//! Malformed, wrong-version, oversized, unknown, truncated frames and
//! clients that vanish: each gets an error frame where one can be sent, its
//! connection closed and one log line, and the daemon keeps serving.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use agentmem_core::{Kind, Visibility};
use agentmem_proto::{
    decode_handshake_reply, decode_response, encode_frame, ClientFrame, ErrorCode, HandshakeReply,
    Hello, Request, Response, DEFAULT_MAX_FRAME,
};
use common::Daemon;

fn raw(d: &Daemon) -> UnixStream {
    let s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn frame<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame("test", v, DEFAULT_MAX_FRAME, &mut out).unwrap();
    out
}

/// Read one frame's payload, or `None` at end of stream.
fn read_payload(s: &mut UnixStream) -> Option<Vec<u8>> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).ok()?;
    let mut p = vec![0; u32::from_le_bytes(h) as usize];
    s.read_exact(&mut p).ok()?;
    Some(p)
}

fn assert_closed(s: &mut UnixStream) {
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("the daemon closes the connection");
    assert!(rest.is_empty(), "nothing after the error frame: {rest:?}");
}

fn refused(s: &mut UnixStream) -> ErrorCode {
    let p = read_payload(s).expect("a refusal frame");
    match decode_handshake_reply(&p).unwrap() {
        HandshakeReply::Refused(e) => e.code,
        w => panic!("expected a refusal, got {w:?}"),
    }
}

/// A connection past its handshake.
fn greeted(d: &Daemon, name: &str) -> UnixStream {
    let mut s = raw(d);
    s.write_all(&frame(&Hello::new(name))).unwrap();
    let p = read_payload(&mut s).unwrap();
    assert!(matches!(
        decode_handshake_reply(&p).unwrap(),
        HandshakeReply::Welcome(_)
    ));
    s
}

fn error_frame(s: &mut UnixStream) -> (u64, ErrorCode) {
    let p = read_payload(s).expect("an error frame");
    let f = decode_response(&p).unwrap();
    match f.response {
        Response::Error(e) => (f.id, e.code),
        r => panic!("expected an error, got {r:?}"),
    }
}

#[test]
fn bad_frames_close_only_their_connection() {
    let d = Daemon::start("max_frame = 65536\nhandshake_timeout_secs = 1");
    let mut good = d.client("bystander");
    let id = good
        .put(Kind::ToolResult, &[7u8; 1024], Visibility::Private)
        .unwrap();
    let mut bad = 0;

    // 1. Not the protocol at all: an HTTP request. Its first four bytes
    //    read as a length far over the handshake limit.
    let mut s = raw(&d);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(refused(&mut s), ErrorCode::FrameTooLarge);
    assert_closed(&mut s);
    bad += 1;

    // 2. A hello with the wrong magic.
    let mut s = raw(&d);
    let mut h = Hello::new("m");
    h.magic = *b"NOPE";
    s.write_all(&frame(&h)).unwrap();
    assert_eq!(refused(&mut s), ErrorCode::BadFrame);
    assert_closed(&mut s);
    bad += 1;

    // 3. Another protocol version.
    let mut s = raw(&d);
    let mut h = Hello::new("v");
    h.version = 99;
    s.write_all(&frame(&h)).unwrap();
    assert_eq!(refused(&mut s), ErrorCode::UnsupportedVersion);
    assert_closed(&mut s);
    bad += 1;

    // 4. A frame over the negotiated limit (announced in its header).
    let mut s = greeted(&d, "big");
    s.write_all(&(65537u32).to_le_bytes()).unwrap();
    assert_eq!(error_frame(&mut s), (0, ErrorCode::FrameTooLarge));
    assert_closed(&mut s);
    bad += 1;

    // 5. A request kind this daemon does not know: answered by its id.
    let mut s = greeted(&d, "unknown");
    let payload = postcard::to_stdvec(&(41u64, 250u32)).unwrap();
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend(payload);
    s.write_all(&f).unwrap();
    assert_eq!(error_frame(&mut s), (41, ErrorCode::UnknownRequest));
    assert_closed(&mut s);
    bad += 1;

    // 6. A malformed request: a put whose body is cut short.
    let mut s = greeted(&d, "malformed");
    let ok = frame(&ClientFrame {
        id: 3,
        request: Request::Put {
            kind: Kind::Blob,
            visibility: Visibility::Private,
            data: serde_bytes::ByteBuf::from(vec![1; 100]),
        },
    });
    let mut cut = ok[4..ok.len() - 50].to_vec();
    let mut f = (cut.len() as u32).to_le_bytes().to_vec();
    f.append(&mut cut);
    s.write_all(&f).unwrap();
    assert_eq!(error_frame(&mut s), (0, ErrorCode::BadFrame));
    assert_closed(&mut s);
    bad += 1;

    // 7. A truncated frame: the client stops sending mid-frame.
    let mut s = greeted(&d, "truncated");
    let f = frame(&ClientFrame {
        id: 1,
        request: Request::Get { id: *id.as_bytes() },
    });
    s.write_all(&f[..f.len() / 2]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_closed(&mut s);
    bad += 1;

    // 8. A client that vanishes mid-request: pipelines 4000 requests of answers
    //    and closes without reading them (1 MB of error answers: more
    //    than the socket buffers hold, so the daemon is still writing).
    let mut s2 = greeted(&d, "vanishing");
    let mut gets = Vec::new();
    // The bystander's unit is private: answered with errors, cheaply.
    for i in 0..4000 {
        gets.extend(frame(&ClientFrame {
            id: i + 1,
            request: Request::GetInline { id: [i as u8; 32] },
        }));
    }
    s2.write_all(&gets).unwrap();
    drop(s2);
    bad += 1;

    // 9. A client that connects and never says hello: it is dropped after
    //    the handshake timeout (1 s here). Keep it open until that is logged.
    let s = raw(&d);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !d
        .log_text()
        .contains("no hello within the handshake timeout")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the silent client was never dropped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(s);
    bad += 1;

    // Everyone else is still served.
    assert_eq!(&good.get(&id).unwrap()[..], &[7u8; 1024][..]);
    let mut late = d.client("late");
    late.ping().unwrap();

    // One log line per bad connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = d.log_text();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
        if lines.len() >= bad || std::time::Instant::now() > deadline {
            for needle in [
                "protocol error: frame of",
                "protocol error: not an agentmem client",
                "protocol error: protocol version 99 is not supported",
                "protocol error: unknown request kind 250",
                "protocol error: malformed request",
                "closed mid-frame",
                "lost: ",
                "no hello within the handshake timeout",
            ] {
                assert!(
                    log.contains(needle),
                    "no log line with {needle:?} in\n{log}"
                );
            }
            assert_eq!(lines.len(), bad, "one line per bad connection:\n{log}");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = good.stats().unwrap();
    assert_eq!(st.daemon.protocol_errors, 3, "{:?}", st.daemon);
}

/// SIGTERM while a client is mid-way through a pipelined batch: every
/// request the daemon read is answered in full, in order, then the
/// connection ends cleanly (an optional goodbye frame, then EOF), and the
/// daemon exits successfully.
#[test]
fn shutdown_answers_requests_in_flight() {
    let mut d = Daemon::start("");
    let mut s = greeted(&d, "busy-writer");
    let mut batch = Vec::new();
    for i in 0..3000u64 {
        batch.extend(frame(&ClientFrame {
            id: i + 1,
            request: Request::Put {
                kind: Kind::ToolResult,
                visibility: Visibility::Private,
                data: serde_bytes::ByteBuf::from(format!("{i:>1000}").into_bytes()),
            },
        }));
    }
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        // The daemon may close before all of it is read: that is the point.
        let _ = w.write_all(&batch);
    });
    // Let part of the batch be served, then stop the daemon.
    let first = read_payload(&mut s).expect("a first answer");
    assert!(matches!(
        decode_response(&first).unwrap().response,
        Response::Id(_)
    ));
    assert_eq!(
        d.terminate(Duration::from_secs(20)),
        Some(true),
        "{}",
        d.log_text()
    );
    let mut all = Vec::new();
    s.read_to_end(&mut all)
        .expect("the connection ends cleanly");
    let mut rest = &all[..];
    let mut next = 2;
    let mut goodbye = false;
    while let Some((p, used)) = agentmem_proto::split_frame(rest, DEFAULT_MAX_FRAME).unwrap() {
        let f = decode_response(p).unwrap();
        rest = &rest[used..];
        assert!(!goodbye, "nothing after the goodbye frame");
        match f.response {
            Response::Id(_) => {
                assert_eq!(f.id, next, "answers in order, none skipped");
                next += 1;
            }
            Response::Error(e) if f.id == 0 => {
                assert_eq!(e.code, ErrorCode::Unavailable);
                goodbye = true;
            }
            r => panic!("unexpected {r:?}"),
        }
    }
    assert!(rest.is_empty(), "a truncated answer: {} bytes", rest.len());
    writer.join().unwrap();
    println!(
        "{} of 3000 pipelined puts answered before the shutdown",
        next - 1
    );
    assert!(d.log_text().contains("SIGTERM: shutting down"));
}
