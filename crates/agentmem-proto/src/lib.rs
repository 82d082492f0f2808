//! # agentmem-proto
//!
//! The wire protocol between `agentmemd` and its clients, as types and a
//! frame codec. The normative description is `docs/protocol.md`; this crate
//! is its reference implementation and the only code that turns bytes from a
//! socket into values.
//!
//! ## Frames
//!
//! Every message in either direction is one *frame*: a 4-byte little-endian
//! payload length followed by that many bytes of [postcard]-encoded payload.
//! A payload longer than the negotiated maximum frame size is a protocol
//! error detected from the header alone, before any of it is buffered.
//!
//! ## Conversation
//!
//! 1. The client sends a [`Hello`] frame: magic, protocol [`VERSION`], the
//!    largest frame it accepts, the agent name it acts for and optionally a
//!    token naming its tenant.
//! 2. The daemon answers with a [`HandshakeReply`]: [`Welcome`] (the
//!    negotiated maximum frame size, the agent id, the tenant) or
//!    `Refused` with an [`ErrorReply`], after which it closes.
//! 3. The client then sends [`ClientFrame`]s, each a request id chosen by the
//!    client and a [`Request`]; the daemon answers each with one
//!    [`ServerFrame`] carrying the same id and a [`Response`], in request
//!    order. A client may pipeline: send many requests before reading any
//!    response. Id 0 is reserved for errors about the connection itself.
//! 4. A [`Response::Segment`] carries a file descriptor in `SCM_RIGHTS`
//!    ancillary data, attached to the first byte of its frame: a sealed memfd
//!    holding the unit's bytes, to be mapped read-only.
//!
//! The shapes of [`Hello`] and [`HandshakeReply`] are frozen across
//! versions, so a peer of any version can read why it was refused. Variants
//! of [`Request`] and [`Response`] are only ever appended.
//!
//! ## Decoding untrusted bytes
//!
//! [`split_frame`] finds one frame in a buffer; [`decode_request`],
//! [`decode_response`] and [`decode_hello`] decode a payload. None of them
//! panics or allocates more than the payload's length on any input (the
//! `fuzz/` target checks this).

use agentmem_core::{AgentState, Kind, Visibility};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// First four bytes of a [`Hello`]: "AGMD".
pub const MAGIC: [u8; 4] = *b"AGMD";
/// The protocol version this crate speaks.
pub const VERSION: u16 = 1;
/// Bytes of the length prefix of every frame.
pub const HEADER_LEN: usize = 4;
/// Maximum payload size a peer proposes unless configured otherwise: 16 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 16 << 20;
/// The smallest maximum frame size a peer may propose: 4 KiB. Handshake
/// frames must always fit in it.
pub const MIN_MAX_FRAME: u32 = 4096;
/// Request id reserved for errors about the connection, not a request.
pub const CONNECTION_ID: u64 = 0;

/// A content id on the wire: the 32 bytes of an
/// [`agentmem_core::ContentId`].
pub type WireId = [u8; 32];

/// The client's opening frame. Its shape is frozen for every version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must be [`MAGIC`].
    pub magic: [u8; 4],
    /// The protocol version the client speaks; the daemon refuses any other.
    pub version: u16,
    /// The largest frame payload the client accepts (at least
    /// [`MIN_MAX_FRAME`]); the daemon uses the smaller of this and its own.
    pub max_frame: u32,
    /// Name of the agent this connection acts for. A connection of the same
    /// tenant and name that comes back within the daemon's grace time gets
    /// the same agent (and all its units) back.
    pub agent: String,
    /// A token from the daemon's configuration naming the tenant; without
    /// one the tenant is the peer's uid.
    pub token: Option<String>,
    /// How much the agent's memory matters (0-255, default 50).
    pub importance: u8,
}

impl Hello {
    /// A hello for `agent` with this crate's version and defaults.
    pub fn new(agent: impl Into<String>) -> Self {
        Hello {
            magic: MAGIC,
            version: VERSION,
            max_frame: DEFAULT_MAX_FRAME,
            agent: agent.into(),
            token: None,
            importance: 50,
        }
    }
}

