//! Reading /proc: per-process CPU time, I/O, memory and mappings, and the
//! machine's memory, swap, zswap and pressure figures.
//!
//! Parsing is the `procfs` crate's; what it does not know stays here,
//! minimal: `/proc/PID/ksm_stat` (Linux 6.1+, not in procfs 0.17).

use std::fs;
use std::path::Path;

use ::procfs::process::{MMPermissions, MMapPath, Process};
use ::procfs::{Current, Meminfo, MemoryPressure};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pageset::PageSet;

/// Fields of /proc/PID/stat the supervisor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// User + system CPU time in clock ticks.
    pub cpu_ticks: u64,
    /// Start time in clock ticks since boot: with the pid, identifies the process.
    pub start_ticks: u64,
    /// The one-letter state (R, S, D, T, Z, ...).
    pub state: char,
}

/// Reads /proc/PID/stat. `None` when the process does not exist.
pub fn stat(pid: i32) -> Option<ProcStat> {
    let s = Process::new(pid).ok()?.stat().ok()?;
    Some(ProcStat {
        cpu_ticks: s.utime + s.stime,
        start_ticks: s.starttime,
        state: s.state,
    })
}

/// Bytes read and written by a process through any file descriptor
/// (terminal, sockets, pipes, files): /proc/PID/io `rchar + wchar`.
pub fn io_bytes(pid: i32) -> Option<u64> {
    let io = Process::new(pid).ok()?.io().ok()?;
    Some(io.rchar + io.wchar)
}

/// Memory of one process (or a sum over several).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemUsage {
    /// Resident set size.
    pub rss_bytes: u64,
    /// Proportional set size: shared pages divided among their sharers.
    pub pss_bytes: u64,
    /// Bytes in swap (zswap or the swap file).
    pub swap_bytes: u64,
    /// Pages merged by KSM.
    pub ksm_merged_pages: u64,
}

impl std::ops::AddAssign for MemUsage {
    fn add_assign(&mut self, o: MemUsage) {
        self.rss_bytes += o.rss_bytes;
        self.pss_bytes += o.pss_bytes;
        self.swap_bytes += o.swap_bytes;
        self.ksm_merged_pages += o.ksm_merged_pages;
    }
}

/// Memory of `pid` from /proc/PID/smaps_rollup and /proc/PID/ksm_stat.
pub fn mem_usage(pid: i32) -> Option<MemUsage> {
    let r = Process::new(pid).ok()?.smaps_rollup().ok()?;
    let m = r.memory_map_rollup.0.first()?;
    let f = |k: &str| m.extension.map.get(k).copied().unwrap_or(0);
    Some(MemUsage {
        rss_bytes: f("Rss"),
        pss_bytes: f("Pss"),
        swap_bytes: f("Swap"),
        ksm_merged_pages: ksm_merging_pages(pid),
    })
}

/// Cheap memory counters of `pid`: RSS and swap from /proc/PID/status
/// (kept by the kernel as counters) and KSM from /proc/PID/ksm_stat; PSS is
/// left at 0 as it costs a walk of the page tables ([`mem_usage`]).
pub fn mem_counters(pid: i32) -> Option<MemUsage> {
    let s = Process::new(pid).ok()?.status().ok()?;
    Some(MemUsage {
        rss_bytes: s.vmrss.unwrap_or(0) * 1024,
        pss_bytes: 0,
        swap_bytes: s.vmswap.unwrap_or(0) * 1024,
        ksm_merged_pages: ksm_merging_pages(pid),
    })
}

