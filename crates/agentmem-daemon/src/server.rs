//! Sockets: the listener, one task per connection, the frame loop, and
//! graceful shutdown.

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Context, Error};
use agentmem_proto::{
    decode_hello, decode_request, encode_bulk_frame, encode_frame, split_frame, BulkRef, ErrorCode,
    ErrorReply, HandshakeReply, ProtoError, Request, Response, ServerFrame, Welcome, CONNECTION_ID,
    MIN_MAX_FRAME, VERSION,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Notify};

use crate::service::{Peer, Service, Session, NO_AGENT};

/// Bytes read from a socket at once.
const READ_CHUNK: usize = 64 * 1024;

/// Bind the socket: make its directory, refuse if a daemon already answers
/// there, remove a stale file, set the permission bits.
pub fn bind(path: &Path, mode: u32) -> crate::error::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)
                .ctx(|| format!("creating the socket's directory {}", dir.display()))?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::AlreadyRunning(format!(
                "another agentmemd is already listening on {}; stop it or pick another socket (--socket)",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .ctx(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).ctx(|| format!("listening on {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .ctx(|| format!("setting mode {mode:o} on {}", path.display()))?;
    Ok(listener)
}

/// Tracks live connections so shutdown can wait for them.
#[derive(Debug, Default)]
pub struct Live {
    count: std::sync::atomic::AtomicUsize,
    idle: Notify,
}

impl Live {
    fn enter(&self) {
        self.count.fetch_add(1, Relaxed);
    }
    fn leave(&self) {
        if self.count.fetch_sub(1, Relaxed) == 1 {
            self.idle.notify_waiters();
        }
    }
    /// Wait until no connection is open, or `limit` passes; returns how
    /// many are still open.
    pub async fn drain(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            let n = self.count.load(Relaxed);
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count.load(Relaxed);
            }
        }
    }
}

/// Accept connections until `shutdown` fires.
pub async fn accept_loop(
    svc: Arc<Service>,
    listener: UnixListener,
    live: Arc<Live>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors, usually: wait for some to close.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        svc.metrics.accepted.fetch_add(1, Relaxed);
        let open = svc.metrics.connections.load(Relaxed) as usize;
        if open >= svc.cfg.max_connections {
            svc.metrics.refused.fetch_add(1, Relaxed);
            let limit = svc.cfg.max_connections;
            tokio::spawn(async move {
                refuse(
                    stream,
                    ErrorReply {
                        code: ErrorCode::Unavailable,
                        message: format!("agentmemd is at its limit of {limit} connections (max_connections); try again later"),
                    },
                )
                .await
            });
            continue;
        }
        let uid = peer_of(&stream).uid;
        if let Err(reply) = svc.handshake_begin(uid) {
            svc.metrics.refused.fetch_add(1, Relaxed);
            tokio::spawn(refuse(stream, reply));
            continue;
        }
        let svc = svc.clone();
        let live = live.clone();
        let shutdown = shutdown.clone();
        live.enter();
        svc.metrics.connections.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            connection(&svc, stream, shutdown).await;
            svc.metrics.connections.fetch_sub(1, Relaxed);
            live.leave();
        });
    }
}

/// Refuse a connection before its handshake: send the refusal, then wait
/// (briefly) for the client to close, so that its hello does not meet a
/// closed socket before it has read why.
async fn refuse(mut stream: UnixStream, reply: ErrorReply) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    if encode_frame(
        "refusal",
        &HandshakeReply::Refused(reply),
        MIN_MAX_FRAME,
        &mut out,
    )
    .is_ok()
    {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(&out).await?;
            let mut sink = [0u8; 512];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, io::Error>(())
        })
        .await;
    }
}

/// Why a connection ended early.
enum Close {
    /// The peer closed (cleanly, or mid-frame with this many bytes left).
    Eof(usize),
    /// Reading or writing failed.
    Io(io::Error),
    /// The peer sent bytes that are not the protocol.
    Proto(ProtoError),
    /// The handshake did not arrive in time.
    Timeout,
    /// The daemon is stopping.
    Shutdown,
    /// Nothing was sent for this long after the handshake.
    Idle(Duration),
    /// The handshake was refused (bad token, agent already connected,
    /// connection limit).
    Refused(String),
}

/// Undecoded bytes of one connection.
struct Inbox {
    buf: Vec<u8>,
    start: usize,
}

