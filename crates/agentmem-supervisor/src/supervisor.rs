//! The supervisor: watches agents, pages idle ones out, learns their
//! working sets, freezes paused ones and prefetches on resume.
//!
//! [`Supervisor::tick`] is called about once a second with the current time
//! (time is passed in, never read inside the policy, so the policy is
//! testable); requests (`pause`, `resume`, `status`) come from the control
//! socket (see [`crate::daemon`]). Both run under one mutex: a tick is a few
//! file reads per agent, so requests never wait long.
//!
//! Working sets are learned on the agent's main process through
//! /proc/PID/pagemap; other processes in the agent's cgroup are paged out
//! and prefetched whole.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::agent::{AgentRecord, AgentState, Learned, StateDir};
use crate::cgroup::{CgroupLayout, CgroupMemory};
use crate::error::{Error, Result};
use crate::idle::{self, Activity, IdleConfig};
use crate::pageset::PageSet;
use crate::procfs::{self, MemInfo, MemUsage};
use crate::sys::{self, Advice, Pidfd};

/// Tuning of the supervisor. Defaults are what the benchmark uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Idle time before the first page-out of a new agent. Default: 30 s.
    pub idle_threshold: Duration,
    /// The adaptive threshold never goes below this. Default: 5 s.
    pub min_threshold: Duration,
    /// Nor above this. Default: 10 min.
    pub max_threshold: Duration,
    /// Tell activity from idle noise with what each agent says (hooks) and
    /// the learned detector of [`crate::idle`]; false: with the two fixed
    /// thresholds below. Default: true.
    pub learned_idle: bool,
    /// The learned detector's tuning.
    pub idle: IdleConfig,
    /// Fixed thresholds only (`learned_idle` false): CPU above this fraction
    /// of one core during a tick counts as activity. Default: 0.02.
    pub cpu_active_fraction: f64,
    /// Fixed thresholds only: more bytes than this read or written
    /// (terminal, sockets, pipes, files) during a tick count as activity. Default: 0.
    pub io_active_bytes: u64,
    /// How often reclaimed agents are checked for refaults. Default: 5 s.
    pub sample_every: Duration,
    /// How often a reclaimed agent's new memory is paged out again. Default: 60 s.
    pub repage_every: Duration,
    /// After a resume, how long to watch which pages the agent uses before
    /// prefetching the rest. Default: 1 s.
    pub learn_delay: Duration,
    /// No proactive page-out while memory `some avg10` exceeds this (percent). Default: 10.
    pub psi_limit: f64,
    /// Below this share of MemAvailable, idle agents are paged out after the
    /// minimum threshold. Default: 0.05.
    pub mem_available_floor: f64,
    /// Send all but an agent's recent working set straight to the swap file,
    /// bypassing zswap for the moment of the page-out, so the zswap pool
    /// holds the pages resumes need first. Default: true.
    pub cold_to_swap_file: bool,
    /// An agent's recent working set stays resident when paged out if it is
    /// at most this share of the agent's memory (resident and swapped), so a resume costs
    /// nothing; otherwise it is paged out (first, into zswap). Default: 0.12.
    pub resident_ws_fraction: f64,
    /// After this long paused or reclaimed, the resident working set is
    /// paged out too (a deep sleep; resume then prefetches it). Default: 10 min.
    pub deep_after: Duration,
    /// After a page-out, reclaim the agent's swap cache from its cgroup so
    /// the pages written to the swap file leave RAM (see
    /// [`AgentCgroup::drop_swap_cache`](crate::cgroup::AgentCgroup::drop_swap_cache)). Default: true.
    pub drop_swap_cache: bool,
    /// How old an agent's memory figures in `ps` may be (cgroup usage, RSS,
    /// swap, KSM); PSS, which costs a page-table walk, is refreshed four
    /// times less often. Figures are refreshed in ticks, a few agents at a
    /// time, and right after a page-out or resume, so `ps` costs the
    /// supervisor nothing per agent. Default: 10 s.
    pub figures_max_age: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_threshold: Duration::from_secs(30),
            min_threshold: Duration::from_secs(5),
            max_threshold: Duration::from_secs(600),
            learned_idle: true,
            idle: IdleConfig::default(),
            cpu_active_fraction: 0.02,
            io_active_bytes: 0,
            sample_every: Duration::from_secs(5),
            repage_every: Duration::from_secs(60),
            learn_delay: Duration::from_secs(1),
            psi_limit: 10.0,
            mem_available_floor: 0.05,
            cold_to_swap_file: true,
            resident_ws_fraction: 0.12,
            deep_after: Duration::from_secs(600),
            drop_swap_cache: true,
            figures_max_age: Duration::from_secs(10),
        }
    }
}

/// One agent in `ps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Name.
    pub name: String,
    /// Main process id.
    pub pid: i32,
    /// `active`, `idle`, `reclaimed` or `paused`.
    pub state: String,
    /// Resident set size of all its processes.
    pub rss_bytes: u64,
    /// Proportional set size.
    pub pss_bytes: u64,
    /// Bytes in swap (zswap or the swap file).
    pub swap_bytes: u64,
    /// Pages merged by KSM.
    pub ksm_merged_pages: u64,
    /// RAM the agent actually holds: its PSS (resident pages, shared ones
    /// divided among their sharers), its cgroup's swap cache (written to swap
    /// yet still in RAM, which PSS does not show) and its part of the zswap
    /// pool (cgroup v2 counts it per cgroup; on v1, its share by swap in use).
    #[serde(default)]
    pub ram_bytes: u64,
    /// Of its cgroup's usage, swap cache: written to swap yet still in RAM.
    #[serde(default)]
    pub swap_cache_bytes: u64,
    /// Its share of the zswap pool's RAM.
    #[serde(default)]
    pub zswap_bytes: u64,
    /// Its swapped bytes that are on disk (in the swap file, not in zswap).
    #[serde(default)]
    pub disk_bytes: u64,
    /// Age of these figures in seconds (PSS may be older, see `pss_age_s`);
    /// none before the first refresh.
    #[serde(default)]
    pub figures_age_s: Option<f64>,
    /// Age of the PSS figure in seconds.
    #[serde(default)]
    pub pss_age_s: Option<f64>,
    /// Seconds since its last activity.
    pub idle_s: f64,
    /// How long its last resume took (thaw and prefetch), in ms.
    pub last_resume_ms: Option<f64>,
    /// What it last said about itself through its hooks (`waiting_for_human`, `active`, ...).
    #[serde(default)]
    pub said: Option<String>,
}

