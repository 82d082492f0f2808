//! `agentmem setup`: check the machine, apply the agent memory profile, and
//! revert it exactly.
//!
//! Every setting changed by [`apply`] is recorded (path, value before, value
//! written) in a state file *before* the next one is changed, so [`revert`]
//! restores exactly what was there, even after an interrupted apply.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroup::CgroupLayout;
use crate::error::{Error, Result};
use crate::procfs;
use crate::sys;

const ZSWAP: &str = "/sys/module/zswap/parameters";
const KSM: &str = "/sys/kernel/mm/ksm";

/// Compressors in order of preference for agent heaps. Measured on the test
/// agent's heap (docs/supervisor.md): deflate packs pages 3.8× against lzo's
/// 3.0× but compresses at about 25 MB/s against 200 MB/s and decompresses 5×
/// slower, which resume latency cannot afford; the pool's size, not its
/// ratio, bounds idle memory (cold pages go on to the swap file).
pub const COMPRESSOR_PREFERENCE: &[&str] = &["zstd", "lz4", "lzo-rle", "lzo", "deflate"];

/// The agent memory profile. Defaults are the measured agent profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The zswap compressor; `None` picks the first of
    /// [`COMPRESSOR_PREFERENCE`] that the kernel offers. Default: `None`.
    pub compressor: Option<String>,
    /// Largest zswap pool in percent of RAM: the RAM budget of the compressed
    /// warm tier; beyond it zswap writes the oldest pages to the swap file.
    /// Default: 1 (see docs/supervisor.md for why).
    pub max_pool_percent: u32,
    /// The swap file behind zswap. Default: `/var/lib/agentmem/swapfile`.
    pub swap_file: PathBuf,
    /// Its size in bytes. Default: 4 GiB.
    pub swap_size: u64,
    /// `vm.swappiness`. Default: 100 (anonymous and file pages reclaimed alike).
    pub swappiness: u32,
    /// `vm.page-cluster`. Default: 0: zswap needs no swap read-ahead and the
    /// supervisor prefetches what an agent needs itself.
    pub page_cluster: u32,
    /// KSM `pages_to_scan` per wake-up. Default: 1000.
    pub ksm_pages_to_scan: u32,
    /// KSM `sleep_millisecs`. Default: 200 (about 5 % of a core on 20 agents).
    pub ksm_sleep_ms: u32,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            compressor: None,
            max_pool_percent: 1,
            swap_file: PathBuf::from("/var/lib/agentmem/swapfile"),
            swap_size: 4 << 30,
            swappiness: 100,
            page_cluster: 0,
            ksm_pages_to_scan: 1000,
            ksm_sleep_ms: 200,
        }
    }
}

/// Reads a sysfs/procfs setting: the trimmed text, or the bracketed choice
/// of a selection file (`[none] scan-time` reads as `none`).
pub fn read_setting(path: &Path) -> Result<String> {
    let s = fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    let s = s.trim();
    if let (Some(a), Some(b)) = (s.find('['), s.find(']')) {
        if a < b {
            return Ok(s[a + 1..b].to_string());
        }
    }
    Ok(s.to_string())
}

fn write_setting(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|e| Error::io(format!("writing {value:?} to"), path, e))
}

/// Compressors the kernel's crypto API offers now (from /proc/crypto).
pub fn offered_compressors() -> Vec<String> {
    let s = fs::read_to_string("/proc/crypto").unwrap_or_default();
    let mut v: Vec<String> = Vec::new();
    let mut name = None;
    for line in s.lines() {
        if let Some(n) = line.strip_prefix("name") {
            name = n.split(':').nth(1).map(|x| x.trim().to_string());
        }
        if line.starts_with("type")
            && (line.ends_with("compression") || line.ends_with("acomp") || line.ends_with("scomp"))
        {
            if let Some(n) = name.take() {
                if !v.contains(&n) {
                    v.push(n);
                }
            }
        }
    }
    v
}

/// An active swap area from /proc/swaps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapArea {
    /// Its path.
    pub path: PathBuf,
    /// `file` or `partition`.
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Bytes used.
    pub used: u64,
}

