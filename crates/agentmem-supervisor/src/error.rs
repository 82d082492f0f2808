//! The supervisor's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while supervising agents or changing system
/// settings. Each variant says what was being done and with what input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file under /proc, /sys or the state directory could not be read or written.
    #[error("{action} {path}")]
    Io {
        /// What was being done (`reading`, `writing 1 to`, ...).
        action: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error("{call} failed")]
    Sys {
        /// The call and its arguments, in words.
        call: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The caller lacks a privilege (most operations need root).
    #[error("{0}: run as root (or with CAP_SYS_ADMIN and CAP_SYS_NICE)")]
    NotPermitted(String),
    /// The kernel lacks something this operation needs.
    #[error("{what} is not available: {how}")]
    Missing {
        /// The missing feature.
        what: String,
        /// How to enable it.
        how: String,
    },
    /// No supervised agent has this name.
    #[error("no room to page out {agent}: it holds {} MiB in RAM and swap has {} MiB free; add swap (`agentmem setup --swap-size`) or resume or end other paused agents", need >> 20, free >> 20)]
    NoRoom {
        /// The agent.
        agent: String,
        /// Bytes it holds in RAM.
        need: u64,
        /// Swap free.
        free: u64,
    },

    #[error("no supervised agent is named {0:?} (see `agentmem ps`)")]
    UnknownAgent(String),
    /// An agent with this name already exists.
    #[error("an agent named {0:?} is already supervised")]
    DuplicateAgent(String),
    /// Bad input from the user.
    #[error("{0}")]
    Invalid(String),
    /// A file had unexpected contents.
    #[error("unexpected contents in {path}: {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// The supervisor daemon is not reachable.
    #[error(
        "the supervisor is not running (no socket at {0}); start it with `agentmem supervise`"
    )]
    NotRunning(PathBuf),
    /// The daemon answered with an error.
    #[error("supervisor: {0}")]
    Remote(String),
}

/// Short for `Result<T, Error>`.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`, turned into [`Error::NotPermitted`] when it is one.
    pub(crate) fn io(
        action: impl Into<String>,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> Self {
        let action = action.into();
        let path = path.into();
        if source.kind() == io::ErrorKind::PermissionDenied {
            return Error::NotPermitted(format!("{action} {}", path.display()));
        }
        Error::Io {
            action,
            path,
            source,
        }
    }

    /// A failed system call, turned into [`Error::NotPermitted`] on EPERM/EACCES.
    pub(crate) fn sys(call: impl Into<String>, source: io::Error) -> Self {
        let call = call.into();
        if source.kind() == io::ErrorKind::PermissionDenied {
            return Error::NotPermitted(call);
        }
        Error::Sys { call, source }
    }
}