/// Totals in `ps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Number of agents.
    pub agents: usize,
    /// Sum of RSS.
    pub rss_bytes: u64,
    /// Sum of PSS.
    pub pss_bytes: u64,
    /// Sum of swap.
    pub swap_bytes: u64,
    /// Sum of KSM merged pages.
    pub ksm_merged_pages: u64,
    /// Sum of RAM actually held (PSS + swap cache + zswap share).
    #[serde(default)]
    pub ram_bytes: u64,
    /// Sum of the agents' swap cache.
    #[serde(default)]
    pub swap_cache_bytes: u64,
    /// Sum of the agents' bytes on disk (swap file).
    #[serde(default)]
    pub disk_bytes: u64,
    /// Swap cache of the whole machine (`SwapCached`).
    #[serde(default)]
    pub swap_cached_bytes: u64,
    /// RAM used by the zswap pool (whole machine).
    pub zswap_pool_bytes: u64,
    /// Uncompressed bytes in the zswap pool (whole machine).
    pub zswapped_bytes: u64,
    /// Swap in use (whole machine, zswap and swap file).
    pub swap_used_bytes: u64,
    /// PSS plus the agents' share of the zswap pool (by their share of swap
    /// in use). Misses the swap cache: see `ram_bytes` for RAM held.
    pub effective_bytes: u64,
    /// MemAvailable.
    pub mem_available_bytes: u64,
    /// Memory pressure, `some avg10`.
    pub psi_some_avg10: Option<f64>,
}

/// The answer to `ps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Agents, by name.
    pub agents: Vec<AgentStatus>,
    /// Totals.
    pub totals: Totals,
}

/// How much of an agent `resume` prefetches before returning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prefetch {
    /// Nothing: the agent faults its pages back itself.
    None,
    /// Its learned recent working set; the rest follows in the background.
    WorkingSet,
    /// Everything it has in swap.
    All,
}

const ZSWAP_ENABLED: &str = "/sys/module/zswap/parameters/enabled";

/// Present while a [`ZswapBypass`] has zswap switched off. A supervisor
/// killed in that window (SIGKILL runs no destructor) would leave zswap off
/// for the whole machine; the next [`Supervisor::new`] finds the mark and
/// turns zswap back on. Under /run, so a reboot (which resets zswap) clears it.
const ZSWAP_BYPASS_MARK: &str = "/run/agentmem-zswap-bypass";

/// Turns zswap's acceptance of new pages off while it lives, so pages paged
/// out meanwhile go straight to the swap file; turns it back on when dropped
/// (also on error). Pages already in zswap stay readable throughout: the
/// switch only governs stores. Only used when a disk swap area exists.
#[derive(Debug)]
struct ZswapBypass;

impl ZswapBypass {
    fn start() -> Option<ZswapBypass> {
        let on = std::fs::read_to_string(ZSWAP_ENABLED).is_ok_and(|s| s.trim() == "Y");
        let disk = procfs::meminfo().is_ok_and(|m| m.swap_free > 0);
        // The mark goes first: no instant where zswap is off unrecorded.
        if on && disk && std::fs::write(ZSWAP_BYPASS_MARK, "").is_ok() {
            if std::fs::write(ZSWAP_ENABLED, "N").is_ok() {
                return Some(ZswapBypass);
            }
            let _ = std::fs::remove_file(ZSWAP_BYPASS_MARK);
            None
        } else {
            None
        }
    }
}

impl Drop for ZswapBypass {
    fn drop(&mut self) {
        match std::fs::write(ZSWAP_ENABLED, "Y") {
            Ok(()) => {
                let _ = std::fs::remove_file(ZSWAP_BYPASS_MARK);
            }
            Err(e) => {
                eprintln!("agentmem supervise: could not turn zswap back on ({ZSWAP_ENABLED}): {e}")
            }
        }
    }
}

impl ZswapBypass {
    /// Turns zswap back on if an earlier supervisor died inside a bypass.
    /// Returns whether it did.
    fn recover() -> bool {
        if !Path::new(ZSWAP_BYPASS_MARK).exists() {
            return false;
        }
        let ok = std::fs::write(ZSWAP_ENABLED, "Y").is_ok();
        if ok {
            let _ = std::fs::remove_file(ZSWAP_BYPASS_MARK);
        }
        ok
    }
}

/// What one page-out did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageOutOutcome {
    /// Bytes of address space advised (`process_madvise`'s count: mapped
    /// ranges, most of them never touched). Not memory.
    pub advised_bytes: u64,
    /// RAM that left: the drop of the agent's cgroup usage (swap cache
    /// dropped, see [`Config::drop_swap_cache`]), minus what the zswap pool
    /// grew by meanwhile on cgroup v1 (v2 charges the pool to the cgroup).
    pub freed_bytes: u64,
    /// Swap cache still held by the cgroup afterwards.
    pub swap_cache_bytes: u64,
}

/// An agent's memory figures, refreshed in ticks (see [`Config::figures_max_age`]).
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    usage: MemUsage,
    cgroup: CgroupMemory,
    at: Option<Instant>,
    pss_at: Option<Instant>,
}

#[derive(Debug)]
struct Supervised {
    rec: AgentRecord,
    pidfd: Pidfd,
    learned: Learned,
    state: AgentState,
    /// Counters at the last tick, and what they say about its activity.
    last: idle::Counters,
    activity: Activity,
    last_active: Instant,
    reclaimed_at: Option<Instant>,
    last_sample: Instant,
    /// Last page-out of new memory of a reclaimed agent.
    last_repage: Instant,
    /// After a resume: when, and whether to prefetch the rest afterwards.
    resumed: Option<(Instant, bool)>,
    last_resume_ms: Option<f64>,
    figures: Figures,
    /// A page-out of this agent runs outside the lock (see [`PageOutJob`]).
    busy: bool,
    /// Bumped by every resume and signal: a page-out planned before one
    /// does not change the agent's state when it finishes.
    generation: u64,
}

/// What a [`PageOutJob`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobKind {
    /// Page out an idle agent (all but its idle working set).
    Idle,
    /// Page out new memory of a reclaimed agent.
    Repage,
    /// Page out a paused agent (`all`: its idle working set too).
    Pause,
    /// Page out the working set a paused or reclaimed agent kept resident.
    Deep,
}

/// A page-out planned under the supervisor's lock and run without it: the
/// `process_madvise` calls, the wait for writeback and the reclaim of the
/// swap cache take from milliseconds to seconds, and no other agent's
/// request or tick should wait for them. It works on its own copy of what
/// it needs (the record, a duplicate pidfd, what was learned);
/// [`Supervisor::finish`] installs the result if the agent was not resumed
/// or signalled meanwhile.
#[derive(Debug)]
pub struct PageOutJob {
    name: String,
    kind: JobKind,
    agent: Supervised,
    generation: u64,
    cold_bypass: bool,
    keep_ws: Option<f64>,
    drop_cache: bool,
    all: bool,
    idle_for: Duration,
}

