//! Is the agent working or waiting? From what the agent says (hooks, see
//! [`crate::hooks`]) and, where it says nothing, from what it does.
//!
//! Fixed thresholds fail on real agent CLIs: an idle Claude Code reads and
//! writes 8–56 B every second (timerfd/eventfd, `/proc/self/statm`) with
//! spikes to 336 B, and spends up to 60 ms of CPU in a second on timers;
//! an idle Gemini CLI bursts to ~48 KB of eventfd traffic; Codex's
//! detached app-server chats on its sockets. A keystroke, on the other
//! hand, makes the TUI render: it writes escape sequences to its terminal.
//!
//! So the detector looks at a pattern, not a level:
//!
//! - **Terminal input**: the kernel moves the access time of a terminal
//!   when it is read, at most once per 8-second window (`tty_update_time`,
//!   coarse on purpose so as not to leak keystroke timing). A keystroke
//!   after a quiet spell always lands in a new window, so a changed atime
//!   of the agent's terminal is a keystroke (or a paste) — never a timer,
//!   a socket or a file, however busy those are.
//! - **Render bytes**: bytes written by the agent's processes that have a
//!   controlling terminal (the TUI; detached daemons have none), beyond 8
//!   bytes per write call. Timer and wake-up writes (eventfd, timerfd) are
//!   exactly 8 bytes each, so idle noise contributes nothing however busy
//!   it is, while any redraw does. A render above the agent's threshold is
//!   activity when it lasts two ticks in a row (output, a spinner, a
//!   person typing; five when the agent is paged out, as refaults stretch
//!   a redraw); a lone redraw is not, whatever its size (an idle Codex
//!   redraws 103 B now and then, and its whole screen, 24 KB, about 5
//!   minutes after it starts). A word typed within the 8-second window of
//!   the previous keystroke is seen only this way.
//! - **Sustained CPU**: the agent's CPU above [`IdleConfig::cpu_sustained`]
//!   of a core for [`IdleConfig::cpu_ticks`] ticks in a row (a tool or a
//!   build running in its cgroup without output); single blips and the CPU
//!   of refaults right after a page-out do not last.
//! - For agents without a terminal (headless), all I/O and CPU are compared
//!   with thresholds learned from the agent's own quiet ticks.
//!
//! Thresholds are learned per agent: a high quantile of its own quiet
//! ticks times a margin, never below a floor and never above a ceiling (so
//! a noisy agent cannot learn its keystrokes away). Until enough quiet
//! ticks are seen, the floors apply.
//!
//! What the agent says comes first: a working state (`active`,
//! `running_tool`, `waiting_for_model`) keeps it awake until it says
//! otherwise (or has been quiet for [`IdleConfig::working_ttl`], in case a
//! turn ended without its hook); `waiting_for_human` makes it eligible for
//! page-out after [`IdleConfig::said_grace`] instead of the adaptive
//! threshold and tells the detector that what it sees is idle noise. A
//! keystroke still wakes it (the person is typing), except within
//! [`IdleConfig::said_settle`] of the report, when the TUI draws the end
//! of its turn.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use agentmem_core::AgentState;
use serde::{Deserialize, Serialize};

/// Tuning of the detector. Defaults are what the real-agent bench uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleConfig {
    /// Render bytes per second above which a TUI is active, before and
    /// below anything learned. Default: 16.
    pub render_floor: f64,
    /// The learned render threshold never goes above this. Default: 4096.
    pub render_ceiling: f64,
    /// Ticks in a row a render must last to be activity. Default: 2.
    pub render_ticks: u32,
    /// The same for an agent that is paged out: refaults stretch a lone
    /// timer redraw over several ticks (an idle, reclaimed Codex's
    /// 5-minute full-screen redraw spans two). Default: 5.
    pub render_ticks_asleep: u32,
    /// CPU (fraction of one core) that counts as work when sustained. Default: 0.25.
    pub cpu_sustained: f64,
    /// For how many ticks in a row. Default: 2.
    pub cpu_ticks: u32,
    /// Headless agents: I/O bytes per second floor. Default: 4096.
    pub io_floor: f64,
    /// Headless agents: CPU floor (fraction of a core) for one tick. Default: 0.1.
    pub cpu_floor: f64,
    /// Quantile of quiet ticks learned as noise. Default: 0.99.
    pub quantile: f64,
    /// Threshold = quantile × this. Default: 2.
    pub margin: f64,
    /// Quiet ticks remembered. Default: 600.
    pub window: usize,
    /// Quiet ticks needed before learned thresholds apply. Default: 30.
    pub min_learned: usize,
    /// After "waiting for the person", page-out after this. Default: 5 s.
    pub said_grace: Duration,
    /// Render right after "waiting for the person" is the end of the turn
    /// being drawn, not a keystroke, for this long. Default: 3 s.
    pub said_settle: Duration,
    /// A reported working state with no sign of work for this long falls
    /// back to inference. Default: 10 min.
    pub working_ttl: Duration,
}