impl Inbox {
    fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Wait for bytes, then read what has arrived; 0 means end of stream.
    /// The buffer is allocated only once bytes are there and given back
    /// when empty, so an idle connection holds no buffer at all.
    async fn fill(&mut self, stream: &mut UnixStream) -> io::Result<usize> {
        loop {
            stream.readable().await?;
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            // Room for the rest of a frame whose header has arrived, or a
            // small read; reserving does not touch (make resident) pages.
            let want = match self.buf.get(..agentmem_proto::HEADER_LEN) {
                Some(h) => {
                    let len = u32::from_le_bytes(h.try_into().expect("4 bytes")) as usize;
                    (agentmem_proto::HEADER_LEN + len).saturating_sub(self.buf.len())
                }
                None => 0,
            };
            self.buf.reserve(want.clamp(4096, READ_CHUNK));
            match stream.try_read_buf(&mut self.buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Give back the buffer if everything in it was served.
    fn release_if_empty(&mut self) {
        if self.start == self.buf.len() {
            self.buf = Vec::new();
            self.start = 0;
        }
    }
}

fn peer_of(stream: &UnixStream) -> Peer {
    match stream.peer_cred() {
        Ok(c) => Peer {
            pid: c.pid(),
            uid: c.uid(),
            gid: c.gid(),
        },
        // Not expected on Linux; such a peer gets the tenant "uid:4294967295".
        Err(_) => Peer {
            pid: None,
            uid: u32::MAX,
            gid: u32::MAX,
        },
    }
}

fn who(peer: &Peer) -> String {
    match peer.pid {
        Some(pid) => format!("pid {pid} uid {}", peer.uid),
        None => format!("uid {}", peer.uid),
    }
}

/// Serve one connection to its end, then log one line if it ended badly.
async fn connection(svc: &Service, mut stream: UnixStream, shutdown: watch::Receiver<bool>) {
    let peer = peer_of(&stream);
    let mut inbox = Inbox {
        buf: Vec::new(),
        start: 0,
    };
    let handshake = tokio::time::timeout(
        Duration::from_secs_f64(svc.cfg.handshake_timeout_secs),
        handshake(svc, &mut stream, &mut inbox, peer),
    )
    .await
    .unwrap_or(Err(Close::Timeout));
    svc.handshake_done(peer.uid);
    let (session, max_frame) = match handshake {
        Ok(x) => x,
        Err(close) => {
            svc.metrics.refused.fetch_add(1, Relaxed);
            log_close(&peer, None, close, " during the handshake");
            return;
        }
    };
    let close = serve(svc, &mut stream, &mut inbox, &session, max_frame, shutdown).await;
    svc.detach(&session);
    log_close(&peer, Some(&session), close, "");
}

fn log_close(peer: &Peer, session: Option<&Session>, close: Close, when: &str) {
    let agent = match session.and_then(|s| s.agent) {
        Some(a) => format!(" ({a})"),
        None => String::new(),
    };
    let who = who(peer);
    match close {
        Close::Eof(0) | Close::Shutdown => {
            tracing::debug!("connection from {who}{agent} closed")
        }
        Close::Eof(n) => tracing::warn!(
            "connection from {who}{agent} closed mid-frame{when}: {n} bytes of a truncated frame dropped"
        ),
        Close::Io(e) => tracing::warn!("connection from {who}{agent} lost{when}: {e}"),
        Close::Proto(e) => tracing::warn!(
            "connection from {who}{agent} closed{when}: protocol error: {e}"
        ),
        Close::Refused(why) => tracing::info!("connection from {who} refused: {why}"),
        Close::Idle(d) => {
            tracing::info!("connection from {who}{agent} closed: idle for {d:?}")
        }
        Close::Timeout => {
            tracing::warn!("connection from {who} closed: no hello within the handshake timeout")
        }
    }
}

/// Read the next frame's payload range (at most `max` bytes).
async fn next_payload(
    stream: &mut UnixStream,
    inbox: &mut Inbox,
    max: u32,
) -> Result<std::ops::Range<usize>, Close> {
    loop {
        match split_frame(&inbox.buf[inbox.start..], max) {
            Ok(Some((p, used))) => {
                let s = inbox.start + agentmem_proto::HEADER_LEN;
                inbox.start += used;
                return Ok(s..s + p.len());
            }
            Ok(None) => {}
            Err(e) => return Err(Close::Proto(e)),
        }
        match inbox.fill(stream).await {
            Ok(0) => return Err(Close::Eof(inbox.pending())),
            Ok(_) => {}
            Err(e) => return Err(Close::Io(e)),
        }
    }
}

async fn handshake(
    svc: &Service,
    stream: &mut UnixStream,
    inbox: &mut Inbox,
    peer: Peer,
) -> Result<(Session, u32), Close> {
    let range = match next_payload(stream, inbox, MIN_MAX_FRAME).await {
        Ok(r) => r,
        Err(Close::Proto(e)) => {
            let _ = send_refusal(stream, e.reply()).await;
            return Err(Close::Proto(e));
        }
        Err(e) => return Err(e),
    };
    let hello = match decode_hello(&inbox.buf[range]) {
        Ok(h) => h,
        Err(e) => {
            let _ = send_refusal(stream, e.reply()).await;
            return Err(Close::Proto(e));
        }
    };
    let (session, reattached) = match svc.attach(peer, &hello) {
        Ok(x) => x,
        Err(reply) => {
            let msg = reply.message.clone();
            let _ = send_refusal(stream, reply).await;
            return Err(Close::Refused(msg));
        }
    };
    let max_frame = hello.max_frame.min(svc.cfg.max_frame);
    let welcome = HandshakeReply::Welcome(Welcome {
        version: VERSION,
        max_frame,
        agent: session.agent.map_or(NO_AGENT, |a| a.0),
        tenant: session.tenant.clone(),
        reattached,
        daemon_pid: std::process::id(),
    });
    let mut out = Vec::new();
    encode_frame("welcome", &welcome, MIN_MAX_FRAME, &mut out).map_err(Close::Proto)?;
    if let Err(e) = stream.write_all(&out).await {
        svc.detach(&session);
        return Err(Close::Io(e));
    }
    if let Some(a) = session.agent {
        tracing::debug!(
            "{} connected as {a} {:?} of tenant {}{}",
            who(&peer),
            session.name,
            crate::escape::Escaped(&session.tenant),
            if reattached { " (re-attached)" } else { "" }
        );
    }
    Ok((session, max_frame))
}

async fn send_refusal(stream: &mut UnixStream, reply: ErrorReply) -> io::Result<()> {
    let mut out = Vec::new();
    if encode_frame(
        "refusal",
        &HandshakeReply::Refused(reply),
        MIN_MAX_FRAME,
        &mut out,
    )
    .is_ok()
    {
        stream.write_all(&out).await?;
    }
    Ok(())
}

/// Send `frame` with a descriptor attached to its first byte.
async fn send_with_fd(
    stream: &mut UnixStream,
    frame: &[u8],
    fd: std::os::fd::BorrowedFd<'_>,
) -> io::Result<()> {
    let sent = loop {
        stream.writable().await?;
        match stream.try_io(tokio::io::Interest::WRITABLE, || {
            crate::sys::send_with_fd(&*stream, frame, fd)
        }) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    stream.write_all(&frame[sent..]).await
}

/// Pieces smaller than this are copied together before writing, so that
/// an answer of many small messages is not one write per message.
const COALESCE: usize = 16 * 1024;

/// Bytes written under one write timeout: a slow reader that makes
/// progress is never cut off.
const WRITE_STEP: usize = 256 * 1024;

/// Answers encoded and not yet written: pieces in order. Large pieces are
/// the store's own buffers (shared, not copied); small ones are gathered
/// into one. Its bytes count toward the daemon-wide figure in
/// `Metrics::unsent_bytes`, so a connection can see when the daemon as a
/// whole holds too much unsent.
struct Outbox<'a> {
    pieces: std::collections::VecDeque<bytes::Bytes>,
    small: bytes::BytesMut,
    bytes: usize,
    metrics: &'a crate::metrics::Metrics,
}

impl<'a> Outbox<'a> {
    fn new(metrics: &'a crate::metrics::Metrics) -> Self {
        Outbox {
            pieces: Default::default(),
            small: bytes::BytesMut::new(),
            bytes: 0,
            metrics,
        }
    }

    fn push(&mut self, piece: bytes::Bytes) {
        self.count(piece.len());
        if piece.len() < COALESCE {
            self.small.extend_from_slice(&piece);
        } else {
            self.seal_small();
            self.pieces.push_back(piece);
        }
    }

    fn push_vec(&mut self, v: Vec<u8>) {
        if v.len() < COALESCE {
            self.count(v.len());
            self.small.extend_from_slice(&v);
        } else {
            self.push(v.into());
        }
    }

    fn count(&mut self, n: usize) {
        self.bytes += n;
        let now = self.metrics.unsent_bytes.fetch_add(n as u64, Relaxed) + n as u64;
        self.metrics.unsent_peak.fetch_max(now, Relaxed);
    }

    fn seal_small(&mut self) {
        if !self.small.is_empty() {
            let b = self.small.split().freeze();
            self.pieces.push_back(b);
        }
    }

    /// Write everything, piece by piece; each written piece is forgotten
    /// at once, so a slow reader holds only what it has not read yet.
    async fn flush(&mut self, stream: &mut UnixStream, stall: Duration) -> io::Result<()> {
        self.seal_small();
        while let Some(p) = self.pieces.front() {
            // A client that reads nothing for `stall` is cut off, which
            // frees what it holds.
            for part in p.chunks(WRITE_STEP) {
                match tokio::time::timeout(stall, stream.write_all(part)).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "the client read none of its answers for {stall:?} (write_timeout_secs)"
                            ),
                        ))
                    }
                }
            }
            let n = p.len();
            self.pieces.pop_front();
            self.bytes -= n;
            self.metrics.unsent_bytes.fetch_sub(n as u64, Relaxed);
        }
        self.small = bytes::BytesMut::new();
        Ok(())
    }
}

