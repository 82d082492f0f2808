//! One module per subcommand.

pub mod sim;
pub mod simulate;
// agentmem-supervisor subcommands (issue 6)
pub mod supervise;
pub mod stats;
pub mod tracegen;