impl Default for IdleConfig {
    fn default() -> Self {
        IdleConfig {
            render_floor: 16.0,
            render_ceiling: 4096.0,
            render_ticks: 2,
            render_ticks_asleep: 5,
            cpu_sustained: 0.25,
            cpu_ticks: 2,
            io_floor: 4096.0,
            cpu_floor: 0.1,
            quantile: 0.99,
            margin: 2.0,
            window: 600,
            min_learned: 30,
            said_grace: Duration::from_secs(5),
            said_settle: Duration::from_secs(3),
            working_ttl: Duration::from_secs(600),
        }
    }
}

/// Cumulative counters of an agent's processes (summed), read each tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// User + system CPU, clock ticks, all processes.
    pub cpu_ticks: u64,
    /// rchar + wchar, all processes.
    pub io_bytes: u64,
    /// wchar of processes with a controlling terminal.
    pub tty_wchar: u64,
    /// syscw of processes with a controlling terminal.
    pub tty_syscw: u64,
    /// Access time (seconds) of the agent's terminal: moves when it is
    /// read, at most once per 8 s. 0: unknown.
    pub tty_atime: i64,
    /// Whether any process has a controlling terminal.
    pub tty: bool,
}

/// One tick of activity, as rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// CPU, fraction of one core.
    pub cpu: f64,
    /// All I/O, bytes per second.
    pub io: f64,
    /// Render bytes per second (terminal processes' writes beyond 8 bytes per call).
    pub render: f64,
    /// Whether its terminal was read (a keystroke) since the last sample.
    pub input: bool,
    /// Whether the agent has a terminal.
    pub tty: bool,
    /// Whether the agent is paged out (set by the caller; see
    /// [`IdleConfig::render_ticks_asleep`]).
    pub asleep: bool,
}

impl Sample {
    /// The sample between two readings `dt` apart. Counters that went down
    /// (a process exited) count as zero.
    pub fn between(prev: &Counters, cur: &Counters, dt: Duration, ticks_per_s: u64) -> Sample {
        let dt = dt.as_secs_f64().max(1e-3);
        let wchar = cur.tty_wchar.saturating_sub(prev.tty_wchar);
        let calls = cur.tty_syscw.saturating_sub(prev.tty_syscw);
        Sample {
            cpu: cur.cpu_ticks.saturating_sub(prev.cpu_ticks) as f64
                / ticks_per_s.max(1) as f64
                / dt,
            io: cur.io_bytes.saturating_sub(prev.io_bytes) as f64 / dt,
            render: wchar.saturating_sub(8 * calls) as f64 / dt,
            input: prev.tty_atime != 0 && cur.tty_atime > prev.tty_atime,
            tty: cur.tty,
            asleep: false,
        }
    }
}

/// Why an agent counts as active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its hook said so.
    Said(AgentState),
    /// Its terminal was read: a keystroke.
    Input,
    /// Its TUI drew something (a keystroke, output, a spinner).
    Render,
    /// Sustained CPU.
    Cpu,
    /// Headless: I/O or CPU above its learned noise.
    Io,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Said(s) => write!(f, "said {}", s.name()),
            Reason::Input => f.write_str("terminal input"),
            Reason::Render => f.write_str("terminal output"),
            Reason::Cpu => f.write_str("sustained CPU"),
            Reason::Io => f.write_str("I/O above its idle noise"),
        }
    }
}

