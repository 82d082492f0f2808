//! # agentmem-backend
//!
//! The one interface every language binding (C, Node.js, Python) talks to.
//! A [`Backend`] is either the embedded store, in this process
//! ([`EmbeddedBackend`]), or `agentmemd` over its Unix socket
//! ([`DaemonBackend`], through `agentmem-client`). Bindings never
//! call the store or the client directly: they hold a [`Memory`], which adds
//! what every binding needs on top of a backend — closing (after which every
//! call fails with [`ErrorKind::Closed`] instead of touching freed state) and
//! errors with a stable numeric [`ErrorKind`] that each language maps to its
//! own error type.
//!
//! ## Concurrency
//!
//! A [`Memory`] is `Send + Sync` and may be shared between threads (Node's
//! worker threads, Python threads with the GIL released). Each call clones
//! the backend's `Arc` under a short read lock, so `close` waits for no call
//! and calls running while it closes finish normally.

mod daemon;
mod embedded;
mod error;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

pub use agentmem_core::{
    AgentId, AgentState, ContentId, ConversationId, Importance, Kind, MemStats, Stats, TenantId,
    Tier, Visibility, DEFAULT_MAX_UNIT_SIZE,
};
pub use bytes::Bytes;
pub use daemon::{DaemonBackend, DaemonOptions};
pub use embedded::{EmbeddedBackend, EmbeddedOptions};
pub use error::{Error, ErrorKind, Result};
use parking_lot::RwLock;

/// What a binding can ask of a store, wherever the store lives.
///
/// The contract every implementation keeps:
/// - ids ([`AgentId`], [`ContentId`], [`ConversationId`]) are those of the
///   store behind it and stay valid until released or the backend is dropped;
/// - reads on behalf of an agent succeed only for units it holds, units
///   shared with it, and public units ([`ErrorKind::AccessDenied`] otherwise);
/// - a failure is returned as an [`Error`] whose [`Error::kind`] says what
///   class of failure it is; no call panics on bad input.
pub trait Backend: Send + Sync + fmt::Debug {
    /// `"embedded"` or `"daemon"`.
    fn name(&self) -> &'static str;
    /// Register an agent of `tenant`.
    fn register_agent(&self, name: &str, tenant: &str, importance: u8) -> Result<AgentId>;
    /// Drop every reference and conversation of an agent.
    fn release_agent(&self, agent: AgentId) -> Result<()>;
    /// Change an agent's state (parking it demotes its units).
    fn set_state(&self, agent: AgentId, state: AgentState) -> Result<()>;
    /// Store bytes for an agent; identical content is stored once.
    fn put(&self, agent: AgentId, kind: Kind, data: &[u8], vis: Visibility) -> Result<ContentId>;
    /// Read a unit on behalf of an agent.
    fn get(&self, agent: AgentId, id: &ContentId) -> Result<Bytes>;
    /// Give `to` a reference to a unit `from` holds.
    fn share(&self, from: AgentId, id: &ContentId, to: AgentId) -> Result<()>;
    /// Drop one of the agent's references to a unit.
    fn release(&self, agent: AgentId, id: &ContentId) -> Result<()>;
    /// Bring a unit to the hot tier now.
    fn mark_hot(&self, agent: AgentId, id: &ContentId) -> Result<()>;
    /// Start an empty conversation owned by the agent.
    fn create_conversation(&self, agent: AgentId) -> Result<ConversationId>;
    /// Append a message; returns its index.
    fn append(&self, conversation: ConversationId, message: &[u8]) -> Result<u64>;
    /// Number of messages in a conversation.
    fn conversation_len(&self, conversation: ConversationId) -> Result<u64>;
    /// Messages `range` of a conversation (clamped to its end).
    fn read_messages(&self, conversation: ConversationId, range: Range<u64>) -> Result<Vec<Bytes>>;
    /// Delete a conversation.
    fn delete_conversation(&self, conversation: ConversationId) -> Result<()>;
    /// A new conversation owned by `agent` holding the first `at` messages
    /// of `parent` ([`ErrorKind::OutOfRange`] past its end). The embedded
    /// store shares the parent's sealed chunks; this default, used where
    /// the protocol has no fork, copies the messages.
    fn fork_conversation(
        &self,
        agent: AgentId,
        parent: ConversationId,
        at: u64,
    ) -> Result<ConversationId> {
        let len = self.conversation_len(parent)?;
        if at > len {
            return Err(Error::Store(agentmem_core::Error::OutOfRange {
                conversation: parent,
                len,
                what: format!("fork at {at}"),
            }));
        }
        let messages = self.read_messages(parent, 0..at)?;
        let id = self.create_conversation(agent)?;
        for m in &messages {
            self.append(id, m)?;
        }
        Ok(id)
    }
    /// The seed's summary figures.
    fn mem_stats(&self) -> Result<MemStats>;
    /// Make what was written durable before the backend goes away (an
    /// embedded store in a directory checkpoints); nothing for the others.
    fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// A binding's handle on a store: a [`Backend`] that can be closed.
///
/// Cheap to clone; clones share the backend and its closed flag.
#[derive(Clone, Debug)]
pub struct Memory {
    inner: Arc<RwLock<Option<Arc<dyn Backend>>>>,
}

impl Memory {
    /// Wrap a backend.
    pub fn new(backend: Arc<dyn Backend>) -> Memory {
        Memory {
            inner: Arc::new(RwLock::new(Some(backend))),
        }
    }

