//! Where the cold tier's bytes live: a directory of files behind a trait, so
//! tests can swap the real file system for an in-memory one that injects
//! faults (as redb's `StorageBackend` does).
//!
//! The contract an implementation must keep:
//! - `write_at` may write fewer bytes than asked (a short write) and say so;
//!   it never reports bytes as written that were not.
//! - `sync` returns only once every byte written to the file before the call
//!   is durable; an error means nothing is known about what is durable.
//! - `rename` replaces the target atomically; `sync_dir` makes creations,
//!   renames and removals durable.
//! - `lock` takes the directory for this handle and fails with
//!   [`std::io::ErrorKind::WouldBlock`] when another handle holds it.

mod file;
mod mem;

use std::fmt;
use std::io;
use std::sync::Arc;

pub use file::FileStorage;
pub use mem::{Faults, MemStorage};

/// One file of a [`Storage`].
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Read up to `buf.len()` bytes at `offset`; fewer only at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Write some of `buf` at `offset`, returning how much.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// Current length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Cut or extend to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Make every byte written so far durable.
    fn sync(&self) -> io::Result<()>;
}

/// A directory of files.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Where it is, for messages.
    fn describe(&self) -> String;
    /// Names of the files in it.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Open a file, creating it (empty) if `create`.
    fn open(&self, name: &str, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Remove a file.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Rename `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Make creations, renames and removals durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// Take the directory: exclusive for a writer, shared for readers. The
    /// lock is held until the returned guard is dropped.
    fn lock(&self, exclusive: bool) -> io::Result<Box<dyn fmt::Debug + Send + Sync>>;
}

/// Write all of `buf` at `offset`, continuing after short writes.
pub fn write_all_at(f: &dyn StorageFile, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match f.write_at(buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the storage accepted no bytes",
                ))
            }
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read exactly `buf.len()` bytes at `offset`.
pub fn read_exact_at(f: &dyn StorageFile, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match f.read_at(buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file ends before the record does",
                ))
            }
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
