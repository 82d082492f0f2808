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
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::agent::{AgentRecord, AgentState, Learned, StateDir};
use crate::error::{Error, Result};
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
    /// CPU above this fraction of one core during a tick counts as activity. Default: 0.02.
    pub cpu_active_fraction: f64,
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_threshold: Duration::from_secs(30),
            min_threshold: Duration::from_secs(5),
            max_threshold: Duration::from_secs(600),
            cpu_active_fraction: 0.02,
            sample_every: Duration::from_secs(5),
            repage_every: Duration::from_secs(60),
            learn_delay: Duration::from_secs(1),
            psi_limit: 10.0,
            mem_available_floor: 0.05,
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
    /// Seconds since its last activity.
    pub idle_s: f64,
    /// How long its last resume took (thaw and prefetch), in ms.
    pub last_resume_ms: Option<f64>,
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
    /// RAM used by the zswap pool (whole machine).
    pub zswap_pool_bytes: u64,
    /// Uncompressed bytes in the zswap pool (whole machine).
    pub zswapped_bytes: u64,
    /// Swap in use (whole machine, zswap and swap file).
    pub swap_used_bytes: u64,
    /// PSS plus the agents' share of the zswap pool (by their share of swap in use).
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

#[derive(Debug)]
struct Supervised {
    rec: AgentRecord,
    pidfd: Pidfd,
    learned: Learned,
    state: AgentState,
    last_cpu: u64,
    last_io: u64,
    last_active: Instant,
    reclaimed_at: Option<Instant>,
    last_sample: Instant,
    /// After a resume: when, and whether to prefetch the rest afterwards.
    resumed: Option<(Instant, bool)>,
    last_resume_ms: Option<f64>,
}

impl Supervised {
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

    /// CPU ticks and I/O bytes of all its processes.
    fn counters(&self) -> (u64, u64) {
        let (mut cpu, mut io) = (0, 0);
        for p in self.procs() {
            if let Some(s) = procfs::stat(p) {
                cpu += s.cpu_ticks;
            }
            io += procfs::io_bytes(p).unwrap_or(0);
        }
        (cpu, io)
    }

    fn usage(&self) -> MemUsage {
        let mut u = MemUsage::default();
        for p in self.procs() {
            if let Some(m) = procfs::mem_usage(p) {
                u += m;
            }
        }
        u
    }

    /// Pages the agent out: the main process minus its idle working set
    /// (unless `all`), other processes of its cgroup whole.
    fn page_out(&mut self, all: bool) -> Result<u64> {
        let pid = self.rec.pid;
        let anon = procfs::anon_ranges(pid)?;
        let target = if all {
            anon.clone()
        } else {
            anon.minus(&self.learned.idle_ws)
        };
        // The recent working set goes first: when the zswap pool is at its
        // limit, pages stored later are the ones sent on to the swap file,
        // and the pages a resume needs first come back fastest from zswap.
        let ws = self
            .learned
            .active_ws
            .union(&self.learned.active_ws_prev)
            .intersect(&target);
        let first = sys::advise(&self.pidfd, &ws, Advice::PageOut)?;
        let out = sys::advise(&self.pidfd, &target.minus(&ws), Advice::PageOut)?;
        for p in self.procs().into_iter().filter(|&p| p != pid) {
            if let (Ok(fd), Ok(r)) = (Pidfd::open(p), procfs::anon_ranges(p)) {
                let _ = sys::advise(&fd, &r, Advice::PageOut);
            }
        }
        self.learned.swapped = sys::scan_pagemap(pid, &anon, |e| e.swapped())?;
        Ok(first.bytes + out.bytes)
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
        for p in self.procs().into_iter().filter(|&p| p != self.rec.pid) {
            if let (Ok(fd), Ok(r)) = (Pidfd::open(p), procfs::anon_ranges(p)) {
                let _ = sys::advise(&fd, &r, Advice::WillNeed);
            }
        }
    }

