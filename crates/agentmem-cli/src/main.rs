//! `agentmem`: agent-aware memory management from the command line.
//!
//! Each subcommand lives in its own module under `cmd/`; this file only
//! parses arguments and dispatches.

use clap::{Parser, Subcommand};

mod cmd;
mod data;
mod util;

#[derive(Debug, Parser)]
#[command(
    name = "agentmem",
    version,
    about = "Agent-aware memory management for Linux"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay real agent data for many agents and measure their memory.
    Simulate(cmd::simulate::Args),
    /// Replay a trace against eviction policies and report miss ratios.
    Sim(cmd::sim::Args),
    /// Generate an agent-aware trace from real conversations.
    TraceGen(cmd::tracegen::Args),
    /// Check every record of a store directory; non-zero exit if anything is missing or corrupt.
    Verify(cmd::verify::Args),
    // --- agentmem-supervisor subcommands (issue 6) ---
    /// Check the machine, or apply / revert the agent memory profile (zswap, swap file, KSM).
    Setup(cmd::supervise::SetupArgs),
    /// Launch an agent under supervision (KSM merging, own cgroup): `run --name N -- CMD ARGS...`.
    Run(cmd::supervise::RunArgs),
    /// Put a running process under supervision.
    Adopt(cmd::supervise::AdoptArgs),
    /// Run the supervisor daemon (idle page-out, working-set learning, freeze, prefetch).
    Supervise(cmd::supervise::SuperviseArgs),
    /// Freeze an agent and page it out.
    Pause(cmd::supervise::PauseArgs),
    /// Thaw an agent and prefetch its memory; returns when the prefetch is done.
    Resume(cmd::supervise::ResumeArgs),
    /// End a supervised agent: signal its whole cgroup (thawing it if paused).
    Kill(cmd::supervise::KillArgs),
    /// Supervised agents' state and memory (`--json` for scripts).
    Ps(cmd::supervise::PsArgs),
    /// Live view of the supervised agents, sorted by memory.
    Top(cmd::supervise::TopArgs),
    /// Tell the supervisor what an agent is doing (what the hooks `run` installs call).
    State(cmd::hooks::StateCmdArgs),
    /// Remove the state hooks `run` installed in agents' configuration files.
    Unhook(cmd::hooks::UnhookArgs),
    // --- end agentmem-supervisor subcommands ---
    /// Run agentmemd: serve one store to many agent processes over a Unix
    /// socket (the same program as the `agentmemd` binary).
    Daemon(agentmem_daemon::Args),
    /// Print a running agentmemd's accounting as tables or JSON.
    Stats(cmd::stats::Args),
    /// Serve the model APIs agent CLIs use on loopback, answering from recorded conversations.
    ReplayModel(cmd::replay::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => cmd::simulate::run(args),
        Command::Sim(args) => cmd::sim::run(args),
        Command::TraceGen(args) => cmd::tracegen::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        // --- agentmem-supervisor subcommands (issue 6) ---
        Command::Setup(args) => cmd::supervise::setup(args),
        Command::Run(args) => cmd::supervise::run(args),
        Command::Adopt(args) => cmd::supervise::adopt(args),
        Command::Supervise(args) => cmd::supervise::supervise(args),
        Command::Pause(args) => cmd::supervise::pause(args),
        Command::Resume(args) => cmd::supervise::resume(args),
        Command::Kill(args) => cmd::supervise::kill(args),
        Command::Ps(args) => cmd::supervise::ps(args),
        Command::Top(args) => cmd::supervise::top(args),
        Command::State(args) => cmd::hooks::state(args),
        Command::Unhook(args) => cmd::hooks::unhook(args),
        // --- end agentmem-supervisor subcommands ---
        Command::Daemon(args) => agentmem_daemon::run(args)
            .map(|()| std::process::ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
        Command::Stats(args) => cmd::stats::run(args),
        Command::ReplayModel(args) => cmd::replay::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agentmem: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
