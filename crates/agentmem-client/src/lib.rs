//! # agentmem-client
//!
//! A Rust client for `agentmemd`, the daemon that serves one agentmem store
//! to many agent processes over a Unix socket. It offers the operations of
//! the embedded [`agentmem_core::Store`], acting for the one agent each
//! connection is bound to: [`Client`] blocks, [`AsyncClient`] runs on tokio.
//!
//! ```no_run
//! use agentmem_client::{Client, ConnectOptions};
//! use agentmem_core::{Kind, Visibility};
//!
//! let mut c = ConnectOptions::new("coder-1").connect()?; // default socket
//! let prompt = c.put(Kind::SystemPrompt, b"You are a careful agent.", Visibility::Public)?;
//! let conv = c.create_conversation()?;
//! c.append(conv, br#"{"role":"user","content":"hi"}"#)?;
//! assert_eq!(&c.get(&prompt)?[..], b"You are a careful agent.");
//! # Ok::<(), agentmem_client::ClientError>(())
//! ```
//!
//! ## Identity
//!
//! The daemon knows who connects from the socket's peer credentials: the
//! tenant is the connecting uid, or the tenant a configured token names
//! ([`ConnectOptions::token`]). Each connection acts for one agent, named
//! in the handshake; units it stores are its own, and it reads its own
//! units, units shared with it and public units.
//!
//! ## Zero-copy reads
//!
//! [`Client::get`] returns a [`Unit`]. Large units come as a sealed memfd
//! that is mapped read-only ([`Unit::Shared`]): every process reading the
//! same system prompt maps the same physical pages. Small ones come inline.
//!
//! ## Reconnecting
//!
//! If the connection breaks, the call that noticed returns
//! [`ClientError::Disconnected`] or [`ClientError::Closed`] (it is not retried: a put or append may or
//! may not have happened) and the next call connects again with the same
//! agent name; the daemon gives back the same agent, with its units, if it
//! comes back within the daemon's grace time.
//!
//! ## Pipelining
//!
//! [`Client::pipeline`] sends many requests before reading the answers,
//! which the protocol matches by request id.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::ops::{Deref, Range};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agentmem_core::{
    AgentId, AgentState, ContentId, ConversationId, Kind, ResumeReport, Visibility,
};
use agentmem_proto::{
    decode_handshake_reply, decode_response, encode_frame, split_frame, ClientFrame,
    HandshakeReply, Hello, ProtoError, Request, Response, ServerFrame, Welcome, DEFAULT_MAX_FRAME,
};
use serde_bytes::ByteBuf;

mod sys;

pub use agentmem_proto::{
    AgentReport, DaemonReport, ErrorCode, ErrorReply, KindReport, StatsReport, UnitReport,
};
pub use sys::Segment;

/// The socket path used when none is given: `$XDG_RUNTIME_DIR/agentmem.sock`
/// if that variable is set, else `/run/agentmem/agentmem.sock`. The daemon
/// uses the same rule.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("agentmem.sock"),
        _ => PathBuf::from("/run/agentmem/agentmem.sock"),
    }
}

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be connected.
    #[error("cannot connect to agentmemd at {path}: {source} (is the daemon running? start it with `agentmemd` or `agentmem daemon`)")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The daemon refused the handshake.
    #[error("agentmemd refused the connection ({:?}): {}", .0.code, .0.message)]
    Refused(ErrorReply),
    /// The connection broke during this call; the next call reconnects.
    #[error("connection to agentmemd lost: {0}")]
    Disconnected(#[source] io::Error),
    /// The daemon closed the connection and said why (it is shutting down,
    /// or it rejected bytes this client sent); the next call reconnects.
    #[error("agentmemd closed the connection ({:?}): {}", .0.code, .0.message)]
    Closed(ErrorReply),
    /// The request does not fit in the negotiated frame size; nothing was
    /// sent and the connection stays open.
    #[error("request not sent: {0}")]
    TooLarge(#[source] ProtoError),
    /// The daemon sent bytes this client cannot decode.
    #[error("protocol error talking to agentmemd: {0}")]
    Protocol(#[from] ProtoError),
    /// The daemon answered the request with an error.
    #[error("agentmemd: {message}")]
    Remote {
        /// What kind of failure.
        code: ErrorCode,
        /// The daemon's sentence.
        message: String,
    },
    /// The daemon answered with a response of the wrong type.
    #[error("agentmemd answered {request} with an unexpected {response}")]
    Unexpected {
        /// What was asked.
        request: &'static str,
        /// What came back (its variant name).
        response: String,
    },
    /// A shared segment could not be mapped.
    #[error("cannot map a shared segment from agentmemd: {0}")]
    Segment(#[source] io::Error),
}

impl ClientError {
    /// The daemon's error code, if the daemon answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Remote { code, .. } => Some(*code),
            ClientError::Refused(r) | ClientError::Closed(r) => Some(r.code),
            _ => None,
        }
    }
}

/// Result with [`ClientError`].
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A unit's bytes as read from the daemon.
#[derive(Debug)]
pub enum Unit {
    /// Sent inline in the response.
    Inline(Vec<u8>),
    /// A read-only mapping of a sealed memfd shared with other readers.
    Shared(Segment),
}

impl Unit {
    /// Whether the bytes are a shared mapping (zero-copy).
    pub fn is_shared(&self) -> bool {
        matches!(self, Unit::Shared(_))
    }

    /// The bytes, copied into a vector.
    pub fn to_vec(&self) -> Vec<u8> {
        self.deref().to_vec()
    }
}

impl Deref for Unit {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Unit::Inline(v) => v,
            Unit::Shared(s) => s.as_slice(),
        }
    }
}