/// The active swap areas.
pub fn swap_areas() -> Vec<SwapArea> {
    let s = fs::read_to_string("/proc/swaps").unwrap_or_default();
    s.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(SwapArea {
                path: PathBuf::from(f.first()?.replace("\\040", " ")),
                kind: f.get(1)?.to_string(),
                size: f.get(2)?.parse::<u64>().ok()? * 1024,
                used: f.get(3)?.parse::<u64>().ok()? * 1024,
            })
        })
        .collect()
}

/// One line of `setup --check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckItem {
    /// What is checked.
    pub what: String,
    /// Its state, in plain words.
    pub state: String,
    /// False when agentmem lacks something here.
    pub ok: bool,
    /// How to fix it, when not ok.
    pub hint: Option<String>,
}

fn item(what: &str, state: String, ok: bool, hint: Option<&str>) -> CheckItem {
    CheckItem {
        what: what.into(),
        state,
        ok,
        hint: if ok { None } else { hint.map(str::to_string) },
    }
}

/// Inspects the machine: KSM, zswap, swap, PSI, cgroups, privileges.
pub fn check() -> Vec<CheckItem> {
    let rd = |p: &str| read_setting(Path::new(p)).ok();
    let mut v = Vec::new();
    v.push(item(
        "privileges",
        if sys::is_root() {
            "running as root".into()
        } else {
            "not root".into()
        },
        sys::is_root(),
        Some("run agentmem setup/run/supervise as root"),
    ));
    match rd(&format!("{KSM}/run")) {
        Some(run) => v.push(item(
            "KSM",
            format!(
                "run={} ({}), pages_to_scan={}, sleep_millisecs={}, pages_sharing={}",
                run,
                if run == "1" { "on" } else { "off" },
                rd(&format!("{KSM}/pages_to_scan")).unwrap_or_default(),
                rd(&format!("{KSM}/sleep_millisecs")).unwrap_or_default(),
                rd(&format!("{KSM}/pages_sharing")).unwrap_or_default()
            ),
            run == "1",
            Some("`agentmem setup --apply` turns KSM on (run=1)"),
        )),
        None => v.push(item(
            "KSM",
            "not built into this kernel".into(),
            false,
            Some("build the kernel with CONFIG_KSM=y"),
        )),
    }
    match rd(&format!("{ZSWAP}/enabled")) {
        Some(en) => {
            let zpool = rd(&format!("{ZSWAP}/zpool"))
                .map(|z| format!(", zpool={z}"))
                .unwrap_or_default();
            v.push(item(
                "zswap",
                format!(
                    "enabled={}, compressor={}{}, max_pool_percent={}, shrinker_enabled={}; kernel offers: {}",
                    en,
                    rd(&format!("{ZSWAP}/compressor")).unwrap_or_default(),
                    zpool,
                    rd(&format!("{ZSWAP}/max_pool_percent")).unwrap_or_default(),
                    rd(&format!("{ZSWAP}/shrinker_enabled")).unwrap_or_else(|| "n/a".into()),
                    offered_compressors().join(", ")
                ),
                en == "Y",
                Some("`agentmem setup --apply` enables zswap with the best compressor offered"),
            ))
        }
        None => v.push(item(
            "zswap",
            "not built into this kernel".into(),
            false,
            Some("build with CONFIG_ZSWAP=y"),
        )),
    }
    let areas = swap_areas();
    v.push(item(
        "swap",
        if areas.is_empty() {
            "no swap device or file is active".into()
        } else {
            areas
                .iter()
                .map(|a| format!("{} ({}, {} MiB, {} MiB used)", a.path.display(), a.kind, a.size >> 20, a.used >> 20))
                .collect::<Vec<_>>()
                .join("; ")
        },
        !areas.is_empty(),
        Some("page-out needs swap behind zswap: `agentmem setup --apply --swap-file PATH --swap-size SIZE`"),
    ));
    v.push(item(
        "vm",
        format!(
            "swappiness={}, page-cluster={}",
            rd("/proc/sys/vm/swappiness").unwrap_or_default(),
            rd("/proc/sys/vm/page-cluster").unwrap_or_default()
        ),
        true,
        None,
    ));
    let psi = procfs::memory_pressure_some_avg10();
    v.push(item(
        "PSI",
        match psi {
            Some(p) => format!("available, memory some avg10={p:.2}"),
            None => "not available (no /proc/pressure/memory)".into(),
        },
        psi.is_some(),
        Some("boot with psi=1 (CONFIG_PSI=y); without it the pressure brake is off"),
    ));
    match CgroupLayout::detect() {
        Ok(l) => v.push(item("cgroups", l.describe(), true, None)),
        Err(e) => v.push(item(
            "cgroups",
            e.to_string(),
            false,
            Some("mount cgroup2 with +memory, or v1 memory and freezer"),
        )),
    }
    let pm = procfs::exists("/proc/self/pagemap");
    v.push(item(
        "pagemap",
        if pm {
            "available (idle working set learning)".into()
        } else {
            "missing".into()
        },
        pm,
        Some("needs CONFIG_PROC_PAGE_MONITOR=y"),
    ));
    v
}

