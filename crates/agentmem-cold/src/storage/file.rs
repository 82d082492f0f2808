//! The real file system.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Storage, StorageFile};

/// Files in a directory of the local file system.
#[derive(Debug, Clone)]
pub struct FileStorage {
    dir: PathBuf,
    writable: bool,
}

impl FileStorage {
    /// Use `dir`, creating it if `writable` and missing.
    pub fn new(dir: impl AsRef<Path>, writable: bool) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if writable {
            std::fs::create_dir_all(&dir)?;
        } else if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(FileStorage { dir, writable })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[derive(Debug)]
struct DiskFile(File);

impl StorageFile for DiskFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.0.write_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        // Data only: the file's size is fixed by the records it holds, and a
        // torn tail is cut on open, so the metadata fsync would buy nothing.
        self.0.sync_data()
    }
}

/// Holds the directory's `flock` until dropped.
#[derive(Debug)]
struct DirLock(#[allow(dead_code)] File);

impl Storage for FileStorage {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            if let Some(n) = e.file_name().to_str() {
                out.push(n.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    fn open(&self, name: &str, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(self.writable)
            .create(create && self.writable)
            .truncate(false)
            .open(self.dir.join(name))?;
        Ok(Arc::new(DiskFile(f)))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.dir.join(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn lock(&self, exclusive: bool) -> io::Result<Box<dyn std::fmt::Debug + Send + Sync>> {
        use rustix::fs::{flock, FlockOperation};
        // The directory itself is locked, so a read-only directory can still
        // be opened for reading and no lock file is left behind.
        let f = File::open(&self.dir)?;
        let op = if exclusive {
            FlockOperation::NonBlockingLockExclusive
        } else {
            FlockOperation::NonBlockingLockShared
        };
        flock(&f, op).map_err(io::Error::from)?;
        Ok(Box::new(DirLock(f)))
    }
}