/// A [`PageOutJob`] that ran.
#[derive(Debug)]
pub struct FinishedJob {
    job: PageOutJob,
    result: Result<PageOutOutcome>,
}

/// The prefetch of a resume, run without the supervisor's lock.
#[derive(Debug)]
pub struct PrefetchJob {
    name: String,
    agent: Supervised,
    set: PageSet,
    others: bool,
    prefetch: Prefetch,
    t0: Instant,
    result: Result<()>,
}

impl PrefetchJob {
    /// Runs the prefetch (`MADV_WILLNEED`; no lock needed).
    pub fn run(mut self) -> PrefetchJob {
        self.result = self.agent.prefetch(&self.set);
        if self.others && self.result.is_ok() {
            self.agent.prefetch_others();
        }
        self
    }
}

impl PageOutJob {
    /// Runs the page-out (no lock needed).
    pub fn run(mut self) -> FinishedJob {
        let result = match self.kind {
            JobKind::Deep => self.agent.page_out_resident_ws(self.drop_cache),
            _ => self
                .agent
                .page_out(self.all, self.cold_bypass, self.keep_ws, self.drop_cache),
        };
        FinishedJob { job: self, result }
    }
}

impl Supervised {
    /// A copy to page out with outside the lock.
    fn detached(&self) -> Result<Supervised> {
        let now = Instant::now();
        Ok(Supervised {
            rec: self.rec.clone(),
            pidfd: self.pidfd.try_clone()?,
            learned: self.learned.clone(),
            state: self.state,
            last: self.last,
            activity: Activity::default(),
            last_active: now,
            reclaimed_at: None,
            last_sample: now,
            last_repage: now,
            resumed: None,
            last_resume_ms: None,
            figures: Figures::default(),
            busy: true,
            generation: self.generation,
        })
    }

    fn procs(&self) -> Vec<i32> {
        let mut p = self.rec.cgroup.procs();
        if !p.contains(&self.rec.pid) {
            p.push(self.rec.pid);
        }
        p
    }

    fn threshold(&self, cfg: &Config) -> Duration {
        if self.learned.threshold_ms == 0 {
            cfg.idle_threshold
        } else {
            Duration::from_millis(self.learned.threshold_ms)
        }
    }

    fn effective_threshold(&self, cfg: &Config, low_memory: bool) -> Duration {
        if low_memory {
            return cfg.min_threshold;
        }
        self.threshold(cfg)
            .mul_f64(1.0 + 0.5 * self.rec.importance as f64)
    }

    fn set_threshold(&mut self, cfg: &Config, t: Duration) {
        let t = t.clamp(cfg.min_threshold, cfg.max_threshold);
        self.learned.threshold_ms = t.as_millis() as u64;
    }

    /// Activity counters of all its processes.
    fn counters(&self) -> idle::Counters {
        let mut c = idle::Counters::default();
        for p in self.procs() {
            if let Some(x) = procfs::activity(p) {
                c.cpu_ticks += x.cpu_ticks;
                c.io_bytes += x.io_bytes;
                c.tty_wchar += x.tty_wchar;
                c.tty_syscw += x.tty_syscw;
                c.tty_atime = c.tty_atime.max(x.tty_atime);
                c.tty |= x.tty;
            }
        }
        c
    }

    /// Reads its memory figures: cheap counters always, PSS (a page-table
    /// walk per process) when `pss`.
    fn refresh_figures(&mut self, now: Instant, pss: bool) {
        let mut u = MemUsage::default();
        for p in self.procs() {
            let m = if pss {
                procfs::mem_usage(p)
            } else {
                procfs::mem_counters(p)
            };
            if let Some(m) = m {
                u += m;
            }
        }
        if !pss {
            u.pss_bytes = self.figures.usage.pss_bytes;
        } else {
            self.figures.pss_at = Some(now);
        }
        self.figures.usage = u;
        self.figures.cgroup = self.rec.cgroup.memory().unwrap_or_default();
        self.figures.at = Some(now);
    }

    /// Pages the agent out: the main process minus its idle working set
    /// (unless `all`), other processes of its cgroup whole.
    ///
    /// The recent working set goes first, into zswap, where a resume finds
    /// it fastest. With `cold_bypass` the rest goes straight to the swap
    /// file, so that the zswap pool holds working sets and not cold heap.
    fn page_out(
        &mut self,
        all: bool,
        cold_bypass: bool,
        keep_ws: Option<f64>,
        drop_cache: bool,
    ) -> Result<PageOutOutcome> {
        let pid = self.rec.pid;
        let before = self.ram_held();
        let anon = procfs::anon_ranges(pid)?;
        let target = if all {
            anon.clone()
        } else {
            anon.minus(&self.learned.idle_ws)
        };
        let mut ws = self
            .learned
            .active_ws
            .union(&self.learned.active_ws_prev)
            .intersect(&target);
        // The agent's footprint: resident and swapped (right after a resume
        // most of it may still be in swap).
        let footprint = procfs::mem_usage(pid)
            .map(|u| u.rss_bytes + u.swap_bytes)
            .unwrap_or(0);
        self.learned.ws_resident =
            keep_ws.is_some_and(|f| !ws.is_empty() && (ws.bytes() as f64) <= f * footprint as f64);
        let target = if self.learned.ws_resident {
            let t = target.minus(&ws);
            ws = PageSet::default();
            t
        } else {
            target
        };
        let first = sys::advise(&self.pidfd, &ws, Advice::PageOut)?;
        let out = {
            let _bypass = if cold_bypass {
                ZswapBypass::start()
            } else {
                None
            };
            let out = sys::advise(&self.pidfd, &target.minus(&ws), Advice::PageOut)?;
            for (fd, p) in self.other_procs() {
                if let Ok(r) = procfs::anon_ranges(p) {
                    let _ = sys::advise(&fd, &r, Advice::PageOut);
                }
            }
            out
        };
        self.learned.swapped = sys::scan_pagemap(pid, &anon, |e| e.swapped())?;
        self.after_page_out(before, first.bytes + out.bytes, drop_cache)
    }

    /// RAM held by the agent's cgroup plus, on cgroup v1 (which does not
    /// charge the zswap pool to cgroups), the whole pool: a page-out's
    /// effect on the pool is attributed to the agent paged out.
    fn ram_held(&self) -> (Option<CgroupMemory>, u64) {
        let pool = match self.rec.cgroup.layout() {
            CgroupLayout::V1 { .. } => procfs::meminfo().map(|m| m.zswap_pool).unwrap_or(0),
            CgroupLayout::V2 { .. } => 0,
        };
        (self.rec.cgroup.memory().ok(), pool)
    }