/// One planned or applied change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// In words.
    pub what: String,
    /// The sysfs/procfs file.
    pub path: PathBuf,
    /// Its value before.
    pub before: String,
    /// The value written.
    pub after: String,
}

/// The state file of an applied profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    /// Settings changed, in order.
    pub changes: Vec<Change>,
    /// A swap file this profile created and turned on.
    pub swap_file_created: Option<PathBuf>,
    /// An existing swap file this profile turned on (left in place on revert).
    pub swap_file_enabled: Option<PathBuf>,
}

/// What [`plan`] would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Setting changes (only those whose value differs).
    pub changes: Vec<Change>,
    /// The swap file to create (size) or enable, if any.
    pub swap: Option<(PathBuf, u64, bool)>,
}

/// Works out the changes needed for `profile` on this machine.
pub fn plan(profile: &Profile) -> Result<Plan> {
    if !Path::new(ZSWAP).is_dir() {
        return Err(Error::Missing {
            what: "zswap".into(),
            how: "build the kernel with CONFIG_ZSWAP=y".into(),
        });
    }
    if !Path::new(KSM).is_dir() {
        return Err(Error::Missing {
            what: "KSM".into(),
            how: "build the kernel with CONFIG_KSM=y".into(),
        });
    }
    let offered = offered_compressors();
    let compressor = match &profile.compressor {
        Some(c) if offered.contains(c) => c.clone(),
        Some(c) => {
            return Err(Error::Invalid(format!(
                "compressor {c:?} is not offered by this kernel (offered: {})",
                offered.join(", ")
            )))
        }
        None => COMPRESSOR_PREFERENCE
            .iter()
            .find(|c| offered.iter().any(|o| o == *c))
            .map(|c| c.to_string())
            .ok_or_else(|| Error::Missing {
                what: "a zswap compressor".into(),
                how: format!(
                    "load one of {} (modprobe)",
                    COMPRESSOR_PREFERENCE.join(", ")
                ),
            })?,
    };
    let mut wanted: Vec<(&str, PathBuf, String)> = vec![(
        "zswap compressor",
        format!("{ZSWAP}/compressor").into(),
        compressor,
    )];
    // Kernels before 6.15 choose an allocator; zsmalloc packs best.
    if Path::new(&format!("{ZSWAP}/zpool")).exists() {
        wanted.push((
            "zswap zpool",
            format!("{ZSWAP}/zpool").into(),
            "zsmalloc".into(),
        ));
    }
    wanted.extend([
        (
            "zswap max_pool_percent",
            format!("{ZSWAP}/max_pool_percent").into(),
            profile.max_pool_percent.to_string(),
        ),
        (
            "zswap shrinker (write cold pages to the swap file)",
            format!("{ZSWAP}/shrinker_enabled").into(),
            "Y".into(),
        ),
        (
            "zswap enabled",
            format!("{ZSWAP}/enabled").into(),
            "Y".into(),
        ),
        (
            "vm.swappiness",
            "/proc/sys/vm/swappiness".into(),
            profile.swappiness.to_string(),
        ),
        (
            "vm.page-cluster",
            "/proc/sys/vm/page-cluster".into(),
            profile.page_cluster.to_string(),
        ),
        (
            "KSM pages_to_scan",
            format!("{KSM}/pages_to_scan").into(),
            profile.ksm_pages_to_scan.to_string(),
        ),
        (
            "KSM sleep_millisecs",
            format!("{KSM}/sleep_millisecs").into(),
            profile.ksm_sleep_ms.to_string(),
        ),
        (
            "KSM use_zero_pages",
            format!("{KSM}/use_zero_pages").into(),
            "1".into(),
        ),
        ("KSM run", format!("{KSM}/run").into(), "1".into()),
    ]);
    let mut changes = Vec::new();
    for (what, path, after) in wanted {
        if !path.exists() {
            continue;
        }
        let before = read_setting(&path)?;
        if before != after {
            changes.push(Change {
                what: what.into(),
                path,
                before,
                after,
            });
        }
    }
    let swap = if swap_areas().iter().any(|a| a.path == profile.swap_file) {
        None
    } else {
        Some((
            profile.swap_file.clone(),
            profile.swap_size,
            !profile.swap_file.exists(),
        ))
    };
    Ok(Plan { changes, swap })
}

