//! Agents: the persistent record of each supervised agent, and launching or
//! adopting one.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::cgroup::{validate_name, AgentCgroup, CgroupLayout};
use crate::error::{Error, Result};
use crate::pageset::PageSet;
use crate::{procfs, sys};

/// What the supervisor knows about an agent's activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Using CPU or doing I/O recently.
    Active,
    /// Quiet, but not for long enough to page out.
    Idle,
    /// Idle and paged out, still running (its timers may refault pages).
    Reclaimed,
    /// Explicitly paused: frozen and paged out.
    Paused,
}

impl AgentState {
    /// The name shown by `ps`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Active => "active",
            AgentState::Idle => "idle",
            AgentState::Reclaimed => "reclaimed",
            AgentState::Paused => "paused",
        }
    }
}

/// An agent as kept in the state directory (`agents/NAME.json`): enough to
/// find the same process again after a supervisor restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Unique name.
    pub name: String,
    /// Main process id.
    pub pid: i32,
    /// Its start time (clock ticks since boot), so a reused pid is not mistaken for it.
    pub start_ticks: u64,
    /// Tenant, for reporting.
    pub tenant: Option<String>,
    /// Importance: higher waits longer before page-out. Default 0.
    pub importance: u32,
    /// Its cgroup.
    pub cgroup: AgentCgroup,
    /// Whether KSM merging was enabled for it (`run` does; `adopt` cannot).
    pub ksm: bool,
}

/// What the supervisor learned about an agent, kept across restarts
/// (`learned/NAME.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learned {
    /// Idle time before page-out, adapted per agent (ms). 0 = not set yet.
    pub threshold_ms: u64,
    /// Pages the agent faulted back while idle: left resident at page-out.
    pub idle_ws: PageSet,
    /// Pages the agent faulted back soon after its last resumes: prefetched first.
    pub active_ws: PageSet,
    /// The previous learning round of `active_ws` (kept so one odd resume does not erase it).
    pub active_ws_prev: PageSet,
    /// What was paged out last and not yet brought back.
    pub swapped: PageSet,
    /// Explicitly paused.
    pub paused: bool,
    /// The recent working set was left resident at the last page-out.
    #[serde(default)]
    pub ws_resident: bool,
}

