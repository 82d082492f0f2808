//! The redo log: every mutating store operation since the last checkpoint,
//! so an acknowledged write survives a crash without waiting for one.
//!
//! Files `redo-<first seq, 16 hex digits>.wal` in the store directory hold
//! records `[len: u32 LE][crc32c of payload: u32 LE][payload]`, the payload
//! being the postcard encoding of `(seq, Op)`. Operations are numbered from
//! 0 in the order they changed the store (they are logged under the store's
//! lock, so log order is apply order). A checkpoint captures its image at
//! some `seq` and, under the same lock, starts a new file at `seq`; once the
//! image is durable the older files are deleted. [`Store::open`] restores
//! the image, then replays every record from the image's `seq` on, through
//! the public API (so content ids and conversation ids come out the same).
//! A bad record (short, wrong checksum, undecodable) is a torn tail — what
//! a crash mid-write leaves — only when it is in the last file and no whole
//! record follows it (or the span up to the next whole one holds a zeroed
//! sector, as a power cut leaves unwritten pages; see
//! [`agentmem_cold::format::torn_write`]): then it and everything after it
//! is cut. Otherwise it is damage, and opening refuses with
//! [`RedoError::Damaged`] naming the file and byte, rather than dropping
//! the acknowledged operations after it. A log that does not start at or
//! before the image's `seq`, or skips a number, is refused
//! ([`RedoError::Sequence`]).
//!
//! The files live on the cold tier's [`Storage`] (the same directory, lock
//! and — in tests — the same injected faults and power cuts as its
//! segments and the store image kept in it); see
//! [`StoreBuilder::open_storage`](crate::StoreBuilder::open_storage).
//!
//! Written by hand rather than with a WAL crate: the format is 30 lines, and
//! the well-kept embedded engines (fjall, redb, sled) bring their own log,
//! not one we could put our operations in.
//!
//! [`Store::open`]: crate::Store::open

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentmem_cold::storage::{read_exact_at, write_all_at, Storage, StorageFile};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::{AgentState, Importance, Kind, Visibility};

