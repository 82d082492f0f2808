//! The idle detector on activity recorded from the real, unmodified agent
//! CLIs (Claude Code 2.1.197, Gemini CLI 0.61.0, Codex 0.171.0) idle at
//! their prompt for 5 minutes, then typed into (tests/data; how it was
//! recorded is in its header and docs/real-agents.md).

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
                    tty_syscr: n(7),
                    tty: true,
                },
            }
        })
        .collect()
}

/// The CLIs' first ticks are the end of their start-up (Codex loads its
/// history for a few seconds after it shows its prompt).
const SETTLE: usize = 5;

/// Runs `act` over one CLI's ticks; returns (idle ticks called active,
/// keystroke ticks called quiet, keystroke ticks).
fn run(cli: &str, act: &mut Activity, cfg: &IdleConfig) -> (usize, usize, usize) {
    let t0 = Instant::now();
    let (mut prev, mut cum) = (Counters::default(), Counters::default());
    let (mut false_active, mut missed, mut keys) = (0, 0, 0);
    for (i, r) in rows().iter().filter(|r| r.cli == cli).enumerate() {
        cum.cpu_ticks += r.d.cpu_ticks;
        cum.io_bytes += r.d.io_bytes;
        cum.tty_wchar += r.d.tty_wchar;
        cum.tty_syscw += r.d.tty_syscw;
        cum.tty_syscr += r.d.tty_syscr;
        cum.tty = true;
        let s = Sample::between(&prev, &cum, Duration::from_secs(1), 100);
        prev = cum;
        let v = act.observe(&s, cfg, t0 + Duration::from_secs(i as u64 + 1), true);
        if i < SETTLE {
            continue;
        }
        if r.key {
            keys += 1;
            missed += usize::from(v.is_none());
        } else if r.idle {
            false_active += usize::from(v.is_some());
        }
    }
    (false_active, missed, keys)
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
        let (false_active, missed, keys) = run(cli, &mut Activity::default(), &cfg);
        assert_eq!(false_active, 0, "{cli}: idle ticks taken for activity");
        assert_eq!(missed, 0, "{cli}: {missed} of {keys} keystrokes missed");
    }
}

#[test]
fn after_waiting_for_human_is_said_keystrokes_still_wake() {
    let cfg = IdleConfig::default();
    for cli in ["claude", "gemini", "codex"] {
        let mut act = Activity::default();
        act.say(AgentState::WaitingForHuman, Instant::now());
        let (false_active, missed, keys) = run(cli, &mut act, &cfg);
        assert_eq!(false_active, 0, "{cli}");
        assert_eq!(missed, 0, "{cli}: {missed} of {keys} keystrokes missed");
    }
}