/// The daemon's answer to a [`Hello`]. Its shape is frozen for every version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HandshakeReply {
    /// The connection is accepted.
    Welcome(Welcome),
    /// The connection is refused; the daemon closes it after this frame.
    Refused(ErrorReply),
}

/// What the daemon tells an accepted client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol version in use.
    pub version: u16,
    /// The negotiated maximum frame payload, both directions.
    pub max_frame: u32,
    /// The agent this connection acts for.
    pub agent: u32,
    /// Its tenant's name.
    pub tenant: String,
    /// Whether an existing agent was re-attached (a reconnect within the
    /// grace time) rather than a new one registered.
    pub reattached: bool,
    /// The daemon's process id.
    pub daemon_pid: u32,
}

/// A request from the client. Variants are numbered in order and only ever
/// appended; a daemon answers an unknown number with
/// [`ErrorCode::UnknownRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// 0: answer [`Response::Pong`].
    Ping,
    /// 1: store bytes; answers [`Response::Id`].
    Put {
        /// What the bytes are.
        kind: Kind,
        /// Who may read them, which is also their dedup domain.
        visibility: Visibility,
        /// The content.
        data: ByteBuf,
    },
    /// 2: read a unit; answers [`Response::Data`] or, for large units,
    /// [`Response::Segment`] with a memfd.
    Get {
        /// The unit.
        id: WireId,
    },
    /// 3: give agent `to` a reference to a unit this agent holds.
    Share {
        /// The unit.
        id: WireId,
        /// The receiving agent.
        to: u32,
    },
    /// 4: drop one reference.
    Release {
        /// The unit.
        id: WireId,
    },
    /// 5: bring a unit to the hot tier now.
    MarkHot {
        /// The unit.
        id: WireId,
    },
    /// 6: describe a unit; answers [`Response::Unit`].
    UnitInfo {
        /// The unit.
        id: WireId,
    },
    /// 7: start a conversation; answers [`Response::Conversation`].
    CreateConversation,
    /// 8: append a message; answers [`Response::Index`].
    Append {
        /// The conversation, owned by this agent.
        conversation: u32,
        /// The message.
        message: ByteBuf,
    },
    /// 9: messages `start..end`; answers [`Response::Messages`].
    ReadMessages {
        /// The conversation.
        conversation: u32,
        /// First index.
        start: u64,
        /// One past the last index.
        end: u64,
    },
    /// 10: the last `n` messages; answers [`Response::Messages`].
    ReadLast {
        /// The conversation.
        conversation: u32,
        /// How many.
        n: u64,
    },
    /// 11: every message; answers [`Response::Messages`].
    ReadAll {
        /// The conversation.
        conversation: u32,
    },
    /// 12: number of messages; answers [`Response::Len`].
    ConversationLen {
        /// The conversation.
        conversation: u32,
    },
    /// 13: change this agent's state.
    SetState {
        /// The new state.
        state: AgentState,
    },
    /// 14: change this agent's importance.
    SetImportance {
        /// The new importance.
        importance: u8,
    },
    /// 15: pause this agent (its units are compressed).
    Pause,
    /// 16: resume this agent; answers [`Response::Resumed`].
    Resume,
    /// 17: describe this agent; answers [`Response::Agent`].
    AgentInfo,
    /// 18: the store's accounting; answers [`Response::Stats`].
    Stats,
    /// 19: like `Get` but always answers [`Response::Data`] inline.
    GetInline {
        /// The unit.
        id: WireId,
    },
}

/// How many [`Request`] variants this version knows.
pub const REQUEST_KINDS: u32 = 20;