impl AsRef<[u8]> for Unit {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// How to connect: a builder with documented defaults.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    socket: PathBuf,
    agent: String,
    token: Option<String>,
    importance: u8,
    max_frame: u32,
    timeout: Option<Duration>,
}

impl ConnectOptions {
    /// Options to act for the agent named `agent`.
    pub fn new(agent: impl Into<String>) -> Self {
        ConnectOptions {
            socket: std::env::var_os("AGENTMEM_SOCKET")
                .filter(|s| !s.is_empty())
                .map_or_else(default_socket_path, PathBuf::from),
            agent: agent.into(),
            token: None,
            importance: 50,
            max_frame: DEFAULT_MAX_FRAME,
            timeout: Some(Duration::from_secs(60)),
        }
    }

    /// The daemon's socket. Default: `$AGENTMEM_SOCKET` if set, else
    /// [`default_socket_path`].
    pub fn socket(mut self, path: impl AsRef<Path>) -> Self {
        self.socket = path.as_ref().to_path_buf();
        self
    }

    /// A token from the daemon's configuration that names the tenant.
    /// Default: none (the tenant is the connecting uid).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The agent's importance. Default: 50.
    pub fn importance(mut self, importance: u8) -> Self {
        self.importance = importance;
        self
    }

    /// Largest frame this client accepts (the daemon may lower it).
    /// Default: 16 MiB.
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes;
        self
    }

    /// How long a blocking call waits for the daemon before failing with
    /// [`ClientError::Disconnected`]; `None` waits forever. Not used by
    /// [`AsyncClient`] (use `tokio::time::timeout`). Default: 60 s.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The socket path these options connect to.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Connect, blocking.
    pub fn connect(self) -> Result<Client> {
        let conn = Conn::open(&self)?;
        Ok(Client {
            opts: self,
            welcome: conn.welcome.clone(),
            conn: Some(conn),
            next_id: 1,
        })
    }

    /// Connect from async code.
    pub async fn connect_async(self) -> Result<AsyncClient> {
        let conn = AsyncConn::open(&self).await?;
        Ok(AsyncClient {
            opts: self,
            welcome: conn.welcome.clone(),
            conn: Some(conn),
            next_id: 1,
        })
    }

    fn hello(&self) -> Hello {
        let mut h = Hello::new(self.agent.clone());
        h.token = self.token.clone();
        h.importance = self.importance;
        h.max_frame = self.max_frame;
        h
    }
}

/// Received bytes not yet decoded, and descriptors received with them.
/// `buf[start..end]` holds undecoded bytes; the rest of `buf` is room to
/// read into, kept allocated (and initialised) so a read costs no memset.
#[derive(Debug, Default)]
struct Inbox {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    fds: VecDeque<OwnedFd>,
}

/// Room made available to each read.
const READ_ROOM: usize = 64 * 1024;

