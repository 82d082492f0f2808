//! The log: segments, index, group commit, snapshots, compaction.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::error::{ColdError, Result};
use crate::format::{self, RecordKind, MAX_VALUE, RECORD_HEADER, SEGMENT_HEADER};
use crate::storage::{read_exact_at, write_all_at, FileStorage, Storage, StorageFile};

const SNAPSHOT: &str = "index.snap";
const SNAPSHOT_TMP: &str = "index.snap.tmp";
const SNAPSHOT_MAGIC: &[u8; 8] = b"AMCOLDIX";
const ENTRY: usize = 48;

/// When a write is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The write is in the operating system when the call returns (it
    /// survives the process being killed) and is fsynced by the next group
    /// commit, at most [`DiskTierBuilder::sync_interval`] later (then it
    /// survives a power cut too).
    #[default]
    GroupCommit,
    /// The call returns once the write is fsynced; concurrent writers share
    /// one fsync.
    Sync,
}

/// Builds a [`DiskTier`].
#[derive(Debug, Clone)]
pub struct DiskTierBuilder {
    segment_size: u64,
    sync_interval: Option<Duration>,
    durability: Durability,
    snapshot_every: u64,
    compact_ratio: f64,
    roll_dead_bytes: u64,
    auto_compact: bool,
    read_only: bool,
}

impl Default for DiskTierBuilder {
    fn default() -> Self {
        DiskTierBuilder {
            segment_size: 64 << 20,
            sync_interval: Some(Duration::from_millis(10)),
            durability: Durability::GroupCommit,
            snapshot_every: 256 << 20,
            compact_ratio: 0.5,
            roll_dead_bytes: 1 << 20,
            auto_compact: true,
            read_only: false,
        }
    }
}

impl DiskTierBuilder {
    /// Size at which the active segment is closed and a new one started
    /// (1 MiB–1 GiB; a larger record gets a segment of its own).
    /// Default: 64 MiB.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// How often the background thread fsyncs written data (group commit);
    /// `None` leaves fsync to [`Durability::Sync`] writes, rotations,
    /// snapshots and [`DiskTier::sync`]. Default: 10 ms.
    pub fn sync_interval(mut self, every: Option<Duration>) -> Self {
        self.sync_interval = every;
        self
    }

    /// Durability of writes made with [`DiskTier::put`] and
    /// [`DiskTier::delete`]. Default: [`Durability::GroupCommit`].
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Bytes appended after which the background thread writes a new index
    /// snapshot, bounding the log replayed on open. Default: 256 MiB.
    pub fn snapshot_every(mut self, bytes: u64) -> Self {
        self.snapshot_every = bytes;
        self
    }

    /// Fraction of dead bytes at which a closed segment is compacted.
    /// Default: 0.5.
    pub fn compact_ratio(mut self, r: f64) -> Self {
        self.compact_ratio = r;
        self
    }

    /// Dead bytes (at `compact_ratio` of its size or more) at which
    /// compaction also closes the *active* segment so it can be compacted,
    /// so a store that never fills a segment still reclaims space.
    /// Default: 1 MiB.
    pub fn roll_dead_bytes(mut self, bytes: u64) -> Self {
        self.roll_dead_bytes = bytes;
        self
    }

    /// Let the background thread compact segments. Default: true.
    pub fn auto_compact(mut self, on: bool) -> Self {
        self.auto_compact = on;
        self
    }

    /// Open for reading only (a shared lock; nothing is written, torn tails
    /// are skipped, not cut). Default: false.
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// Open (or create) the tier in `dir` on the local file system.
    pub fn open(self, dir: impl AsRef<Path>) -> Result<DiskTier> {
        let d = dir.as_ref().display().to_string();
        let storage = FileStorage::new(dir.as_ref(), !self.read_only)
            .map_err(|e| ColdError::io(&d, "opening the directory", e))?;
        self.open_storage(Arc::new(storage))
    }

    /// Open (or create) the tier on any [`Storage`].
    pub fn open_storage(self, storage: Arc<dyn Storage>) -> Result<DiskTier> {
        if !(1 << 20..=1 << 30).contains(&self.segment_size) {
            return Err(ColdError::Config(format!(
                "segment size {} is outside 1 MiB..=1 GiB",
                self.segment_size
            )));
        }
        if !(0.0..=1.0).contains(&self.compact_ratio) {
            return Err(ColdError::Config(format!(
                "compaction ratio {} is outside 0..=1",
                self.compact_ratio
            )));
        }
        let inner = Arc::new(Inner::open(storage, self)?);
        let guard = Background::default();
        if let (false, Some(every)) = (inner.opts.read_only, inner.opts.sync_interval) {
            let weak = Arc::downgrade(&inner);
            let stop = guard.stop.clone();
            let handle = std::thread::Builder::new()
                .name("agentmem-cold-sync".into())
                .spawn(move || background(weak, every, stop))
                .map_err(|e| ColdError::io(&inner.dir, "starting the group-commit thread", e))?;
            *guard.thread.lock() = Some(handle);
        }
        Ok(DiskTier {
            _background: Arc::new(guard),
            inner,
        })
    }
}

/// A crash-safe, compacting log of keyed records on local disk: the cold
/// tier. Cheap to clone; clones share the same tier. See the crate docs for
/// the design.
#[derive(Clone)]
pub struct DiskTier {
    // Declared first so it drops first: the background thread is stopped
    // and joined before the last handle's `inner` goes, so the closing
    // snapshot and the directory unlock happen when the last handle drops,
    // on that thread.
    _background: Arc<Background>,
    inner: Arc<Inner>,
}