impl Request {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Put { .. } => "put",
            Request::Get { .. } => "get",
            Request::Share { .. } => "share",
            Request::Release { .. } => "release",
            Request::MarkHot { .. } => "mark_hot",
            Request::UnitInfo { .. } => "unit_info",
            Request::CreateConversation => "create_conversation",
            Request::Append { .. } => "append",
            Request::ReadMessages { .. } => "read_messages",
            Request::ReadLast { .. } => "read_last",
            Request::ReadAll { .. } => "read_all",
            Request::ConversationLen { .. } => "conversation_len",
            Request::SetState { .. } => "set_state",
            Request::SetImportance { .. } => "set_importance",
            Request::Pause => "pause",
            Request::Resume => "resume",
            Request::AgentInfo => "agent_info",
            Request::Stats => "stats",
            Request::GetInline { .. } => "get_inline",
        }
    }

    /// The variant number (its index in [`Request::NAMES`]).
    pub fn tag(&self) -> usize {
        match self {
            Request::Ping => 0,
            Request::Put { .. } => 1,
            Request::Get { .. } => 2,
            Request::Share { .. } => 3,
            Request::Release { .. } => 4,
            Request::MarkHot { .. } => 5,
            Request::UnitInfo { .. } => 6,
            Request::CreateConversation => 7,
            Request::Append { .. } => 8,
            Request::ReadMessages { .. } => 9,
            Request::ReadLast { .. } => 10,
            Request::ReadAll { .. } => 11,
            Request::ConversationLen { .. } => 12,
            Request::SetState { .. } => 13,
            Request::SetImportance { .. } => 14,
            Request::Pause => 15,
            Request::Resume => 16,
            Request::AgentInfo => 17,
            Request::Stats => 18,
            Request::GetInline { .. } => 19,
        }
    }

    /// Every request name, in variant order (for metrics labels).
    pub const NAMES: [&'static str; REQUEST_KINDS as usize] = [
        "ping",
        "put",
        "get",
        "share",
        "release",
        "mark_hot",
        "unit_info",
        "create_conversation",
        "append",
        "read_messages",
        "read_last",
        "read_all",
        "conversation_len",
        "set_state",
        "set_importance",
        "pause",
        "resume",
        "agent_info",
        "stats",
        "get_inline",
    ];
}

/// A response from the daemon. Variants are only ever appended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The request failed.
    Error(ErrorReply),
    /// Done, nothing to return.
    Ok,
    /// Answer to `Ping`.
    Pong,
    /// A content id.
    Id(WireId),
    /// A unit's bytes, inline.
    Data(ByteBuf),
    /// A unit's bytes in a sealed memfd of `len` bytes, passed as
    /// `SCM_RIGHTS` with this frame.
    Segment {
        /// Bytes of the unit (the memfd is exactly this long).
        len: u64,
    },
    /// A message index.
    Index(u64),
    /// A conversation id.
    Conversation(u32),
    /// Messages, oldest first.
    Messages(Vec<ByteBuf>),
    /// A count.
    Len(u64),
    /// What a resume brought back.
    Resumed {
        /// Units promoted to hot.
        units: u64,
        /// Their plain bytes.
        bytes: u64,
        /// Wall time of the prefetch, microseconds.
        micros: u64,
    },
    /// An agent.
    Agent(AgentReport),
    /// A unit.
    Unit(UnitReport),
    /// The store's accounting.
    Stats(Box<StatsReport>),
}

/// Why a request or a connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A frame could not be decoded.
    BadFrame,
    /// The handshake named another protocol version.
    UnsupportedVersion,
    /// A frame was larger than the negotiated maximum.
    FrameTooLarge,
    /// The request number is not known to this daemon.
    UnknownRequest,
    /// No unit or conversation by that id is readable by this agent: it
    /// does not exist, was released, or belongs to another agent and was
    /// not shared. (One code for all three so that another tenant cannot
    /// tell them apart.)
    NotFound,
    /// The agent may not do this (for example append to another agent's
    /// conversation, or a token the daemon does not know).
    AccessDenied,
    /// The request's arguments are invalid (empty unit, too large, out of
    /// range).
    InvalidInput,
    /// The store failed (damaged data, cold tier error).
    Store,
    /// The daemon is shutting down or at its connection limit.
    Unavailable,
    /// A per-tenant limit (connections, agents, stored bytes) or a
    /// daemon-wide one is reached; the message names the limit, its value
    /// and the configuration key that sets it.
    LimitReached,
    /// A write failed because a filesystem is full; the message names
    /// which (the data directory's cold tier or redo log). Reads and
    /// releases keep working; writes succeed again once space returns.
    NoSpace,
    /// A unit larger than the store's maximum unit size (an
    /// [`ErrorCode::InvalidInput`] before protocol 1.1 clients).
    TooLarge,
    /// A message index or range outside the conversation.
    OutOfRange,
    /// Stored bytes failed their checksum or failed to decode: nothing is
    /// returned rather than wrong bytes.
    Corrupt,
}

