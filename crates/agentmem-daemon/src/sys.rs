//! The daemon's system calls: sealed memfd segments, sending a descriptor
//! with a frame, and reading its own resident memory.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

/// A unit's bytes in a memfd sealed against writing, shrinking and growing
/// (and against further seal changes), so a client may map it and trust
/// that the bytes never change or vanish.
#[derive(Debug)]
pub struct SealedSegment {
    fd: OwnedFd,
    len: u64,
}

impl SealedSegment {
    /// Copy `data` into a new sealed memfd named `name` (shown in clients'
    /// `/proc/PID/maps` as `/memfd:NAME`).
    pub fn new(name: &str, data: &[u8]) -> io::Result<SealedSegment> {
        let fd = memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(data)?;
        let fd = OwnedFd::from(file);
        fcntl_add_seals(
            &fd,
            SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
        )?;
        Ok(SealedSegment {
            fd,
            len: data.len() as u64,
        })
    }

    /// Its size.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty (never: units hold at least one byte).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The descriptor.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `sendmsg` the start of `bytes` with `fd` attached as `SCM_RIGHTS`;
/// returns how many bytes went (the caller sends the rest plainly: the
/// descriptor travels with the first byte).
pub fn send_with_fd(
    sock: impl AsFd,
    bytes: &[u8],
    fd: std::os::fd::BorrowedFd<'_>,
) -> io::Result<usize> {
    let fds = [fd];
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other(
            "ancillary buffer too small for one descriptor",
        ));
    }
    Ok(sendmsg(
        sock,
        &[io::IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?)
}

/// Resident set size of this process, bytes (from `/proc/self/status`).
pub fn own_rss() -> Option<u64> {
    rss_of("self")
}

/// Resident set size of a process, bytes.
pub fn rss_of(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Raise the soft limit on open files to the hard limit: every connection
/// is a descriptor, and the default soft limit (often 1024) would cap the
/// daemon far below `max_connections`. Returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum {
        if lim.current != Some(max) {
            lim.current = Some(max);
            let _ = setrlimit(Resource::Nofile, lim);
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
