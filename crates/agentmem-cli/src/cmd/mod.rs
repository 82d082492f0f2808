//! One module per subcommand.

pub mod cold;
pub mod sim;
pub mod simulate;
pub mod tracegen;
pub mod verify;