/// An error answer: a code to branch on and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What happened, with the input that caused it.
    pub message: String,
}

/// One agent as the daemon reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    /// Its id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Its tenant.
    pub tenant: String,
    /// Its state.
    pub state: AgentState,
    /// Its importance.
    pub importance: u8,
    /// Units it references.
    pub units: u64,
    /// Plain bytes of everything it references.
    pub logical_bytes: u64,
    /// Stored bytes charged to it (exclusive plus its share of shared ones).
    pub charged_bytes: u64,
    /// Whether a client is connected for it now.
    pub connected: bool,
}

/// One unit as the daemon reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnitReport {
    /// Its kind.
    pub kind: Kind,
    /// Its tier.
    pub tier: agentmem_core::Tier,
    /// Plain size.
    pub logical_bytes: u64,
    /// Size where it is held.
    pub stored_bytes: u64,
    /// References held by agents.
    pub refs: u64,
    /// Who may read it.
    pub visibility: Visibility,
}

/// Bytes of one kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KindReport {
    /// Kind name (`system_prompt`, ...).
    pub kind: String,
    /// Distinct units.
    pub units: u64,
    /// Bytes as agents see them.
    pub logical_bytes: u64,
    /// Bytes held, all tiers.
    pub stored_bytes: u64,
    /// Held in the hot tier.
    pub hot_bytes: u64,
    /// Held in the warm tier.
    pub warm_bytes: u64,
    /// Held in the cold tier.
    pub cold_bytes: u64,
}

/// Figures of the daemon itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonReport {
    /// Connections open now.
    pub connections: u64,
    /// Requests served since start.
    pub requests: u64,
    /// Requests answered with an error since start.
    pub errors: u64,
    /// Connections closed for a protocol error since start.
    pub protocol_errors: u64,
    /// Sealed memfd segments held now.
    pub segments: u64,
    /// Their bytes.
    pub segment_bytes: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The data directory of the persistent store; empty for RAM only.
    pub data_dir: String,
    /// Seconds opening the store from `data_dir` took at start (recovery);
    /// 0 for RAM only.
    pub recovery_secs: f64,
}

/// The store's accounting as the daemon reports it. Agents are those of
/// the caller's tenant (all of them for the daemon's own uid and root).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Per kind.
    pub kinds: Vec<KindReport>,
    /// Bytes the agents have stored, as they see them.
    pub total_allocated: u64,
    /// Bytes not stored thanks to deduplication.
    pub total_deduplicated: u64,
    /// Plain bytes of distinct units over bytes held.
    pub compression_ratio: f64,
    /// Held in the hot tier.
    pub hot_bytes: u64,
    /// Held in the warm tier.
    pub warm_bytes: u64,
    /// Held in the cold tier.
    pub cold_bytes: u64,
    /// Puts that found their content already stored.
    pub dedup_hits: u64,
    /// Conversations held.
    pub conversations: u64,
    /// The store's estimate of its RAM use.
    pub accounted_ram_bytes: u64,
    /// RAM budget.
    pub ram_budget: u64,
    /// Hot budget.
    pub hot_budget: u64,
    /// Agents (see the type's doc for which).
    pub agents: Vec<AgentReport>,
    /// The daemon.
    pub daemon: DaemonReport,
}

/// A request frame: the client's id for it and the request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Chosen by the client, echoed in the response; not 0.
    pub id: u64,
    /// The request.
    pub request: Request,
}

/// A response frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerFrame {
    /// The id of the request this answers, or [`CONNECTION_ID`].
    pub id: u64,
    /// The response.
    pub response: Response,
}

