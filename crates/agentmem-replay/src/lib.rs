//! A model server for benchmarks: unmodified agent CLIs (Claude Code, Codex,
//! Gemini CLI) talk to it as to their vendor's API, on loopback, and it
//! answers from recorded real conversations.
//!
//! # Architecture
//! - [`trajectory`]: loads the data set's conversations and cuts them into
//!   person turns and model steps; recorded tool calls become [`Action`]s
//!   (list, read, shell, write) on the agent's scratch repository.
//! - [`replay`]: stateless: a request's conversation gives its position
//!   (person turn, model step); the first person message picks the
//!   trajectory; [`Latency`] samples time to first token and output speed.
//! - [`tools`]: renders an action as a call of a tool the CLI declared.
//! - [`api`]: one module per wire format (Anthropic Messages, OpenAI
//!   Responses and Chat Completions, Gemini), each parsing requests and
//!   encoding answers as JSON or server-sent events.
//! - [`server`]: axum routes, the stream player and statistics; see its docs
//!   for the concurrency model.

use std::net::SocketAddr;
use std::path::PathBuf;

pub mod api;
pub mod replay;
pub mod server;
pub mod tools;
pub mod trajectory;

pub use replay::{Latency, Replayer};
pub use server::ReplayServer;
pub use trajectory::{Action, Library};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a data file failed.
    #[error("reading {0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// A line of a data file is not a conversation.
    #[error("{file}:{line}: not a conversation: {source}")]
    Parse {
        file: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// No conversation with a person turn was found.
    #[error("no conversations (*.jsonl.zst or *.jsonl with person turns) under {0}")]
    NoData(PathBuf),
    /// The listen address is not loopback.
    #[error("{0} is not a loopback address; the server has no authentication (pass --allow-non-loopback to insist)")]
    NotLoopback(SocketAddr),
    /// Binding or serving failed.
    #[error("listening on {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
}
