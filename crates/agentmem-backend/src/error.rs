//! Errors with a stable kind that every binding maps to its language.

/// Result with the backend's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The class of a failure. The numbers are part of the C ABI
/// (`agentmem_result`) and never change; new kinds get new numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A value of the wrong shape: unknown kind or state name, bad id text,
    /// empty data, text that is not UTF-8.
    InvalidArgument = 1,
    /// Data larger than the store's maximum unit size.
    TooLarge = 2,
    /// The agent is not registered (or was released).
    UnknownAgent = 3,
    /// No such unit, or all its references were released.
    UnknownUnit = 4,
    /// The agent holds no reference to the unit.
    NotOwner = 5,
    /// The agent may not read the unit.
    AccessDenied = 6,
    /// No such conversation.
    UnknownConversation = 7,
    /// A message index outside the conversation.
    OutOfRange = 8,
    /// Stored bytes failed their checksum.
    Corrupt = 9,
    /// The context was closed.
    Closed = 10,
    /// `agentmemd` is not running at the given socket.
    NotRunning = 11,
    /// An I/O error talking to the daemon or the disk.
    Io = 12,
    /// The daemon answered something this library does not understand.
    Protocol = 13,
    /// Anything else (a bug: please report it).
    Internal = 14,
    /// A filesystem the store writes to is full (or the user's quota on
    /// it): writes are refused until space returns; reads and releases
    /// work.
    NoSpace = 15,
    /// A limit of agentmemd was reached (connections, agents or stored
    /// bytes of the tenant); the message names it and its value.
    LimitReached = 16,
}

impl ErrorKind {
    /// Every kind, in number order.
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::InvalidArgument,
        ErrorKind::TooLarge,
        ErrorKind::UnknownAgent,
        ErrorKind::UnknownUnit,
        ErrorKind::NotOwner,
        ErrorKind::AccessDenied,
        ErrorKind::UnknownConversation,
        ErrorKind::OutOfRange,
        ErrorKind::Corrupt,
        ErrorKind::Closed,
        ErrorKind::NotRunning,
        ErrorKind::Io,
        ErrorKind::Protocol,
        ErrorKind::Internal,
        ErrorKind::NoSpace,
        ErrorKind::LimitReached,
    ];

    /// The stable code string bindings attach to errors (JS `err.code`),
    /// e.g. `"AGENTMEM_TOO_LARGE"`.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "AGENTMEM_INVALID_ARGUMENT",
            ErrorKind::TooLarge => "AGENTMEM_TOO_LARGE",
            ErrorKind::UnknownAgent => "AGENTMEM_UNKNOWN_AGENT",
            ErrorKind::UnknownUnit => "AGENTMEM_UNKNOWN_UNIT",
            ErrorKind::NotOwner => "AGENTMEM_NOT_OWNER",
            ErrorKind::AccessDenied => "AGENTMEM_ACCESS_DENIED",
            ErrorKind::UnknownConversation => "AGENTMEM_UNKNOWN_CONVERSATION",
            ErrorKind::OutOfRange => "AGENTMEM_OUT_OF_RANGE",
            ErrorKind::Corrupt => "AGENTMEM_CORRUPT",
            ErrorKind::Closed => "AGENTMEM_CLOSED",
            ErrorKind::NotRunning => "AGENTMEM_NOT_RUNNING",
            ErrorKind::Io => "AGENTMEM_IO",
            ErrorKind::Protocol => "AGENTMEM_PROTOCOL",
            ErrorKind::Internal => "AGENTMEM_INTERNAL",
            ErrorKind::NoSpace => "AGENTMEM_NO_SPACE",
            ErrorKind::LimitReached => "AGENTMEM_LIMIT_REACHED",
        }
    }
}

/// Why a binding call failed. The message says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store refused or failed. The message includes its causes (a
    /// cold-tier failure says which file and why), since the bindings show
    /// only this one string.
    #[error("{}", agentmem_core::error_report(.0))]
    Store(#[from] agentmem_core::Error),
    /// A call on a closed context.
    #[error("this agentmem context is closed: open a new one to keep working")]
    Closed,
    /// A value of the wrong shape.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The daemon's socket could not be reached.
    #[error(
        "agentmemd is not running at {path}: start it (`agentmemd --socket {path}`) \
         or open an embedded store instead"
    )]
    NotRunning {
        /// The socket path tried.
        path: String,
        /// What connecting said.
        #[source]
        source: std::io::Error,
    },
    /// Talking to the daemon failed midway.
    #[error("talking to agentmemd: {0}")]
    Io(#[source] std::io::Error),
    /// The daemon refused a request or answered nonsense.
    #[error("agentmemd: {message}")]
    Remote {
        /// Its class.
        kind: ErrorKind,
        /// What the daemon said.
        message: String,
    },
}

impl Error {
    /// The class of this failure.
    pub fn kind(&self) -> ErrorKind {
        use agentmem_core::Error as E;
        match self {
            Error::Store(e) => match e {
                E::EmptyUnit { .. } | E::Config(_) => ErrorKind::InvalidArgument,
                E::UnitTooLarge { .. } => ErrorKind::TooLarge,
                E::UnknownAgent(_) => ErrorKind::UnknownAgent,
                E::UnknownUnit { .. } => ErrorKind::UnknownUnit,
                E::NotOwner { .. } => ErrorKind::NotOwner,
                E::AccessDenied { .. } => ErrorKind::AccessDenied,
                E::UnknownConversation(_) => ErrorKind::UnknownConversation,
                E::OutOfRange { .. } => ErrorKind::OutOfRange,
                E::Corrupt { .. } | E::CorruptDictionary { .. } => ErrorKind::Corrupt,
                e if e.is_no_space() => ErrorKind::NoSpace,
                E::Cold(agentmem_core::tier::ColdError::Corrupt { .. }) => ErrorKind::Corrupt,
                E::Cold(_) => ErrorKind::Io,
                E::Redo(
                    agentmem_core::RedoError::Damaged { .. }
                    | agentmem_core::RedoError::Sequence { .. },
                ) => ErrorKind::Corrupt,
                E::Redo(_) => ErrorKind::Io,
                _ => ErrorKind::Internal,
            },
            Error::Closed => ErrorKind::Closed,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::NotRunning { .. } => ErrorKind::NotRunning,
            Error::Io(_) => ErrorKind::Io,
            Error::Remote { kind, .. } => *kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_numbered_in_order_and_codes_are_distinct() {
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as u32, i as u32 + 1);
        }
        let mut codes: Vec<_> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
    }
}

#[cfg(test)]
mod no_space_tests {
    use super::*;

    #[test]
    fn a_full_disk_is_its_own_kind_found_by_type() {
        let full = Error::Store(agentmem_core::Error::cold(std::io::Error::other(
            std::io::Error::from_raw_os_error(28),
        )));
        assert_eq!(full.kind(), ErrorKind::NoSpace);
        let text = Error::Store(agentmem_core::Error::cold(std::io::Error::other(
            "No space left on device",
        )));
        assert_eq!(text.kind(), ErrorKind::Io);
    }
}