impl Inbox {
    /// A complete frame's payload range in `buf`, if one has arrived.
    fn take(&mut self, max: u32) -> Result<Option<Range<usize>>> {
        match split_frame(&self.buf[self.start..self.end], max)? {
            Some((payload, used)) => {
                let s = self.start + agentmem_proto::HEADER_LEN;
                let r = s..s + payload.len();
                self.start += used;
                Ok(Some(r))
            }
            None => Ok(None),
        }
    }

    /// Read once with `read` into room after the undecoded bytes, keeping
    /// what it returned and any descriptors it queued.
    fn fill(
        &mut self,
        read: impl FnOnce(&mut [u8], &mut VecDeque<OwnedFd>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < self.end + READ_ROOM {
            self.buf.resize(self.end + READ_ROOM, 0);
        }
        let n = read(&mut self.buf[self.end..], &mut self.fds)?;
        self.end += n;
        Ok(n)
    }

    /// Turn a decoded frame into a response, attaching a mapped segment if
    /// the frame announced one.
    fn finish(&mut self, frame: ServerFrame) -> Result<(u64, Reply)> {
        let reply = match frame.response {
            Response::Segment { len } => {
                let fd = self.fds.pop_front().ok_or_else(|| {
                    ClientError::Segment(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the daemon announced a shared segment but sent no descriptor",
                    ))
                })?;
                Reply::Segment(Segment::map(fd, len).map_err(ClientError::Segment)?)
            }
            other => Reply::Plain(other),
        };
        Ok((frame.id, reply))
    }
}

/// A response with its segment mapped.
#[derive(Debug)]
enum Reply {
    Plain(Response),
    Segment(Segment),
}

fn lost(e: io::Error) -> ClientError {
    ClientError::Disconnected(e)
}

fn eof() -> ClientError {
    ClientError::Disconnected(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "agentmemd closed the connection",
    ))
}

fn welcome_of(reply: HandshakeReply) -> Result<Welcome> {
    match reply {
        HandshakeReply::Welcome(w) => Ok(w),
        HandshakeReply::Refused(e) => Err(ClientError::Refused(e)),
    }
}

/// One blocking connection.
#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    inbox: Inbox,
    welcome: Welcome,
    out: Vec<u8>,
}

impl Conn {
    fn open(opts: &ConnectOptions) -> Result<Conn> {
        let stream = UnixStream::connect(&opts.socket).map_err(|source| ClientError::Connect {
            path: opts.socket.clone(),
            source,
        })?;
        stream.set_read_timeout(opts.timeout).map_err(lost)?;
        stream.set_write_timeout(opts.timeout).map_err(lost)?;
        let mut out = Vec::new();
        encode_frame(
            "hello",
            &opts.hello(),
            agentmem_proto::MIN_MAX_FRAME,
            &mut out,
        )?;
        // A daemon that refuses at once may have closed before the hello
        // arrives; its refusal is still there to read.
        let sent = (&stream).write_all(&out);
        let mut conn = Conn {
            stream,
            inbox: Inbox::default(),
            welcome: Welcome {
                version: 0,
                max_frame: agentmem_proto::MIN_MAX_FRAME,
                agent: 0,
                tenant: String::new(),
                reattached: false,
                daemon_pid: 0,
            },
            out,
        };
        let r = match conn.read_payload() {
            Ok(r) => r,
            Err(e) => return Err(sent.err().map_or(e, lost)),
        };
        let reply = decode_handshake_reply(&conn.inbox.buf[r])?;
        conn.welcome = welcome_of(reply)?;
        sent.map_err(lost)?;
        Ok(conn)
    }

    fn read_payload(&mut self) -> Result<Range<usize>> {
        loop {
            if let Some(r) = self.inbox.take(self.welcome.max_frame.max(opts_floor()))? {
                return Ok(r);
            }
            let n = loop {
                let stream = &self.stream;
                match self
                    .inbox
                    .fill(|buf, fds| sys::recv_with_fds(stream, buf, fds))
                {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(lost(e)),
                }
            };
            if n == 0 {
                return Err(eof());
            }
        }
    }

    fn read_frame(&mut self) -> Result<(u64, Reply)> {
        let r = self.read_payload()?;
        let frame = decode_response(&self.inbox.buf[r])?;
        self.inbox.finish(frame)
    }

