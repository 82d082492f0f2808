//! The store's error type.

use crate::types::{AgentId, ConversationId, Kind};

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a store operation can fail with. Each says what was being done
/// and with what input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A unit with no bytes was offered.
    #[error("refusing to store an empty {kind} unit: a unit must hold at least one byte")]
    EmptyUnit {
        /// Kind of the refused unit.
        kind: Kind,
    },
    /// A unit larger than the configured maximum was offered.
    #[error("refusing to store a {kind} unit of {size} bytes: the maximum unit size is {max} bytes (StoreBuilder::max_unit_size)")]
    UnitTooLarge {
        /// Kind of the refused unit.
        kind: Kind,
        /// Its size.
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// The agent is not registered with this store.
    #[error("unknown agent {0}: register it with Store::register_agent first")]
    UnknownAgent(AgentId),
    /// No unit has this id, or it was released.
    #[error("unknown unit {id}: it was never stored here or all its references were released")]
    UnknownUnit {
        /// The id, in hex.
        id: String,
    },
    /// The agent holds no reference to this unit, so it cannot release it.
    #[error("{agent} holds no reference to unit {id}")]
    NotOwner {
        /// The agent.
        agent: AgentId,
        /// The unit, in hex.
        id: String,
    },
    /// The agent may not read this unit: it holds no reference to it and
    /// the unit is not public.
    #[error("{agent} may not read {id}: it is private to another agent and was not shared with this one")]
    AccessDenied {
        /// The agent that asked.
        agent: AgentId,
        /// What it asked for.
        id: String,
    },
    /// No conversation has this id.
    #[error("unknown {0}: it was never created or was deleted")]
    UnknownConversation(ConversationId),
    /// A message index or range is outside the conversation.
    #[error("{conversation} has {len} messages; {what} is out of range")]
    OutOfRange {
        /// The conversation.
        conversation: ConversationId,
        /// How many messages it has.
        len: u64,
        /// What was asked for.
        what: String,
    },
    /// Compressed data or a dictionary failed to decode: the bytes are
    /// damaged. Nothing is returned rather than wrong bytes.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// What was being decoded.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// A dictionary offered to the store failed to load.
    #[error("corrupt {kind} dictionary (version {version}): {detail}")]
    CorruptDictionary {
        /// Kind it was for.
        kind: Kind,
        /// Its version.
        version: u32,
        /// What zstd said.
        detail: String,
    },
    /// The cold tier failed (its own error kept, as the source: disk
    /// full, read-only, corrupt, poisoned after a failed fsync, ...).
    #[error("the cold tier failed")]
    Cold(#[from] agentmem_cold::ColdError),
    /// The redo log is damaged, does not follow the store's image, or
    /// failed to write.
    #[error(transparent)]
    Redo(#[from] crate::redo::RedoError),
    /// An invalid setting was given to the builder.
    #[error("invalid store setting: {0}")]
    Config(String),
}
impl Error {
    pub(crate) fn unknown_unit(id: &crate::ContentId) -> Self {
        Error::UnknownUnit { id: id.to_hex() }
    }

    /// A failure of a [`ColdTier`](crate::tier::ColdTier) (whose methods
    /// return `std::io::Error`): the cold tier's own [`ColdError`] if that
    /// is what it carries (as [`DiskTier`](crate::tier::DiskTier)'s do),
    /// else wrapped as [`ColdError::Io`].
    ///
    /// [`ColdError`]: agentmem_cold::ColdError
    /// [`ColdError::Io`]: agentmem_cold::ColdError::Io
    pub fn cold(e: std::io::Error) -> Self {
        use agentmem_cold::ColdError;
        if e.get_ref().is_some_and(|i| i.is::<ColdError>()) {
            let inner = e.into_inner().expect("checked");
            return Error::Cold(*inner.downcast::<ColdError>().expect("checked"));
        }
        Error::Cold(ColdError::Io {
            what: "a cold tier operation".into(),
            dir: String::new(),
            source: e,
        })
    }
    /// Whether this failure comes from a full filesystem (ENOSPC, or
    /// EDQUOT: the user's quota on it): [`ColdError::DiskFull`], or an I/O
    /// error of that kind anywhere along the chain of causes. Found by type,
    /// never by message text.
    ///
    /// [`ColdError::DiskFull`]: agentmem_cold::ColdError::DiskFull
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::Cold(agentmem_cold::ColdError::DiskFull { .. })) || is_no_space(self)
    }
}

/// Whether `e` or one of its causes is an I/O error of a full filesystem
/// (ENOSPC, EDQUOT or [`std::io::ErrorKind::StorageFull`]).
pub fn is_no_space(e: &(dyn std::error::Error + 'static)) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if x.downcast_ref::<agentmem_cold::ColdError>()
            .is_some_and(|c| matches!(c, agentmem_cold::ColdError::DiskFull { .. }))
        {
            return true;
        }
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(ENOSPC | EDQUOT))
                || io.kind() == std::io::ErrorKind::StorageFull
                || io.get_ref().is_some_and(|inner| is_no_space(inner))
            {
                return true;
            }
        }
        cur = x.source();
    }
    false
}

/// `e: cause: cause …` for a person, skipping causes whose text is already
/// shown (many errors repeat their source's message).
pub fn report(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cause = c.source();
    }
    out
}