impl Drop for Outbox<'_> {
    fn drop(&mut self) {
        self.metrics
            .unsent_bytes
            .fetch_sub(self.bytes as u64, Relaxed);
    }
}

/// Encode one answer into `out`; a segment's frame is written at once
/// with its descriptor (after what came before it).
async fn encode_answer(
    stream: &mut UnixStream,
    out: &mut Outbox<'_>,
    id: u64,
    answer: crate::service::Answer,
    max_frame: u32,
    stall: Duration,
) -> Result<(), Close> {
    use crate::service::Body;
    let encoded = match &answer.body {
        Body::Response(r) => {
            let mut v = Vec::new();
            encode_frame(
                "response",
                &ServerFrame {
                    id,
                    response: r.clone(),
                },
                max_frame,
                &mut v,
            )
            .map(|()| vec![bytes::Bytes::from(v)])
        }
        Body::Data(d) => encode_bulk_frame(id, BulkRef::Data(d), max_frame),
        Body::Messages(m) => encode_bulk_frame(id, BulkRef::Messages(m), max_frame),
    };
    let pieces = match encoded {
        Ok(p) => p,
        Err(e) => {
            let f = ServerFrame {
                id,
                response: Response::Error(ErrorReply {
                    code: ErrorCode::InvalidInput,
                    message: format!(
                        "{e}: ask for less (fewer messages, or a larger max_frame in the hello)"
                    ),
                }),
            };
            let mut v = Vec::new();
            encode_frame("response", &f, max_frame, &mut v).map_err(Close::Proto)?;
            out.push_vec(v);
            return Ok(());
        }
    };
    if let Some(seg) = answer.segment {
        // The descriptor must ride on this frame's first byte: flush what
        // came before, then send this frame with it.
        out.flush(stream, stall).await.map_err(Close::Io)?;
        let frame = pieces.concat();
        send_with_fd(stream, &frame, seg.fd())
            .await
            .map_err(Close::Io)?;
        return Ok(());
    }
    for p in pieces {
        out.push(p);
    }
    Ok(())
}

