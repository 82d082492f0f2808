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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => cmd::simulate::run(args),
        Command::Sim(args) => cmd::sim::run(args),
        Command::TraceGen(args) => cmd::tracegen::run(args),
        Command::Verify(args) => cmd::verify::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agentmem: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
