//! `agentmem simulate` (being written).

/// Arguments of `agentmem simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run the simulation.
pub fn run(_args: Args) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("simulate is not built yet")
}