/// The request loop: decode every complete frame, answer each in order,
/// write the answers, read more. Reading stops while the answers not yet
/// written pass the connection's limit (`max_unsent_per_connection`) or
/// the daemon's (`max_unsent_total`): a client that never reads its
/// answers is left holding at most about that much of the daemon's
/// memory, however many requests it sends.
async fn serve(
    svc: &Service,
    stream: &mut UnixStream,
    inbox: &mut Inbox,
    session: &Session,
    max_frame: u32,
    mut shutdown: watch::Receiver<bool>,
) -> Close {
    let mut out = Outbox::new(&svc.metrics);
    let stall = Duration::from_secs_f64(svc.cfg.write_timeout_secs);
    let idle = (svc.cfg.idle_timeout_secs > 0.0)
        .then(|| Duration::from_secs_f64(svc.cfg.idle_timeout_secs));
    // Room for one more answer of up to max_frame under the limit.
    let per_conn =
        (svc.cfg.max_unsent_per_connection.0 as usize).saturating_sub(max_frame as usize);
    let total = svc.cfg.max_unsent_total.0;
    loop {
        loop {
            if out.bytes > 0
                && (out.bytes > per_conn || svc.metrics.unsent_bytes.load(Relaxed) > total)
            {
                if let Err(e) = out.flush(stream, stall).await {
                    return Close::Io(e);
                }
            }
            let (payload, used) = match split_frame(&inbox.buf[inbox.start..], max_frame) {
                Ok(Some((p, used))) => (p, used),
                Ok(None) => break,
                Err(e) => return protocol_error(svc, stream, CONNECTION_ID, e).await,
            };
            let frame = match decode_request(payload) {
                Ok(f) => f,
                Err(e) => {
                    let id = match e {
                        ProtoError::UnknownRequest { id, .. } => id,
                        _ => CONNECTION_ID,
                    };
                    return protocol_error(svc, stream, id, e).await;
                }
            };
            inbox.start += used;
            // A request that may compress, decompress a conversation,
            // demote or prefetch an agent's units or fsync the redo log runs
            // where blocking is allowed, so that this worker's other
            // connections move to another thread meanwhile. Point lookups
            // stay inline: the hand-off would double a 6 µs get.
            let answer = if may_block(&frame.request) {
                tokio::task::block_in_place(|| svc.handle(session, frame.request))
            } else {
                svc.handle(session, frame.request)
            };
            if let Err(c) =
                encode_answer(stream, &mut out, frame.id, answer, max_frame, stall).await
            {
                return c;
            }
        }
        if let Err(e) = out.flush(stream, stall).await {
            return Close::Io(e);
        }
        inbox.release_if_empty();
        if *shutdown.borrow() {
            return goodbye(stream).await;
        }
        let idle_for = async {
            match idle {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = inbox.fill(stream) => match r {
                Ok(0) => return Close::Eof(inbox.pending()),
                Ok(_) => {}
                Err(e) => return Close::Io(e),
            },
            _ = shutdown.changed() => return goodbye(stream).await,
            _ = idle_for => return idle_close(stream, idle.unwrap_or_default()).await,
        }
    }
}

/// Whether serving `r` may take long: compression, a conversation's
/// decompression, demoting or prefetching units, or an fsync.
fn may_block(r: &Request) -> bool {
    matches!(
        r,
        Request::Put { .. }
            | Request::Append { .. }
            | Request::Release { .. }
            | Request::ReadMessages { .. }
            | Request::ReadLast { .. }
            | Request::ReadAll { .. }
            | Request::SetState { .. }
            | Request::Pause
            | Request::Resume
    )
}

/// Close a connection that sent nothing for `idle`, saying why.
async fn idle_close(stream: &mut UnixStream, idle: Duration) -> Close {
    let f = ServerFrame {
        id: CONNECTION_ID,
        response: Response::Error(ErrorReply {
            code: ErrorCode::LimitReached,
            message: format!(
                "closing this connection: it sent nothing for {idle:?} (idle_timeout_secs); reconnect to resume"
            ),
        }),
    };
    let mut out = Vec::new();
    if encode_frame("idle", &f, MIN_MAX_FRAME, &mut out).is_ok() {
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.write_all(&out)).await;
    }
    Close::Idle(idle)
}