    fn send(&mut self, frames: &[ClientFrame]) -> Result<()> {
        self.out.clear();
        for f in frames {
            encode_frame("request", f, self.welcome.max_frame, &mut self.out)
                .map_err(ClientError::TooLarge)?;
        }
        (&self.stream).write_all(&self.out).map_err(lost)
    }
}

/// Before the handshake completes the frame limit is the protocol minimum;
/// afterwards the negotiated one.
fn opts_floor() -> u32 {
    agentmem_proto::MIN_MAX_FRAME
}

/// A blocking connection to `agentmemd`, acting for one agent. Not `Sync`:
/// give each thread its own client (each is its own agent), or wrap it in a
/// mutex.
#[derive(Debug)]
pub struct Client {
    opts: ConnectOptions,
    conn: Option<Conn>,
    welcome: Welcome,
    next_id: u64,
}

impl Client {
    /// Connect to the default socket as agent `agent`.
    pub fn connect(agent: &str) -> Result<Client> {
        ConnectOptions::new(agent).connect()
    }

    /// The agent this client acts for.
    pub fn agent(&self) -> AgentId {
        AgentId(self.welcome.agent)
    }

    /// The tenant the daemon placed this client in.
    pub fn tenant(&self) -> &str {
        &self.welcome.tenant
    }

    /// The handshake's answer (of the latest connection).
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Whether a connection is open (it may still turn out broken).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Drop the connection (if any) and connect again now.
    pub fn reconnect(&mut self) -> Result<()> {
        self.conn = None;
        self.ensure()?;
        Ok(())
    }

    fn ensure(&mut self) -> Result<&mut Conn> {
        if self.conn.is_none() {
            let c = Conn::open(&self.opts)?;
            self.welcome = c.welcome.clone();
            self.conn = Some(c);
        }
        Ok(self.conn.as_mut().expect("connected"))
    }

    /// Send `requests` all at once, then read their answers, in order.
    /// Errors the daemon answers are returned in place as
    /// [`Response::Error`]; a broken connection fails the whole call.
    pub fn pipeline(&mut self, requests: Vec<Request>) -> Result<Vec<Response>> {
        let first = self.next_id;
        self.next_id += requests.len() as u64;
        let frames: Vec<ClientFrame> = requests
            .into_iter()
            .enumerate()
            .map(|(i, request)| ClientFrame {
                id: first + i as u64,
                request,
            })
            .collect();
        let res = (|| {
            let conn = self.ensure()?;
            conn.send(&frames)?;
            let mut out = Vec::with_capacity(frames.len());
            for f in &frames {
                let (id, reply) = conn.read_frame()?;
                check_id(id, f.id, &reply)?;
                out.push(match reply {
                    Reply::Plain(r) => r,
                    // A pipelined caller gets the bytes copied out; the
                    // mapping is unmapped here.
                    Reply::Segment(s) => Response::Data(ByteBuf::from(s.as_slice().to_vec())),
                });
            }
            Ok(out)
        })();
        self.after(res)
    }

    fn call(&mut self, request: Request) -> Result<Reply> {
        let id = self.next_id;
        self.next_id += 1;
        let res = (|| {
            let conn = self.ensure()?;
            conn.send(&[ClientFrame { id, request }])?;
            let (got, reply) = conn.read_frame()?;
            check_id(got, id, &reply)?;
            Ok(reply)
        })();
        self.after(res)
    }

    /// Drop a connection that failed in a way that leaves it unusable.
    fn after<T>(&mut self, res: Result<T>) -> Result<T> {
        if let Err(e) = &res {
            if matches!(
                e,
                ClientError::Disconnected(_)
                    | ClientError::Closed(_)
                    | ClientError::Protocol(_)
                    | ClientError::Segment(_)
            ) {
                self.conn = None;
            }
        }
        res
    }

    fn plain(&mut self, request: Request) -> Result<Response> {
        let name = request.name();
        match self.call(request)? {
            Reply::Plain(Response::Error(e)) => Err(remote(e)),
            Reply::Plain(r) => Ok(r),
            Reply::Segment(_) => Err(unexpected(name, "Segment")),
        }
    }
}