/// Why the redo log could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedoError {
    /// A record is damaged (a flipped bit, a garbled sector) and is not
    /// the torn tail a crash leaves: whole records follow it, or a later
    /// log file does. The store refuses to open rather than drop every
    /// acknowledged operation after it.
    #[error("redo log {} is damaged at byte {offset}: {detail}. Refusing to open rather than drop the acknowledged operations after it: restore the directory from a backup, or move the log file aside to open the store as of its last checkpoint", file.display())]
    Damaged {
        /// The log file.
        file: PathBuf,
        /// Byte offset of the damaged record in it.
        offset: u64,
        /// What was wrong, and what follows.
        detail: String,
    },
    /// Reading, writing or fsyncing the log failed.
    #[error("redo log {}: {what}", file.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The log file (or directory).
        file: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// An earlier write or fsync of the log failed: nothing is known about
    /// what reached the disk, so writes stop until the store is reopened.
    #[error("the redo log stopped taking writes after an earlier failure ({cause}); reopen the store to recover from what is on disk")]
    Stopped {
        /// The first failure.
        cause: String,
    },
    /// The log does not follow the store's image: operations are missing
    /// or out of order.
    #[error("redo log {}: {detail}", file.display())]
    Sequence {
        /// The log file (or directory).
        file: PathBuf,
        /// What does not follow.
        detail: String,
    },
}

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
    /// A dictionary the store trained itself. Replay loads it rather than
    /// training again (which would depend on samples the image does not
    /// hold, and number versions differently). `domain`: the dedup domain
    /// (tenant) it was trained for, once dictionaries are kept per domain;
    /// `None` for the store-wide one.
    Dictionary {
        kind: Kind,
        version: u32,
        domain: Option<u32>,
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

/// Where file `name` of `storage` is, for messages.
fn path_of(storage: &dyn Storage, name: &str) -> PathBuf {
    PathBuf::from(storage.describe()).join(name)
}

fn io_error(
    storage: &dyn Storage,
    name: &str,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> Error {
    let file = path_of(storage, name);
    move |source| RedoError::Io { what, file, source }.into()
}

/// The log files of `storage`, by first sequence number.
fn files(storage: &dyn Storage) -> Result<Vec<(u64, String)>> {
    let mut v: Vec<(u64, String)> = storage
        .list()
        .map_err(io_error(storage, "", "listing the log files"))?
        .into_iter()
        .filter_map(|n| Some((file_first(&n)?, n)))
        .collect();
    v.sort();
    Ok(v)
}

/// Hand `each` the records of the log of `dir` from `from` on, in order
/// (decode each with [`decode`]), one file in memory at a time; returns the
/// number of the operation after the last. Cuts a torn tail off the last
/// file unless `cut` is false (checking a directory without changing it);
/// refuses a log that does not follow an image taken at `from`.
pub(crate) fn read(
    storage: &dyn Storage,
    from: u64,
    cut: bool,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let files = files(storage)?;
    if let Some((first, name)) = files.first() {
        let path = &path_of(storage, name);
        if *first > from {
            return Err(sequence(
                path,
                format!(
                    "starts at operation {first}, after the store image's {from}: operations in between are missing"
                ),
            ));
        }
    }
    let mut next: Option<u64> = None;
    let n = files.len();
    for (i, (first, name)) in files.iter().enumerate() {
        let path = &path_of(storage, name);
        if let Some(nx) = next {
            if *first != nx {
                return Err(sequence(
                    path,
                    format!("starts at operation {first}, but the previous file ended at {nx}"),
                ));
            }
        }
        let file = storage
            .open(name, false)
            .map_err(io_error(storage, name, "opening"))?;
        let len = file.len().map_err(io_error(storage, name, "reading"))?;
        let mut buf = vec![0u8; len as usize];
        read_exact_at(&*file, &mut buf, 0).map_err(io_error(storage, name, "reading"))?;
        let mut at = 0usize;
        let mut seq = *first;
        let damage = loop {
            if buf.len() - at < HEADER {
                break (at < buf.len()).then_some("record header cut short");
            }
            let len = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4")) as usize;
            let crc = u32::from_le_bytes(buf[at + 4..at + 8].try_into().expect("4"));
            let Some(payload) = buf.get(at + HEADER..at + HEADER + len) else {
                break Some("record cut short");
            };
            if crc32c::crc32c(payload) != crc {
                break Some("checksum mismatch");
            }
            let Ok((s, _)) = postcard::take_from_bytes::<u64>(payload) else {
                break Some("undecodable record");
            };
            if s != seq {
                return Err(sequence(
                    path,
                    format!("holds operation {s} at byte {at}, where {seq} belongs"),
                ));
            }
            if seq >= from {
                each(payload)?;
            }
            seq += 1;
            at += HEADER + len;
        };
        if let Some(why) = damage {
            // Only what a crash leaves may be cut: a damaged record followed
            // by whole ones (or in a file a later one follows, fsynced
            // before it was started) is corruption, refused rather than
            // dropping every acknowledged operation after it.
            let after = next_valid(&buf, at, seq);
            let last = i + 1 == n;
            if !last || !agentmem_cold::format::torn_write(&buf, 0, at, after.map(|n| n.0)) {
                return Err(RedoError::Damaged {
                    file: path.clone(),
                    offset: at as u64,
                    detail: match (after, last) {
                        (Some((p, s)), _) => format!(
                            "{why} in operation {seq}, and whole records follow (operation {s} at byte {p})"
                        ),
                        (None, _) => format!("{why} in operation {seq}, and a later log file follows"),
                    },
                }
                .into());
            }
            if !cut {
                next = Some(seq);
                break;
            }
            // The torn tail of the last file: written, never acknowledged
            // as durable. Cut it so new records follow whole ones.
            file.set_len(at as u64)
                .and_then(|()| file.sync())
                .map_err(io_error(storage, name, "cutting a torn tail"))?;
            tracing::info!(file = %path.display(), at, "cut the redo log's torn tail");
        }
        next = Some(seq);
    }
    let end = next.unwrap_or(from);
    if end < from {
        return Err(sequence(
            &PathBuf::from(storage.describe()),
            format!("ends at operation {end}, before the store image's {from}"),
        ));
    }
    Ok(end)
}

fn sequence(path: &std::path::Path, detail: String) -> Error {
    RedoError::Sequence {
        file: path.to_path_buf(),
        detail,
    }
    .into()
}

/// The first whole record after damage at `at` that could follow operation
/// `seq` (its checksum holds and it numbers a later operation): its offset
/// and number.
fn next_valid(buf: &[u8], at: usize, seq: u64) -> Option<(usize, u64)> {
    (at + 1..buf.len().saturating_sub(HEADER - 1)).find_map(|p| {
        let len = u32::from_le_bytes(buf[p..p + 4].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(buf[p + 4..p + 8].try_into().expect("4"));
        let payload = buf.get(p + HEADER..(p + HEADER).checked_add(len)?)?;
        if len == 0 || crc32c::crc32c(payload) != crc {
            return None;
        }
        let (s, _) = postcard::take_from_bytes::<u64>(payload).ok()?;
        (s >= seq && s - seq <= buf.len() as u64).then_some((p, s))
    })
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
    storage: Arc<dyn Storage>,
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
    /// The first failure, once `failed`.
    cause: Mutex<String>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("storage", &self.storage.describe())
            .field("next", &self.next)
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

/// The file being appended to.
struct Io {
    file: Arc<dyn StorageFile>,
    name: String,
    /// Where the next record goes.
    len: u64,
}

/// A file to fsync, and its name for messages.
type Synced = (u64, Arc<dyn StorageFile>, String);

impl Log {
    /// Open the log of `storage` for appending after operation `end` (as
    /// [`read`] returned).
    pub(crate) fn open(storage: Arc<dyn Storage>, end: u64, enabled: bool) -> Result<Log> {
        let existing = files(&*storage)?;
        let io = match existing.last() {
            Some((_, name)) => {
                let file = storage
                    .open(name, false)
                    .map_err(io_error(&*storage, name, "opening"))?;
                let len = file.len().map_err(io_error(&*storage, name, "opening"))?;
                Io {
                    file,
                    name: name.clone(),
                    len,
                }
            }
            None => {
                let name = file_name(end);
                let file = storage
                    .open(&name, true)
                    .and_then(|f| storage.sync_dir().map(|()| f))
                    .map_err(io_error(&*storage, &name, "creating"))?;
                Io { file, name, len: 0 }
            }
        };
        Ok(Log {
            storage,
            enabled,
            sync: Mutex::new(0),
            io: Mutex::new(io),
            buf: Mutex::new(Vec::with_capacity(1 << 16)),
            next: AtomicU64::new(end),
            written: AtomicU64::new(end),
            durable: AtomicU64::new(end),
            failed: AtomicBool::new(false),
            cause: Mutex::new(String::new()),
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
            return Err(RedoError::Stopped {
                cause: self.cause.lock().clone(),
            }
            .into());
        }
        Ok(())
    }

    fn fail(&self, name: &str, what: &'static str, e: std::io::Error) -> Error {
        // As fjall does: after a failed write or fsync nothing is known
        // about what reached the disk, so stop taking writes.
        let err = io_error(&*self.storage, name, what)(e);
        let mut cause = self.cause.lock();
        if !self.failed.swap(true, Ordering::AcqRel) {
            *cause = err.to_string();
        }
        err
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
    pub(crate) fn write_out(&self, upto: u64) -> Result<Synced> {
        let mut io = self.io.lock();
        self.write_locked(&mut io, upto)
    }

    fn write_locked(&self, io: &mut Io, upto: u64) -> Result<Synced> {
        self.check()?;
        if !self.enabled || self.written.load(Ordering::Acquire) >= upto {
            return Ok((
                self.written.load(Ordering::Acquire),
                io.file.clone(),
                io.name.clone(),
            ));
        }
        let (data, end) = {
            let mut buf = self.buf.lock();
            let end = self.next.load(Ordering::Acquire);
            (
                std::mem::replace(&mut *buf, Vec::with_capacity(1 << 16)),
                end,
            )
        };
        write_all_at(&*io.file, &data, io.len).map_err(|e| self.fail(&io.name, "writing", e))?;
        io.len += data.len() as u64;
        self.written.store(end, Ordering::Release);
        Ok((end, io.file.clone(), io.name.clone()))
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
        let (end, file, name) = self.write_out(u64::MAX)?;
        if end > self.durable() {
            file.sync().map_err(|e| self.fail(&name, "fsyncing", e))?;
            *fsyncs += 1;
            self.durable.fetch_max(end, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Start a new file at the current sequence number (call under the
    /// store's lock, where the checkpoint takes its image). Everything
    /// before it is written and fsynced first. Returns that number.
    pub(crate) fn rotate(&self) -> Result<u64> {
        let seq = self.logged();
        if !self.enabled {
            return Ok(seq);
        }
        let mut io = self.io.lock();
        let (end, old, name) = self.write_locked(&mut io, u64::MAX)?;
        old.sync().map_err(|e| self.fail(&name, "fsyncing", e))?;
        self.durable.fetch_max(end, Ordering::AcqRel);
        let name = file_name(seq);
        let file = self
            .storage
            .open(&name, true)
            .and_then(|f| {
                // A file of this name can only be left from a rotation that
                // failed before anything was logged after it.
                f.set_len(0)?;
                self.storage.sync_dir()?;
                Ok(f)
            })
            .map_err(io_error(&*self.storage, &name, "starting a new log file"))?;
        *io = Io { file, name, len: 0 };
        Ok(seq)
    }

    /// After the image taken at `seq` is durable: delete the files it
    /// covers.
    pub(crate) fn truncate_before(&self, seq: u64) -> Result<()> {
        let all = files(&*self.storage)?;
        let remove = |name: &str| {
            self.storage.remove(name).map_err(io_error(
                &*self.storage,
                name,
                "removing a log file the image covers",
            ))
        };
        if !self.enabled {
            // Nothing is logged any more: the image covers every file.
            for (first, name) in &all {
                if *first <= seq {
                    remove(name)?;
                }
            }
            return Ok(());
        }
        for w in all.windows(2) {
            if w[1].0 <= seq {
                remove(&w[0].1)?;
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
