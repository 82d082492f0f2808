//! The redo log: every mutating store operation since the last checkpoint,
//! so an acknowledged write survives a crash without waiting for one.
//!
//! Files `redo-<first seq, 16 hex digits>.wal` in the store directory hold
//! records `[len: u32 LE][crc32c of payload: u32 LE][payload]`, the payload
//! being the postcard encoding of `(seq, Op)`. Operations are numbered from
//! 0 in the order they changed the store (they are logged under the store's
//! lock, so log order is apply order). A checkpoint captures its image at
//! some `seq` under the same lock, then (outside it) starts a new file
//! after the last record written, `seq` or later; once the image is
//! durable the files wholly before `seq` are deleted. [`Store::open`] restores
//! the image, then replays every record from the image's `seq` on, through
//! the public API (so content ids and conversation ids come out the same).
//! The first bad record (short, wrong checksum, undecodable) ends the log:
//! it and everything after it is a torn tail and is cut. A log that does not
//! start at or before the image's `seq`, or skips a number, is refused.
//!
//! Written by hand rather than with a WAL crate: the format is 30 lines, and
//! the well-kept embedded engines (fjall, redb, sled) bring their own log,
//! not one we could put our operations in.
//!
//! [`Store::open`]: crate::Store::open

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::{AgentState, Importance, Kind, Visibility};

/// When an acknowledged write becomes durable (survives a crash of the
/// process or of the machine). Set with [`StoreBuilder::durability`].
///
/// [`StoreBuilder::durability`]: crate::StoreBuilder::durability
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// No redo log: a write is durable once a checkpoint completes after it
    /// (see [`StoreBuilder::checkpoint_every`]). Fastest; a crash loses the
    /// work since the last checkpoint.
    ///
    /// [`StoreBuilder::checkpoint_every`]: crate::StoreBuilder::checkpoint_every
    Checkpoint,
    /// Group commit: every write is in the redo log (handed to the
    /// operating system) when it is acknowledged, so it survives the process
    /// being killed at any instant; a background thread fdatasyncs the log
    /// this often, so a power cut or kernel crash loses at most this window. [`Store::sync`] makes
    /// everything acknowledged so far durable at once. The default, with
    /// 10 ms.
    ///
    /// [`Store::sync`]: crate::Store::sync
    Group(Duration),
    /// Every write is fdatasynced to the redo log before it is acknowledged
    /// (concurrent writers share fsyncs).
    Sync,
}

impl Default for Durability {
    fn default() -> Self {
        Durability::DEFAULT
    }
}

impl Durability {
    /// The default policy: group commit every 10 ms.
    pub const DEFAULT: Durability = Durability::Group(Duration::from_millis(10));
}

/// One logged operation; replayed through the public API.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Op<'a> {
    Register {
        name: &'a str,
        tenant: &'a str,
        importance: Importance,
    },
    SetState {
        agent: u32,
        state: AgentState,
    },
    SetImportance {
        agent: u32,
        importance: Importance,
    },
    ReleaseAgent {
        agent: u32,
    },
    Put {
        agent: u32,
        kind: Kind,
        vis: Visibility,
        #[serde(borrow, with = "serde_bytes")]
        data: &'a [u8],
    },
    Share {
        from: u32,
        id: [u8; 32],
        to: u32,
    },
    Release {
        agent: u32,
        id: [u8; 32],
    },
    CreateConversation {
        agent: u32,
    },
    Append {
        conversation: u32,
        #[serde(borrow, with = "serde_bytes")]
        data: &'a [u8],
    },
    Fork {
        agent: u32,
        parent: u32,
        at: u64,
    },
    DeleteConversation {
        conversation: u32,
    },
    LoadDictionary {
        kind: Kind,
        version: u32,
        #[serde(borrow, with = "serde_bytes")]
        raw: &'a [u8],
    },
}

const HEADER: usize = 8;

fn file_name(first: u64) -> String {
    format!("redo-{first:016x}.wal")
}

fn file_first(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("redo-")?.strip_suffix(".wal")?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
}

/// The log files of `dir`, by first sequence number.
fn files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(Error::Cold)? {
        let e = e.map_err(Error::Cold)?;
        if let Some(first) = e.file_name().to_str().and_then(file_first) {
            v.push((first, e.path()));
        }
    }
    v.sort();
    Ok(v)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Hand `each` the records of the log of `dir` from `from` on, in order