/// What can be wrong with bytes received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The frame header announces more than the negotiated maximum.
    #[error("frame of {len} bytes exceeds the maximum frame size of {max} bytes")]
    TooLarge {
        /// Announced payload length.
        len: u64,
        /// The limit.
        max: u32,
    },
    /// The hello did not start with the magic bytes.
    #[error("not an agentmem client: the first frame does not start with \"AGMD\"")]
    BadMagic,
    /// The peer speaks another version.
    #[error("protocol version {got} is not supported; this side speaks version {VERSION}")]
    UnsupportedVersion {
        /// The version the peer named.
        got: u16,
    },
    /// The request number is not known.
    #[error("unknown request kind {tag} (this side knows 0..{REQUEST_KINDS})")]
    UnknownRequest {
        /// The request id, to answer it.
        id: u64,
        /// The unknown variant number.
        tag: u32,
    },
    /// The payload is not a valid encoding of what was expected.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What postcard said.
        detail: String,
    },
    /// Bytes were left over after the value.
    #[error("malformed {what}: {extra} bytes after the value")]
    Trailing {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A value was too large to encode in one frame.
    #[error("a {what} of {len} bytes does not fit in a frame of at most {max} bytes")]
    EncodeTooLarge {
        /// What was being encoded.
        what: &'static str,
        /// Its encoded size.
        len: usize,
        /// The limit.
        max: u32,
    },
}

impl ProtoError {
    /// The error code to answer this with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtoError::TooLarge { .. } | ProtoError::EncodeTooLarge { .. } => {
                ErrorCode::FrameTooLarge
            }
            ProtoError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            ProtoError::UnknownRequest { .. } => ErrorCode::UnknownRequest,
            ProtoError::BadMagic | ProtoError::Malformed { .. } | ProtoError::Trailing { .. } => {
                ErrorCode::BadFrame
            }
        }
    }

    /// The error as a reply.
    pub fn reply(&self) -> ErrorReply {
        ErrorReply {
            code: self.code(),
            message: self.to_string(),
        }
    }
}