    /// Drops the swap cache the page-out left (if asked) and says what left RAM.
    fn after_page_out(
        &mut self,
        before: (Option<CgroupMemory>, u64),
        advised_bytes: u64,
        drop_cache: bool,
    ) -> Result<PageOutOutcome> {
        if drop_cache {
            self.rec.cgroup.drop_swap_cache(Duration::from_secs(2))?;
        }
        let after = self.ram_held();
        let freed_bytes = match (before.0, after.0) {
            (Some(b), Some(a)) => (b.usage + before.1).saturating_sub(a.usage + after.1),
            _ => 0,
        };
        Ok(PageOutOutcome {
            advised_bytes,
            freed_bytes,
            swap_cache_bytes: after.0.map(|m| m.swap_cache).unwrap_or(0),
        })
    }

    /// Pages out a working set left resident (a deep sleep).
    fn page_out_resident_ws(&mut self, drop_cache: bool) -> Result<PageOutOutcome> {
        if !self.learned.ws_resident {
            return Ok(PageOutOutcome::default());
        }
        let before = self.ram_held();
        let ws = self.learned.active_ws.union(&self.learned.active_ws_prev);
        let out = sys::advise(&self.pidfd, &ws, Advice::PageOut)?;
        self.learned.ws_resident = false;
        let now_swapped = sys::scan_pagemap(self.rec.pid, &ws, |e| e.swapped())?;
        self.learned.swapped = self.learned.swapped.union(&now_swapped);
        self.after_page_out(before, out.bytes, drop_cache)
    }

    /// Refaulted pages of a reclaimed agent join its idle working set.
    fn sample_refaults(&mut self) -> Result<()> {
        let back = sys::scan_pagemap(self.rec.pid, &self.learned.swapped, |e| e.present())?;
        if !back.is_empty() {
            self.learned.idle_ws = self.learned.idle_ws.union(&back);
            self.learned.swapped = self.learned.swapped.minus(&back);
        }
        Ok(())
    }

    fn prefetch(&self, set: &PageSet) -> Result<()> {
        sys::advise(&self.pidfd, set, Advice::WillNeed)?;
        Ok(())
    }

    fn prefetch_others(&self) {
        for (fd, p) in self.other_procs() {
            if let Ok(r) = procfs::anon_ranges(p) {
                let _ = sys::advise(&fd, &r, Advice::WillNeed);
            }
        }
    }

    /// The agent's other processes, each as a pidfd opened *before* checking
    /// that the process is in the agent's cgroup: a pid that exited and was
    /// reused by an unsupervised process between reading `cgroup.procs` and
    /// opening it fails the check and is never touched.
    fn other_procs(&self) -> Vec<(Pidfd, i32)> {
        self.procs()
            .into_iter()
            .filter(|&p| p != self.rec.pid)
            .filter_map(|p| {
                let fd = Pidfd::open(p).ok()?;
                self.rec.cgroup.contains(p).then_some((fd, p))
            })
            .collect()
    }

    /// Signals every process of the agent: its recorded process and all of
    /// its cgroup, detached daemons included. Returns how many were signalled.
    fn signal_all(&self, sig: rustix::process::Signal) -> Result<usize> {
        let mut n = usize::from(sys::send_signal(&self.pidfd, sig)?);
        for (fd, _) in self.other_procs() {
            n += usize::from(sys::send_signal(&fd, sig)?);
        }
        Ok(n)
    }

    /// True when one of its processes has a termination signal pending
    /// (SIGHUP when its terminal closed, SIGINT, SIGQUIT, SIGTERM, SIGKILL):
    /// a frozen process cannot act on it until thawed.
    fn termination_pending(&self) -> bool {
        const FATAL: u64 = 1 << (libc::SIGHUP - 1)
            | 1 << (libc::SIGINT - 1)
            | 1 << (libc::SIGQUIT - 1)
            | 1 << (libc::SIGKILL - 1)
            | 1 << (libc::SIGTERM - 1);
        self.procs()
            .into_iter()
            .any(|p| procfs::pending_signals(p).is_some_and(|m| m & FATAL != 0))
    }

    /// Ends the watch after a resume: the pages the agent used since then
    /// become its recent working set; with `rest`, everything else it has
    /// in swap is prefetched too.
    fn finish_resume(&mut self, rest: bool) -> Result<()> {
        let used = sys::scan_pagemap(self.rec.pid, &self.learned.swapped, |e| e.present())?;
        if self.learned.ws_resident {
            // The resident set was available without faults, so its use is
            // not visible: keep it and add what the agent had to fault in.
            self.learned.active_ws = self.learned.active_ws.union(&used);
        } else {
            self.learned.active_ws_prev = std::mem::replace(&mut self.learned.active_ws, used);
        }
        self.learned.ws_resident = false;
        if rest {
            let rest_set = self.learned.swapped.minus(&self.learned.active_ws);
            self.prefetch(&rest_set)?;
            self.prefetch_others();
        }
        self.learned.swapped = PageSet::default();
        self.resumed = None;
        Ok(())
    }

    fn working_set(&self) -> PageSet {
        self.learned
            .active_ws
            .union(&self.learned.active_ws_prev)
            .intersect(&self.learned.swapped)
    }
}

/// The supervisor's state: every supervised agent.
#[derive(Debug)]
pub struct Supervisor {
    cfg: Config,
    dir: StateDir,
    agents: BTreeMap<String, Supervised>,
    records_seen: Option<SystemTime>,
    ticks_per_s: u64,
    last_tick: Option<Instant>,
    /// Messages for the log (drained by the daemon).
    log: Vec<String>,
    /// Page-outs planned by the current tick.
    jobs: Vec<PageOutJob>,
}

impl Supervisor {
    /// A supervisor over the agents recorded in `dir`. Live agents are
    /// adopted with what was learned about them; records of dead ones are removed.
    pub fn new(cfg: Config, dir: StateDir) -> Result<Supervisor> {
        if !sys::is_root() {
            return Err(Error::NotPermitted(
                "supervising agents (page-out, freezer, pagemap)".into(),
            ));
        }
        let mut s = Supervisor {
            cfg,
            dir,
            agents: BTreeMap::new(),
            records_seen: None,
            ticks_per_s: procfs::clock_ticks_per_second().max(1),
            last_tick: None,
            log: Vec::new(),
            jobs: Vec::new(),
        };
        if ZswapBypass::recover() {
            s.log.push(
                "zswap was left off by a supervisor that died during a page-out: turned it back on"
                    .into(),
            );
        }
        s.rescan(Instant::now());
        Ok(s)
    }