/// The state directory's layout.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory at `root` (created when written to).
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }
    /// Its path.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("supervisor.sock")
    }
    fn agents(&self) -> PathBuf {
        self.root.join("agents")
    }
    fn learned(&self) -> PathBuf {
        self.root.join("learned")
    }

    fn write_json<T: Serialize>(&self, dir: &Path, name: &str, v: &T) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        write_atomic(
            &dir.join(format!("{name}.json")),
            &serde_json::to_vec(v).expect("serializes"),
        )
    }

    /// Saves an agent record.
    pub fn save_record(&self, r: &AgentRecord) -> Result<()> {
        self.write_json(&self.agents(), &r.name, r)
    }

    /// Saves what was learned about an agent.
    pub fn save_learned(&self, name: &str, l: &Learned) -> Result<()> {
        self.write_json(&self.learned(), name, l)
    }

    /// What was learned about `name`, or defaults.
    pub fn load_learned(&self, name: &str) -> Learned {
        fs::read(self.learned().join(format!("{name}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Every agent record (unreadable ones are reported and skipped).
    pub fn records(&self) -> Vec<AgentRecord> {
        let Ok(rd) = fs::read_dir(self.agents()) else {
            return Vec::new();
        };
        let mut v: Vec<AgentRecord> = rd
            .flatten()
            .filter(|e| {
                e.file_name().to_string_lossy().ends_with(".json")
                    && !e.file_name().to_string_lossy().starts_with('.')
            })
            .filter_map(|e| {
                match fs::read(e.path()).map(|b| serde_json::from_slice::<AgentRecord>(&b)) {
                    Ok(Ok(r)) => Some(r),
                    _ => {
                        eprintln!(
                            "agentmem: skipping unreadable agent record {}",
                            e.path().display()
                        );
                        None
                    }
                }
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Removes the state directory if no live agent is recorded in it (the
    /// records and cgroups of exited ones are removed first) and no
    /// supervisor listens on its socket: what `supervise` leaves
    /// when it stops and what `setup --revert` cleans. Only the files this
    /// crate writes are removed; anything else keeps the directory.
    /// Returns whether it is gone.
    pub fn remove_if_unused(&self) -> bool {
        if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
            return false;
        }
        // Records of agents that exited with no supervisor to notice.
        for rec in self.records() {
            if !rec.alive() {
                rec.cgroup.remove();
                self.forget(&rec.name);
            }
        }
        let _ = fs::remove_file(self.socket());
        crate::hooks::remove_dir_if_unused(self);
        for d in [self.agents(), self.learned()] {
            if let Ok(rd) = fs::read_dir(&d) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    // Leftover temporaries of an interrupted write.
                    if n.starts_with('.') && n.ends_with(".json.tmp") {
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
            // Fails while a record remains.
            let _ = fs::remove_dir(&d);
        }
        fs::remove_dir(&self.root).is_ok() || !self.root.exists()
    }

    /// Removes an agent's files, and the state hooks `agentmem run`
    /// installed for it (see [`crate::hooks::release`]).
    pub fn forget(&self, name: &str) {
        let _ = fs::remove_file(self.agents().join(format!("{name}.json")));
        let _ = fs::remove_file(self.learned().join(format!("{name}.json")));
        let _ = crate::hooks::release(self, name);
    }
}

/// Writes `bytes` to `path` so that a crash at any point leaves either the
/// old file or the new one, complete: a temporary file in the same
/// directory, fsync, rename over `path`, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".")
        .suffix(".json.tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io("writing", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("renaming into", path, e.error))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing", dir, e))
}

impl AgentRecord {
    /// True when the recorded process still runs (same pid and start time).
    pub fn alive(&self) -> bool {
        procfs::stat(self.pid).is_some_and(|s| s.start_ticks == self.start_ticks && s.state != 'Z')
    }
}

/// Options for [`prepare_run`] and [`adopt`].
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Unique name.
    pub name: String,
    /// Tenant. Default: none.
    pub tenant: Option<String>,
    /// Importance. Default: 0.
    pub importance: u32,
}

fn check_new(state: &StateDir, name: &str) -> Result<()> {
    validate_name(name)?;
    if let Some(r) = state.records().into_iter().find(|r| r.name == name) {
        if r.alive() {
            return Err(Error::DuplicateAgent(name.into()));
        }
        state.forget(name);
    }
    Ok(())
}

/// Makes `cmd` start as a supervised agent: before exec, the child joins the
/// agent's cgroup and enables KSM merging (`PR_SET_MEMORY_MERGE`, which
/// survives exec). The caller spawns or execs `cmd`, then calls
/// [`register`] with the child's pid (`agentmem run` execs itself in place,
/// so the pid is its own). Returns the cgroup and whether KSM merging is
/// enabled (false on kernels without KSM, where the prctl is skipped).
pub fn prepare_run(
    state: &StateDir,
    opts: &AgentOptions,
    cmd: &mut Command,
) -> Result<(AgentCgroup, bool)> {
    if !sys::is_root() {
        return Err(Error::NotPermitted(
            "placing an agent in its own cgroup".into(),
        ));
    }
    check_new(state, &opts.name)?;
    let cg = AgentCgroup::new(CgroupLayout::detect()?, &opts.name)?;
    cg.create()?;
    let ksm = Path::new("/sys/kernel/mm/ksm/run").exists();
    // Built before fork: the child must not allocate (another thread of a
    // multi-threaded parent may hold the allocator's lock at fork).
    let files: Vec<std::ffi::CString> = cg
        .dirs()
        .iter()
        .map(|d| {
            std::ffi::CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes())
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Invalid("cgroup path contains a NUL byte".into()))?;
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe system calls (open, write, close, prctl) on
    // data prepared before the fork; an error makes spawn/exec fail.
    unsafe {
        cmd.pre_exec(move || {
            for f in &files {
                let fd = libc::open(f.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let r = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if r != 1 {
                    return Err(err);
                }
            }
            if ksm {
                sys::enable_memory_merge()?;
            }
            Ok(())
        });
    }
    Ok((cg, ksm))
}

/// Records a started agent in the state directory so the supervisor adopts it.
pub fn register(
    state: &StateDir,
    opts: &AgentOptions,
    pid: i32,
    cgroup: AgentCgroup,
    ksm: bool,
) -> Result<AgentRecord> {
    let st =
        procfs::stat(pid).ok_or_else(|| Error::Invalid(format!("process {pid} does not exist")))?;
    let r = AgentRecord {
        name: opts.name.clone(),
        pid,
        start_ticks: st.start_ticks,
        tenant: opts.tenant.clone(),
        importance: opts.importance,
        cgroup,
        ksm,
    };
    state.save_record(&r)?;
    Ok(r)
}

/// Puts a running process under supervision: its own cgroup, and a record.
/// KSM merging cannot be enabled from outside a process (`PR_SET_MEMORY_MERGE`
/// applies to the caller only), so adopted agents merge only if they asked.
pub fn adopt(state: &StateDir, opts: &AgentOptions, pid: i32) -> Result<AgentRecord> {
    if !sys::is_root() {
        return Err(Error::NotPermitted(format!("adopting process {pid}")));
    }
    if pid <= 1 || pid == std::process::id() as i32 {
        return Err(Error::Invalid(format!("refusing to adopt process {pid}")));
    }
    procfs::stat(pid).ok_or_else(|| Error::Invalid(format!("process {pid} does not exist")))?;
    check_new(state, &opts.name)?;
    let cg = AgentCgroup::new(CgroupLayout::detect()?, &opts.name)?;
    cg.create()?;
    cg.add(pid)?;
    let ksm = fs::read_to_string(format!("/proc/{pid}/ksm_stat"))
        .is_ok_and(|s| s.contains("ksm_merge_any: yes"));
    register(state, opts, pid, cg, ksm)
}