/// `ksm_merging_pages` of /proc/PID/ksm_stat (0 without KSM): procfs 0.17
/// does not read this file.
fn ksm_merging_pages(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/ksm_stat"))
        .ok()
        .and_then(|k| {
            k.lines().find_map(|l| {
                l.strip_prefix("ksm_merging_pages ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Signals pending for `pid`, thread-directed or process-wide (`SigPnd` |
/// `ShdPnd` of /proc/PID/status), as a mask: bit `n - 1` for signal `n`.
pub fn pending_signals(pid: i32) -> Option<u64> {
    let s = Process::new(pid).ok()?.status().ok()?;
    Some(s.sigpnd | s.shdpnd)
}

/// The machine's memory figures from /proc/meminfo, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemInfo {
    /// MemTotal.
    pub total: u64,
    /// MemAvailable.
    pub available: u64,
    /// SwapTotal.
    pub swap_total: u64,
    /// SwapFree.
    pub swap_free: u64,
    /// Zswap: RAM used by the compressed pool.
    pub zswap_pool: u64,
    /// Zswapped: uncompressed bytes held in the pool.
    pub zswapped: u64,
    /// SwapCached: pages both in swap and in RAM (written out, not freed yet).
    pub swap_cached: u64,
}

/// Reads /proc/meminfo.
pub fn meminfo() -> Result<MemInfo> {
    let m = Meminfo::current().map_err(|e| proc_error("/proc/meminfo", e))?;
    Ok(MemInfo {
        total: m.mem_total,
        available: m.mem_available.unwrap_or(m.mem_free),
        swap_total: m.swap_total,
        swap_free: m.swap_free,
        zswap_pool: m.z_swap.unwrap_or(0),
        zswapped: m.z_swapped.unwrap_or(0),
        swap_cached: m.swap_cached,
    })
}

fn proc_error(path: &str, e: ::procfs::ProcError) -> Error {
    match e {
        ::procfs::ProcError::Io(io, _) => Error::io("reading", path, io),
        other => Error::Parse {
            path: path.into(),
            what: other.to_string(),
        },
    }
}

/// `some avg10` of /proc/pressure/memory (percent of time in the last 10 s
/// that some task stalled on memory), or `None` without PSI.
pub fn memory_pressure_some_avg10() -> Option<f64> {
    MemoryPressure::current().ok().map(|p| p.some.avg10 as f64)
}

/// The private, writable, anonymous mappings of `pid` (heap, stacks,
/// anonymous mmaps): what page-out applies to. File mappings are left to
/// the kernel's page cache.
pub fn anon_ranges(pid: i32) -> Result<PageSet> {
    let path = format!("/proc/{pid}/maps");
    let maps = Process::new(pid)
        .and_then(|p| p.maps())
        .map_err(|e| proc_error(&path, e))?;
    let v = maps
        .into_iter()
        .filter(|m| {
            m.perms.contains(MMPermissions::WRITE) && m.perms.contains(MMPermissions::PRIVATE)
        })
        .filter(|m| match &m.pathname {
            MMapPath::Anonymous | MMapPath::Heap | MMapPath::Stack | MMapPath::TStack(_) => true,
            MMapPath::Other(name) => name.starts_with("anon") || name.starts_with("stack"),
            _ => false,
        })
        .map(|m| m.address)
        .collect();
    Ok(PageSet::from_ranges(v))
}

/// True when `path` exists.
pub fn exists(path: impl AsRef<Path>) -> bool {
    path.as_ref().exists()
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// What the idle detector reads of one process: CPU ticks, whether it has
/// a controlling terminal (/proc/PID/stat `tty_nr`) and that terminal's
/// access time (its stdin's), and /proc/PID/io `rchar`, `wchar`, `syscw`.
/// `None` when the process is gone.
pub fn activity(pid: i32) -> Option<crate::idle::Counters> {
    let p = Process::new(pid).ok()?;
    let st = p.stat().ok()?;
    let io = p.io().ok()?;
    let tty = st.tty_nr != 0;
    // The terminal's atime: stat of the process's stdin (a tty or pty).
    let atime = || {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        fs::metadata(format!("/proc/{pid}/fd/0"))
            .ok()
            .filter(|m| m.file_type().is_char_device())
            .map_or(0, |m| m.atime())
    };
    Some(crate::idle::Counters {
        cpu_ticks: st.utime + st.stime,
        io_bytes: io.rchar + io.wchar,
        tty_wchar: if tty { io.wchar } else { 0 },
        tty_syscw: if tty { io.syscw } else { 0 },
        tty_atime: if tty { atime() } else { 0 },
        tty,
    })
}
