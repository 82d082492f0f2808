//! Every system call the supervisor makes, in one place.
//!
//! `pidfd_open` comes from rustix. `process_madvise`, `prctl(PR_SET_MEMORY_MERGE)`,
//! `swapon` and `swapoff` go through `libc` because neither rustix 1.1 nor nix
//! wraps them; `process_madvise` is called with `libc::syscall` rather than the
//! glibc wrapper so that the binary does not depend on glibc ≥ 2.36.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::pageset::PageSet;

/// The page size this supervisor works in (x86-64 and arm64 with 4 KiB pages).
pub const PAGE: u64 = 4096;

/// The largest total length one `process_madvise` call accepts
/// (`MAX_RW_COUNT`, 2 GiB − 4 KiB); longer ranges are split.
pub const MAX_RANGE: u64 = (1 << 31) - PAGE;

/// At most this many ranges per call (`UIO_MAXIOV`).
pub const MAX_IOVECS: usize = 1024;

/// An open pidfd: a handle on one process that cannot be confused with a
/// later process that reuses its pid.
#[derive(Debug)]
pub struct Pidfd {
    fd: OwnedFd,
    pid: i32,
}

impl Pidfd {
    /// Opens a pidfd for `pid`.
    pub fn open(pid: i32) -> Result<Pidfd> {
        let p = rustix::process::Pid::from_raw(pid)
            .ok_or_else(|| Error::Invalid(format!("{pid} is not a valid pid")))?;
        let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
            .map_err(|e| Error::sys(format!("pidfd_open({pid})"), e.into()))?;
        Ok(Pidfd { fd, pid })
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A second handle on the same process (`dup`).
    pub fn try_clone(&self) -> Result<Pidfd> {
        Ok(Pidfd {
            fd: self
                .fd
                .try_clone()
                .map_err(|e| Error::sys(format!("dup(pidfd of {})", self.pid), e))?,
            pid: self.pid,
        })
    }
}

/// Sends `sig` to the process behind `pidfd` (`pidfd_send_signal`: never
/// to a later process that reused its pid). `Ok(false)` when it has exited.
pub fn send_signal(pidfd: &Pidfd, sig: rustix::process::Signal) -> Result<bool> {
    match rustix::process::pidfd_send_signal(&pidfd.fd, sig) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::SRCH) => Ok(false),
        Err(e) => Err(Error::sys(
            format!("pidfd_send_signal(pid {}, {sig:?})", pidfd.pid),
            e.into(),
        )),
    }
}

/// What `process_madvise` should do with a set of ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// Reclaim the pages now (to swap, i.e. zswap, for anonymous memory).
    PageOut,
    /// Read the pages back from swap ahead of use.
    WillNeed,
}

impl Advice {
    fn raw(self) -> i32 {
        match self {
            Advice::PageOut => libc::MADV_PAGEOUT,
            Advice::WillNeed => libc::MADV_WILLNEED,
        }
    }
}

/// What one [`advise`] over many ranges did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AdviseOutcome {
    /// Bytes the kernel reported as advised.
    pub bytes: u64,
    /// Number of `process_madvise` calls made.
    pub calls: u32,
    /// Ranges skipped because they were unmapped meanwhile (ENOMEM) or not
    /// advisable (EINVAL, e.g. locked or special mappings).
    pub skipped_ranges: u32,
    /// The process exited while being advised.
    pub process_gone: bool,
}