/// Check that a frame answers request `want`; a frame for the connection
/// (id 0) is the daemon's last word before it closes.
fn check_id(got: u64, want: u64, reply: &Reply) -> Result<()> {
    if got == agentmem_proto::CONNECTION_ID {
        if let Reply::Plain(Response::Error(e)) = reply {
            return Err(ClientError::Closed(e.clone()));
        }
    }
    if got != want {
        return Err(ClientError::Protocol(ProtoError::Malformed {
            what: "response",
            detail: format!("answer for request {got} where {want} was expected"),
        }));
    }
    Ok(())
}

fn remote(e: ErrorReply) -> ClientError {
    ClientError::Remote {
        code: e.code,
        message: e.message,
    }
}

fn unexpected(request: &'static str, response: &str) -> ClientError {
    ClientError::Unexpected {
        request,
        response: response.to_string(),
    }
}

fn variant(r: &Response) -> String {
    let s = format!("{r:?}");
    s.split(['(', ' ', '{']).next().unwrap_or("?").to_string()
}

/// Typed decoders of responses, shared by both clients.
mod expect {
    use super::*;

    pub(super) fn ok(name: &'static str, r: Response) -> Result<()> {
        match r {
            Response::Ok => Ok(()),
            r => Err(unexpected(name, &variant(&r))),
        }
    }
    pub(super) fn id(name: &'static str, r: Response) -> Result<ContentId> {
        match r {
            Response::Id(b) => Ok(ContentId::from_bytes(b)),
            r => Err(unexpected(name, &variant(&r))),
        }
    }
    pub(super) fn data(name: &'static str, r: Response) -> Result<Vec<u8>> {
        match r {
            Response::Data(b) => Ok(b.into_vec()),
            r => Err(unexpected(name, &variant(&r))),
        }
    }
    pub(super) fn index(name: &'static str, r: Response) -> Result<u64> {
        match r {
            Response::Index(i) | Response::Len(i) => Ok(i),
            r => Err(unexpected(name, &variant(&r))),
        }
    }
    pub(super) fn conversation(name: &'static str, r: Response) -> Result<ConversationId> {
        match r {
            Response::Conversation(c) => Ok(ConversationId(c)),
            r => Err(unexpected(name, &variant(&r))),
        }
    }
    pub(super) fn messages(name: &'static str, r: Response) -> Result<Vec<Vec<u8>>> {
        match r {
            Response::Messages(m) => Ok(m.into_iter().map(ByteBuf::into_vec).collect()),
            r => Err(unexpected(name, &variant(&r))),
        }
    }
    pub(super) fn resumed(name: &'static str, r: Response) -> Result<ResumeReport> {
        match r {
            Response::Resumed {
                units,
                bytes,
                micros,
            } => Ok(ResumeReport {
                units,
                bytes,
                elapsed: Duration::from_micros(micros),
            }),
            r => Err(unexpected(name, &variant(&r))),
        }
    }
    pub(super) fn agent(name: &'static str, r: Response) -> Result<AgentReport> {
        match r {
            Response::Agent(a) => Ok(a),
            r => Err(unexpected(name, &variant(&r))),
        }
    }
    pub(super) fn unit(name: &'static str, r: Response) -> Result<UnitReport> {
        match r {
            Response::Unit(u) => Ok(u),
            r => Err(unexpected(name, &variant(&r))),
        }
    }
    pub(super) fn stats(name: &'static str, r: Response) -> Result<StatsReport> {
        match r {
            Response::Stats(s) => Ok(*s),
            r => Err(unexpected(name, &variant(&r))),
        }
    }
    pub(super) fn pong(name: &'static str, r: Response) -> Result<()> {
        match r {
            Response::Pong => Ok(()),
            r => Err(unexpected(name, &variant(&r))),
        }
    }
}

