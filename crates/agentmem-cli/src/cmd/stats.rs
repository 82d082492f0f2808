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
            d.data_dir, d.recovery_secs
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
            k.kind,
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
            a.name,
            a.tenant,
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
