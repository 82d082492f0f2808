//! The remote tier's errors: what went wrong, for which object, after how
//! much trying.

use std::time::Duration;

/// What the remote tier was doing when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// Uploading an object.
    Put,
    /// Downloading an object.
    Get,
    /// Asking whether an object exists.
    Head,
    /// Deleting an object.
    Delete,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Put => "put",
            Operation::Get => "get",
            Operation::Head => "head",
            Operation::Delete => "delete",
        })
    }
}

/// An error of the remote tier. Every variant names the operation and the
/// object key, so a log line says what was being done to what.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The object store could not be reached (connection refused, reset or
    /// timed out) within the retry budget.
    #[error("remote tier unreachable: {op} {key} failed after {elapsed:?} of retries: {source}")]
    Unreachable {
        /// What was being done.
        op: Operation,
        /// The object key.
        key: String,
        /// Time spent, retries included.
        elapsed: Duration,
        /// The transport error.
        #[source]
        source: object_store::Error,
    },
    /// The object store answered but could not serve (a 5xx status such as
    /// Garage's 503 when it cannot reach a quorum of its nodes), within the
    /// retry budget.
    #[error("remote tier unavailable: {op} {key} got HTTP {status} after {elapsed:?} of retries")]
    Unavailable {
        /// What was being done.
        op: Operation,
        /// The object key.
        key: String,
        /// The last HTTP status.
        status: u16,
        /// Time spent, retries included.
        elapsed: Duration,
    },
    /// The object store kept asking us to slow down (HTTP 429, or 503
    /// `SlowDown`) past the retry budget.
    #[error("remote tier throttled: {op} {key} still throttled after {elapsed:?} of retries")]
    Throttled {
        /// What was being done.
        op: Operation,
        /// The object key.
        key: String,
        /// Time spent, retries included.
        elapsed: Duration,
    },
    /// The object store refused our credentials (HTTP 401 or 403).
    #[error("remote tier refused the credentials for {op} {key} (check the access key, secret and bucket permissions): {source}")]
    CredentialsRefused {
        /// What was being done.
        op: Operation,
        /// The object key.
        key: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// No object under this key.
    #[error("remote tier: no object {key}")]
    NotFound {
        /// The object key.
        key: String,
    },
    /// An object in agentmem's format whose bytes do not match their
    /// checksum or declared length: damaged in storage or in transit.
    #[error("remote object {key} is corrupt: {detail}")]
    Corrupt {
        /// The object key.
        key: String,
        /// What does not match.
        detail: String,
    },
    /// An object under one of agentmem's keys that agentmem did not write:
    /// not in its format, another format version, or holding another
    /// content id than its key names.
    #[error(
        "remote object {key} was not written by agentmem (or by another format version): {detail}"
    )]
    Foreign {
        /// The object key.
        key: String,
        /// What gives it away.
        detail: String,
    },
    /// The configuration is unusable (missing bucket, bad endpoint URL...).
    #[error("remote tier configuration: {0}")]
    Config(String),
    /// Any other error of the object store client.
    #[error("remote tier: {op} {key}: {source}")]
    Other {
        /// What was being done.
        op: Operation,
        /// The object key.
        key: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
}

impl RemoteError {
    /// Whether retrying later may succeed (the store was unreachable,
    /// unavailable or throttling), as opposed to errors about the data or
    /// the configuration.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Unreachable { .. }
                | RemoteError::Unavailable { .. }
                | RemoteError::Throttled { .. }
        )
    }
}

/// Result of the remote tier.
pub type Result<T, E = RemoteError> = std::result::Result<T, E>;