/// The operations, written once for both clients: `$call` turns a request
/// into a `Response` (awaiting it in the async client).
macro_rules! operations {
    ($($async_:ident)? ; $($await_:ident)? ; $plain:ident) => {
        /// Check the connection: the daemon answers at once.
        pub $($async_)? fn ping(&mut self) -> Result<()> {
            expect::pong("ping", self.$plain(Request::Ping)$(.$await_)??)
        }

        /// Store `data` as a unit of `kind` and return its id; this agent
        /// holds one more reference to it. Public units share one dedup
        /// domain store-wide; private ones are deduplicated only within this
        /// agent's tenant.
        pub $($async_)? fn put(&mut self, kind: Kind, data: &[u8], visibility: Visibility) -> Result<ContentId> {
            let r = self.$plain(Request::Put { kind, visibility, data: ByteBuf::from(data.to_vec()) })$(.$await_)??;
            expect::id("put", r)
        }

        /// Read a unit, always copied inline (never as a shared segment).
        pub $($async_)? fn get_inline(&mut self, id: &ContentId) -> Result<Vec<u8>> {
            expect::data("get_inline", self.$plain(Request::GetInline { id: *id.as_bytes() })$(.$await_)??)
        }

        /// Give agent `to` a reference to a unit this agent holds, so it may
        /// read it.
        pub $($async_)? fn share(&mut self, id: &ContentId, to: AgentId) -> Result<()> {
            expect::ok("share", self.$plain(Request::Share { id: *id.as_bytes(), to: to.0 })$(.$await_)??)
        }

        /// Drop one of this agent's references to a unit.
        pub $($async_)? fn release(&mut self, id: &ContentId) -> Result<()> {
            expect::ok("release", self.$plain(Request::Release { id: *id.as_bytes() })$(.$await_)??)
        }

        /// Ask for a unit to be brought to the hot tier now.
        pub $($async_)? fn mark_hot(&mut self, id: &ContentId) -> Result<()> {
            expect::ok("mark_hot", self.$plain(Request::MarkHot { id: *id.as_bytes() })$(.$await_)??)
        }

        /// Describe a unit this agent may read.
        pub $($async_)? fn unit_info(&mut self, id: &ContentId) -> Result<UnitReport> {
            expect::unit("unit_info", self.$plain(Request::UnitInfo { id: *id.as_bytes() })$(.$await_)??)
        }

        /// Start an empty conversation owned by this agent.
        pub $($async_)? fn create_conversation(&mut self) -> Result<ConversationId> {
            expect::conversation("create_conversation", self.$plain(Request::CreateConversation)$(.$await_)??)
        }

        /// Append a message to one of this agent's conversations; returns
        /// its index.
        pub $($async_)? fn append(&mut self, conversation: ConversationId, message: &[u8]) -> Result<u64> {
            let r = self.$plain(Request::Append { conversation: conversation.0, message: ByteBuf::from(message.to_vec()) })$(.$await_)??;
            expect::index("append", r)
        }

        /// Messages `range` of a conversation.
        pub $($async_)? fn read_messages(&mut self, conversation: ConversationId, range: Range<u64>) -> Result<Vec<Vec<u8>>> {
            let r = self.$plain(Request::ReadMessages { conversation: conversation.0, start: range.start, end: range.end })$(.$await_)??;
            expect::messages("read_messages", r)
        }

        /// The last `n` messages (fewer if the conversation is shorter).
        pub $($async_)? fn read_last(&mut self, conversation: ConversationId, n: u64) -> Result<Vec<Vec<u8>>> {
            expect::messages("read_last", self.$plain(Request::ReadLast { conversation: conversation.0, n })$(.$await_)??)
        }

        /// Every message.
        pub $($async_)? fn read_all(&mut self, conversation: ConversationId) -> Result<Vec<Vec<u8>>> {
            expect::messages("read_all", self.$plain(Request::ReadAll { conversation: conversation.0 })$(.$await_)??)
        }

        /// Number of messages.
        pub $($async_)? fn conversation_len(&mut self, conversation: ConversationId) -> Result<u64> {
            expect::index("conversation_len", self.$plain(Request::ConversationLen { conversation: conversation.0 })$(.$await_)??)
        }

        /// Change this agent's state.
        pub $($async_)? fn set_state(&mut self, state: AgentState) -> Result<()> {
            expect::ok("set_state", self.$plain(Request::SetState { state })$(.$await_)??)
        }

        /// Change this agent's importance.
        pub $($async_)? fn set_importance(&mut self, importance: u8) -> Result<()> {
            expect::ok("set_importance", self.$plain(Request::SetImportance { importance })$(.$await_)??)
        }

        /// Pause this agent: its units are compressed.
        pub $($async_)? fn pause(&mut self) -> Result<()> {
            expect::ok("pause", self.$plain(Request::Pause)$(.$await_)??)
        }

        /// Resume this agent: its units come back to the hot tier before
        /// this returns.
        pub $($async_)? fn resume(&mut self) -> Result<ResumeReport> {
            expect::resumed("resume", self.$plain(Request::Resume)$(.$await_)??)
        }

        /// What the daemon knows of this agent.
        pub $($async_)? fn agent_info(&mut self) -> Result<AgentReport> {
            expect::agent("agent_info", self.$plain(Request::AgentInfo)$(.$await_)??)
        }

        /// The store's and the daemon's accounting.
        pub $($async_)? fn stats(&mut self) -> Result<StatsReport> {
            expect::stats("stats", self.$plain(Request::Stats)$(.$await_)??)
        }
    };
}