    /// The state directory.
    pub fn state_dir(&self) -> &StateDir {
        &self.dir
    }

    /// Takes the messages logged since the last call.
    pub fn drain_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }

    /// Reads the agent records, adopting new live agents and dropping dead ones.
    pub fn rescan(&mut self, now: Instant) {
        let seen = std::fs::metadata(self.dir.root().join("agents"))
            .and_then(|m| m.modified())
            .ok();
        if seen.is_some() && seen == self.records_seen {
            return;
        }
        self.records_seen = seen;
        for rec in self.dir.records() {
            if self.agents.get(&rec.name).is_some_and(|a| a.rec == rec) {
                continue;
            }
            if !rec.alive() {
                self.log.push(format!(
                    "{}: process {} is gone; forgetting it",
                    rec.name, rec.pid
                ));
                rec.cgroup.remove();
                self.release_hooks(&rec.name);
                self.dir.forget(&rec.name);
                continue;
            }
            let pidfd = match Pidfd::open(rec.pid) {
                Ok(fd) => fd,
                Err(e) => {
                    self.log
                        .push(format!("{}: cannot open pid {}: {e}", rec.name, rec.pid));
                    continue;
                }
            };
            let learned = self.dir.load_learned(&rec.name);
            let state = if learned.paused {
                AgentState::Paused
            } else if learned.swapped.is_empty() {
                AgentState::Active
            } else {
                AgentState::Reclaimed
            };
            let mut a = Supervised {
                pidfd,
                learned,
                state,
                last: idle::Counters::default(),
                activity: Activity::default(),
                last_active: now,
                reclaimed_at: (state != AgentState::Active).then_some(now),
                last_sample: now,
                last_repage: now,
                resumed: None,
                last_resume_ms: None,
                figures: Figures::default(),
                busy: false,
                generation: 0,
                rec,
            };
            a.last = a.counters();
            a.refresh_figures(now, false);
            self.log.push(format!(
                "{}: supervising pid {} ({})",
                a.rec.name,
                a.rec.pid,
                a.state.as_str()
            ));
            self.agents.insert(a.rec.name.clone(), a);
        }
    }

    fn save(&self, name: &str) {
        if let Some(a) = self.agents.get(name) {
            let _ = self.dir.save_learned(name, &a.learned);
        }
    }

    /// One round: notice new, dead, active and idle agents; page out those
    /// idle past their threshold; sample refaults; finish resumes.
    ///
    /// Page-outs run inline here; the daemon uses [`Supervisor::plan_tick`]
    /// to run them outside its lock.
    pub fn tick(&mut self, now: Instant) {
        for job in self.plan_tick(now) {
            let _ = self.finish(job.run(), now);
        }
    }

    /// [`Supervisor::tick`] without the page-outs: returns them, to be run
    /// (with [`PageOutJob::run`]) without the lock and handed to
    /// [`Supervisor::finish`].
    pub fn plan_tick(&mut self, now: Instant) -> Vec<PageOutJob> {
        self.tick_inner(now);
        std::mem::take(&mut self.jobs)
    }

    fn tick_inner(&mut self, now: Instant) {
        self.rescan(now);
        let dt = self
            .last_tick
            .map(|t| now.duration_since(t))
            .unwrap_or(Duration::from_secs(1));
        self.last_tick = Some(now);
        let mem = procfs::meminfo().unwrap_or_default();
        let psi = procfs::memory_pressure_some_avg10();
        let low_memory = mem.total > 0
            && (mem.available as f64) < self.cfg.mem_available_floor * mem.total as f64;
        let pressure = psi.is_some_and(|p| p > self.cfg.psi_limit);
        let names: Vec<String> = self.agents.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.tick_agent(&name, now, dt, low_memory, pressure) {
                self.log.push(format!("{name}: {e}"));
            }
        }
        self.refresh_stale_figures(now);
    }

    fn tick_agent(
        &mut self,
        name: &str,
        now: Instant,
        dt: Duration,
        low_memory: bool,
        pressure: bool,
    ) -> Result<()> {
        let cfg = self.cfg.clone();
        let tps = self.ticks_per_s;
        let a = self.agents.get_mut(name).expect("agent exists");
        if !a.rec.alive() {
            self.log.push(format!("{name}: exited"));
            a.rec.cgroup.remove();
            self.agents.remove(name);
            self.release_hooks(name);
            self.dir.forget(name);
            return Ok(());
        }
        if a.busy {
            // Its page-out runs outside the lock; the next tick sees the result.
            return Ok(());
        }
        let c = a.counters();
        let reason = if cfg.learned_idle {
            let sample = idle::Sample {
                asleep: a.state == AgentState::Reclaimed,
                ..idle::Sample::between(&a.last, &c, dt, tps)
            };
            // Refaults right after a page-out or a resume are not the agent's habits.
            let learn =
                a.resumed.is_none() && matches!(a.state, AgentState::Active | AgentState::Idle);
            a.activity.observe(&sample, &cfg.idle, now, learn)
        } else {
            let cpu_s = c.cpu_ticks.saturating_sub(a.last.cpu_ticks) as f64 / tps as f64;
            (cpu_s > cfg.cpu_active_fraction * dt.as_secs_f64().max(0.001)
                || c.io_bytes.saturating_sub(a.last.io_bytes) > cfg.io_active_bytes)
                .then_some(idle::Reason::Io)
        };
        let active = reason.is_some();
        a.last = c;
        let mut changed = false;
        if a.state == AgentState::Paused || a.state == AgentState::Reclaimed {
            let asleep = a
                .reclaimed_at
                .map(|t| now.duration_since(t))
                .unwrap_or_default();
            // Memory pressure alone does not deepen the sleep: refaults of
            // resuming agents raise PSI without RAM being short.
            if a.learned.ws_resident && (asleep >= cfg.deep_after || low_memory) {
                let job = plan(name, a, JobKind::Deep, &cfg, None, Duration::ZERO)?;
                self.jobs.push(job);
                return Ok(());
            }
        }
        if a.state == AgentState::Paused {
            if a.termination_pending() {
                // Frozen, it would never act on it (under the v1 freezer
                // not even on SIGKILL): thaw it so it can exit.
                a.rec.cgroup.thaw()?;
                a.state = AgentState::Active;
                a.learned.paused = false;
                a.last_active = now;
                self.log.push(format!(
                    "{name}: a termination signal is pending: thawed so it can exit"
                ));
                self.save(name);
            }
            return Ok(());
        }
        if active {
            a.last_active = now;
            if a.state == AgentState::Reclaimed {
                // Woke up on its own: adapt the threshold, prefetch what it
                // used last time now and the rest after watching it.
                let reclaimed_for = a
                    .reclaimed_at
                    .map(|t| now.duration_since(t))
                    .unwrap_or_default();
                let t = a.threshold(&cfg);
                if reclaimed_for < t * 2 {
                    a.set_threshold(&cfg, t * 2);
                } else if reclaimed_for > t * 8 {
                    a.set_threshold(&cfg, t.mul_f64(0.75));
                }
                let ws = a.working_set();
                a.prefetch(&ws)?;
                a.resumed = Some((now, true));
                changed = true;
                if let Some(r) = reason {
                    self.log.push(format!(
                        "{name}: woke after {:.0} s reclaimed ({r})",
                        reclaimed_for.as_secs_f64()
                    ));
                }
            }
            a.state = AgentState::Active;
        } else if a.state == AgentState::Active
            && now.duration_since(a.last_active) >= Duration::from_secs(2)
        {
            a.state = AgentState::Idle;
        }
        if let Some((at, rest)) = a.resumed {
            if now.duration_since(at) >= cfg.learn_delay {
                a.finish_resume(rest)?;
                changed = true;
            }
        }
        let idle_for = now.duration_since(a.last_active);
        let keep = (!low_memory).then_some(cfg.resident_ws_fraction);
        match a.state {
            AgentState::Idle
                if a.resumed.is_none()
                    && idle_for
                        >= a.activity
                            .threshold(a.effective_threshold(&cfg, low_memory), &cfg.idle) =>
            {
                if pressure {
                    self.log.push(format!(
                        "{name}: page-out held back: memory pressure above {}%",
                        cfg.psi_limit
                    ));
                } else {
                    let job = plan(name, a, JobKind::Idle, &cfg, keep, idle_for)?;
                    self.jobs.push(job);
                }
            }
            AgentState::Reclaimed if now.duration_since(a.last_sample) >= cfg.sample_every => {
                a.sample_refaults()?;
                a.last_sample = now;
                changed = true;
                if now.duration_since(a.last_repage) >= cfg.repage_every && !pressure {
                    // New memory allocated while idle goes out too (the
                    // learned idle set stays; a working set already paged
                    // out in a deep sleep is not called resident again).
                    let keep = if a.learned.ws_resident { keep } else { None };
                    a.last_repage = now;
                    let job = plan(name, a, JobKind::Repage, &cfg, keep, Duration::ZERO)?;
                    self.jobs.push(job);
                }
            }
            _ => {}
        }
        if changed {
            self.save(name);
        }
        Ok(())
    }

    /// Pauses an agent: freezes its cgroup, then (with `page_out`) pages it
    /// out: all of it when `deep`, else all but a recent working set small
    /// enough to stay resident. Refused, before anything is frozen, when
    /// swap has no room for its resident memory.
    pub fn pause(
        &mut self,
        name: &str,
        page_out: bool,
        deep: bool,
        now: Instant,
    ) -> Result<PageOutOutcome> {
        match self.pause_begin(name, page_out, deep, now)? {
            Some(job) => self.finish(job.run(), now),
            None => Ok(PageOutOutcome::default()),
        }
    }

    /// [`Supervisor::pause`] up to the freeze; returns the page-out to run
    /// without the lock, if one is due.
    pub fn pause_begin(
        &mut self,
        name: &str,
        page_out: bool,
        deep: bool,
        now: Instant,
    ) -> Result<Option<PageOutJob>> {
        let cfg = self.cfg.clone();
        let keep = (!deep).then_some(self.cfg.resident_ws_fraction);
        let a = self
            .agents
            .get_mut(name)
            .ok_or_else(|| Error::UnknownAgent(name.into()))?;
        if page_out {
            // Every page paged out needs a swap slot, whether zswap keeps it
            // or the swap file: without room the page-out would silently
            // leave the agent frozen in RAM.
            let mem = procfs::meminfo()?;
            let resident = a
                .rec
                .cgroup
                .memory()
                .map(|m| m.usage.saturating_sub(m.swap_cache))
                .unwrap_or_else(|_| {
                    a.procs()
                        .into_iter()
                        .filter_map(procfs::mem_counters)
                        .map(|u| u.rss_bytes)
                        .sum()
                });
            if mem.swap_free < resident {
                return Err(Error::NoRoom {
                    agent: name.into(),
                    need: resident,
                    free: mem.swap_free,
                });
            }
        }
        if a.resumed.is_some() {
            // Learn from the last resume before its pages go out again.
            a.finish_resume(false)?;
        }
        a.rec.cgroup.freeze()?;
        a.state = AgentState::Paused;
        a.learned.paused = true;
        let job = if page_out && !a.busy {
            a.reclaimed_at = Some(now);
            Some(plan(name, a, JobKind::Pause, &cfg, keep, Duration::ZERO)?)
        } else {
            a.refresh_figures(now, false);
            self.log.push(format!(
                "{name}: paused{}",
                if page_out {
                    " (a page-out of it is already running)"
                } else {
                    ", not paged out"
                }
            ));
            None
        };
        // Saved now: the agent is frozen and must stay known as paused.
        self.save(name);
        Ok(job)
    }

    /// Installs what a page-out run without the lock did. Its findings
    /// (what is in swap now) are kept whatever happened meanwhile; the
    /// agent's state changes only if it was not resumed or signalled since
    /// the page-out was planned.
    pub fn finish(&mut self, f: FinishedJob, now: Instant) -> Result<PageOutOutcome> {
        let FinishedJob { job, result } = f;
        let name = job.name.as_str();
        let Some(a) = self.agents.get_mut(name) else {
            return result;
        };
        a.busy = false;
        let o = match result {
            Ok(o) => o,
            Err(e) => {
                self.log.push(format!("{name}: page-out: {e}"));
                self.save(name);
                return Err(e);
            }
        };
        a.learned.ws_resident = job.agent.learned.ws_resident;
        a.learned.swapped = job.agent.learned.swapped;
        let current = a.generation == job.generation;
        if current && job.kind == JobKind::Idle {
            a.state = AgentState::Reclaimed;
            a.reclaimed_at = Some(now);
            a.last_sample = now;
            a.last_repage = now;
        }
        a.refresh_figures(now, true);
        let what = match job.kind {
            JobKind::Idle => format!("idle {:.0} s, paged out", job.idle_for.as_secs_f64()),
            JobKind::Repage => "new memory paged out".into(),
            JobKind::Pause => "paused, paged out".into(),
            JobKind::Deep => "deep sleep, working set paged out".into(),
        };
        self.log.push(format!(
            "{name}: {what}: {}{}",
            describe(&o),
            if current { "" } else { " (resumed meanwhile)" }
        ));
        self.save(name);
        Ok(o)
    }

    /// Resumes an agent: thaws it and prefetches per `prefetch`; returns the
    /// time taken in ms once that prefetch is done.
    pub fn resume(&mut self, name: &str, prefetch: Prefetch, now: Instant) -> Result<f64> {
        let job = self.resume_begin(name, prefetch, now)?;
        let done = job.run();
        self.resume_finish(done, now)
    }

    /// [`Supervisor::resume`] up to the thaw; returns the prefetch to run
    /// without the lock ([`PrefetchJob::run`]), then [`Supervisor::resume_finish`].
    pub fn resume_begin(
        &mut self,
        name: &str,
        prefetch: Prefetch,
        now: Instant,
    ) -> Result<PrefetchJob> {
        let t0 = Instant::now();
        let a = self
            .agents
            .get_mut(name)
            .ok_or_else(|| Error::UnknownAgent(name.into()))?;
        a.generation += 1;
        let was_paused = a.state == AgentState::Paused;
        if was_paused || a.rec.cgroup.is_frozen() {
            a.rec.cgroup.thaw()?;
        }
        let (set, others) = match prefetch {
            Prefetch::None => (PageSet::default(), false),
            Prefetch::WorkingSet => (a.working_set(), false),
            Prefetch::All => (a.learned.swapped.clone(), true),
        };
        if !a.learned.swapped.is_empty() {
            a.resumed = Some((now, prefetch != Prefetch::None));
        }
        a.state = AgentState::Active;
        a.learned.paused = false;
        a.last_active = now;
        Ok(PrefetchJob {
            name: name.into(),
            agent: a.detached()?,
            set,
            others,
            prefetch,
            t0,
            result: Ok(()),
        })
    }

    /// Records a resume whose prefetch ran; returns its time in ms.
    pub fn resume_finish(&mut self, job: PrefetchJob, now: Instant) -> Result<f64> {
        job.result?;
        let ms = job.t0.elapsed().as_secs_f64() * 1e3;
        let name = job.name.as_str();
        if let Some(a) = self.agents.get_mut(name) {
            a.last_resume_ms = Some(ms);
            // Figures only after the answer's time was taken; PSS in a tick.
            a.refresh_figures(now, false);
        }
        self.save(name);
        self.log.push(format!(
            "{name}: resumed in {ms:.1} ms (prefetch {:?})",
            job.prefetch
        ));
        Ok(ms)
    }

    /// The status of every agent and the totals, from the figures of the
    /// last ticks (see [`Config::figures_max_age`]): no /proc or cgroup file
    /// is read per agent, so `ps` costs the same at 200 agents as at 2.
    pub fn status(&self, now: Instant) -> Status {
        let mem: MemInfo = procfs::meminfo().unwrap_or_default();
        let mut st = Status::default();
        for a in self.agents.values() {
            let f = &a.figures;
            let u = f.usage;
            let v2 = matches!(a.rec.cgroup.layout(), CgroupLayout::V2 { .. });
            // v2 charges the pool to the cgroup and says how much; v1 does not.
            let zswap = if v2 {
                f.cgroup.zswap
            } else {
                pool_share(u.swap_bytes, &mem)
            };
            let age =
                |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs_f64());
            st.agents.push(AgentStatus {
                name: a.rec.name.clone(),
                pid: a.rec.pid,
                state: a.state.as_str().into(),
                rss_bytes: u.rss_bytes,
                pss_bytes: u.pss_bytes,
                swap_bytes: u.swap_bytes,
                ksm_merged_pages: u.ksm_merged_pages,
                ram_bytes: u.pss_bytes + f.cgroup.swap_cache + zswap,
                swap_cache_bytes: f.cgroup.swap_cache,
                zswap_bytes: zswap,
                disk_bytes: disk_share(u.swap_bytes, &mem),
                figures_age_s: age(f.at),
                pss_age_s: age(f.pss_at),
                idle_s: now.saturating_duration_since(a.last_active).as_secs_f64(),
                last_resume_ms: a.last_resume_ms,
                said: a.activity.said().map(|s| s.state.name().to_string()),
            });
        }
        totals(&mut st, &mem);
        st
    }

    /// Records what an agent says about itself (from its hooks, through
    /// `agentmem state`). A working state wakes a reclaimed agent at once:
    /// its recent working set is prefetched now, not at the next tick.
    pub fn say(
        &mut self,
        name: &str,
        state: agentmem_core::AgentState,
        now: Instant,
    ) -> Result<()> {
        let a = self
            .agents
            .get_mut(name)
            .ok_or_else(|| Error::UnknownAgent(name.into()))?;
        a.activity.say(state, now);
        let working = matches!(
            state,
            agentmem_core::AgentState::Active
                | agentmem_core::AgentState::RunningTool
                | agentmem_core::AgentState::WaitingForModel
        );
        if working && a.state == AgentState::Reclaimed {
            let ws = a.working_set();
            a.prefetch(&ws)?;
        }
        Ok(())
    }

    fn release_hooks(&mut self, name: &str) {
        match crate::hooks::release(&self.dir, name) {
            Ok(Some(f)) => self
                .log
                .push(format!("{name}: removed its hooks from {}", f.display())),
            Ok(None) => {}
            Err(e) => self
                .log
                .push(format!("{name}: could not remove its hooks: {e}")),
        }
    }

    /// Refreshes the memory figures of the agents whose figures are older
    /// than [`Config::figures_max_age`] (PSS: four times that), at most a
    /// tenth of the agents (and at least one) per tick, oldest first, so the
    /// cost is spread over ticks.
    fn refresh_stale_figures(&mut self, now: Instant) {
        let max_age = self.cfg.figures_max_age;
        let per_tick = self.agents.len().div_ceil(10).max(1);
        let mut stale: Vec<(Option<Instant>, String)> = self
            .agents
            .iter()
            .filter(|(_, a)| {
                a.figures
                    .at
                    .is_none_or(|t| now.duration_since(t) >= max_age)
            })
            .map(|(n, a)| (a.figures.at, n.clone()))
            .collect();
        stale.sort();
        for (_, name) in stale.into_iter().take(per_tick) {
            if let Some(a) = self.agents.get_mut(&name) {
                let pss = a
                    .figures
                    .pss_at
                    .is_none_or(|t| now.duration_since(t) >= max_age * 4);
                a.refresh_figures(now, pss);
            }
        }
    }

    /// Names of the supervised agents.
    pub fn names(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    /// Thaws every paused agent and records it as no longer paused (when
    /// the supervisor stops without `--keep-frozen`: nobody would be left to
    /// resume them). Returns the names thawed.
    pub fn thaw_all(&mut self) -> Vec<String> {
        let mut thawed = Vec::new();
        for (name, a) in self.agents.iter_mut() {
            if a.state == AgentState::Paused || a.rec.cgroup.is_frozen() {
                match a.rec.cgroup.thaw() {
                    Ok(()) => thawed.push(name.clone()),
                    Err(e) => self.log.push(format!("{name}: could not thaw: {e}")),
                }
                a.state = AgentState::Active;
                a.learned.paused = false;
            }
        }
        for name in &thawed {
            self.save(name);
        }
        thawed
    }

    /// Signals every process of agent `name` (its whole cgroup, detached
    /// daemons included) with `sig`, then thaws it so a paused agent can act
    /// on the signal. Returns how many processes were signalled.
    pub fn signal(&mut self, name: &str, sig: rustix::process::Signal) -> Result<usize> {
        let a = self
            .agents
            .get_mut(name)
            .ok_or_else(|| Error::UnknownAgent(name.into()))?;
        a.generation += 1;
        // Signal first: a process thawed before it is signalled could run on.
        let n = a.signal_all(sig)?;
        if a.state == AgentState::Paused || a.rec.cgroup.is_frozen() {
            a.rec.cgroup.thaw()?;
        }
        a.state = AgentState::Active;
        a.learned.paused = false;
        self.log.push(format!(
            "{name}: signal {} sent to {n} processes",
            sig.as_raw()
        ));
        self.save(name);
        Ok(n)
    }

    /// The uid agent `name`'s main process runs as (the owner of
    /// /proc/PID), or `None` for an unknown agent.
    pub fn owner_uid(&self, name: &str) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        let a = self.agents.get(name)?;
        std::fs::metadata(format!("/proc/{}", a.rec.pid))
            .ok()
            .map(|m| m.uid())
    }

    /// True when every process of agent `name` has exited (or no such agent).
    pub fn has_exited(&self, name: &str) -> bool {
        self.agents
            .get(name)
            .is_none_or(|a| !a.rec.alive() && a.rec.cgroup.procs().is_empty())
    }

    /// Forgets agent `name` if all its processes have exited, removing its
    /// record and cgroup. Returns whether it did.
    pub fn reap(&mut self, name: &str) -> bool {
        if !self.has_exited(name) {
            return false;
        }
        if let Some(a) = self.agents.remove(name) {
            a.rec.cgroup.remove();
            self.release_hooks(name);
            self.dir.forget(name);
            self.log.push(format!("{name}: exited"));
        }
        true
    }
}