fn raw_process_madvise(pidfd: &Pidfd, iov: &[libc::iovec], advice: Advice) -> io::Result<usize> {
    // SAFETY: `iov` points to `iov.len()` initialised iovecs that live for the
    // call; the kernel only reads them (and never dereferences the target
    // addresses in our address space). The pidfd is open for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            pidfd.fd.as_raw_fd(),
            iov.as_ptr(),
            iov.len(),
            advice.raw(),
            0u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Applies `advice` to every range of `set` in the target process, in
/// batches of at most [`MAX_IOVECS`] ranges of at most [`MAX_RANGE`] bytes.
///
/// The kernel stops a batch at the first range it cannot advise and reports
/// the bytes done before it (a short return); the batch is then resumed after
/// that range. A range that fails on its own with ENOMEM (unmapped since it
/// was read) or EINVAL is skipped and counted. ESRCH ends the walk with
/// `process_gone`. EPERM is an error (not root).
pub fn advise(pidfd: &Pidfd, set: &PageSet, advice: Advice) -> Result<AdviseOutcome> {
    let mut pieces: Vec<(u64, u64)> = Vec::new();
    for &(start, end) in set.ranges() {
        let mut s = start;
        while s < end {
            let e = end.min(s + MAX_RANGE);
            pieces.push((s, e));
            s = e;
        }
    }
    let mut out = AdviseOutcome::default();
    let mut i = 0;
    while i < pieces.len() {
        let batch = &pieces[i..pieces.len().min(i + MAX_IOVECS)];
        let iov: Vec<libc::iovec> = batch
            .iter()
            .map(|&(s, e)| libc::iovec {
                iov_base: s as *mut libc::c_void,
                iov_len: (e - s) as usize,
            })
            .collect();
        out.calls += 1;
        match raw_process_madvise(pidfd, &iov, advice) {
            Ok(done) => {
                out.bytes += done as u64;
                // Count whole ranges covered by `done` bytes.
                let mut left = done as u64;
                let mut n = 0;
                while n < batch.len() && left >= batch[n].1 - batch[n].0 {
                    left -= batch[n].1 - batch[n].0;
                    n += 1;
                }
                if n == batch.len() {
                    i += n;
                } else if n == 0 && left == 0 {
                    // Nothing done yet no error: should not happen; skip to stay finite.
                    out.skipped_ranges += 1;
                    i += 1;
                } else {
                    // Short return: resume at the range that stopped the batch
                    // (a partly done range is retried whole: advising twice is harmless).
                    i += n;
                }
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::ESRCH) => {
                    out.process_gone = true;
                    return Ok(out);
                }
                Some(libc::ENOMEM) | Some(libc::EINVAL) | Some(libc::EFAULT) => {
                    // The first range of the batch failed: skip it.
                    out.skipped_ranges += 1;
                    i += 1;
                }
                Some(libc::EPERM) => {
                    return Err(Error::NotPermitted(format!(
                        "process_madvise on pid {} (needs CAP_SYS_ADMIN and CAP_SYS_NICE)",
                        pidfd.pid
                    )))
                }
                Some(libc::ENOSYS) => {
                    return Err(Error::Missing {
                        what: "process_madvise".into(),
                        how: "use Linux 5.10 or later".into(),
                    })
                }
                _ => {
                    return Err(Error::sys(
                        format!("process_madvise(pid {}, {advice:?})", pidfd.pid),
                        e,
                    ))
                }
            },
        }
    }
    Ok(out)
}

/// Enables KSM merging for the calling process and everything it execs
/// (`prctl(PR_SET_MEMORY_MERGE, 1)`, Linux 6.4+).
pub fn enable_memory_merge() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only; no memory is passed.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_MEMORY_MERGE,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn cpath(path: &Path) -> Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("path {} contains a NUL byte", path.display())))
}

/// `swapon(path)` with the default priority.
pub fn swapon(path: &Path) -> Result<()> {
    let c = cpath(path)?;
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    let r = unsafe { libc::swapon(c.as_ptr(), 0) };
    if r < 0 {
        return Err(Error::sys(
            format!("swapon({})", path.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// `swapoff(path)`.
pub fn swapoff(path: &Path) -> Result<()> {
    let c = cpath(path)?;
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    let r = unsafe { libc::swapoff(c.as_ptr()) };
    if r < 0 {
        return Err(Error::sys(
            format!("swapoff({})", path.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// One page's entry in /proc/PID/pagemap.
#[derive(Debug, Clone, Copy)]
pub struct PagemapEntry(pub u64);

impl PagemapEntry {
    /// The page is in RAM.
    pub fn present(self) -> bool {
        self.0 >> 63 & 1 == 1
    }
    /// The page is in swap (zswap or the swap file).
    pub fn swapped(self) -> bool {
        self.0 >> 62 & 1 == 1
    }
}

/// Reads the pagemap of `pid` over each range of `set` and returns the pages
/// for which `keep` holds. Ranges that vanished read as empty.
pub fn scan_pagemap(
    pid: i32,
    set: &PageSet,
    keep: impl Fn(PagemapEntry) -> bool,
) -> Result<PageSet> {
    let path = format!("/proc/{pid}/pagemap");
    let f = File::open(&path).map_err(|e| Error::io("opening", &path, e))?;
    let mut out = PageSet::default();
    let mut buf = vec![0u8; 8 * 4096];
    for &(start, end) in set.ranges() {
        let mut page = start / PAGE;
        let last = end / PAGE;
        while page < last {
            let n = ((last - page) as usize).min(buf.len() / 8);
            let got = match f.read_at(&mut buf[..n * 8], page * 8) {
                Ok(g) => g / 8,
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(out),
                Err(e) => return Err(Error::io("reading", &path, e)),
            };
            if got == 0 {
                break;
            }
            for k in 0..got {
                let v = u64::from_ne_bytes(buf[k * 8..k * 8 + 8].try_into().expect("8 bytes"));
                if keep(PagemapEntry(v)) {
                    let a = (page + k as u64) * PAGE;
                    out.push(a, a + PAGE);
                }
            }
            page += got as u64;
        }
    }
    Ok(out)
}

/// True when the effective user is root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
