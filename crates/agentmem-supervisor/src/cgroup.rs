//! One cgroup per agent: cgroup v2 when it is mounted with the memory
//! controller, else cgroup v1 memory + freezer hierarchies.
//!
//! Agents live under `agentmem/NAME` in each hierarchy. The cgroup is what
//! "the agent" means to the supervisor: every process in it is measured,
//! paged out, frozen and thawed together.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which cgroup layout the machine offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupLayout {
    /// A cgroup v2 mount whose root enables (or can enable) `memory`.
    V2 {
        /// The mount point.
        root: PathBuf,
    },
    /// cgroup v1 `memory` and `freezer` hierarchies.
    V1 {
        /// The memory hierarchy's mount point.
        memory: PathBuf,
        /// The freezer hierarchy's mount point.
        freezer: PathBuf,
    },
}

/// The mount points of cgroup file systems, from /proc/self/mountinfo:
/// (cgroup2 mounts, v1 mounts with their controllers).
fn mounts() -> (Vec<PathBuf>, Vec<(PathBuf, Vec<String>)>) {
    let (mut v2, mut v1) = (Vec::new(), Vec::new());
    let infos = ::procfs::process::Process::myself().and_then(|p| p.mountinfo());
    for m in infos.into_iter().flatten() {
        match m.fs_type.as_str() {
            "cgroup2" => v2.push(m.mount_point),
            // A v1 hierarchy's controllers are among its super options.
            "cgroup" => v1.push((m.mount_point, m.super_options.into_keys().collect())),
            _ => {}
        }
    }
    (v2, v1)
}

impl CgroupLayout {
    /// Finds the layout to use, or says what is missing.
    pub fn detect() -> Result<CgroupLayout> {
        let (v2, v1) = mounts();
        for root in v2 {
            let ctl = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            if ctl.split_whitespace().any(|c| c == "memory") {
                return Ok(CgroupLayout::V2 { root });
            }
        }
        let find = |c: &str| {
            v1.iter()
                .find(|(_, o)| o.iter().any(|x| x == c))
                .map(|(p, _)| p.clone())
        };
        match (find("memory"), find("freezer")) {
            (Some(memory), Some(freezer)) => Ok(CgroupLayout::V1 { memory, freezer }),
            _ => Err(Error::Missing {
                what: "a cgroup hierarchy with the memory controller and a freezer".into(),
                how: "mount cgroup2 with the memory controller enabled, or cgroup v1 `memory` and `freezer` hierarchies".into(),
            }),
        }
    }

    /// In plain words.
    pub fn describe(&self) -> String {
        match self {
            CgroupLayout::V2 { root } => format!(
                "cgroup v2 at {} with memory (freezer built in)",
                root.display()
            ),
            CgroupLayout::V1 { memory, freezer } => format!(
                "cgroup v1: memory at {}, freezer at {}",
                memory.display(),
                freezer.display()
            ),
        }
    }
}

/// Removes every empty agent cgroup under `agentmem` in each hierarchy of
/// `layout`, then the `agentmem` parents once empty. Cgroups that still
/// hold processes stay. Returns the directories removed.
pub fn remove_empty(layout: &CgroupLayout) -> Vec<PathBuf> {
    let parents = match layout {
        CgroupLayout::V2 { root } => vec![root.join("agentmem")],
        CgroupLayout::V1 { memory, freezer } => {
            vec![memory.join("agentmem"), freezer.join("agentmem")]
        }
    };
    let mut removed = Vec::new();
    for parent in parents {
        if let Ok(rd) = fs::read_dir(&parent) {
            for e in rd.flatten() {
                let d = e.path();
                let empty =
                    fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|s| s.trim().is_empty());
                if d.is_dir() && empty && fs::remove_dir(&d).is_ok() {
                    removed.push(d);
                }
            }
        }
        if fs::remove_dir(&parent).is_ok() {
            removed.push(parent);
        }
    }
    removed
}

/// Checks that `name` is usable as a cgroup and file name.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "agent name {name:?} is not valid: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

/// The cgroup of one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCgroup {
    layout: CgroupLayout,
    name: String,
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|e| Error::io(format!("writing {value:?} to"), path, e))
}