/// (decode each with [`decode`]), one file in memory at a time; returns the
/// number of the operation after the last. Cuts a torn tail off the last
/// file unless `cut` is false (checking a directory without changing it);
/// refuses a log that does not follow an image taken at `from`.
pub(crate) fn read(
    dir: &Path,
    from: u64,
    cut: bool,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let files = files(dir)?;
    if let Some((first, path)) = files.first() {
        if *first > from {
            return Err(corrupt(
                path,
                format!(
                    "starts at operation {first}, after the store image's {from}: operations in between are missing"
                ),
            ));
        }
    }
    let mut next: Option<u64> = None;
    let n = files.len();
    for (i, (first, path)) in files.iter().enumerate() {
        if let Some(nx) = next {
            if *first != nx {
                return Err(corrupt(
                    path,
                    format!("starts at operation {first}, but the previous file ended at {nx}"),
                ));
            }
        }
        let mut buf = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(Error::Cold)?;
        let mut at = 0usize;
        let mut seq = *first;
        while buf.len() - at >= HEADER {
            let len = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4")) as usize;
            let crc = u32::from_le_bytes(buf[at + 4..at + 8].try_into().expect("4"));
            let Some(payload) = buf.get(at + HEADER..at + HEADER + len) else {
                break;
            };
            if crc32c::crc32c(payload) != crc {
                break;
            }
            let Ok((s, _)) = postcard::take_from_bytes::<u64>(payload) else {
                break;
            };
            if s != seq {
                return Err(corrupt(
                    path,
                    format!("holds operation {s} where {seq} belongs"),
                ));
            }
            if seq >= from {
                each(payload)?;
            }
            seq += 1;
            at += HEADER + len;
        }
        if at < buf.len() {
            if i + 1 != n {
                return Err(corrupt(
                    path,
                    format!("is damaged at byte {at}, and a later log file follows it"),
                ));
            }
            if !cut {
                next = Some(seq);
                break;
            }
            // The torn tail of the last file: written, never acknowledged
            // as durable. Cut it so new records follow whole ones.
            OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| {
                    f.set_len(at as u64)?;
                    f.sync_data()
                })
                .map_err(Error::Cold)?;
            tracing::info!(file = %path.display(), at, "cut the redo log's torn tail");
        }
        next = Some(seq);
    }
    let end = next.unwrap_or(from);
    if end < from {
        return Err(Error::Corrupt {
            what: format!("redo log in {}", dir.display()),
            detail: format!("ends at operation {end}, before the store image's {from}"),
        });
    }
    Ok(end)
}

fn corrupt(path: &Path, detail: String) -> Error {
    Error::Corrupt {
        what: format!("redo log {}", path.display()),
        detail,
    }
}

/// Decode one payload returned by [`read`].
pub(crate) fn decode(payload: &[u8]) -> Result<(u64, Op<'_>)> {
    postcard::from_bytes(payload).map_err(|e| Error::Corrupt {
        what: "redo log record".into(),
        detail: e.to_string(),
    })
}

