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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => cmd::simulate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agentmem: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
