//! An in-memory directory that can fail writes, write short, fail fsync,
//! flip bits and lose everything not yet synced (a power cut), for tests.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Storage, StorageFile};

/// Faults to inject. Counters count down on each operation of their kind.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Let this many writes succeed, then fail every write (with EIO, or
    /// ENOSPC if `disk_full`).
    pub fail_writes_after: Option<u64>,
    /// Failing writes report "no space left on device".
    pub disk_full: bool,
    /// Every write stores at most half of its bytes (at least one).
    pub short_writes: bool,
    /// Let this many syncs succeed, then fail every sync.
    pub fail_syncs_after: Option<u64>,
}

#[derive(Default)]
struct Dir {
    files: BTreeMap<String, Arc<MemFile>>,
    faults: Faults,
    locked: bool,
}

/// An in-memory [`Storage`] with fault injection. Clones share the same
/// directory.
#[derive(Clone, Default)]
pub struct MemStorage {
    dir: Arc<Mutex<Dir>>,
}

impl fmt::Debug for MemStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.dir.lock();
        f.debug_struct("MemStorage")
            .field("files", &d.files.keys().collect::<Vec<_>>())
            .field("faults", &d.faults)
            .finish()
    }
}

struct MemFile {
    /// What a reader sees (the page cache).
    data: Mutex<Vec<u8>>,
    /// What survives a power cut.
    durable: Mutex<Vec<u8>>,
    dir: std::sync::Weak<Mutex<Dir>>,
}

impl fmt::Debug for MemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemFile")
            .field("len", &self.data.lock().len())
            .finish()
    }
}

impl MemFile {
    fn faults<R>(&self, f: impl FnOnce(&mut Faults) -> R) -> Option<R> {
        self.dir.upgrade().map(|d| f(&mut d.lock().faults))
    }
}

fn countdown(c: &mut Option<u64>) -> bool {
    match c {
        Some(0) => true,
        Some(n) => {
            *n -= 1;
            false
        }
        None => false,
    }
}

impl StorageFile for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let d = self.data.lock();
        let start = (offset as usize).min(d.len());
        let n = buf.len().min(d.len() - start);
        buf[..n].copy_from_slice(&d[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let (fail, full, short) = self
            .faults(|f| {
                (
                    countdown(&mut f.fail_writes_after),
                    f.disk_full,
                    f.short_writes,
                )
            })
            .unwrap_or_default();
        if fail {
            return Err(if full {
                io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error())
            } else {
                io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error())
            });
        }
        let n = if short {
            (buf.len() / 2).max(1)
        } else {
            buf.len()
        };
        let mut d = self.data.lock();
        let end = offset as usize + n;
        if d.len() < end {
            d.resize(end, 0);
        }
        d[offset as usize..end].copy_from_slice(&buf[..n]);
        Ok(n)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data.lock().len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.data.lock().resize(len as usize, 0);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        if self
            .faults(|f| countdown(&mut f.fail_syncs_after))
            .unwrap_or(false)
        {
            return Err(io::Error::from_raw_os_error(
                rustix::io::Errno::IO.raw_os_error(),
            ));
        }
        let d = self.data.lock().clone();
        *self.durable.lock() = d;
        Ok(())
    }
}

impl MemStorage {
    /// An empty directory without faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace the faults to inject.
    pub fn set_faults(&self, faults: Faults) {
        self.dir.lock().faults = faults;
    }

    /// Flip bit `bit` (0–7) of byte `offset` of file `name`, in what readers
    /// see and in what survives a power cut.
    pub fn flip_bit(&self, name: &str, offset: u64, bit: u8) -> io::Result<()> {
        let d = self.dir.lock();
        let f = d
            .files
            .get(name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_string()))?;
        for v in [&f.data, &f.durable] {
            let mut v = v.lock();
            if let Some(b) = v.get_mut(offset as usize) {
                *b ^= 1 << (bit & 7);
            }
        }
        Ok(())
    }

    /// Length of file `name` as readers see it.
    pub fn file_len(&self, name: &str) -> Option<u64> {
        self.dir
            .lock()
            .files
            .get(name)
            .map(|f| f.data.lock().len() as u64)
    }

    /// What a power cut now would leave: a new directory holding only the
    /// synced bytes of each file, unlocked and without faults.
    pub fn power_cut(&self) -> MemStorage {
        self.copy(true)
    }

    /// What killing the process now would leave: a new directory holding
    /// every byte written so far (the page cache survives), unlocked and
    /// without faults. Taken under the directory's lock, so no file is
    /// created, renamed or removed meanwhile.
    pub fn kill(&self) -> MemStorage {
        self.copy(false)
    }

    fn copy(&self, synced_only: bool) -> MemStorage {
        let d = self.dir.lock();
        let out = MemStorage::new();
        {
            let mut o = out.dir.lock();
            for (name, f) in &d.files {
                let bytes = if synced_only {
                    f.durable.lock().clone()
                } else {
                    f.data.lock().clone()
                };
                o.files.insert(
                    name.clone(),
                    Arc::new(MemFile {
                        data: Mutex::new(bytes.clone()),
                        durable: Mutex::new(bytes),
                        dir: Arc::downgrade(&out.dir),
                    }),
                );
            }
        }
        out
    }
}

struct MemLock(Arc<Mutex<Dir>>);

impl fmt::Debug for MemLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemLock")
    }
}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.0.lock().locked = false;
    }
}

impl Storage for MemStorage {
    fn describe(&self) -> String {
        "(in-memory storage)".into()
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.dir.lock().files.keys().cloned().collect())
    }

    fn open(&self, name: &str, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut d = self.dir.lock();
        if let Some(f) = d.files.get(name) {
            return Ok(f.clone());
        }
        if !create {
            return Err(io::Error::new(io::ErrorKind::NotFound, name.to_string()));
        }
        let f = Arc::new(MemFile {
            data: Mutex::new(Vec::new()),
            durable: Mutex::new(Vec::new()),
            dir: Arc::downgrade(&self.dir),
        });
        d.files.insert(name.to_string(), f.clone());
        Ok(f)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.dir
            .lock()
            .files
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_string()))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut d = self.dir.lock();
        let f = d
            .files
            .remove(from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, from.to_string()))?;
        d.files.insert(to.to_string(), f);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }

    fn lock(&self, _exclusive: bool) -> io::Result<Box<dyn fmt::Debug + Send + Sync>> {
        let mut d = self.dir.lock();
        if d.locked {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "in-memory directory already open",
            ));
        }
        d.locked = true;
        Ok(Box::new(MemLock(self.dir.clone())))
    }
}