/// The open redo log of a store.
///
/// Records are encoded into `buf` under the store's lock (so log order is
/// apply order), written to the file by the thread that logged them once it
/// has let go of the store's lock ([`Log::write_out`]), and fdatasynced by
/// the group-commit thread or [`Log::sync_to`] without blocking writers.
pub(crate) struct Log {
    dir: PathBuf,
    enabled: bool,
    /// Lock order: the store's state, then `sync`, then `io`, then `buf`.
    sync: Mutex<u64>,
    io: Mutex<Io>,
    buf: Mutex<Vec<u8>>,
    /// Next sequence number (operations logged so far).
    next: AtomicU64,
    /// Operations in the file (survive the process being killed).
    written: AtomicU64,
    /// Operations fdatasynced (survive a power cut).
    durable: AtomicU64,
    failed: AtomicBool,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("next", &self.next)
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

struct Io {
    file: Arc<File>,
}

impl Log {
    /// Open the log of `dir` for appending after operation `end` (as
    /// [`read`] returned).
    pub(crate) fn open(dir: &Path, end: u64, enabled: bool) -> Result<Log> {
        let existing = files(dir)?;
        let file = match existing.last() {
            Some((_, path)) => OpenOptions::new().append(true).open(path),
            None => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(file_name(end)));
                f.and_then(|f| sync_dir(dir).map(|_| f))
            }
        }
        .map_err(Error::Cold)?;
        Ok(Log {
            dir: dir.to_path_buf(),
            enabled,
            sync: Mutex::new(0),
            io: Mutex::new(Io {
                file: Arc::new(file),
            }),
            buf: Mutex::new(Vec::with_capacity(1 << 16)),
            next: AtomicU64::new(end),
            written: AtomicU64::new(end),
            durable: AtomicU64::new(end),
            failed: AtomicBool::new(false),
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Operations logged so far.
    pub(crate) fn logged(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// Operations known durable.
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    pub(crate) fn fsyncs(&self) -> u64 {
        *self.sync.lock()
    }

    fn check(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(Error::Cold(std::io::Error::other(
                "the redo log failed to write or fsync earlier; writes stop until the store is reopened",
            )));
        }
        Ok(())
    }

    fn fail(&self, e: std::io::Error) -> Error {
        // As fjall does: after a failed write or fsync nothing is known
        // about what reached the disk, so stop taking writes.
        self.failed.store(true, Ordering::Release);
        Error::Cold(e)
    }

    /// Append `op` (call under the store's lock, after the operation
    /// succeeded). Returns its sequence number.
    pub(crate) fn append(&self, op: &Op<'_>) -> Result<u64> {
        self.check()?;
        if !self.enabled {
            return Ok(self.next.load(Ordering::Acquire));
        }
        let mut buf = self.buf.lock();
        let seq = self.next.load(Ordering::Acquire);
        let start = buf.len();
        buf.extend_from_slice(&[0; HEADER]);
        let encoded = postcard::to_extend(&(seq, op), std::mem::take(&mut *buf));
        *buf = encoded.map_err(|e| Error::Config(format!("encoding a redo record: {e}")))?;
        let len = (buf.len() - start - HEADER) as u32;
        let crc = crc32c::crc32c(&buf[start + HEADER..]);
        buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.next.store(seq + 1, Ordering::Release);
        Ok(seq)
    }

    /// Hand every record logged before `upto` (exclusive) to the operating
    /// system, so it survives the process being killed. Returns how many
    /// operations the file holds and the file.
    pub(crate) fn write_out(&self, upto: u64) -> Result<(u64, Arc<File>)> {
        let mut io = self.io.lock();
        self.write_locked(&mut io, upto)
    }

    fn write_locked(&self, io: &mut Io, upto: u64) -> Result<(u64, Arc<File>)> {
        self.check()?;
        if !self.enabled || self.written.load(Ordering::Acquire) >= upto {
            return Ok((self.written.load(Ordering::Acquire), io.file.clone()));
        }
        let (data, end) = {
            let mut buf = self.buf.lock();
            let end = self.next.load(Ordering::Acquire);
            (
                std::mem::replace(&mut *buf, Vec::with_capacity(1 << 16)),
                end,
            )
        };
        (&*io.file).write_all(&data).map_err(|e| self.fail(e))?;
        self.written.store(end, Ordering::Release);
        Ok((end, io.file.clone()))
    }

    /// Make every operation before `upto` (exclusive) durable: write what
    /// is buffered and fdatasync, unless someone already did. Writers go on
    /// meanwhile; concurrent callers share one fdatasync.
    pub(crate) fn sync_to(&self, upto: u64) -> Result<()> {
        if !self.enabled || self.durable() >= upto {
            return self.check();
        }
        let mut fsyncs = self.sync.lock();
        if self.durable() >= upto {
            return self.check();
        }
        let (end, file) = self.write_out(u64::MAX)?;
        if end > self.durable() {
            file.sync_data().map_err(|e| self.fail(e))?;
            *fsyncs += 1;
            self.durable.fetch_max(end, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Start a new file after everything logged so far, which is written
    /// and fsynced first; returns the number of the new file's first
    /// operation. Called outside the store's lock, after the checkpoint
    /// took its image at some earlier number: the records between that
    /// number and this one stay in the old file, which
    /// [`Log::truncate_before`] then keeps, and replay skips what the image
    /// covers.
    pub(crate) fn rotate(&self) -> Result<u64> {
        if !self.enabled {
            return Ok(self.logged());
        }
        let mut io = self.io.lock();
        let (end, old) = self.write_locked(&mut io, u64::MAX)?;
        old.sync_data().map_err(|e| self.fail(e))?;
        self.durable.fetch_max(end, Ordering::AcqRel);
        let path = self.dir.join(file_name(end));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|f| sync_dir(&self.dir).map(|_| f))
            .map_err(Error::Cold)?;
        io.file = Arc::new(file);
        Ok(end)
    }

    /// After the image taken at `seq` is durable: delete the files it
    /// covers.
    pub(crate) fn truncate_before(&self, seq: u64) -> Result<()> {
        let all = files(&self.dir)?;
        if !self.enabled {
            // Nothing is logged any more: the image covers every file.
            for (first, path) in &all {
                if *first <= seq {
                    std::fs::remove_file(path).map_err(Error::Cold)?;
                }
            }
            return Ok(());
        }
        for w in all.windows(2) {
            if w[1].0 <= seq {
                std::fs::remove_file(&w[0].1).map_err(Error::Cold)?;
            }
        }
        Ok(())
    }
}

impl Drop for Log {
    /// A store closed without a checkpoint still leaves every write it
    /// acknowledged in the log.
    fn drop(&mut self) {
        if let Err(e) = self.sync_to(self.logged()) {
            tracing::error!("redo log: final flush failed: {e}");
        }
    }
}