/// Stops and joins the group-commit thread when the last handle drops.
#[derive(Default)]
struct Background {
    stop: Arc<(Mutex<bool>, parking_lot::Condvar)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl fmt::Debug for DiskTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskTier")
            .field("dir", &self.inner.dir)
            .field("keys", &self.inner.state.read().map.len())
            .finish_non_exhaustive()
    }
}

/// What opening found and did.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Wall time of the open.
    pub elapsed: Duration,
    /// Whether an index snapshot was loaded (else every segment was replayed).
    pub from_snapshot: bool,
    /// Records replayed from the log after the snapshot.
    pub replayed_records: u64,
    /// Bytes of log replayed.
    pub replayed_bytes: u64,
    /// Bytes of torn or corrupt tail cut (or skipped, read-only).
    pub truncated_bytes: u64,
    /// What was wrong, in words (torn tails, ignored snapshot, …).
    pub notes: Vec<String>,
}

/// Space and activity.
#[derive(Debug, Clone, Default)]
pub struct ColdStats {
    /// Keys held.
    pub keys: u64,
    /// Segment files.
    pub segments: u64,
    /// Bytes of segment files.
    pub disk_bytes: u64,
    /// Bytes of records the index points at.
    pub live_bytes: u64,
    /// Bytes of deletion records kept so older segments cannot resurrect a key.
    pub tombstone_bytes: u64,
    /// Bytes of overwritten or deleted records, reclaimable by compaction.
    pub dead_bytes: u64,
    /// Bytes appended since open (records, headers, compaction copies).
    pub bytes_written: u64,
    /// fsyncs of segment data since open.
    pub syncs: u64,
    /// Segments compacted since open.
    pub compacted_segments: u64,
    /// Bytes of segment files removed by compaction since open.
    pub reclaimed_bytes: u64,
    /// Bytes the index holds in RAM (capacity).
    pub index_ram_bytes: u64,
    /// Why writes are refused, if they are.
    pub poisoned: Option<String>,
    /// What opening did.
    pub recovery: RecoveryReport,
}

/// What [`DiskTier::verify`] found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Segments read.
    pub segments: u64,
    /// Records read and checked.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Keys whose value was read back through the index.
    pub keys: u64,
    /// Everything wrong, one line each.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompactReport {
    /// Segments rewritten and removed.
    pub segments: u64,
    /// Live records copied forward.
    pub copied_records: u64,
    /// Bytes of files removed.
    pub reclaimed_bytes: u64,
    /// Whether the active segment was closed to be compacted (it had
    /// enough dead bytes: [`DiskTierBuilder::roll_dead_bytes`]).
    pub rolled_active: bool,
}

/// Hashes keys by their first 8 bytes: keys are content ids (BLAKE3), so
/// they are already uniformly distributed and rehashing them is wasted work.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

/// Where a record is: 16 bytes, so 100,000s of keys fit in a few MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    seg: u32,
    off: u32,
    len: u32,
    tag: u32,
}

impl Loc {
    fn size(&self) -> u64 {
        RECORD_HEADER as u64 + u64::from(self.len)
    }
}

/// A segment's id, file and size, taken out of the lock.
type SegRef = (u32, Arc<dyn StorageFile>, u64);

type Map = hashbrown::HashMap<[u8; 32], Loc, BuildHasherDefault<IdHasher>>;

#[derive(Debug)]
struct Seg {
    file: Arc<dyn StorageFile>,
    size: u64,
    live: u64,
    tomb: u64,
}

impl Seg {
    fn dead(&self) -> u64 {
        self.size
            .saturating_sub(SEGMENT_HEADER + self.live + self.tomb)
    }
}

#[derive(Debug, Default)]
struct State {
    map: Map,
    segs: BTreeMap<u32, Seg>,
}

impl State {
    fn apply(&mut self, kind: RecordKind, key: [u8; 32], loc: Loc) {
        match kind {
            RecordKind::Put => {
                if let Some(old) = self.map.insert(key, loc) {
                    if let Some(s) = self.segs.get_mut(&old.seg) {
                        s.live -= old.size();
                    }
                }
                if let Some(s) = self.segs.get_mut(&loc.seg) {
                    s.live += loc.size();
                }
            }
            RecordKind::Delete => {
                if let Some(old) = self.map.remove(&key) {
                    if let Some(s) = self.segs.get_mut(&old.seg) {
                        s.live -= old.size();
                    }
                }
                if let Some(s) = self.segs.get_mut(&loc.seg) {
                    s.tomb += loc.size();
                }
            }
        }
    }
}

#[derive(Debug)]
struct Writer {
    seg: u32,
    file: Arc<dyn StorageFile>,
    len: u64,
}

/// When a conditional append goes ahead (compaction's compare-and-swap).
#[derive(Debug, Clone, Copy)]
enum Cond {
    Always,
    At(Loc),
    Absent,
}

struct Inner {
    storage: Arc<dyn Storage>,
    dir: String,
    opts: DiskTierBuilder,
    /// Appends, rotations and segment removal; taken before `state`.
    writer: Mutex<Writer>,
    state: RwLock<State>,
    /// (segment, length) known durable.
    synced: Mutex<(u32, u64)>,
    /// One fsync at a time: writers arriving meanwhile share the next one.
    sync_lock: Mutex<()>,
    /// One snapshot or compaction at a time.
    maintenance: Mutex<()>,
    poisoned: Mutex<Option<String>>,
    is_poisoned: AtomicBool,
    dirty: AtomicBool,
    bytes_written: AtomicU64,
    since_snapshot: AtomicU64,
    syncs: AtomicU64,
    compacted: AtomicU64,
    reclaimed: AtomicU64,
    recovery: RecoveryReport,
    _lock: Box<dyn fmt::Debug + Send + Sync>,
}

