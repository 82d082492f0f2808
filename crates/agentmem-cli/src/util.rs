//! Small helpers shared by subcommands.

use anyhow::{Context, Result};

/// Parse a size such as `64MiB`, `1GiB`, `500MB` or `4096`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s)
        .map_err(|e| format!("invalid size {s:?}: {e} (examples: 4096, 64MiB, 1GiB)"))
}

/// `1.5 MiB`-style rendering.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// This process's resident memory in bytes (`Rss` of `/proc/self/smaps_rollup`).
pub fn rss_bytes() -> Result<u64> {
    let r = procfs::process::Process::myself()
        .and_then(|p| p.smaps_rollup())
        .context("reading /proc/self/smaps_rollup")?;
    r.memory_map_rollup
        .0
        .first()
        .and_then(|m| m.extension.map.get("Rss").copied())
        .context("no Rss line in /proc/self/smaps_rollup")
}

/// This process's peak resident memory in bytes (`VmHWM` of
/// `/proc/self/status`): the most it ever held.
pub fn peak_rss_bytes() -> Result<u64> {
    let s = procfs::process::Process::myself()
        .and_then(|p| p.status())
        .context("reading /proc/self/status")?;
    s.vmhwm
        .map(|kb| kb * 1024)
        .context("no VmHWM line in /proc/self/status")
}

/// Return freed heap memory to the kernel so that resident memory measures
/// what is live, not what the allocator kept (done the same way in every
/// mode that is compared).
pub fn settle_heap() {
    // SAFETY: malloc_trim only releases free memory held by glibc's
    // allocator; it has no preconditions and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_render() {
        assert_eq!(parse_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("lots").unwrap_err().contains("lots"));
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert!(rss_bytes().unwrap() > 0);
    }
}