    /// Open an embedded store in this process.
    pub fn embedded(options: &EmbeddedOptions) -> Result<Memory> {
        Ok(Memory::new(Arc::new(EmbeddedBackend::open(options)?)))
    }

    /// Connect to agentmemd at `socket`; [`ErrorKind::NotRunning`] if no
    /// daemon listens there.
    pub fn connect(socket: impl Into<std::path::PathBuf>) -> Result<Memory> {
        let options = DaemonOptions {
            socket: socket.into(),
            ..DaemonOptions::default()
        };
        Ok(Memory::new(Arc::new(DaemonBackend::connect(options)?)))
    }

    /// The backend, or [`ErrorKind::Closed`] once [`Memory::close`] ran.
    pub fn backend(&self) -> Result<Arc<dyn Backend>> {
        self.inner.read().clone().ok_or(Error::Closed)
    }

    /// Close: every later call through any clone fails with
    /// [`ErrorKind::Closed`]. An embedded store in a directory is
    /// checkpointed first (an error says the last writes may be lost); the
    /// store itself is freed, and its directory unlocked, when the last call
    /// still running returns. Closing twice is harmless.
    pub fn close(&self) -> Result<()> {
        let backend = self.inner.write().take();
        match backend {
            Some(b) => b.close(),
            None => Ok(()),
        }
    }

    /// Whether [`Memory::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.inner.read().is_none()
    }
}

/// Hand memory the process has freed back to the operating system
/// (glibc's `malloc_trim`); returns whether any was released. The store
/// frees large temporary buffers (dictionary training, compression of
/// big units) that glibc otherwise keeps for reuse, so resident memory
/// overstates what is live. A no-op returning `false` on other C libraries.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks glibc's own heap under its locks;
        // it takes no pointers from us.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Parse a kind by its snake_case name (`"system_prompt"`, `"tool_defs"`,
/// `"conversation"`, `"tool_result"`, `"blob"`); dashes are accepted too.
pub fn parse_kind(s: &str) -> Result<Kind> {
    Kind::ALL
        .into_iter()
        .find(|k| k.name() == s || k.name().replace('_', "-") == s)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "unknown unit kind {s:?}; expected one of system_prompt, tool_defs, \
                 conversation, tool_result, blob"
            ))
        })
}

/// Parse an agent state by its snake_case name (`"active"`,
/// `"waiting_for_model"`, `"waiting_for_human"`, `"running_tool"`,
/// `"paused"`, `"idle"`).
pub fn parse_state(s: &str) -> Result<AgentState> {
    s.parse().map_err(Error::InvalidArgument)
}

/// Parse a content id from the 64 hex digits bindings hand out.
pub fn parse_content_id(s: &str) -> Result<ContentId> {
    ContentId::from_hex(s).map_err(|_| {
        Error::InvalidArgument(format!(
            "{s:?} is not a unit id: expected the 64 hex digits that put returned"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_memory_refuses_calls() {
        let m = Memory::embedded(&EmbeddedOptions::default()).unwrap();
        let b = m.backend().unwrap();
        let a = b.register_agent("a", "t", 50).unwrap();
        let clone = m.clone();
        m.close().unwrap();
        assert!(clone.is_closed());
        assert_eq!(clone.backend().unwrap_err().kind(), ErrorKind::Closed);
        // A call already holding the backend still completes.
        b.put(a, Kind::Blob, b"x", Visibility::Private).unwrap();
    }

    #[test]
    fn parsers_say_what_is_expected() {
        assert_eq!(parse_kind("tool-defs").unwrap(), Kind::ToolDefs);
        let e = parse_kind("nope").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("system_prompt"));
        assert_eq!(parse_state("paused").unwrap(), AgentState::Paused);
        assert_eq!(
            parse_state("x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            parse_content_id("zz").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}