impl Client {
    operations!(; ; plain);

    /// Read a unit this agent may read: its own, one shared with it, or a
    /// public one. Large units arrive as a shared read-only mapping.
    pub fn get(&mut self, id: &ContentId) -> Result<Unit> {
        match self.call(Request::Get { id: *id.as_bytes() })? {
            Reply::Segment(s) => Ok(Unit::Shared(s)),
            Reply::Plain(Response::Data(b)) => Ok(Unit::Inline(b.into_vec())),
            Reply::Plain(Response::Error(e)) => Err(remote(e)),
            Reply::Plain(r) => Err(unexpected("get", &variant(&r))),
        }
    }
}

/// One async connection.
#[derive(Debug)]
struct AsyncConn {
    stream: tokio::net::UnixStream,
    inbox: Inbox,
    welcome: Welcome,
    out: Vec<u8>,
}

impl AsyncConn {
    async fn open(opts: &ConnectOptions) -> Result<AsyncConn> {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::UnixStream::connect(&opts.socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: opts.socket.clone(),
                source,
            })?;
        let mut out = Vec::new();
        encode_frame(
            "hello",
            &opts.hello(),
            agentmem_proto::MIN_MAX_FRAME,
            &mut out,
        )?;
        stream.write_all(&out).await.map_err(lost)?;
        let mut conn = AsyncConn {
            stream,
            inbox: Inbox::default(),
            welcome: Welcome {
                version: 0,
                max_frame: agentmem_proto::MIN_MAX_FRAME,
                agent: 0,
                tenant: String::new(),
                reattached: false,
                daemon_pid: 0,
            },
            out,
        };
        let r = conn.read_payload().await?;
        let reply = decode_handshake_reply(&conn.inbox.buf[r])?;
        conn.welcome = welcome_of(reply)?;
        Ok(conn)
    }

    async fn read_payload(&mut self) -> Result<Range<usize>> {
        loop {
            if let Some(r) = self.inbox.take(self.welcome.max_frame.max(opts_floor()))? {
                return Ok(r);
            }
            self.stream.readable().await.map_err(lost)?;
            let stream = &self.stream;
            let res = self.inbox.fill(|buf, fds| {
                stream.try_io(tokio::io::Interest::READABLE, || {
                    sys::recv_with_fds(stream, buf, fds)
                })
            });
            match res {
                Ok(0) => return Err(eof()),
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(lost(e)),
            }
        }
    }

    async fn read_frame(&mut self) -> Result<(u64, Reply)> {
        let r = self.read_payload().await?;
        let frame = decode_response(&self.inbox.buf[r])?;
        self.inbox.finish(frame)
    }

    async fn send(&mut self, frames: &[ClientFrame]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        self.out.clear();
        for f in frames {
            encode_frame("request", f, self.welcome.max_frame, &mut self.out)
                .map_err(ClientError::TooLarge)?;
        }
        self.stream.write_all(&self.out).await.map_err(lost)
    }
}

/// An async connection to `agentmemd` (tokio), acting for one agent. The
/// same operations as [`Client`], as `async fn`s.
#[derive(Debug)]
pub struct AsyncClient {
    opts: ConnectOptions,
    conn: Option<AsyncConn>,
    welcome: Welcome,
    next_id: u64,
}

impl AsyncClient {
    /// Connect to the default socket as agent `agent`.
    pub async fn connect(agent: &str) -> Result<AsyncClient> {
        ConnectOptions::new(agent).connect_async().await
    }

    /// The agent this client acts for.
    pub fn agent(&self) -> AgentId {
        AgentId(self.welcome.agent)
    }

    /// The tenant the daemon placed this client in.
    pub fn tenant(&self) -> &str {
        &self.welcome.tenant
    }

    /// The handshake's answer (of the latest connection).
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Whether a connection is open (it may still turn out broken).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Drop the connection (if any) and connect again now.
    pub async fn reconnect(&mut self) -> Result<()> {
        self.conn = None;
        self.ensure().await?;
        Ok(())
    }