/// A high quantile of a bounded window of values.
#[derive(Debug, Clone, Default)]
struct Noise {
    v: VecDeque<f64>,
}

impl Noise {
    fn push(&mut self, x: f64, cap: usize) {
        if self.v.len() >= cap {
            self.v.pop_front();
        }
        self.v.push_back(x);
    }

    fn quantile(&self, q: f64) -> f64 {
        let mut s: Vec<f64> = self.v.iter().copied().collect();
        s.sort_by(|a, b| a.total_cmp(b));
        s.get(((q * s.len() as f64) as usize).min(s.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    }
}

/// The inference half: learns an agent's idle noise and tells activity from it.
#[derive(Debug, Clone, Default)]
pub struct Detector {
    render: Noise,
    io: Noise,
    cpu: Noise,
    hot: u32,
    /// Ticks in a row rendered above the threshold.
    drew: u32,
    /// Thresholds in force, and quiet ticks learned since they were computed
    /// (quantiles are recomputed every [`RECOMPUTE_EVERY`] learned ticks, not
    /// every tick: a sort of `window` values per agent per second adds up
    /// at hundreds of agents).
    cached: Option<((f64, f64, f64), usize)>,
}

/// See [`Detector`]'s `cached`.
const RECOMPUTE_EVERY: usize = 10;

impl Detector {
    /// (render, io, cpu) thresholds now in force.
    pub fn thresholds(&self, cfg: &IdleConfig) -> (f64, f64, f64) {
        match self.cached {
            Some((t, _)) => t,
            None => self.compute(cfg),
        }
    }

    fn compute(&self, cfg: &IdleConfig) -> (f64, f64, f64) {
        let learned = self.render.v.len() >= cfg.min_learned;
        let t = |n: &Noise, floor: f64, ceil: f64| {
            if learned {
                (n.quantile(cfg.quantile) * cfg.margin).clamp(floor, ceil)
            } else {
                floor
            }
        };
        (
            t(&self.render, cfg.render_floor, cfg.render_ceiling),
            t(&self.io, cfg.io_floor, f64::MAX),
            t(&self.cpu, cfg.cpu_floor, cfg.cpu_sustained),
        )
    }

    /// Classifies a tick; with `learn`, a quiet tick joins the agent's noise.
    pub fn observe(&mut self, s: &Sample, cfg: &IdleConfig, learn: bool) -> Option<Reason> {
        let (render_t, io_t, cpu_t) = match self.cached {
            Some((t, n)) if n < RECOMPUTE_EVERY => t,
            _ => {
                let t = self.compute(cfg);
                self.cached = Some((t, 0));
                t
            }
        };
        self.hot = if s.cpu > cfg.cpu_sustained {
            self.hot + 1
        } else {
            0
        };
        let drew = s.tty && s.render > render_t;
        self.drew = if drew { self.drew + 1 } else { 0 };
        let needed = if s.asleep {
            cfg.render_ticks_asleep
        } else {
            cfg.render_ticks
        };
        let reason = if s.input {
            Some(Reason::Input)
        } else if drew && self.drew >= needed.max(1) {
            Some(Reason::Render)
        } else if self.hot >= cfg.cpu_ticks {
            Some(Reason::Cpu)
        } else if !s.tty && (s.io > io_t || s.cpu > cpu_t) {
            Some(Reason::Io)
        } else {
            None
        };
        if learn && reason.is_none() && self.hot == 0 && !drew {
            self.render.push(s.render, cfg.window);
            self.io.push(s.io, cfg.window);
            self.cpu.push(s.cpu, cfg.window);
            if let Some((_, n)) = &mut self.cached {
                *n += 1;
            }
        }
        reason
    }
}

/// What an agent last said about itself, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Said {
    /// The state.
    pub state: AgentState,
    /// When.
    pub at: Instant,
}

fn working(s: AgentState) -> bool {
    matches!(
        s,
        AgentState::Active | AgentState::RunningTool | AgentState::WaitingForModel
    )
}

/// An agent's activity: what it said, and the detector for when it says nothing.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    detector: Detector,
    said: Option<Said>,
    /// Last tick with any sign of work (for the working state's time-out).
    last_sign: Option<Instant>,
}

