//! `agentmem trace-gen`: generate an agent-aware trace by replaying real
//! conversations as many concurrent agent sessions.

use std::path::PathBuf;

use agentmem_sim::workload::{generate, load_conversations, WorkloadConfig};

/// Arguments of `agentmem trace-gen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Conversations, one JSON object per line (.zst allowed).
    #[arg(
        long,
        default_value = "../shared/data/conversations/tau2_dev.jsonl.zst"
    )]
    conversations: PathBuf,
    /// Output trace file.
    #[arg(long)]
    out: PathBuf,
    /// Output format: agent (agentmem's agent-aware format) or
    /// oracle-general (libCacheSim's, without the agent fields).
    #[arg(long, default_value = "agent")]
    format: String,
    /// Concurrent agents.
    #[arg(long, default_value_t = 200)]
    agents: u32,
    /// Conversations each agent runs, one after another.
    #[arg(long, default_value_t = 3)]
    sessions: u32,
    /// Probability that a person's turn is a long pause (median 20 min).
    #[arg(long, default_value_t = 0.15)]
    long_pause_probability: f64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Generate the trace.
pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    if !(0.0..=1.0).contains(&args.long_pause_probability) {
        anyhow::bail!(
            "--long-pause-probability {} is not a probability in [0, 1]",
            args.long_pause_probability
        );
    }
    let convs = load_conversations(&args.conversations)?;
    let cfg = WorkloadConfig {
        agents: args.agents,
        sessions_per_agent: args.sessions,
        long_pause_probability: args.long_pause_probability,
        seed: args.seed,
        ..Default::default()
    };
    let records = generate(&convs, &cfg);
    match args.format.as_str() {
        "agent" => agentmem_sim::trace::write_agent_trace(&args.out, &records)?,
        "oracle-general" => agentmem_sim::trace::write_oracle_general(&args.out, &records, true)?,
        other => anyhow::bail!("unknown --format {other:?}; expected agent or oracle-general"),
    }
    let requests = records.iter().filter(|r| r.op.is_request()).count();
    let span_s = records.last().map_or(0, |r| r.time) as f64 / 1e9;
    println!(
        "wrote {}: {} records, {requests} requests, {} agents, {} conversations available, {:.1} h of simulated time",
        args.out.display(),
        records.len(),
        args.agents,
        convs.len(),
        span_s / 3600.0
    );
    Ok(std::process::ExitCode::SUCCESS)
}