/// Tell an idle client the daemon is stopping.
async fn goodbye(stream: &mut UnixStream) -> Close {
    let out = &mut Vec::new();
    let f = ServerFrame {
        id: CONNECTION_ID,
        response: Response::Error(ErrorReply {
            code: ErrorCode::Unavailable,
            message: "agentmemd is shutting down".into(),
        }),
    };
    if encode_frame("goodbye", &f, MIN_MAX_FRAME, out).is_ok() {
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.write_all(out)).await;
    }
    Close::Shutdown
}

async fn protocol_error(svc: &Service, stream: &mut UnixStream, id: u64, e: ProtoError) -> Close {
    let out = &mut Vec::new();
    svc.metrics.protocol_errors.fetch_add(1, Relaxed);
    let f = ServerFrame {
        id,
        response: Response::Error(e.reply()),
    };
    if encode_frame("error", &f, MIN_MAX_FRAME, out).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(out)).await;
    }
    Close::Proto(e)
}

/// Release expired agents every so often until `shutdown` fires.
pub async fn reaper(svc: Arc<Service>, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_secs_f64((svc.cfg.grace_secs / 4.0).clamp(0.05, 1.0));
    let mut last_usage = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {
                svc.reap(Instant::now());
                if last_usage.elapsed() >= Duration::from_secs(1) {
                    svc.refresh_usage();
                    last_usage = Instant::now();
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