    /// Ends the watch after a resume: the pages the agent used since then
    /// become its recent working set; with `rest`, everything else it has
    /// in swap is prefetched too.
    fn finish_resume(&mut self, rest: bool) -> Result<()> {
        let used = sys::scan_pagemap(self.rec.pid, &self.learned.swapped, |e| e.present())?;
        self.learned.active_ws_prev = std::mem::replace(&mut self.learned.active_ws, used);
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
        };
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
                last_cpu: 0,
                last_io: 0,
                last_active: now,
                reclaimed_at: (state == AgentState::Reclaimed).then_some(now),
                last_sample: now,
                resumed: None,
                last_resume_ms: None,
                rec,
            };
            (a.last_cpu, a.last_io) = a.counters();
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
    pub fn tick(&mut self, now: Instant) {
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
            self.dir.forget(name);
            self.agents.remove(name);
            return Ok(());
        }
        let (cpu, io) = a.counters();
        let cpu_s = cpu.saturating_sub(a.last_cpu) as f64 / tps as f64;
        let active =
            cpu_s > cfg.cpu_active_fraction * dt.as_secs_f64().max(0.001) || io > a.last_io;
        (a.last_cpu, a.last_io) = (cpu, io);
        let mut changed = false;
        if a.state == AgentState::Paused {
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
        match a.state {
            AgentState::Idle
                if a.resumed.is_none() && idle_for >= a.effective_threshold(&cfg, low_memory) =>
            {
                if pressure {
                    self.log.push(format!(
                        "{name}: page-out held back: memory pressure above {}%",
                        cfg.psi_limit
                    ));
                } else {
                    let bytes = a.page_out(false)?;
                    a.state = AgentState::Reclaimed;
                    a.reclaimed_at = Some(now);
                    a.last_sample = now;
                    changed = true;
                    self.log.push(format!(
                        "{name}: idle {:.0} s, paged out {} MiB",
                        idle_for.as_secs_f64(),
                        bytes >> 20
                    ));
                }
            }
            AgentState::Reclaimed if now.duration_since(a.last_sample) >= cfg.sample_every => {
                a.sample_refaults()?;
                a.last_sample = now;
                changed = true;
                let since = a
                    .reclaimed_at
                    .map(|t| now.duration_since(t))
                    .unwrap_or_default();
                if since >= cfg.repage_every && !pressure {
                    // New memory allocated while idle goes out too (the learned idle set stays).
                    a.page_out(false)?;
                    a.reclaimed_at = Some(now);
                }
            }
            _ => {}
        }
        if changed {
            self.save(name);
        }
        Ok(())
    }

    /// Pauses an agent: freezes its cgroup, then (with `page_out`) pages all
    /// of it out. Returns the bytes paged out.
    pub fn pause(&mut self, name: &str, page_out: bool) -> Result<u64> {
        let a = self
            .agents
            .get_mut(name)
            .ok_or_else(|| Error::UnknownAgent(name.into()))?;
        if a.resumed.is_some() {
            // Learn from the last resume before its pages go out again.
            a.finish_resume(false)?;
        }
        a.rec.cgroup.freeze()?;
        a.state = AgentState::Paused;
        a.learned.paused = true;
        let result = if page_out { a.page_out(true) } else { Ok(0) };
        // Saved even on error: the agent is frozen and must stay known as paused.
        self.save(name);
        let bytes = result?;
        self.log
            .push(format!("{name}: paused, paged out {} MiB", bytes >> 20));
        Ok(bytes)
    }

    /// Resumes an agent: thaws it and prefetches per `prefetch`; returns the
    /// time taken in ms once that prefetch is done.
    pub fn resume(&mut self, name: &str, prefetch: Prefetch, now: Instant) -> Result<f64> {
        let t0 = Instant::now();
        let a = self
            .agents
            .get_mut(name)
            .ok_or_else(|| Error::UnknownAgent(name.into()))?;
        let was_paused = a.state == AgentState::Paused;
        if was_paused || a.rec.cgroup.is_frozen() {
            a.rec.cgroup.thaw()?;
        }
        match prefetch {
            Prefetch::None => {}
            Prefetch::WorkingSet => {
                let ws = a.working_set();
                a.prefetch(&ws)?;
            }
            Prefetch::All => {
                let all = a.learned.swapped.clone();
                a.prefetch(&all)?;
                a.prefetch_others();
            }
        }
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if !a.learned.swapped.is_empty() {
            a.resumed = Some((now, prefetch != Prefetch::None));
        }
        a.state = AgentState::Active;
        a.learned.paused = false;
        a.last_active = now;
        a.last_resume_ms = Some(ms);
        self.save(name);
        self.log.push(format!(
            "{name}: resumed in {ms:.1} ms (prefetch {prefetch:?})"
        ));
        Ok(ms)
    }

    /// The status of every agent and the totals.
    pub fn status(&self, now: Instant) -> Status {
        let mem: MemInfo = procfs::meminfo().unwrap_or_default();
        let mut st = Status::default();
        for a in self.agents.values() {
            let u = a.usage();
            st.agents.push(AgentStatus {
                name: a.rec.name.clone(),
                pid: a.rec.pid,
                state: a.state.as_str().into(),
                rss_bytes: u.rss_bytes,
                pss_bytes: u.pss_bytes,
                swap_bytes: u.swap_bytes,
                ksm_merged_pages: u.ksm_merged_pages,
                idle_s: now.saturating_duration_since(a.last_active).as_secs_f64(),
                last_resume_ms: a.last_resume_ms,
            });
        }
        totals(&mut st, &mem);
        st
    }

    /// Names of the supervised agents.
    pub fn names(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    /// Thaws every paused agent (used when the supervisor is told to release them).
    pub fn thaw_all(&mut self) {
        for a in self.agents.values_mut() {
            let _ = a.rec.cgroup.thaw();
        }
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
    for a in &st.agents {
        t.rss_bytes += a.rss_bytes;
        t.pss_bytes += a.pss_bytes;
        t.swap_bytes += a.swap_bytes;
        t.ksm_merged_pages += a.ksm_merged_pages;
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