fn background(weak: Weak<Inner>, every: Duration, stop: Arc<(Mutex<bool>, parking_lot::Condvar)>) {
    let mut ticks = 0u64;
    loop {
        {
            let mut stopped = stop.0.lock();
            if *stopped {
                return;
            }
            stop.1.wait_for(&mut stopped, every);
            if *stopped {
                return;
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        if inner.is_poisoned.load(Ordering::Acquire) {
            continue;
        }
        if inner.dirty.load(Ordering::Acquire) {
            if let Err(e) = inner.sync_all() {
                tracing::warn!("cold tier group commit failed: {e}");
            }
        }
        ticks += 1;
        // Upkeep about once a second.
        if ticks % (1000 / every.as_millis().clamp(1, 1000) as u64) == 0 {
            if inner.since_snapshot.load(Ordering::Relaxed) >= inner.opts.snapshot_every {
                if let Err(e) = inner.snapshot() {
                    tracing::warn!("cold tier snapshot failed: {e}");
                }
            }
            if inner.opts.auto_compact {
                if let Err(e) = inner.compact() {
                    tracing::warn!("cold tier compaction failed: {e}");
                }
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.opts.read_only && !self.is_poisoned.load(Ordering::Acquire) {
            // A clean close leaves a snapshot, so the next open replays nothing.
            if let Err(e) = self.snapshot() {
                tracing::warn!("cold tier: closing snapshot failed: {e}");
            }
        }
    }
}

impl Inner {
    fn open(storage: Arc<dyn Storage>, opts: DiskTierBuilder) -> Result<Inner> {
        let started = Instant::now();
        let dir = storage.describe();
        let lock = storage.lock(!opts.read_only).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                ColdError::Locked { dir: dir.clone() }
            } else {
                ColdError::io(&dir, "locking the directory", e)
            }
        })?;
        let io = |what: &str| {
            let dir = dir.clone();
            let what = what.to_string();
            move |e| ColdError::io(&dir, what, e)
        };
        let names = storage.list().map_err(io("listing the directory"))?;
        let mut ids: Vec<u32> = names.iter().filter_map(|n| format::segment_id(n)).collect();
        ids.sort_unstable();
        if !opts.read_only && names.iter().any(|n| n == SNAPSHOT_TMP) {
            storage
                .remove(SNAPSHOT_TMP)
                .map_err(io("removing a stale snapshot"))?;
        }
        let mut report = RecoveryReport::default();
        let mut state = State::default();
        // The index snapshot, if there is a usable one.
        let mut replay_from = (0u32, SEGMENT_HEADER);
        if names.iter().any(|n| n == SNAPSHOT) {
            match load_snapshot(&*storage, &dir)? {
                Ok((snap, from)) => {
                    state = snap;
                    replay_from = from;
                    report.from_snapshot = true;
                }
                Err(why) => report.notes.push(format!(
                    "index snapshot ignored ({why}); replaying every segment"
                )),
            }
        }
        // Segments from before the snapshot that it does not list were
        // emptied by a compaction that stopped before removing them.
        for &id in &ids {
            if report.from_snapshot && id < replay_from.0 && !state.segs.contains_key(&id) {
                if opts.read_only {
                    continue;
                }
                storage
                    .remove(&format::segment_name(id))
                    .map_err(io("removing a compacted segment"))?;
                report.notes.push(format!("removed compacted segment {id}"));
            }
        }
        let listed: Vec<u32> = state.segs.keys().copied().collect();
        for id in listed {
            if !ids.contains(&id) {
                return Err(ColdError::Corrupt {
                    what: format!("directory {dir}"),
                    detail: format!(
                        "segment file {} listed in the index snapshot is missing",
                        format::segment_name(id)
                    ),
                });
            }
            let f = storage
                .open(&format::segment_name(id), false)
                .map_err(io("opening a segment"))?;
            check_header(&*f, &format::segment_name(id), &dir)?;
            state.segs.get_mut(&id).expect("listed").file = f;
        }
        // Replay the log after the snapshot.
        let to_replay: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&id| id >= replay_from.0)
            .collect();
        let last = ids.last().copied();
        for id in to_replay {
            let name = format::segment_name(id);
            let f = storage
                .open(&name, false)
                .map_err(io("opening a segment"))?;
            let flen = f.len().map_err(io("reading a segment's length"))?;
            if flen < SEGMENT_HEADER {
                if Some(id) == last && !opts.read_only {
                    // Created just before a crash: start it again.
                    f.set_len(0).map_err(io("resetting a new segment"))?;
                    write_all_at(&*f, &format::segment_header(id), 0)
                        .map_err(io("writing a segment header"))?;
                    report
                        .notes
                        .push(format!("{name}: header was torn, rewritten"));
                } else if Some(id) == last {
                    continue;
                } else {
                    return Err(ColdError::Corrupt {
                        what: name,
                        detail: format!("{flen} bytes, shorter than a segment header"),
                    });
                }
            } else {
                check_header(&*f, &name, &dir)?;
            }
            let start = if report.from_snapshot && id == replay_from.0 {
                replay_from.1
            } else {
                SEGMENT_HEADER
            };
            let seg = state.segs.entry(id).or_insert_with(|| Seg {
                file: f.clone(),
                size: SEGMENT_HEADER,
                live: 0,
                tomb: 0,
            });
            seg.file = f.clone();
            let flen = f.len().map_err(io("reading a segment's length"))?;
            let mut buf = vec![0u8; flen.saturating_sub(start) as usize];
            read_exact_at(&*f, &mut buf, start).map_err(io("reading a segment"))?;
            let mut off = 0usize;
            let mut bad = None;
            while off < buf.len() {
                let rest = &buf[off..];
                if rest.len() < RECORD_HEADER {
                    bad = Some("record header cut short".to_string());
                    break;
                }
                let h = format::Header::parse(rest);
                if u64::from(h.len) > MAX_VALUE || h.size() > rest.len() as u64 {
                    bad = Some("record cut short".to_string());
                    break;
                }
                match format::decode(&rest[..h.size() as usize]) {
                    Ok(r) => {
                        let loc = Loc {
                            seg: id,
                            off: (start + off as u64) as u32,
                            len: h.len,
                            tag: r.tag,
                        };
                        state.apply(r.kind, r.key, loc);
                        report.replayed_records += 1;
                        off += h.size() as usize;
                    }
                    Err(e) => {
                        bad = Some(e);
                        break;
                    }
                }
            }
            if let Some(why) = &bad {
                // Only what a crash leaves may be cut: damage followed by
                // whole records (or in a segment a later one follows, all
                // fsynced at rotation) is refused, never silently dropped.
                let next = format::next_valid_record(&buf, off);
                if Some(id) != last || !format::torn_write(&buf, start, off, next) {
                    return Err(ColdError::Corrupt {
                        what: format!("segment {dir}/{name}"),
                        detail: format!(
                            "damaged record at byte {} ({why}){}; refusing to open rather than drop the records after it. Restore the directory from a backup",
                            start + off as u64,
                            match (next, Some(id) == last) {
                                (Some(n), _) => format!(", whole records follow from byte {}", start + n as u64),
                                (None, false) => ", and later segments follow".to_string(),
                                (None, true) => String::new(),
                            }
                        ),
                    });
                }
            }
            report.replayed_bytes += off as u64;
            let end = start + off as u64;
            state.segs.get_mut(&id).expect("inserted").size =
                if bad.is_some() { end } else { flen };
            if let Some(why) = bad {
                report.truncated_bytes += flen - end;
                report.notes.push(format!(
                    "{name}: torn tail of {} bytes after offset {end} cut ({why})",
                    flen - end,
                ));
                if !opts.read_only {
                    f.set_len(end).map_err(io("cutting a torn tail"))?;
                    f.sync().map_err(io("syncing a cut segment"))?;
                }
            }
        }
        // The active segment: the newest one, or a new first one.
        let writer = match state.segs.iter().next_back() {
            Some((&id, s)) => Writer {
                seg: id,
                file: s.file.clone(),
                len: s.size,
            },
            None if opts.read_only => Writer {
                seg: 0,
                file: Arc::new(NoFile),
                len: SEGMENT_HEADER,
            },
            None => {
                let f = new_segment(&*storage, 1).map_err(io("creating the first segment"))?;
                state.segs.insert(
                    1,
                    Seg {
                        file: f.clone(),
                        size: SEGMENT_HEADER,
                        live: 0,
                        tomb: 0,
                    },
                );
                Writer {
                    seg: 1,
                    file: f,
                    len: SEGMENT_HEADER,
                }
            }
        };
        if !opts.read_only {
            // What a killed process left in the page cache becomes durable now.
            writer
                .file
                .sync()
                .map_err(io("syncing the active segment"))?;
        }
        report.elapsed = started.elapsed();
        let synced = (writer.seg, writer.len);
        Ok(Inner {
            storage,
            dir,
            opts,
            writer: Mutex::new(writer),
            state: RwLock::new(state),
            synced: Mutex::new(synced),
            sync_lock: Mutex::new(()),
            maintenance: Mutex::new(()),
            poisoned: Mutex::new(None),
            is_poisoned: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            bytes_written: AtomicU64::new(0),
            since_snapshot: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            compacted: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            recovery: report,
            _lock: lock,
        })
    }

    fn poison(&self, cause: String) {
        tracing::error!("cold tier poisoned: {cause}");
        let mut p = self.poisoned.lock();
        if p.is_none() {
            *p = Some(cause);
        }
        self.is_poisoned.store(true, Ordering::Release);
    }

    fn check_writable(&self, what: &str) -> Result<()> {
        if self.opts.read_only {
            return Err(ColdError::OpenedReadOnly {
                dir: self.dir.clone(),
                what: what.into(),
            });
        }
        if self.is_poisoned.load(Ordering::Acquire) {
            return Err(ColdError::Poisoned {
                cause: self.poisoned.lock().clone().unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Append one record if `cond` holds; returns whether it was written.
    fn append(
        &self,
        kind: RecordKind,
        key: &[u8; 32],
        tag: u32,
        value: &[u8],
        cond: Cond,
        durability: Durability,
    ) -> Result<bool> {
        self.check_writable("writing")?;
        if value.len() as u64 > MAX_VALUE {
            return Err(ColdError::TooLarge {
                size: value.len() as u64,
                max: MAX_VALUE,
            });
        }
        let rec = format::encode(kind, key, tag, value);
        let mut w = self.writer.lock();
        let go = {
            let st = self.state.read();
            match cond {
                Cond::Always => kind == RecordKind::Put || st.map.contains_key(key),
                Cond::At(loc) => st.map.get(key) == Some(&loc),
                Cond::Absent => !st.map.contains_key(key),
            }
        };
        if !go {
            return Ok(false);
        }
        // Re-check under the writer lock: a concurrent failure may have poisoned.
        self.check_writable("writing")?;
        if w.len + rec.len() as u64 > self.opts.segment_size && w.len > SEGMENT_HEADER {
            self.rotate(&mut w)?;
        }
        let off = w.len;
        if let Err(e) = write_all_at(&*w.file, &rec, off) {
            // Cut what part of the record reached the file; if even that
            // fails, the file's state is unknown.
            if let Err(e2) = w.file.set_len(off) {
                self.poison(format!("a failed write could not be undone: {e2}"));
            }
            return Err(ColdError::io(&self.dir, "appending a record", e));
        }
        w.len += rec.len() as u64;
        let loc = Loc {
            seg: w.seg,
            off: off as u32,
            len: value.len() as u32,
            tag,
        };
        {
            let mut st = self.state.write();
            st.apply(kind, *key, loc);
            if let Some(s) = st.segs.get_mut(&w.seg) {
                s.size = w.len;
            }
        }
        self.bytes_written
            .fetch_add(rec.len() as u64, Ordering::Relaxed);
        self.since_snapshot
            .fetch_add(rec.len() as u64, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
        let pos = (w.seg, w.len);
        drop(w);
        if durability == Durability::Sync {
            self.sync_upto(pos)?;
        }
        Ok(true)
    }

    /// Close the active segment (fsynced) and start the next.
    fn rotate(&self, w: &mut Writer) -> Result<()> {
        if let Err(e) = w.file.sync() {
            self.poison(format!("fsync of segment {} failed: {e}", w.seg));
            return Err(ColdError::io(&self.dir, "syncing a full segment", e));
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        *self.synced.lock() = (w.seg, w.len);
        let id = w.seg + 1;
        let f = match new_segment(&*self.storage, id) {
            Ok(f) => f,
            Err(e) => {
                let _ = self.storage.remove(&format::segment_name(id));
                return Err(ColdError::io(&self.dir, "starting a new segment", e));
            }
        };
        self.state.write().segs.insert(
            id,
            Seg {
                file: f.clone(),
                size: SEGMENT_HEADER,
                live: 0,
                tomb: 0,
            },
        );
        *w = Writer {
            seg: id,
            file: f,
            len: SEGMENT_HEADER,
        };
        *self.synced.lock() = (id, SEGMENT_HEADER);
        Ok(())
    }

    /// Make everything up to `pos` durable, sharing fsyncs between callers.
    fn sync_upto(&self, pos: (u32, u64)) -> Result<()> {
        let _g = self.sync_lock.lock();
        if *self.synced.lock() >= pos {
            return Ok(());
        }
        self.check_writable("syncing")?;
        let (cur, file) = {
            let w = self.writer.lock();
            // Cleared under the writer lock, with the position it covers:
            // an append after it (maybe to a segment a rotation just
            // started, which this fsync does not cover) sets it again, so
            // the next group commit picks it up.
            self.dirty.store(false, Ordering::Release);
            ((w.seg, w.len), w.file.clone())
        };
        #[cfg(test)]
        tests::after_writer_released();
        if let Err(e) = file.sync() {
            // After a failed fsync the kernel may have dropped the dirty
            // pages and cleared the error: nothing is known to be durable.
            self.poison(format!("fsync failed: {e}"));
            return Err(ColdError::io(&self.dir, "syncing written records", e));
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let mut s = self.synced.lock();
        if *s < cur {
            *s = cur;
        }
        Ok(())
    }

    fn sync_all(&self) -> Result<()> {
        let pos = {
            let w = self.writer.lock();
            (w.seg, w.len)
        };
        self.sync_upto(pos)
    }

    fn get(&self, key: &[u8; 32]) -> Result<Option<(u32, Vec<u8>)>> {
        let (loc, file) = {
            let st = self.state.read();
            let Some(loc) = st.map.get(key).copied() else {
                return Ok(None);
            };
            let file = st.segs.get(&loc.seg).expect("indexed segment").file.clone();
            (loc, file)
        };
        let mut buf = vec![0u8; loc.size() as usize];
        read_exact_at(&*file, &mut buf, u64::from(loc.off))
            .map_err(|e| ColdError::io(&self.dir, "reading a record", e))?;
        let what = || format!("record in {} at {}", format::segment_name(loc.seg), loc.off);
        let r = format::decode(&buf).map_err(|detail| ColdError::Corrupt {
            what: what(),
            detail,
        })?;
        if r.key != *key || r.kind != RecordKind::Put || r.tag != loc.tag {
            return Err(ColdError::Corrupt {
                what: what(),
                detail: "the record is not the one the index names".into(),
            });
        }
        buf.drain(..RECORD_HEADER);
        Ok(Some((loc.tag, buf)))
    }

    fn snapshot(&self) -> Result<()> {
        if self.opts.read_only {
            return Ok(());
        }
        let _m = self.maintenance.lock();
        self.snapshot_locked()
    }

    fn snapshot_locked(&self) -> Result<()> {
        self.check_writable("writing an index snapshot")?;
        let bytes = {
            let w = self.writer.lock();
            if let Err(e) = w.file.sync() {
                self.poison(format!("fsync failed: {e}"));
                return Err(ColdError::io(&self.dir, "syncing before a snapshot", e));
            }
            *self.synced.lock() = (w.seg, w.len);
            let st = self.state.read();
            let mut b = Vec::with_capacity(40 + st.segs.len() * 28 + st.map.len() * ENTRY);
            b.extend_from_slice(SNAPSHOT_MAGIC);
            b.extend_from_slice(&format::VERSION.to_le_bytes());
            b.extend_from_slice(&w.seg.to_le_bytes());
            b.extend_from_slice(&w.len.to_le_bytes());
            b.extend_from_slice(&(st.segs.len() as u32).to_le_bytes());
            b.extend_from_slice(&(st.map.len() as u64).to_le_bytes());
            for (&id, s) in &st.segs {
                b.extend_from_slice(&id.to_le_bytes());
                b.extend_from_slice(&s.size.to_le_bytes());
                b.extend_from_slice(&s.live.to_le_bytes());
                b.extend_from_slice(&s.tomb.to_le_bytes());
            }
            for (k, l) in &st.map {
                b.extend_from_slice(k);
                for v in [l.seg, l.off, l.len, l.tag] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
            }
            b
        };
        self.since_snapshot.store(0, Ordering::Relaxed);
        let mut b = bytes;
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let io = |what: &'static str| move |e| ColdError::io(&self.dir, what, e);
        let f = self
            .storage
            .open(SNAPSHOT_TMP, true)
            .map_err(io("creating the index snapshot"))?;
        f.set_len(0).map_err(io("writing the index snapshot"))?;
        write_all_at(&*f, &b, 0).map_err(io("writing the index snapshot"))?;
        f.sync().map_err(io("syncing the index snapshot"))?;
        self.storage
            .rename(SNAPSHOT_TMP, SNAPSHOT)
            .map_err(io("installing the index snapshot"))?;
        self.storage
            .sync_dir()
            .map_err(io("syncing the directory"))?;
        Ok(())
    }

    fn compact(&self) -> Result<CompactReport> {
        self.check_writable("compacting")?;
        let _m = self.maintenance.lock();
        let mut report = CompactReport::default();
        let active = {
            // Writer before state, as appends take them.
            let mut w = self.writer.lock();
            let roll = self.state.read().segs.get(&w.seg).is_some_and(|s| {
                s.dead() >= self.opts.roll_dead_bytes.max(1)
                    && s.dead() as f64 >= self.opts.compact_ratio * s.size as f64
            });
            if roll {
                self.rotate(&mut w)?;
                report.rolled_active = true;
            }
            w.seg
        };
        let (victims, oldest): (Vec<SegRef>, u32) = {
            let st = self.state.read();
            let v = st
                .segs
                .iter()
                .filter(|(&id, s)| {
                    id != active
                        && s.size > SEGMENT_HEADER
                        && s.dead() as f64 >= self.opts.compact_ratio * s.size as f64
                })
                .map(|(&id, s)| (id, s.file.clone(), s.size))
                .collect();
            (v, st.segs.keys().next().copied().unwrap_or(0))
        };
        if victims.is_empty() {
            return Ok(report);
        }
        for (id, file, size) in &victims {
            let mut buf = vec![0u8; (size - SEGMENT_HEADER) as usize];
            read_exact_at(&**file, &mut buf, SEGMENT_HEADER)
                .map_err(|e| ColdError::io(&self.dir, "reading a segment to compact", e))?;
            let mut off = 0usize;
            while off + RECORD_HEADER <= buf.len() {
                let h = format::Header::parse(&buf[off..]);
                let end = off + h.size() as usize;
                if end > buf.len() {
                    break;
                }
                let Ok(r) = format::decode(&buf[off..end]) else {
                    break;
                };
                let at = Loc {
                    seg: *id,
                    off: (SEGMENT_HEADER as usize + off) as u32,
                    len: h.len,
                    tag: r.tag,
                };
                let copied = match r.kind {
                    RecordKind::Put => self.append(
                        RecordKind::Put,
                        &r.key,
                        r.tag,
                        r.value,
                        Cond::At(at),
                        Durability::GroupCommit,
                    )?,
                    // A deletion must outlive every older segment that may
                    // still hold the key.
                    RecordKind::Delete if *id != oldest => self.append(
                        RecordKind::Delete,
                        &r.key,
                        0,
                        &[],
                        Cond::Absent,
                        Durability::GroupCommit,
                    )?,
                    RecordKind::Delete => false,
                };
                report.copied_records += u64::from(copied);
                off = end;
            }
        }
        // The copies are durable before the old segments go.
        self.sync_all()?;
        {
            let _w = self.writer.lock();
            let mut st = self.state.write();
            for (id, _, size) in &victims {
                if st.segs.get(id).is_some_and(|s| s.live == 0) {
                    st.segs.remove(id);
                    report.segments += 1;
                    report.reclaimed_bytes += size;
                }
            }
        }
        self.snapshot_locked()?;
        for (id, _, _) in &victims {
            if !self.state.read().segs.contains_key(id) {
                self.storage
                    .remove(&format::segment_name(*id))
                    .map_err(|e| ColdError::io(&self.dir, "removing a compacted segment", e))?;
            }
        }
        self.storage
            .sync_dir()
            .map_err(|e| ColdError::io(&self.dir, "syncing the directory", e))?;
        self.compacted.fetch_add(report.segments, Ordering::Relaxed);
        self.reclaimed
            .fetch_add(report.reclaimed_bytes, Ordering::Relaxed);
        Ok(report)
    }
}

fn check_header(f: &dyn StorageFile, name: &str, dir: &str) -> Result<()> {
    let mut h = [0u8; SEGMENT_HEADER as usize];
    read_exact_at(f, &mut h, 0).map_err(|e| ColdError::io(dir, format!("reading {name}"), e))?;
    format::check_segment_header(name, &h).map(|_| ())
}

fn new_segment(storage: &dyn Storage, id: u32) -> std::io::Result<Arc<dyn StorageFile>> {
    let f = storage.open(&format::segment_name(id), true)?;
    f.set_len(0)?;
    write_all_at(&*f, &format::segment_header(id), 0)?;
    f.sync()?;
    storage.sync_dir()?;
    Ok(f)
}

type Loaded = (State, (u32, u64));

/// Load the index snapshot. The outer error is fatal (incompatible version);
/// the inner one means "ignore it and replay everything".
fn load_snapshot(storage: &dyn Storage, dir: &str) -> Result<std::result::Result<Loaded, String>> {
    let f = storage
        .open(SNAPSHOT, false)
        .map_err(|e| ColdError::io(dir, "opening the index snapshot", e))?;
    let len = f
        .len()
        .map_err(|e| ColdError::io(dir, "reading the index snapshot", e))?;
    let mut b = vec![0u8; len as usize];
    read_exact_at(&*f, &mut b, 0)
        .map_err(|e| ColdError::io(dir, "reading the index snapshot", e))?;
    if b.len() < 36 || &b[..8] != SNAPSHOT_MAGIC {
        return Ok(Err("bad magic or too short".into()));
    }
    let version = u32::from_le_bytes(b[8..12].try_into().expect("4"));
    if version != format::VERSION {
        return Err(ColdError::Incompatible {
            file: format!("{dir}/{SNAPSHOT}"),
            found: version,
            expected: format::VERSION,
        });
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4")) {
        return Ok(Err("checksum mismatch".into()));
    }
    let u32_at = |o: usize| u32::from_le_bytes(body[o..o + 4].try_into().expect("4"));
    let u64_at = |o: usize| u64::from_le_bytes(body[o..o + 8].try_into().expect("8"));
    let seg = u32_at(12);
    let off = u64_at(16);
    let nsegs = u32_at(24) as usize;
    let nkeys = u64_at(28) as usize;
    let expected = nkeys
        .checked_mul(ENTRY)
        .and_then(|e| e.checked_add(nsegs.checked_mul(28)?))
        .and_then(|e| e.checked_add(36));
    if expected != Some(body.len()) {
        return Ok(Err("length does not match its counts".into()));
    }
    let mut st = State::default();
    let mut o = 36;
    for _ in 0..nsegs {
        st.segs.insert(
            u32_at(o),
            Seg {
                file: Arc::new(NoFile),
                size: u64_at(o + 4),
                live: u64_at(o + 12),
                tomb: u64_at(o + 20),
            },
        );
        o += 28;
    }
    st.map.reserve(nkeys);
    for _ in 0..nkeys {
        let key: [u8; 32] = body[o..o + 32].try_into().expect("32");
        let loc = Loc {
            seg: u32_at(o + 32),
            off: u32_at(o + 36),
            len: u32_at(o + 40),
            tag: u32_at(o + 44),
        };
        if !st.segs.contains_key(&loc.seg) {
            return Ok(Err(format!("an entry names unlisted segment {}", loc.seg)));
        }
        st.map.insert(key, loc);
        o += ENTRY;
    }
    if !st.segs.contains_key(&seg) {
        return Ok(Err(format!("its replay segment {seg} is not listed")));
    }
    Ok(Ok((st, (seg, off))))
}

/// A placeholder for a segment not opened yet (or a read-only tier with no
/// segments): every access fails.
#[derive(Debug)]
struct NoFile;

impl StorageFile for NoFile {
    fn read_at(&self, _: &mut [u8], _: u64) -> std::io::Result<usize> {
        Err(std::io::Error::other("segment not open"))
    }
    fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<usize> {
        Err(std::io::Error::other("segment not open"))
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(0)
    }
    fn set_len(&self, _: u64) -> std::io::Result<()> {
        Err(std::io::Error::other("segment not open"))
    }
    fn sync(&self) -> std::io::Result<()> {
        Ok(())
    }
}

impl DiskTier {
    /// A builder with the documented defaults.
    pub fn builder() -> DiskTierBuilder {
        DiskTierBuilder::default()
    }

    /// Open (or create) a tier in `dir` with every default.
    pub fn open(dir: impl AsRef<Path>) -> Result<DiskTier> {
        Self::builder().open(dir)
    }

    /// Store `value` under `key` with a caller's `tag`, with the tier's
    /// default durability. Acknowledged when this returns.
    pub fn put(&self, key: &[u8; 32], tag: u32, value: &[u8]) -> Result<()> {
        self.put_with(key, tag, value, self.inner.opts.durability)
    }

    /// [`DiskTier::put`] with an explicit durability.
    pub fn put_with(&self, key: &[u8; 32], tag: u32, value: &[u8], d: Durability) -> Result<()> {
        self.inner
            .append(RecordKind::Put, key, tag, value, Cond::Always, d)
            .map(|_| ())
    }

    /// The tag and value under `key`, or `None`. Damaged bytes are an error,
    /// never returned.
    pub fn get(&self, key: &[u8; 32]) -> Result<Option<(u32, Vec<u8>)>> {
        self.inner.get(key)
    }

    /// Whether `key` is held (no I/O).
    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.inner.state.read().map.contains_key(key)
    }

    /// Remove `key` (nothing is written if it is not held).
    pub fn delete(&self, key: &[u8; 32]) -> Result<()> {
        self.delete_with(key, self.inner.opts.durability)
    }

    /// [`DiskTier::delete`] with an explicit durability.
    pub fn delete_with(&self, key: &[u8; 32], d: Durability) -> Result<()> {
        self.inner
            .append(RecordKind::Delete, key, 0, &[], Cond::Always, d)
            .map(|_| ())
    }

    /// Every key held.
    pub fn keys(&self) -> Vec<[u8; 32]> {
        self.inner.state.read().map.keys().copied().collect()
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.inner.state.read().map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// fsync everything written so far.
    pub fn sync(&self) -> Result<()> {
        self.inner.check_writable("syncing")?;
        self.inner.sync_all()
    }

    /// Write an index snapshot now (also done in the background and on close).
    pub fn snapshot(&self) -> Result<()> {
        self.inner.snapshot()
    }

    /// Rewrite closed segments whose dead bytes reach the compaction ratio
    /// and remove them. Reads and writes continue meanwhile.
    pub fn compact(&self) -> Result<CompactReport> {
        self.inner.compact()
    }

    /// The directory (or storage) this tier lives in.
    pub fn dir(&self) -> &str {
        &self.inner.dir
    }

    /// The storage this tier lives on, for other files that belong beside
    /// its segments (the store's redo log): they share its lock and its
    /// faults.
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.inner.storage.clone()
    }

    /// Space, activity and what the open found.
    pub fn stats(&self) -> ColdStats {
        let st = self.inner.state.read();
        let mut s = ColdStats {
            keys: st.map.len() as u64,
            segments: st.segs.len() as u64,
            bytes_written: self.inner.bytes_written.load(Ordering::Relaxed),
            syncs: self.inner.syncs.load(Ordering::Relaxed),
            compacted_segments: self.inner.compacted.load(Ordering::Relaxed),
            reclaimed_bytes: self.inner.reclaimed.load(Ordering::Relaxed),
            index_ram_bytes: (st.map.capacity() * 8 / 7).next_power_of_two() as u64
                * (std::mem::size_of::<([u8; 32], Loc)>() as u64 + 1),
            poisoned: self.inner.poisoned.lock().clone(),
            recovery: self.inner.recovery.clone(),
            ..Default::default()
        };
        for seg in st.segs.values() {
            s.disk_bytes += seg.size;
            s.live_bytes += seg.live;
            s.tombstone_bytes += seg.tomb;
            s.dead_bytes += seg.dead();
        }
        s
    }

    /// Read every record of every segment and every key through the index,
    /// checking checksums; report what is wrong.
    pub fn verify(&self) -> VerifyReport {
        let mut r = VerifyReport::default();
        let segs: Vec<SegRef> = {
            let st = self.inner.state.read();
            st.segs
                .iter()
                .map(|(&id, s)| (id, s.file.clone(), s.size))
                .collect()
        };
        for (id, file, size) in segs {
            r.segments += 1;
            let name = format::segment_name(id);
            let mut buf = vec![0u8; size as usize];
            if let Err(e) = read_exact_at(&*file, &mut buf, 0) {
                r.problems.push(format!("{name}: cannot read: {e}"));
                continue;
            }
            if let Err(e) = format::check_segment_header(&name, &buf) {
                r.problems.push(format!("{name}: {e}"));
                continue;
            }
            let mut off = SEGMENT_HEADER as usize;
            while off < buf.len() {
                let rest = &buf[off..];
                if rest.len() < RECORD_HEADER {
                    r.problems
                        .push(format!("{name} at {off}: record header cut short"));
                    break;
                }
                let h = format::Header::parse(rest);
                if h.size() > rest.len() as u64 {
                    r.problems
                        .push(format!("{name} at {off}: record cut short"));
                    break;
                }
                if let Err(e) = format::decode(&rest[..h.size() as usize]) {
                    r.problems.push(format!("{name} at {off}: {e}"));
                    break;
                }
                r.records += 1;
                r.bytes += h.size();
                off += h.size() as usize;
            }
        }
        for key in self.keys() {
            r.keys += 1;
            match self.get(&key) {
                Ok(Some(_)) => {}
                Ok(None) => {}
                Err(e) => r.problems.push(format!("key {}: {}", hex(&key), chain(&e))),
            }
        }
        r
    }
}

/// An error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s += &format!(": {c}");
        src = c.source();
    }
    s
}

/// Lowercase hex of a key.
pub fn hex(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::storage::MemStorage;

    thread_local! {
        static HOOK: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    }

    /// Runs (once) what a test put there, where a group commit has let go
    /// of the writer lock and not yet fsynced.
    pub(super) fn after_writer_released() {
        if let Some(f) = HOOK.with(|h| h.borrow_mut().take()) {
            f();
        }
    }

    /// A record appended to a freshly rotated segment while a group commit
    /// is between taking its position and fsyncing must leave the tier
    /// dirty, so the next group commit fsyncs it: else it waits for the
    /// next write, past the promised interval (a power cut loses it).
    #[test]
    fn a_record_appended_during_a_group_commit_is_fsynced_by_the_next() {
        let s = MemStorage::new();
        let t = DiskTier::builder()
            .segment_size(1 << 20)
            .sync_interval(None)
            .open_storage(Arc::new(s.clone()))
            .unwrap();
        t.put(&[1; 32], 0, b"first").unwrap();
        let big = vec![7u8; (1 << 20) - 100];
        let t2 = t.clone();
        let v = big.clone();
        // Rotates: the first segment is full with it.
        HOOK.with(|h| *h.borrow_mut() = Some(Box::new(move || t2.put(&[2; 32], 0, &v).unwrap())));
        t.sync().unwrap();
        assert_eq!(t.stats().segments, 2, "the hook's put rotated");
        // What the group-commit thread does on its next tick.
        if t.inner.dirty.load(Ordering::Acquire) {
            t.inner.sync_all().unwrap();
        }
        let after = s.power_cut();
        std::mem::forget(t);
        let t = DiskTier::builder()
            .segment_size(1 << 20)
            .sync_interval(None)
            .open_storage(Arc::new(after))
            .unwrap();
        assert_eq!(t.get(&[1; 32]).unwrap().unwrap().1, b"first");
        assert_eq!(
            t.get(&[2; 32]).unwrap().map(|r| r.1.len()),
            Some(big.len()),
            "acknowledged before the group commit's tick, lost in the power cut"
        );
    }
}
