//! `agentmem stats`: the store's accounting, read from a running agentmemd.

use std::path::PathBuf;

use agentmem_client::{ConnectOptions, StatsReport};

use crate::util::human_bytes;

/// Arguments of `agentmem stats`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's socket. Default: $AGENTMEM_SOCKET, else
    /// $XDG_RUNTIME_DIR/agentmem.sock, else /run/agentmem/agentmem.sock.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// A token naming the tenant whose agents to list (default: your uid's;
    /// root and the daemon's own user see every tenant).
    #[arg(long, env = "AGENTMEM_TOKEN")]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// Connect without an agent (an observer connection) and print the stats.
pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    // An empty agent name registers no agent: the connection may only read
    // stats, and leaves no trace in them.
    let mut opts = ConnectOptions::new("");
    if let Some(s) = &args.socket {
        opts = opts.socket(s);
    }
    if let Some(t) = &args.token {
        opts = opts.token(t.clone());
    }
    let mut client = opts.connect()?;
    let stats = client.stats()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", table(&stats));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

use agentmem_daemon::escape::escaped;

fn table(s: &StatsReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let d = &s.daemon;
    let _ = writeln!(
        o,
        "agentmemd: up {}s, {} connections, {} requests ({} errors, {} protocol errors), {} shared segments ({})",
        d.uptime_secs,
        d.connections,
        d.requests,
        d.errors,
        d.protocol_errors,
        d.segments,
        human_bytes(d.segment_bytes)
    );
    if d.data_dir.is_empty() {
        let _ = writeln!(o, "data: RAM only (nothing survives a restart)");
    } else {
        let _ = writeln!(
            o,
            "data: {} (recovered in {:.3}s at start)",
            escaped(&d.data_dir),
            d.recovery_secs
        );
    }
    let _ = writeln!(
        o,
        "store: {} allocated, {} saved by dedup ({} hits), ratio {:.2}, accounted RAM {} of budget {}\n",
        human_bytes(s.total_allocated),
        human_bytes(s.total_deduplicated),
        s.dedup_hits,
        s.compression_ratio,
        human_bytes(s.accounted_ram_bytes),
        human_bytes(s.ram_budget)
    );
    let _ = writeln!(
        o,
        "{:<14} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "kind", "units", "logical", "stored", "hot", "warm", "cold"
    );
    for k in &s.kinds {
        let _ = writeln!(
            o,
            "{:<14} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11}",
            escaped(&k.kind),
            k.units,
            human_bytes(k.logical_bytes),
            human_bytes(k.stored_bytes),
            human_bytes(k.hot_bytes),
            human_bytes(k.warm_bytes),
            human_bytes(k.cold_bytes)
        );
    }
    let _ = writeln!(
        o,
        "\n{:>6} {:<20} {:<14} {:<18} {:>4} {:>7} {:>11} {:>11} {:>9}",
        "agent", "name", "tenant", "state", "imp", "units", "logical", "charged", "connected"
    );
    for a in &s.agents {
        let _ = writeln!(
            o,
            "{:>6} {:<20} {:<14} {:<18} {:>4} {:>7} {:>11} {:>11} {:>9}",
            a.id,
            // Names come from clients: shown escaped, never interpreted.
            escaped(&a.name),
            escaped(&a.tenant),
            a.state.name(),
            a.importance,
            a.units,
            human_bytes(a.logical_bytes),
            human_bytes(a.charged_bytes),
            if a.connected { "yes" } else { "no" }
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmem_client::{AgentReport, DaemonReport};

    #[test]
    fn names_with_escape_sequences_cannot_drive_the_terminal_or_forge_rows() {
        let evil = "x\x1b[2J\x1b]0;pwned\x07\n    1 root-agent           uid:0          active";
        let s = StatsReport {
            kinds: vec![],
            total_allocated: 0,
            total_deduplicated: 0,
            compression_ratio: 1.0,
            hot_bytes: 0,
            warm_bytes: 0,
            cold_bytes: 0,
            dedup_hits: 0,
            conversations: 0,
            accounted_ram_bytes: 0,
            ram_budget: 0,
            hot_budget: 0,
            agents: vec![AgentReport {
                id: 7,
                name: evil.into(),
                tenant: "uid:1000\r".into(),
                state: agentmem_core::AgentState::Active,
                importance: 0,
                units: 0,
                logical_bytes: 0,
                charged_bytes: 0,
                connected: true,
            }],
            daemon: DaemonReport {
                connections: 1,
                requests: 0,
                errors: 0,
                protocol_errors: 0,
                segments: 0,
                segment_bytes: 0,
                uptime_secs: 0,
                data_dir: String::new(),
                recovery_secs: 0.0,
            },
        };
        let t = table(&s);
        assert!(
            !t.chars().any(|c| c.is_control() && c != '\n'),
            "a control character reached the table: {t:?}"
        );
        let agent_rows = t.lines().skip_while(|l| !l.contains("connected")).skip(1);
        assert_eq!(agent_rows.count(), 1, "one agent, one row: {t}");
        assert!(t.contains("\\u{1b}[2J"), "{t}");
    }
}
