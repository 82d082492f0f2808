//! The idle detector on activity recorded from the real, unmodified agent
//! CLIs (Claude Code 2.1.197, Gemini CLI 0.61.0, Codex 0.171.0) idle at
//! their prompt for 5.5 minutes, then typed into (tests/data; how it was
//! recorded is in its header and docs/real-agents.md). Codex redraws its
//! whole screen about 5 minutes after it starts, with nothing typed: the
//! recording holds that too.

use std::time::{Duration, Instant};

use agentmem_core::AgentState;
use agentmem_supervisor::idle::{Activity, Counters, IdleConfig, Sample};

struct Row {
    cli: String,
    idle: bool,
    key: bool,
    d: Counters,
}

fn rows() -> Vec<Row> {
    include_str!("data/real-cli-idle-typing.csv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("cli,"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = |i: usize| f[i].parse::<u64>().unwrap();
            Row {
                cli: f[0].to_string(),
                idle: f[1] == "idle",
                key: f[2] == "1",
                d: Counters {
                    cpu_ticks: n(3),
                    io_bytes: n(4),
                    tty_wchar: n(5),
                    tty_syscw: n(6),
                    // 1 when the terminal's atime moved in this tick.
                    tty_atime: n(7) as i64,
                    tty: true,
                },
            }
        })
        .collect()
}

/// The CLIs' first ticks are the end of their start-up (Codex loads its
/// history for a few seconds after it shows its prompt).
const SETTLE: usize = 5;

/// What `act` made of one CLI's ticks.
#[derive(Debug, Default)]
struct Verdicts {
    /// Idle ticks taken for activity.
    false_active: usize,
    /// Keystrokes after 8 s or more without one (a wake-up) not seen in their tick.
    missed_wakes: usize,
    /// Keystrokes with no activity seen in the 8 s up to and including them.
    unseen_typing: usize,
    keys: usize,
}

/// Runs `act` over one CLI's ticks.
fn run(cli: &str, act: &mut Activity, cfg: &IdleConfig) -> Verdicts {
    let t0 = Instant::now();
    let (mut prev, mut cum) = (Counters::default(), Counters::default());
    let mut v = Verdicts::default();
    let (mut last_key, mut last_active): (Option<usize>, Option<usize>) = (None, None);
    for (i, r) in rows().iter().filter(|r| r.cli == cli).enumerate() {
        cum.cpu_ticks += r.d.cpu_ticks;
        cum.io_bytes += r.d.io_bytes;
        cum.tty_wchar += r.d.tty_wchar;
        cum.tty_syscw += r.d.tty_syscw;
        // The kernel moves a terminal's atime by whole 8-second windows.
        cum.tty_atime = if cum.tty_atime == 0 {
            1_000_000
        } else {
            cum.tty_atime + 8 * r.d.tty_atime
        };
        cum.tty = true;
        let s = Sample::between(&prev, &cum, Duration::from_secs(1), 100);
        prev = cum;
        let verdict = act.observe(&s, cfg, t0 + Duration::from_secs(i as u64 + 1), true);
        if verdict.is_some() {
            last_active = Some(i);
        }
        if i < SETTLE {
            continue;
        }
        if r.key {
            v.keys += 1;
            if last_key.is_none_or(|k| i - k >= 8) && verdict.is_none() {
                v.missed_wakes += 1;
            }
            if last_active.is_none_or(|k| i - k >= 8) {
                v.unseen_typing += 1;
            }
            last_key = Some(i);
        } else if r.idle && verdict.is_some() {
            v.false_active += 1;
        }
    }
    v
}

#[test]
fn the_recording_holds_all_three_clis() {
    for cli in ["claude", "gemini", "codex"] {
        let n = rows().iter().filter(|r| r.cli == cli).count();
        let keys = rows().iter().filter(|r| r.cli == cli && r.key).count();
        assert!(
            n >= 300 && keys >= 10,
            "{cli}: {n} ticks, {keys} keystrokes"
        );
    }
}

#[test]
fn fixed_thresholds_never_see_idle_claude_code() {
    // The old default (any I/O is activity) on idle Claude Code: it never
    // stays quiet for the 30 s the first page-out waits for.
    let (mut run, mut longest) = (0, 0);
    for r in rows().iter().filter(|r| r.cli == "claude" && r.idle) {
        run = if r.d.io_bytes == 0 { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    assert!(longest < 30, "quiet for {longest} ticks in a row");
}

#[test]
fn idle_real_clis_stay_quiet_and_every_keystroke_is_seen() {
    let cfg = IdleConfig::default();
    for cli in ["claude", "gemini", "codex"] {
        let v = run(cli, &mut Activity::default(), &cfg);
        assert!(v.keys >= 10, "{cli}: {v:?}");
        assert_eq!(
            v.false_active, 0,
            "{cli}: idle ticks taken for activity: {v:?}"
        );
        assert_eq!(
            v.missed_wakes, 0,
            "{cli}: a wake-up keystroke missed: {v:?}"
        );
        assert_eq!(v.unseen_typing, 0, "{cli}: typing unseen for 8 s: {v:?}");
    }
}

#[test]
fn after_waiting_for_human_is_said_keystrokes_still_wake() {
    let cfg = IdleConfig::default();
    for cli in ["claude", "gemini", "codex"] {
        let mut act = Activity::default();
        act.say(AgentState::WaitingForHuman, Instant::now());
        let v = run(cli, &mut act, &cfg);
        assert_eq!(v.false_active, 0, "{cli}: {v:?}");
        assert_eq!(v.missed_wakes, 0, "{cli}: {v:?}");
        assert_eq!(v.unseen_typing, 0, "{cli}: {v:?}");
    }
}