impl Activity {
    /// Records what the agent says about itself.
    pub fn say(&mut self, state: AgentState, now: Instant) {
        self.said = Some(Said { state, at: now });
        self.last_sign = Some(now);
    }

    /// What the agent last said, if it still holds.
    pub fn said(&self) -> Option<Said> {
        self.said
    }

    /// The detector (for its thresholds).
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Classifies one tick: `Some(reason)` when the agent is active.
    /// `learn`: quiet ticks may be learned as noise (false right after a
    /// page-out or a resume, when refaults are not the agent's own habits).
    pub fn observe(
        &mut self,
        s: &Sample,
        cfg: &IdleConfig,
        now: Instant,
        learn: bool,
    ) -> Option<Reason> {
        let waiting = self
            .said
            .is_some_and(|x| matches!(x.state, AgentState::WaitingForHuman));
        let inferred = self.detector.observe(s, cfg, learn || waiting);
        if inferred.is_some() {
            self.last_sign = Some(now);
        }
        match self.said {
            Some(x) if working(x.state) => {
                let quiet_for = now.saturating_duration_since(self.last_sign.unwrap_or(x.at));
                if quiet_for < cfg.working_ttl {
                    return Some(Reason::Said(x.state));
                }
                self.said = None;
                inferred
            }
            Some(x) if x.state == AgentState::WaitingForHuman => {
                if now.saturating_duration_since(x.at) < cfg.said_settle {
                    return None;
                }
                if inferred.is_some() {
                    // The person is typing: back to inference until the
                    // agent reports again.
                    self.said = None;
                }
                inferred
            }
            _ => inferred,
        }
    }

