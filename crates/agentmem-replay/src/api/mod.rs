//! One module per wire format. Each turns a request body into a
//! [`Parsed`] request (conversation items, declared tools, stream flag) and
//! an [`Answer`] into either one JSON body or a list of server-sent events.

use std::time::Duration;

use serde_json::Value;

use crate::replay::{Answer, Item};
use crate::tools::ToolSet;

pub mod anthropic;
pub mod gemini;
pub mod openai;

/// A request reduced to what the replayer needs.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The conversation.
    pub items: Vec<Item>,
    /// Declared tools and the CLI's working directory.
    pub tools: ToolSet,
    /// Whether the client asked for a streamed answer.
    pub stream: bool,
    /// Model name to echo back.
    pub model: String,
    /// Rough size of the request, for usage figures (characters / 4).
    pub input_tokens: u32,
    /// The JSON schema the answer must follow, when the client asked for
    /// structured output (Gemini CLI's model router and next-speaker check).
    pub json_schema: Option<Value>,
}

/// One server-sent event and the output tokens it carries (for pacing).
#[derive(Debug, Clone)]
pub struct Event {
    /// The `event:` line, where the API uses one.
    pub name: Option<&'static str>,
    /// The `data:` payload.
    pub data: String,
    /// Output tokens this event delivers; the player waits that long first.
    pub tokens: u32,
}

impl Event {
    pub(crate) fn new(name: Option<&'static str>, data: &Value, tokens: u32) -> Event {
        Event {
            name,
            data: data.to_string(),
            tokens,
        }
    }

    /// The bytes on the wire.
    pub fn encode(&self) -> String {
        match self.name {
            Some(n) => format!("event: {n}\ndata: {}\n\n", self.data),
            None => format!("data: {}\n\n", self.data),
        }
    }
}

/// A request the server cannot answer, in the terms of the API it came in.
#[derive(Debug, Clone)]
pub struct BadRequest(pub String);

/// Spreads `total` tokens over `n` events (the first ones get the remainder).
pub(crate) fn share(total: u32, n: usize, i: usize) -> u32 {
    let n = n.max(1) as u32;
    total / n + u32::from((i as u32) < total % n)
}

/// Up to this many text events per answer: enough to look like streaming,
/// few enough that 100 sessions cost the server nothing.
pub(crate) const MAX_TEXT_EVENTS: usize = 24;

pub(crate) fn estimate_tokens(body_len: usize) -> u32 {
    u32::try_from(body_len / 4).unwrap_or(u32::MAX)
}

/// Total time a non-streamed answer takes.
pub fn whole_answer_delay(answer: &Answer) -> Duration {
    answer.pacing.first_token + answer.pacing.per_token * answer.output_tokens
}

pub(crate) fn text_of(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}
