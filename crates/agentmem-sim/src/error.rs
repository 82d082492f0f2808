//! The crate's error type.

use std::path::PathBuf;

/// What went wrong in this crate. Every variant names the file, offset or
/// argument involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A trace or conversation file could not be opened, read or written.
    #[error("{what} {path}")]
    Io {
        /// What was being done ("reading trace", "creating trace", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A trace file holds something that is not a valid record.
    #[error("malformed trace {path} at {location}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where: "line 12", "record 3 (byte offset 72)", ...
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// The trace's format could not be told from its name.
    #[error("cannot tell the format of trace {path}; pass a format (oracle-general, agent, lirs, cache2k, csv)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// An argument (policy name, cache size, format name, ...) is invalid.
    #[error("invalid {argument} {value:?}: {reason}")]
    InvalidArgument {
        /// Which argument.
        argument: &'static str,
        /// The value given.
        value: String,
        /// Why it is rejected and what is accepted.
        reason: String,
    },
    /// Drawing a chart failed.
    #[error("drawing chart {path}: {reason}")]
    Chart {
        /// The output file.
        path: PathBuf,
        /// What the plotting library reported.
        reason: String,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn arg(
        argument: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidArgument {
            argument,
            value: value.into(),
            reason: reason.into(),
        }
    }
}
