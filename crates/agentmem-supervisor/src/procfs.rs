//! Reading /proc: per-process CPU time, I/O, memory and mappings, and the
//! machine's memory, swap, zswap and pressure figures.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pageset::PageSet;

fn read(path: &str) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))
}

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
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 (index 0 here); utime 14, stime 15, starttime 22.
    let state = f.first()?.chars().next()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let start: u64 = f.get(19)?.parse().ok()?;
    Some(ProcStat {
        cpu_ticks: utime + stime,
        start_ticks: start,
        state,
    })
}

/// Bytes read and written by a process through any file descriptor
/// (terminal, sockets, pipes, files): /proc/PID/io `rchar + wchar`.
pub fn io_bytes(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let mut total = 0;
    for line in s.lines() {
        if let Some(v) = line
            .strip_prefix("rchar: ")
            .or_else(|| line.strip_prefix("wchar: "))
        {
            total += v.trim().parse::<u64>().ok()?;
        }
    }
    Some(total)
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

fn kb_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(name)?.strip_prefix(':')?;
        Some(v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()? * 1024)
    })
}

/// Memory of `pid` from /proc/PID/smaps_rollup and /proc/PID/ksm_stat.
pub fn mem_usage(pid: i32) -> Option<MemUsage> {
    let s = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let ksm = fs::read_to_string(format!("/proc/{pid}/ksm_stat"))
        .ok()
        .and_then(|k| {
            k.lines().find_map(|l| {
                l.strip_prefix("ksm_merging_pages ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0);
    Some(MemUsage {
        rss_bytes: kb_field(&s, "Rss").unwrap_or(0),
        pss_bytes: kb_field(&s, "Pss").unwrap_or(0),
        swap_bytes: kb_field(&s, "Swap").unwrap_or(0),
        ksm_merged_pages: ksm,
    })
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
}

/// Reads /proc/meminfo.
pub fn meminfo() -> Result<MemInfo> {
    let s = read("/proc/meminfo")?;
    let f = |n| kb_field(&s, n).unwrap_or(0);
    Ok(MemInfo {
        total: f("MemTotal"),
        available: f("MemAvailable"),
        swap_total: f("SwapTotal"),
        swap_free: f("SwapFree"),
        zswap_pool: f("Zswap"),
        zswapped: f("Zswapped"),
    })
}

/// `some avg10` of /proc/pressure/memory (percent of time in the last 10 s
/// that some task stalled on memory), or `None` without PSI.
pub fn memory_pressure_some_avg10() -> Option<f64> {
    let s = fs::read_to_string("/proc/pressure/memory").ok()?;
    let line = s.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("avg10="))
        .and_then(|v| v.parse().ok())
}

/// The private, writable, anonymous mappings of `pid` (heap, stacks,
/// anonymous mmaps): what page-out applies to. File mappings are left to
/// the kernel's page cache.
pub fn anon_ranges(pid: i32) -> Result<PageSet> {
    let path = format!("/proc/{pid}/maps");
    let s = read(&path)?;
    let mut v = Vec::new();
    for line in s.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(perms)) = (it.next(), it.next()) else {
            continue;
        };
        let name = it.nth(3).unwrap_or("");
        let p = perms.as_bytes();
        if p.len() < 4 || p[1] != b'w' || p[3] != b'p' {
            continue;
        }
        if !(name.is_empty()
            || name == "[heap]"
            || name.starts_with("[stack")
            || name.starts_with("[anon"))
        {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            return Err(Error::Parse {
                path: path.into(),
                what: format!("bad range {range:?}"),
            });
        };
        v.push((a, b));
    }
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
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
    // After the name: tty_nr is field 7 (index 4), utime 14, stime 15.
    let tty = f.get(4)?.parse::<i64>().ok()? != 0;
    let cpu = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let io = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |n: &str| {
        io.lines().find_map(|l| {
            l.strip_prefix(n)?
                .strip_prefix(": ")?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    let (rchar, wchar, syscw) = (field("rchar")?, field("wchar")?, field("syscw")?);
    let atime = || {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        fs::metadata(format!("/proc/{pid}/fd/0"))
            .ok()
            .filter(|m| m.file_type().is_char_device())
            .map_or(0, |m| m.atime())
    };
    Some(crate::idle::Counters {
        cpu_ticks: cpu,
        io_bytes: rchar + wchar,
        tty_wchar: if tty { wchar } else { 0 },
        tty_syscw: if tty { syscw } else { 0 },
        tty_atime: if tty { atime() } else { 0 },
        tty,
    })
}