    async fn ensure(&mut self) -> Result<&mut AsyncConn> {
        if self.conn.is_none() {
            let c = AsyncConn::open(&self.opts).await?;
            self.welcome = c.welcome.clone();
            self.conn = Some(c);
        }
        Ok(self.conn.as_mut().expect("connected"))
    }

    async fn call(&mut self, request: Request) -> Result<Reply> {
        let id = self.next_id;
        self.next_id += 1;
        let res = async {
            let conn = self.ensure().await?;
            conn.send(&[ClientFrame { id, request }]).await?;
            let (got, reply) = conn.read_frame().await?;
            check_id(got, id, &reply)?;
            Ok(reply)
        }
        .await;
        if let Err(
            ClientError::Disconnected(_)
            | ClientError::Closed(_)
            | ClientError::Protocol(_)
            | ClientError::Segment(_),
        ) = &res
        {
            self.conn = None;
        }
        res
    }

    /// Send `requests` all at once, then read their answers, in order (see
    /// [`Client::pipeline`]).
    pub async fn pipeline(&mut self, requests: Vec<Request>) -> Result<Vec<Response>> {
        let first = self.next_id;
        self.next_id += requests.len() as u64;
        let frames: Vec<ClientFrame> = requests
            .into_iter()
            .enumerate()
            .map(|(i, request)| ClientFrame {
                id: first + i as u64,
                request,
            })
            .collect();
        let res = async {
            let conn = self.ensure().await?;
            conn.send(&frames).await?;
            let mut out = Vec::with_capacity(frames.len());
            for f in &frames {
                let (id, reply) = conn.read_frame().await?;
                check_id(id, f.id, &reply)?;
                out.push(match reply {
                    Reply::Plain(r) => r,
                    Reply::Segment(s) => Response::Data(ByteBuf::from(s.as_slice().to_vec())),
                });
            }
            Ok(out)
        }
        .await;
        if let Err(
            ClientError::Disconnected(_)
            | ClientError::Closed(_)
            | ClientError::Protocol(_)
            | ClientError::Segment(_),
        ) = &res
        {
            self.conn = None;
        }
        res
    }

    async fn plain(&mut self, request: Request) -> Result<Response> {
        let name = request.name();
        match self.call(request).await? {
            Reply::Plain(Response::Error(e)) => Err(remote(e)),
            Reply::Plain(r) => Ok(r),
            Reply::Segment(_) => Err(unexpected(name, "Segment")),
        }
    }

    operations!(async; await; plain);

    /// Read a unit this agent may read; large units arrive as a shared
    /// read-only mapping.
    pub async fn get(&mut self, id: &ContentId) -> Result<Unit> {
        match self.call(Request::Get { id: *id.as_bytes() }).await? {
            Reply::Segment(s) => Ok(Unit::Shared(s)),
            Reply::Plain(Response::Data(b)) => Ok(Unit::Inline(b.into_vec())),
            Reply::Plain(Response::Error(e)) => Err(remote(e)),
            Reply::Plain(r) => Err(unexpected("get", &variant(&r))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_socket_follows_xdg_runtime_dir() {
        // Only reads the environment; both branches are checked by value.
        let p = default_socket_path();
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if !d.is_empty() => assert_eq!(p, PathBuf::from(d).join("agentmem.sock")),
            _ => assert_eq!(p, PathBuf::from("/run/agentmem/agentmem.sock")),
        }
    }

    #[test]
    fn inbox_splits_frames_across_reads() {
        let mut bytes = Vec::new();
        for id in 1..=3 {
            encode_frame(
                "t",
                &ServerFrame {
                    id,
                    response: Response::Index(id * 10),
                },
                4096,
                &mut bytes,
            )
            .unwrap();
        }
        let mut inbox = Inbox::default();
        let mut got = Vec::new();
        for chunk in bytes.chunks(3) {
            inbox
                .fill(|buf, _| {
                    buf[..chunk.len()].copy_from_slice(chunk);
                    Ok(chunk.len())
                })
                .unwrap();
            while let Some(r) = inbox.take(4096).unwrap() {
                got.push(decode_response(&inbox.buf[r]).unwrap());
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].response, Response::Index(30));
    }
}