fn save_state(path: &Path, st: &AppliedState) -> Result<()> {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).map_err(|e| Error::io("creating", d, e))?;
    }
    let body = serde_json::to_vec_pretty(st).expect("state serializes");
    crate::agent::write_atomic(path, &body)
}

/// Reads an applied state file, if there is one.
pub fn load_state(path: &Path) -> Result<Option<AppliedState>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::Parse {
                path: path.into(),
                what: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path, e)),
    }
}

/// Writes a swap file of `size` bytes: allocated without holes (swapon
/// refuses holes) and given a swap header. The header is written here rather
/// than by running mkswap so that setup does not depend on util-linux; its
/// layout (version 1, last page, "SWAPSPACE2" at the end of page 0) is fixed.
pub fn create_swap_file(path: &Path, size: u64) -> Result<()> {
    let pages = size / sys::PAGE;
    if pages < 10 {
        return Err(Error::Invalid(format!(
            "swap size {size} is too small (at least 40 KiB)"
        )));
    }
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).map_err(|e| Error::io("creating", d, e))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io("creating swap file", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("chmod 600", path, e))?;
    rustix::fs::fallocate(
        &f,
        rustix::fs::FallocateFlags::empty(),
        0,
        pages * sys::PAGE,
    )
    .map_err(|e| {
        Error::sys(
            format!("fallocate({}, {} bytes)", path.display(), pages * sys::PAGE),
            e.into(),
        )
    })?;
    let mut header = vec![0u8; sys::PAGE as usize];
    header[1024..1028].copy_from_slice(&1u32.to_ne_bytes());
    header[1028..1032].copy_from_slice(&((pages - 1) as u32).to_ne_bytes());
    let magic = b"SWAPSPACE2";
    header[sys::PAGE as usize - magic.len()..].copy_from_slice(magic);
    f.write_all(&header)
        .map_err(|e| Error::io("writing the swap header to", path, e))?;
    f.sync_all().map_err(|e| Error::io("syncing", path, e))?;
    Ok(())
}

/// Applies a plan, printing each change through `report`, recording each in
/// `state_path` before making the next. Fails if a profile is already applied.
pub fn apply(plan: &Plan, state_path: &Path, mut report: impl FnMut(&str)) -> Result<AppliedState> {
    if !sys::is_root() {
        return Err(Error::NotPermitted(
            "changing zswap, swap, vm and KSM settings".into(),
        ));
    }
    if load_state(state_path)?.is_some() {
        return Err(Error::Invalid(format!(
            "a profile is already applied (state in {}); run `agentmem setup --revert` first",
            state_path.display()
        )));
    }
    let mut st = AppliedState::default();
    save_state(state_path, &st)?;
    if let Some((path, size, create)) = &plan.swap {
        if *create {
            report(&format!(
                "creating swap file {} of {} MiB",
                path.display(),
                size >> 20
            ));
            create_swap_file(path, *size)?;
            st.swap_file_created = Some(path.clone());
            save_state(state_path, &st)?;
        }
        report(&format!("swapon {}", path.display()));
        sys::swapon(path)?;
        if !*create {
            st.swap_file_enabled = Some(path.clone());
        }
        save_state(state_path, &st)?;
    }
    for c in &plan.changes {
        report(&format!(
            "{}: {} -> {} ({})",
            c.what,
            c.before,
            c.after,
            c.path.display()
        ));
        st.changes.push(c.clone());
        save_state(state_path, &st)?;
        write_setting(&c.path, &c.after)?;
    }
    Ok(st)
}

