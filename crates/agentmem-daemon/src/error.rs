//! The daemon library's error: what was being done, with its typed cause.
//! Binaries (`agentmemd`, `agentmem daemon`) print it with its causes.

/// Why starting or running the daemon failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid; the message names the key.
    #[error("{0}")]
    Config(String),
    /// A file, directory or socket operation failed.
    #[error("{what}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be built, opened or checkpointed.
    #[error("{what}")]
    Store {
        /// What was being done.
        what: String,
        /// The store's error.
        #[source]
        source: agentmem_core::Error,
    },
    /// Another daemon already listens on the socket.
    #[error("{0}")]
    AlreadyRunning(String),
}

/// Result with the daemon's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach what was being done to an I/O or store error.
pub(crate) trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what(),
            source,
        })
    }
}

impl<T> Context<T> for agentmem_core::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Store {
            what: what(),
            source,
        })
    }
}

pub use agentmem_core::error_report as report;