/// Fills in the totals of `st` from its agents and `mem`.
pub fn totals(st: &mut Status, mem: &MemInfo) {
    let mut t = Totals {
        agents: st.agents.len(),
        zswap_pool_bytes: mem.zswap_pool,
        zswapped_bytes: mem.zswapped,
        swap_used_bytes: mem.swap_total.saturating_sub(mem.swap_free),
        mem_available_bytes: mem.available,
        psi_some_avg10: procfs::memory_pressure_some_avg10(),
        ..Totals::default()
    };
    t.swap_cached_bytes = mem.swap_cached;
    for a in &st.agents {
        t.rss_bytes += a.rss_bytes;
        t.pss_bytes += a.pss_bytes;
        t.swap_bytes += a.swap_bytes;
        t.ksm_merged_pages += a.ksm_merged_pages;
        t.ram_bytes += a.ram_bytes;
        t.swap_cache_bytes += a.swap_cache_bytes;
        t.disk_bytes += a.disk_bytes;
    }
    t.effective_bytes = t.pss_bytes + pool_share(t.swap_bytes, mem);
    st.totals = t;
}

/// The part of the zswap pool's RAM attributable to `swap_bytes` of swap,
/// in proportion to all swap in use.
pub fn pool_share(swap_bytes: u64, mem: &MemInfo) -> u64 {
    let used = mem.swap_total.saturating_sub(mem.swap_free);
    if used == 0 {
        return 0;
    }
    (mem.zswap_pool as u128 * swap_bytes.min(used) as u128 / used as u128) as u64
}