/// Encode `value` as one frame (header and payload) appended to `out`.
/// Fails if the payload would exceed `max`; `out` is then unchanged.
pub fn encode_frame<T: Serialize>(
    what: &'static str,
    value: &T,
    max: u32,
    out: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    let res = postcard::to_io(value, &mut *out);
    if let Err(e) = res {
        out.truncate(start);
        return Err(ProtoError::Malformed {
            what,
            detail: e.to_string(),
        });
    }
    let len = out.len() - start - HEADER_LEN;
    if len > max as usize {
        out.truncate(start);
        return Err(ProtoError::EncodeTooLarge { what, len, max });
    }
    out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Find the first frame in `buf`. `Ok(None)`: not all of it has arrived
/// (a truncated frame, if the stream has ended). `Ok(Some((payload,
/// consumed)))`: the payload and how many bytes of `buf` the frame took.
/// A header announcing more than `max` bytes is an error at once.
pub fn split_frame(buf: &[u8], max: u32) -> Result<Option<(&[u8], usize)>, ProtoError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(header.try_into().expect("4 bytes"));
    if len > max {
        return Err(ProtoError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    let end = HEADER_LEN + len as usize;
    Ok(buf.get(HEADER_LEN..end).map(|p| (p, end)))
}

fn decode_exact<T: DeserializeOwned>(what: &'static str, payload: &[u8]) -> Result<T, ProtoError> {
    let (v, rest) = postcard::take_from_bytes::<T>(payload).map_err(|e| ProtoError::Malformed {
        what,
        detail: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(ProtoError::Trailing {
            what,
            extra: rest.len(),
        });
    }
    Ok(v)
}

/// Decode a [`Hello`] payload, checking the magic and the version before
/// the rest so that a client of another version gets a precise answer.
pub fn decode_hello(payload: &[u8]) -> Result<Hello, ProtoError> {
    let (prefix, _) =
        postcard::take_from_bytes::<([u8; 4], u16)>(payload).map_err(|_| ProtoError::BadMagic)?;
    if prefix.0 != MAGIC {
        return Err(ProtoError::BadMagic);
    }
    if prefix.1 != VERSION {
        return Err(ProtoError::UnsupportedVersion { got: prefix.1 });
    }
    let hello: Hello = decode_exact("hello", payload)?;
    if hello.max_frame < MIN_MAX_FRAME {
        return Err(ProtoError::Malformed {
            what: "hello",
            detail: format!(
                "maximum frame size {} is below the minimum of {MIN_MAX_FRAME}",
                hello.max_frame
            ),
        });
    }
    Ok(hello)
}

/// Decode a [`HandshakeReply`] payload.
pub fn decode_handshake_reply(payload: &[u8]) -> Result<HandshakeReply, ProtoError> {
    decode_exact("handshake reply", payload)
}

/// Decode a [`ClientFrame`] payload. A request number this version does
/// not know gives [`ProtoError::UnknownRequest`] with the frame's id, so
/// the request can be answered.
pub fn decode_request(payload: &[u8]) -> Result<ClientFrame, ProtoError> {
    // The id and the variant number are the first two varints of the
    // encoding; read them first to tell "unknown kind" from "garbage".
    if let Ok(((id, tag), _)) = postcard::take_from_bytes::<(u64, u32)>(payload) {
        if tag >= REQUEST_KINDS {
            return Err(ProtoError::UnknownRequest { id, tag });
        }
    }
    decode_exact("request", payload)
}

/// The bytes of a large answer, borrowed: sent without being copied into
/// a [`Response`] first (see [`encode_bulk_frame`]).
#[derive(Clone, Copy, Debug)]
pub enum BulkRef<'a> {
    /// Encoded as [`Response::Data`].
    Data(&'a bytes::Bytes),
    /// Encoded as [`Response::Messages`].
    Messages(&'a [bytes::Bytes]),
}

/// Variant numbers of [`Response`] (postcard encodes a variant as its
/// index); a test checks them against the derived encoding.
const RESPONSE_DATA: u32 = 4;
const RESPONSE_MESSAGES: u32 = 8;

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Encode a [`ServerFrame`] whose response is `body` as pieces to be
/// written in order: small framing pieces and the body's own bytes, which
/// are not copied (each message's [`bytes::Bytes`] is cloned, a reference
/// count). The bytes are exactly those of [`encode_frame`] on the
/// equivalent `ServerFrame`, so a client cannot tell the difference; the
/// daemon uses this so that a large answer is never held twice (once as
/// data, once encoded) while a slow client reads it.
pub fn encode_bulk_frame(
    id: u64,
    body: BulkRef<'_>,
    max: u32,
) -> Result<Vec<bytes::Bytes>, ProtoError> {
    let mut head = Vec::with_capacity(32);
    head.extend_from_slice(&[0; HEADER_LEN]);
    push_varint(&mut head, id);
    let mut pieces = Vec::new();
    let len = match body {
        BulkRef::Data(d) => {
            push_varint(&mut head, u64::from(RESPONSE_DATA));
            push_varint(&mut head, d.len() as u64);
            let len = head.len() - HEADER_LEN + d.len();
            if len <= max as usize {
                pieces.push(d.clone());
            }
            len
        }
        BulkRef::Messages(m) => {
            push_varint(&mut head, u64::from(RESPONSE_MESSAGES));
            push_varint(&mut head, m.len() as u64);
            let len = head.len() - HEADER_LEN
                + m.iter()
                    .map(|b| varint_len(b.len() as u64) + b.len())
                    .sum::<usize>();
            if len <= max as usize {
                for b in m {
                    let mut prefix = Vec::with_capacity(10);
                    push_varint(&mut prefix, b.len() as u64);
                    pieces.push(bytes::Bytes::from(prefix));
                    pieces.push(b.clone());
                }
            }
            len
        }
    };
    if len > max as usize {
        return Err(ProtoError::EncodeTooLarge {
            what: "response",
            len,
            max,
        });
    }
    head[..HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    pieces.insert(0, bytes::Bytes::from(head));
    Ok(pieces)
}

/// Decode a [`ServerFrame`] payload.
pub fn decode_response(payload: &[u8]) -> Result<ServerFrame, ProtoError> {
    decode_exact("response", payload)
}

/// Decode a stream of bytes as a client would send them (a hello, then
/// request frames) until the first error or the end; returns how many
/// frames decoded. This is what the daemon does with a connection's bytes,
/// in one function for the fuzz target.
pub fn decode_client_stream(mut bytes: &[u8], max: u32) -> Result<usize, ProtoError> {
    let mut n = 0;
    let mut first = true;
    while let Some((payload, used)) = split_frame(bytes, max)? {
        if first {
            decode_hello(payload)?;
            first = false;
        } else {
            decode_request(payload)?;
        }
        n += 1;
        bytes = &bytes[used..];
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_frames_are_byte_for_byte_the_derived_encoding() {
        let big = vec![7u8; 300];
        let big_bytes = bytes::Bytes::from(big.clone());
        let msgs: Vec<bytes::Bytes> = vec![
            bytes::Bytes::from_static(b"hello"),
            bytes::Bytes::new(),
            bytes::Bytes::from(big.clone()),
        ];
        for id in [1u64, 127, 128, 1 << 40] {
            let derived = frame(&ServerFrame {
                id,
                response: Response::Data(ByteBuf::from(big.clone())),
            });
            let bulk = encode_bulk_frame(id, BulkRef::Data(&big_bytes), DEFAULT_MAX_FRAME).unwrap();
            assert_eq!(bulk.concat(), derived);
            let derived = frame(&ServerFrame {
                id,
                response: Response::Messages(
                    msgs.iter().map(|b| ByteBuf::from(b.to_vec())).collect(),
                ),
            });
            let bulk = encode_bulk_frame(id, BulkRef::Messages(&msgs), DEFAULT_MAX_FRAME).unwrap();
            assert_eq!(bulk.concat(), derived);
        }
        assert!(matches!(
            encode_bulk_frame(1, BulkRef::Data(&big_bytes), 100),
            Err(ProtoError::EncodeTooLarge { .. })
        ));
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut o = Vec::new();
            push_varint(&mut o, v);
            assert_eq!(o.len(), varint_len(v), "{v}");
        }
    }

    fn frame<T: Serialize>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame("test", v, DEFAULT_MAX_FRAME, &mut out).unwrap();
        out
    }

    #[test]
    fn requests_round_trip_and_names_match_tags() {
        let reqs = vec![
            Request::Ping,
            Request::Put {
                kind: Kind::ToolResult,
                visibility: Visibility::Private,
                data: ByteBuf::from(vec![1, 2, 3]),
            },
            Request::Get { id: [7; 32] },
            Request::Share { id: [1; 32], to: 9 },
            Request::Release { id: [2; 32] },
            Request::MarkHot { id: [3; 32] },
            Request::UnitInfo { id: [4; 32] },
            Request::CreateConversation,
            Request::Append {
                conversation: 3,
                message: ByteBuf::from(b"hi".to_vec()),
            },
            Request::ReadMessages {
                conversation: 1,
                start: 0,
                end: 2,
            },
            Request::ReadLast {
                conversation: 1,
                n: 5,
            },
            Request::ReadAll { conversation: 1 },
            Request::ConversationLen { conversation: 1 },
            Request::SetState {
                state: AgentState::WaitingForHuman,
            },
            Request::SetImportance { importance: 90 },
            Request::Pause,
            Request::Resume,
            Request::AgentInfo,
            Request::Stats,
            Request::GetInline { id: [5; 32] },
        ];
        assert_eq!(reqs.len(), REQUEST_KINDS as usize);
        for (tag, r) in reqs.into_iter().enumerate() {
            assert_eq!(r.name(), Request::NAMES[tag]);
            assert_eq!(r.tag(), tag);
            let f = ClientFrame {
                id: 1000 + tag as u64,
                request: r,
            };
            let bytes = frame(&f);
            let (payload, used) = split_frame(&bytes, DEFAULT_MAX_FRAME).unwrap().unwrap();
            assert_eq!(used, bytes.len());
            // The variant number is the second varint, as decode_request assumes.
            let ((_, t), _) = postcard::take_from_bytes::<(u64, u32)>(payload).unwrap();
            assert_eq!(t as usize, tag);
            assert_eq!(decode_request(payload).unwrap(), f);
        }
    }

    #[test]
    fn unknown_request_kind_keeps_the_id() {
        let payload = postcard::to_stdvec(&(77u64, 999u32)).unwrap();
        assert_eq!(
            decode_request(&payload),
            Err(ProtoError::UnknownRequest { id: 77, tag: 999 })
        );
    }

    #[test]
    fn hello_checks_magic_and_version_first() {
        let mut h = Hello::new("a");
        let bytes = frame(&h);
        assert_eq!(decode_hello(&bytes[HEADER_LEN..]).unwrap(), h);
        h.version = 9;
        let bytes = frame(&h);
        assert_eq!(
            decode_hello(&bytes[HEADER_LEN..]),
            Err(ProtoError::UnsupportedVersion { got: 9 })
        );
        h.magic = *b"HTTP";
        let bytes = frame(&h);
        assert_eq!(
            decode_hello(&bytes[HEADER_LEN..]),
            Err(ProtoError::BadMagic)
        );
        assert_eq!(decode_hello(b"GET / HTTP/1.1"), Err(ProtoError::BadMagic));
    }

    #[test]
    fn truncated_oversized_and_trailing_frames() {
        let bytes = frame(&ClientFrame {
            id: 1,
            request: Request::Ping,
        });
        for cut in 0..bytes.len() {
            assert_eq!(split_frame(&bytes[..cut], 64).unwrap(), None);
        }
        let big = (5000u32).to_le_bytes();
        assert_eq!(
            split_frame(&big, 4096),
            Err(ProtoError::TooLarge {
                len: 5000,
                max: 4096
            })
        );
        let mut payload = bytes[HEADER_LEN..].to_vec();
        payload.push(0);
        assert!(matches!(
            decode_request(&payload),
            Err(ProtoError::Trailing { extra: 1, .. })
        ));
        let mut out = Vec::new();
        let e = encode_frame(
            "put",
            &Request::Put {
                kind: Kind::Blob,
                visibility: Visibility::Public,
                data: ByteBuf::from(vec![0; 5000]),
            },
            4096,
            &mut out,
        );
        assert!(matches!(e, Err(ProtoError::EncodeTooLarge { .. })));
        assert!(out.is_empty());
    }

    /// The fuzz target's checks on deterministic mutations of valid
    /// streams, so every test run exercises the decoders on bad bytes
    /// (`fuzz/` explores further with coverage guidance).
    #[test]
    fn mutated_streams_never_panic() {
        let mut valid = frame(&Hello::new("mutant"));
        valid.extend(frame(&ClientFrame {
            id: 9,
            request: Request::Put {
                kind: Kind::SystemPrompt,
                visibility: Visibility::Public,
                data: ByteBuf::from(b"You are careful.".to_vec()),
            },
        }));
        valid.extend(frame(&ClientFrame {
            id: 10,
            request: Request::ReadMessages {
                conversation: 1,
                start: 0,
                end: u64::MAX,
            },
        }));
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut m = valid.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % m.len();
                match next() % 3 {
                    0 => m[i] = next() as u8,
                    1 => m.truncate(i),
                    _ => m.insert(i, next() as u8),
                }
                if m.is_empty() {
                    break;
                }
            }
            let _ = decode_client_stream(&m, MIN_MAX_FRAME);
            if m.len() > HEADER_LEN {
                let _ = decode_request(&m[HEADER_LEN..]);
                let _ = decode_response(&m[HEADER_LEN..]);
                let _ = decode_hello(&m[HEADER_LEN..]);
                let _ = decode_handshake_reply(&m[HEADER_LEN..]);
            }
        }
    }

    #[test]
    fn client_stream_decodes_hello_then_requests() {
        let mut bytes = frame(&Hello::new("x"));
        for id in 1..4 {
            bytes.extend(frame(&ClientFrame {
                id,
                request: Request::Stats,
            }));
        }
        assert_eq!(decode_client_stream(&bytes, 4096), Ok(4));
        assert_eq!(decode_client_stream(&bytes[..bytes.len() - 1], 4096), Ok(3));
        assert!(decode_client_stream(&[3, 0, 0, 0, 0xff, 0xff, 0xff], 4096).is_err());
    }
}
