//! One module per subcommand.

pub mod sim;
pub mod simulate;
pub mod tracegen;
