//! The cold tier's error type.

use std::io;

/// Result with the cold tier's [`ColdError`].
pub type Result<T, E = ColdError> = std::result::Result<T, E>;

/// Everything the cold tier can fail with. Each says what was being done and
/// where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ColdError {
    /// Another process (or another handle in this one) has the directory open.
    #[error("{dir} is already opened by another agentmem process (its directory lock is held); stop that process or use another --dir")]
    Locked {
        /// The directory.
        dir: String,
    },
    /// The directory or a file in it cannot be written.
    #[error(
        "{dir} is read-only: open it read-only (e.g. `agentmem verify`) or give a writable --dir"
    )]
    ReadOnly {
        /// The directory.
        dir: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The file system is full.
    #[error("no space left on the device holding {dir} while {what}; free some space: the store stays readable and the write was not acknowledged")]
    DiskFull {
        /// The directory.
        dir: String,
        /// What was being done.
        what: String,
    },
    /// A file was written by an incompatible version of agentmem.
    #[error("{file} has format version {found}, this agentmem reads version {expected}: open it with the agentmem that wrote it, or export and re-import the data")]
    Incompatible {
        /// The file.
        file: String,
        /// Its version.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// A file is not an agentmem cold-tier file at all.
    #[error("{file} is not an agentmem cold-tier file (bad magic): is --dir pointing at the right directory?")]
    NotAStore {
        /// The file.
        file: String,
    },
    /// Stored bytes failed their checksum or do not parse: never returned as data.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// What was being read.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// An earlier fsync or write failed in a way that leaves the on-disk
    /// state unknown; writes stop until the store is reopened.
    #[error("the cold tier stopped accepting writes after an earlier failure ({cause}); reopen it to recover from what is on disk")]
    Poisoned {
        /// The first failure.
        cause: String,
    },
    /// A record larger than the format allows.
    #[error("refusing a cold record of {size} bytes: the maximum is {max} bytes")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The maximum.
        max: u64,
    },
    /// The store was opened read-only.
    #[error("the cold tier in {dir} was opened read-only: {what} is not allowed")]
    OpenedReadOnly {
        /// The directory.
        dir: String,
        /// What was attempted.
        what: String,
    },
    /// An invalid setting.
    #[error("invalid cold tier setting: {0}")]
    Config(String),
    /// Any other I/O failure.
    #[error("{what} in {dir}")]
    Io {
        /// What was being done.
        what: String,
        /// The directory.
        dir: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

impl ColdError {
    /// Classify an I/O error met while `what` in `dir`.
    pub(crate) fn io(dir: &str, what: impl Into<String>, e: io::Error) -> Self {
        let what = what.into();
        if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
            || e.kind() == io::ErrorKind::StorageFull
        {
            return ColdError::DiskFull {
                dir: dir.to_string(),
                what,
            };
        }
        if e.kind() == io::ErrorKind::PermissionDenied
            || e.kind() == io::ErrorKind::ReadOnlyFilesystem
        {
            return ColdError::ReadOnly {
                dir: dir.to_string(),
                source: e,
            };
        }
        ColdError::Io {
            what,
            dir: dir.to_string(),
            source: e,
        }
    }
}

impl From<ColdError> for io::Error {
    fn from(e: ColdError) -> Self {
        let kind = match &e {
            ColdError::DiskFull { .. } => io::ErrorKind::StorageFull,
            ColdError::ReadOnly { .. } | ColdError::OpenedReadOnly { .. } => {
                io::ErrorKind::PermissionDenied
            }
            ColdError::Locked { .. } => io::ErrorKind::WouldBlock,
            ColdError::Corrupt { .. } => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_errors_become_clear_kinds() {
        let e = ColdError::io("/d", "x", io::Error::from_raw_os_error(libc_errno::EROFS));
        assert!(matches!(e, ColdError::ReadOnly { .. }), "{e}");
        assert!(e.to_string().contains("read-only"), "{e}");
        let e = ColdError::io("/d", "x", io::Error::from_raw_os_error(libc_errno::EACCES));
        assert!(matches!(e, ColdError::ReadOnly { .. }), "{e}");
        let e = ColdError::io(
            "/d",
            "appending",
            io::Error::from_raw_os_error(libc_errno::ENOSPC),
        );
        assert!(matches!(e, ColdError::DiskFull { .. }), "{e}");
        let e = ColdError::io(
            "/d",
            "reading",
            io::Error::from_raw_os_error(libc_errno::EIO),
        );
        assert!(matches!(e, ColdError::Io { .. }), "{e}");
    }

    /// Errno values via rustix, so the test needs no libc.
    mod libc_errno {
        use rustix::io::Errno;
        pub const EROFS: i32 = Errno::ROFS.raw_os_error();
        pub const EACCES: i32 = Errno::ACCESS.raw_os_error();
        pub const ENOSPC: i32 = Errno::NOSPC.raw_os_error();
        pub const EIO: i32 = Errno::IO.raw_os_error();
    }
}