/// Restores everything recorded in `state_path`, newest first, then removes
/// the state file. Returns what was restored; `Ok(None)` when nothing was applied.
pub fn revert(state_path: &Path, mut report: impl FnMut(&str)) -> Result<Option<AppliedState>> {
    let Some(mut st) = load_state(state_path)? else {
        return Ok(None);
    };
    if !sys::is_root() {
        return Err(Error::NotPermitted(
            "restoring zswap, swap, vm and KSM settings".into(),
        ));
    }
    let done = st.clone();
    while let Some(c) = st.changes.last().cloned() {
        report(&format!(
            "{}: {} -> {} ({})",
            c.what,
            c.after,
            c.before,
            c.path.display()
        ));
        write_setting(&c.path, &c.before)?;
        st.changes.pop();
        save_state(state_path, &st)?;
    }
    for p in [st.swap_file_enabled.take(), st.swap_file_created.clone()]
        .into_iter()
        .flatten()
    {
        if swap_areas().iter().any(|a| a.path == p) {
            report(&format!("swapoff {}", p.display()));
            sys::swapoff(&p)?;
        }
        save_state(state_path, &st)?;
    }
    if let Some(p) = st.swap_file_created.take() {
        report(&format!("removing swap file {}", p.display()));
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", &p, e)),
        }
    }
    fs::remove_file(state_path).map_err(|e| Error::io("removing", state_path, e))?;
    Ok(Some(done))
}

/// Every setting [`plan`] may touch and its current value, plus the active
/// swap areas: two snapshots are equal when setup left nothing behind.
pub fn snapshot() -> Vec<(PathBuf, String)> {
    let mut v = Vec::new();
    for dir in [ZSWAP, KSM] {
        if let Ok(rd) = fs::read_dir(dir) {
            let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            names.sort();
            for p in names {
                let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                // Counters that move on their own are not settings.
                if dir == KSM
                    && !matches!(
                        n,
                        "run"
                            | "pages_to_scan"
                            | "sleep_millisecs"
                            | "use_zero_pages"
                            | "merge_across_nodes"
                            | "max_page_sharing"
                            | "smart_scan"
                            | "advisor_mode"
                    )
                {
                    continue;
                }
                if let Ok(s) = read_setting(&p) {
                    v.push((p, s));
                }
            }
        }
    }
    for p in ["/proc/sys/vm/swappiness", "/proc/sys/vm/page-cluster"] {
        if let Ok(s) = read_setting(Path::new(p)) {
            v.push((p.into(), s));
        }
    }
    for a in swap_areas() {
        v.push((a.path, format!("swap {} {}", a.kind, a.size)));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_files_read_as_their_bracketed_choice() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("advisor_mode");
        fs::write(&p, "[none] scan-time\n").unwrap();
        assert_eq!(read_setting(&p).unwrap(), "none");
        fs::write(&p, "lzo-rle\n").unwrap();
        assert_eq!(read_setting(&p).unwrap(), "lzo-rle");
        assert!(read_setting(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn the_profile_prefers_fast_compressors() {
        let lzo = COMPRESSOR_PREFERENCE
            .iter()
            .position(|c| *c == "lzo")
            .unwrap();
        let deflate = COMPRESSOR_PREFERENCE
            .iter()
            .position(|c| *c == "deflate")
            .unwrap();
        assert!(lzo < deflate, "deflate is too slow to decompress on resume");
    }
}
