//! `agentmemd`: serve one agentmem store to many agent processes over a
//! Unix socket. Everything is in the library (`agentmem_daemon::run`), so
//! `agentmem daemon` is the same program.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "agentmemd",
    version,
    about = "Serve one agentmem store to many agent processes over a Unix socket",
    long_about = "Serve one agentmem store to many agent processes over a Unix socket.\n\n\
        Clients identify by SO_PEERCRED (tenant = uid) or a configured token; each connection \
        acts for one agent. Large units are shared as sealed memfd segments. Stops gracefully on \
        SIGTERM or SIGINT. See docs/daemon.md."
)]
struct Cli {
    #[command(flatten)]
    args: agentmem_daemon::Args,
}

fn main() -> std::process::ExitCode {
    match agentmem_daemon::run(Cli::parse().args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentmemd: error: {}", agentmem_daemon::error::report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
