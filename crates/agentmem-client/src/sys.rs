//! The client's system calls: receiving file descriptors with the bytes of
//! a stream, and mapping sealed memfd segments read-only.

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{fcntl_get_seals, fstat, SealFlags};
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

/// Descriptors accepted in one `recvmsg`. The daemon sends one per frame;
/// several frames may arrive in one read.
const FDS_PER_READ: usize = 16;

/// `recvmsg` into `buf`, queueing any descriptors received (close-on-exec)
/// in `fds`. Returns the bytes read; 0 is the end of the stream.
pub(crate) fn recv_with_fds(
    sock: impl AsFd,
    buf: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_READ))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        sock,
        &mut [io::IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = msg {
            fds.extend(received);
        }
    }
    Ok(got.bytes)
}

/// A unit's bytes in a sealed memfd, mapped read-only and shared with every
/// other process that maps the same segment: one physical copy however many
/// agents read it. Unmapped on drop.
pub struct Segment {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and its contents cannot change (the memfd
// is sealed against writes, shrinking and growing), so sharing references to
// it across threads is like sharing a `&[u8]`.
unsafe impl Send for Segment {}
// SAFETY: as above; no interior mutability.
unsafe impl Sync for Segment {}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("len", &self.len).finish()
    }
}

impl Segment {
    /// Map `fd`, which must be a memfd of exactly `len` bytes sealed
    /// against writing, shrinking and growing (checked: without the seals
    /// the bytes could change or vanish under the reader).
    pub(crate) fn map(fd: OwnedFd, len: u64) -> io::Result<Segment> {
        let seals = fcntl_get_seals(&fd)?;
        let need = SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW;
        if !seals.contains(need) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("shared segment is not sealed (seals {seals:?}, need WRITE|SHRINK|GROW)"),
            ));
        }
        let size = fstat(&fd)?.st_size as u64;
        if size != len || len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("shared segment holds {size} bytes, the daemon announced {len}"),
            ));
        }
        let len = usize::try_from(len).map_err(|_| io::Error::other("segment too large"))?;
        // SAFETY: a fresh mapping chosen by the kernel (null hint) of a file
        // at least `len` bytes long that can never shrink (SEAL_SHRINK), so
        // every page of the mapping stays backed; PROT_READ only.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        // The mapping holds its own reference to the file.
        drop(fd);
        Ok(Segment {
            ptr: NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
            len,
        })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is a live read-only mapping owned by `self`
        // whose contents are immutable (sealed), unmapped only in drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `map` with this address and
        // length, and no reference to it outlives `self`.
        let _ = unsafe { munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
