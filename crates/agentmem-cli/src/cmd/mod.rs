//! One module per subcommand.

pub mod cold;
/// Agents that say their state: `state`, `unhook` (issue 11).
pub mod hooks;
/// The replay model server (issue 12).
pub mod replay;
pub mod sim;
pub mod simulate;
pub mod stats;
/// agentmem-supervisor subcommands (issue 6).
pub mod supervise;
pub mod tracegen;
pub mod verify;