    /// How long the agent must be quiet before page-out: `normal` (the
    /// adaptive threshold), or the grace after "waiting for the person" if shorter.
    pub fn threshold(&self, normal: Duration, cfg: &IdleConfig) -> Duration {
        match self.said {
            Some(x) if x.state == AgentState::WaitingForHuman => normal.min(cfg.said_grace),
            _ => normal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(render: f64, cpu: f64) -> Sample {
        Sample {
            cpu,
            io: 100.0,
            render,
            input: false,
            tty: true,
            asleep: false,
        }
    }

    #[test]
    fn eight_byte_writes_are_not_rendering() {
        let a = Counters {
            cpu_ticks: 10,
            io_bytes: 1000,
            tty_wchar: 100,
            tty_syscw: 10,
            tty_atime: 1000,
            tty: true,
        };
        let b = Counters {
            cpu_ticks: 11,
            io_bytes: 48_000,
            tty_wchar: 100 + 46_912,
            tty_syscw: 10 + 5_864,
            tty_atime: 1000,
            tty: true,
        };
        let s = Sample::between(&a, &b, Duration::from_secs(1), 100);
        assert_eq!(s.render, 0.0, "an eventfd storm");
        assert!((s.cpu - 0.01).abs() < 1e-9);
        let c = Counters {
            tty_wchar: b.tty_wchar + 60,
            tty_syscw: b.tty_syscw + 3,
            ..b
        };
        assert_eq!(
            Sample::between(&b, &c, Duration::from_secs(1), 100).render,
            36.0
        );
        let gone = Counters::default();
        assert_eq!(
            Sample::between(&b, &gone, Duration::from_secs(1), 100),
            Sample::default(),
            "a process exited: no negative activity"
        );
    }

    #[test]
    fn cpu_blips_are_not_work_but_sustained_cpu_is() {
        let cfg = IdleConfig::default();
        let mut d = Detector::default();
        assert_eq!(d.observe(&tick(0.0, 0.6), &cfg, true), None);
        assert_eq!(d.observe(&tick(0.0, 0.0), &cfg, true), None);
        assert_eq!(d.observe(&tick(0.0, 0.6), &cfg, true), None);
        assert_eq!(d.observe(&tick(0.0, 0.6), &cfg, true), Some(Reason::Cpu));
    }

    #[test]
    fn lone_redraws_are_not_activity_but_output_and_keystrokes_are() {
        let cfg = IdleConfig::default();
        let mut d = Detector::default();
        assert_eq!(
            d.observe(&tick(103.0, 0.0), &cfg, true),
            None,
            "a lone redraw"
        );
        assert_eq!(d.observe(&tick(0.0, 0.0), &cfg, true), None);
        assert_eq!(d.observe(&tick(300.0, 0.0), &cfg, true), None);
        assert_eq!(
            d.observe(&tick(300.0, 0.0), &cfg, true),
            Some(Reason::Render),
            "two in a row: output, a spinner"
        );
        assert_eq!(d.observe(&tick(0.0, 0.0), &cfg, true), None);
        assert_eq!(
            d.observe(&tick(24_624.0, 0.0), &cfg, true),
            None,
            "a lone full-screen redraw"
        );
        let key = Sample {
            input: true,
            ..tick(0.0, 0.0)
        };
        assert_eq!(d.observe(&key, &cfg, true), Some(Reason::Input));
    }

    #[test]
    fn a_paged_out_agent_needs_a_longer_render_to_wake() {
        let cfg = IdleConfig::default();
        let mut d = Detector::default();
        let asleep = |r| Sample {
            asleep: true,
            ..tick(r, 0.0)
        };
        for _ in 1..cfg.render_ticks_asleep {
            assert_eq!(d.observe(&asleep(24_624.0), &cfg, false), None);
        }
        assert_eq!(
            d.observe(&asleep(300.0), &cfg, false),
            Some(Reason::Render),
            "output that goes on"
        );
        let key = Sample {
            input: true,
            ..asleep(0.0)
        };
        assert_eq!(d.observe(&key, &cfg, false), Some(Reason::Input));
    }

    #[test]
    fn learned_thresholds_stay_between_floor_and_ceiling() {
        let cfg = IdleConfig::default();
        let mut d = Detector::default();
        for _ in 0..cfg.min_learned + 2 * RECOMPUTE_EVERY {
            d.observe(&tick(10.0, 0.0), &cfg, true);
        }
        assert_eq!(d.thresholds(&cfg).0, 20.0, "2 x the 99th percentile");
        let mut quiet = Detector::default();
        for _ in 0..cfg.min_learned + 2 * RECOMPUTE_EVERY {
            quiet.observe(&tick(0.0, 0.0), &cfg, true);
        }
        assert_eq!(quiet.thresholds(&cfg).0, cfg.render_floor);
    }

    #[test]
    fn said_states_come_first() {
        let cfg = IdleConfig::default();
        let t0 = Instant::now();
        let mut a = Activity::default();
        a.say(AgentState::Active, t0);
        let quiet = tick(0.0, 0.0);
        assert_eq!(
            a.observe(&quiet, &cfg, t0 + Duration::from_secs(60), true),
            Some(Reason::Said(AgentState::Active)),
            "a working agent stays awake while quiet"
        );
        assert_eq!(
            a.observe(&quiet, &cfg, t0 + cfg.working_ttl * 2, true),
            None,
            "unless it never said it was done"
        );
        a.say(AgentState::WaitingForHuman, t0);
        assert_eq!(a.threshold(Duration::from_secs(30), &cfg), cfg.said_grace);
        let key = Sample {
            input: true,
            ..tick(60.0, 0.02)
        };
        assert_eq!(
            a.observe(&key, &cfg, t0 + Duration::from_secs(1), true),
            None,
            "the end of the turn being drawn"
        );
        assert_eq!(
            a.observe(&key, &cfg, t0 + Duration::from_secs(20), true),
            Some(Reason::Input),
            "a keystroke wakes it"
        );
        assert_eq!(a.said(), None);
        assert_eq!(
            a.threshold(Duration::from_secs(30), &cfg),
            Duration::from_secs(30)
        );
    }
}