impl AgentCgroup {
    /// The cgroup for agent `name` (not created yet).
    pub fn new(layout: CgroupLayout, name: &str) -> Result<AgentCgroup> {
        validate_name(name)?;
        Ok(AgentCgroup {
            layout,
            name: name.to_string(),
        })
    }

    /// The layout this cgroup lives in.
    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    /// The directories of this cgroup (one on v2, memory and freezer on v1).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match &self.layout {
            CgroupLayout::V2 { root } => vec![root.join("agentmem").join(&self.name)],
            CgroupLayout::V1 { memory, freezer } => vec![
                memory.join("agentmem").join(&self.name),
                freezer.join("agentmem").join(&self.name),
            ],
        }
    }

    /// Creates the cgroup (and the `agentmem` parent), enabling the memory
    /// controller for it on v2.
    pub fn create(&self) -> Result<()> {
        if let CgroupLayout::V2 { root } = &self.layout {
            let parent = root.join("agentmem");
            fs::create_dir_all(&parent).map_err(|e| Error::io("creating", &parent, e))?;
            write(&root.join("cgroup.subtree_control"), "+memory")?;
            write(&parent.join("cgroup.subtree_control"), "+memory")?;
        }
        for d in self.dirs() {
            fs::create_dir_all(&d).map_err(|e| Error::io("creating", &d, e))?;
        }
        Ok(())
    }

    /// True when the cgroup directories exist.
    pub fn exists(&self) -> bool {
        self.dirs().iter().all(|d| d.is_dir())
    }

    /// Moves process `pid` (all its threads) into the cgroup.
    pub fn add(&self, pid: i32) -> Result<()> {
        for d in self.dirs() {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// True when process `pid` is in this cgroup (from /proc/PID/cgroup).
    pub fn contains(&self, pid: i32) -> bool {
        let suffix = format!("/agentmem/{}", self.name);
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|s| s.lines().any(|l| l.ends_with(&suffix)))
    }

    /// The processes in the cgroup.
    pub fn procs(&self) -> Vec<i32> {
        let d = &self.dirs()[0];
        fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        // (file to write, value, file to watch, the line that says it is done)
        let (file, value, check_file, done_line) = match &self.layout {
            CgroupLayout::V2 { .. } => {
                let d = &self.dirs()[0];
                let v = if frozen { "1" } else { "0" };
                (
                    d.join("cgroup.freeze"),
                    v,
                    d.join("cgroup.events"),
                    if frozen { "frozen 1" } else { "frozen 0" },
                )
            }
            CgroupLayout::V1 { .. } => {
                let d = &self.dirs()[1];
                let v = if frozen { "FROZEN" } else { "THAWED" };
                (d.join("freezer.state"), v, d.join("freezer.state"), v)
            }
        };
        let done = |s: &str| s.lines().any(|l| l.trim() == done_line);
        write(&file, value)?;
        // Freezing completes asynchronously (v1 reports FREEZING meanwhile).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = fs::read_to_string(&check_file)
                .map_err(|e| Error::io("reading", &check_file, e))?;
            if done(&s) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Invalid(format!(
                    "cgroup {} did not become {} within 5 s ({})",
                    self.name,
                    value,
                    s.trim()
                )));
            }
            if frozen {
                // v1 retries the freeze on each write.
                let _ = fs::write(&file, value);
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Freezes every process in the cgroup and waits until they are frozen.
    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    /// Thaws the cgroup.
    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    /// True when the cgroup is frozen.
    pub fn is_frozen(&self) -> bool {
        match &self.layout {
            CgroupLayout::V2 { .. } => fs::read_to_string(self.dirs()[0].join("cgroup.events"))
                .is_ok_and(|s| s.lines().any(|l| l == "frozen 1")),
            CgroupLayout::V1 { .. } => fs::read_to_string(self.dirs()[1].join("freezer.state"))
                .is_ok_and(|s| s.trim() != "THAWED"),
        }
    }

    /// Removes the cgroup once it is empty (thawing it first), and the
    /// `agentmem` parents once no agent is left in them. Errors are ignored:
    /// a cgroup that still holds processes stays.
    pub fn remove(&self) {
        let _ = self.thaw();
        for d in self.dirs() {
            let _ = fs::remove_dir(&d);
            if let Some(parent) = d.parent() {
                // Fails (ENOTEMPTY/EBUSY) while other agents live there.
                let _ = fs::remove_dir(parent);
            }
        }
    }

    /// The memory directory (v2: the cgroup; v1: the memory hierarchy's).
    fn memory_dir(&self) -> PathBuf {
        self.dirs().swap_remove(0)
    }

    /// The memory charged to the cgroup, from its own files.
    pub fn memory(&self) -> Result<CgroupMemory> {
        let d = self.memory_dir();
        let read = |f: &str| {
            let p = d.join(f);
            fs::read_to_string(&p).map_err(|e| Error::io("reading", &p, e))
        };
        let num = |f: &str| -> Result<u64> {
            let s = read(f)?;
            s.trim().parse().map_err(|_| Error::Parse {
                path: d.join(f),
                what: format!("not a number: {:?}", s.trim()),
            })
        };
        let stat = read("memory.stat")?;
        let field = |k: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0)
        };
        Ok(match &self.layout {
            CgroupLayout::V2 { .. } => CgroupMemory {
                usage: num("memory.current")?,
                swap_cache: field("swapcached"),
                swap: num("memory.swap.current").unwrap_or(0),
                writeback: field("file_writeback"),
                zswap: field("zswap"),
            },
            CgroupLayout::V1 { .. } => CgroupMemory {
                usage: num("memory.usage_in_bytes")?,
                swap_cache: field("swapcached"),
                swap: field("swap"),
                writeback: field("writeback"),
                zswap: 0,
            },
        })
    }

    /// Reclaims the cgroup's swap cache: the pages a page-out wrote to the
    /// swap file stay in RAM as swap cache once written (the kernel frees them
    /// only under memory pressure), so RAM is given back only after this.
    ///
    /// Waits up to `wait` for the writeback to finish (pages under writeback
    /// cannot be freed), then asks the kernel to reclaim that many bytes from
    /// this cgroup alone: cgroup v2 `memory.reclaim`; cgroup v1 has no such
    /// file, so `memory.limit_in_bytes` is lowered to the usage minus the swap
    /// cache for the moment of the write (the kernel reclaims down to it, from
    /// the tail of the inactive list, where written-back pages were rotated)
    /// and set back at once. Pages zswap stored never enter the swap cache.
    /// Returns the cgroup's usage before and after.
    pub fn drop_swap_cache(&self, wait: Duration) -> Result<(CgroupMemory, CgroupMemory)> {
        let deadline = Instant::now() + wait;
        let mut before = self.memory()?;
        while before.writeback > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
            before = self.memory()?;
        }
        if before.swap_cache == 0 {
            return Ok((before, before));
        }
        let d = self.memory_dir();
        match &self.layout {
            CgroupLayout::V2 { .. } => {
                // EAGAIN when less could be reclaimed than asked: fine, the
                // figures after say what left.
                let _ = fs::write(d.join("memory.reclaim"), before.swap_cache.to_string());
            }
            CgroupLayout::V1 { .. } => {
                let limit = d.join("memory.limit_in_bytes");
                let old =
                    fs::read_to_string(&limit).map_err(|e| Error::io("reading", &limit, e))?;
                let target = before.usage.saturating_sub(before.swap_cache).max(1 << 20);
                // EBUSY when the kernel could not get down to the target:
                // fine, the figures after say what left. The limit is
                // restored whatever the lowering did.
                let _ = fs::write(&limit, target.to_string());
                write(&limit, old.trim())?;
            }
        }
        Ok((before, self.memory()?))
    }
}

/// Memory charged to one cgroup, in bytes, from its own files (v2
/// `memory.current`, `memory.swap.current`, `memory.stat`; v1
/// `memory.usage_in_bytes`, `memory.stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMemory {
    /// RAM charged to it: anonymous and file pages, swap cache included.
    /// Not the zswap pool on v1 (v2 charges it to the cgroup).
    pub usage: u64,
    /// Of which swap cache: pages both in swap and still in RAM.
    pub swap_cache: u64,
    /// Swap it uses (zswap or the swap file).
    pub swap: u64,
    /// Pages being written back right now.
    pub writeback: u64,
    /// RAM of the zswap pool charged to it (v2 only; v1 does not charge the pool).
    pub zswap: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_are_checked() {
        for ok in ["a", "agent-1", "x_y.z", &"n".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "..", "sp ace", &"n".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
