//! One module per subcommand.

pub mod sim;
pub mod simulate;
pub mod stats;
pub mod tracegen;