/// Plans a page-out of `a` (marking it busy until [`Supervisor::finish`]).
fn plan(
    name: &str,
    a: &mut Supervised,
    kind: JobKind,
    cfg: &Config,
    keep_ws: Option<f64>,
    idle_for: Duration,
) -> Result<PageOutJob> {
    let agent = a.detached()?;
    a.busy = true;
    Ok(PageOutJob {
        name: name.into(),
        kind,
        agent,
        generation: a.generation,
        cold_bypass: cfg.cold_to_swap_file,
        keep_ws,
        drop_cache: cfg.drop_swap_cache,
        all: kind == JobKind::Pause,
        idle_for,
    })
}

/// The part of `swap_bytes` of swap that is on disk (in the swap file, not
/// in zswap), in proportion to all swap in use.
pub fn disk_share(swap_bytes: u64, mem: &MemInfo) -> u64 {
    let used = mem.swap_total.saturating_sub(mem.swap_free);
    if used == 0 {
        return 0;
    }
    let on_disk = used.saturating_sub(mem.zswapped);
    (on_disk as u128 * swap_bytes.min(used) as u128 / used as u128) as u64
}

/// A page-out in a log line: what left RAM, and what was advised.
pub fn describe(o: &PageOutOutcome) -> String {
    format!(
        "{} MiB left RAM ({} MiB of address space advised, {} MiB swap cache left)",
        o.freed_bytes >> 20,
        o.advised_bytes >> 20,
        o.swap_cache_bytes >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_is_shared_in_proportion_to_swap() {
        let mem = MemInfo {
            swap_total: 1000,
            swap_free: 600,
            zswap_pool: 100,
            ..MemInfo::default()
        };
        assert_eq!(pool_share(200, &mem), 50);
        assert_eq!(pool_share(400, &mem), 100);
        assert_eq!(pool_share(10_000, &mem), 100, "never more than the pool");
        assert_eq!(pool_share(5, &MemInfo::default()), 0, "no swap, no share");
    }

    #[test]
    fn disk_is_swap_in_use_minus_what_zswap_holds() {
        let mem = MemInfo {
            swap_total: 1000,
            swap_free: 600,
            zswapped: 100,
            ..MemInfo::default()
        };
        // 300 of the 400 in use are on disk.
        assert_eq!(disk_share(400, &mem), 300);
        assert_eq!(disk_share(200, &mem), 150);
        assert_eq!(disk_share(5, &MemInfo::default()), 0);
    }
}
