//! Anthropic Messages (`POST /v1/messages`, `/v1/messages/count_tokens`).

use serde_json::{json, Value};

use super::{estimate_tokens, share, text_of, BadRequest, Event, Parsed, MAX_TEXT_EVENTS};
use crate::replay::{chunks, find_cwd, Answer, Item};

fn block_texts(content: &Value) -> Vec<String> {
    match content {
        Value::String(s) => vec![s.clone()],
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| text_of(&b["text"]))
            .collect(),
        _ => Vec::new(),
    }
}

/// Parses a Messages request body.
pub fn parse(body: &Value, body_len: usize) -> Result<Parsed, BadRequest> {
    let messages = body["messages"]
        .as_array()
        .ok_or_else(|| BadRequest("messages: field required (an array of messages)".into()))?;
    if body["model"].as_str().is_none() {
        return Err(BadRequest("model: field required".into()));
    }
    let mut items = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let content = &m["content"];
        match m["role"].as_str() {
            Some("user") => {
                let is_result = content
                    .as_array()
                    .is_some_and(|bs| bs.iter().any(|b| b["type"] == "tool_result"));
                items.push(if is_result {
                    Item::ToolResult
                } else {
                    Item::Person(block_texts(content))
                });
            }
            Some("assistant") => items.push(Item::Model),
            // Claude Code 2.1 sends instructions as `system` messages among
            // the others; they are context, not turns.
            Some("system") => {}
            _ => {
                return Err(BadRequest(format!(
                    "messages.{i}.role: must be \"user\", \"assistant\" or \"system\""
                )))
            }
        }
    }
    let mut parsed = Parsed {
        items,
        stream: body["stream"].as_bool().unwrap_or(false),
        model: body["model"].as_str().unwrap_or_default().to_owned(),
        input_tokens: estimate_tokens(body_len),
        ..Parsed::default()
    };
    parsed.tools.names = body["tools"]
        .as_array()
        .map(|ts| ts.iter().filter_map(|t| text_of(&t["name"])).collect())
        .unwrap_or_default();
    let system = block_texts(&body["system"]).join("\n");
    parsed.tools.cwd = find_cwd(&system).or_else(|| {
        messages
            .first()
            .and_then(|m| find_cwd(&block_texts(&m["content"]).join("\n")))
    });
    Ok(parsed)
}

/// The error body Anthropic's API sends.
pub fn error(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

fn content_blocks(answer: &Answer) -> Vec<Value> {
    let mut blocks = Vec::new();
    if !answer.text.is_empty() {
        blocks.push(json!({"type": "text", "text": answer.text}));
    }
    for c in &answer.calls {
        blocks.push(json!({"type": "tool_use", "id": format!("toolu_{}", c.id), "name": c.name, "input": c.arguments}));
    }
    blocks
}

fn stop_reason(answer: &Answer) -> &'static str {
    if answer.calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    }
}

fn message_id(answer: &Answer) -> String {
    format!(
        "msg_replay_{}_{}_{}",
        answer.trajectory, answer.turn, answer.step
    )
}

/// The whole answer as one message.
pub fn message(answer: &Answer, p: &Parsed) -> Value {
    json!({
        "id": message_id(answer), "type": "message", "role": "assistant", "model": p.model,
        "content": content_blocks(answer), "stop_reason": stop_reason(answer), "stop_sequence": null,
        "usage": {"input_tokens": p.input_tokens, "output_tokens": answer.output_tokens}
    })
}

/// The answer as Messages streaming events.
pub fn events(answer: &Answer, p: &Parsed) -> Vec<Event> {
    let mut ev = vec![Event::new(
        Some("message_start"),
        &json!({"type": "message_start", "message": {
            "id": message_id(answer), "type": "message", "role": "assistant", "model": p.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": p.input_tokens, "output_tokens": 1}}}),
        0,
    )];
    let parts = chunks(&answer.text, MAX_TEXT_EVENTS);
    let blocks = usize::from(!parts.is_empty()) + answer.calls.len();
    let streamed = parts.len() + answer.calls.len();
    let mut k = 0;
    let mut index = 0;
    if !parts.is_empty() {
        ev.push(Event::new(
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            0,
        ));
        for part in &parts {
            ev.push(Event::new(
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}}),
                share(answer.output_tokens, streamed, k),
            ));
            k += 1;
        }
        ev.push(Event::new(
            Some("content_block_stop"),
            &json!({"type": "content_block_stop", "index": 0}),
            0,
        ));
        index = 1;
    }
    for c in &answer.calls {
        ev.push(Event::new(
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index, "content_block":
                {"type": "tool_use", "id": format!("toolu_{}", c.id), "name": c.name, "input": {}}}),
            0,
        ));
        ev.push(Event::new(
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": index, "delta":
                {"type": "input_json_delta", "partial_json": c.arguments.to_string()}}),
            share(answer.output_tokens, streamed, k),
        ));
        ev.push(Event::new(
            Some("content_block_stop"),
            &json!({"type": "content_block_stop", "index": index}),
            0,
        ));
        k += 1;
        index += 1;
    }
    debug_assert_eq!(index, blocks);
    ev.push(Event::new(
        Some("message_delta"),
        &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(answer), "stop_sequence": null},
            "usage": {"output_tokens": answer.output_tokens}}),
        0,
    ));
    ev.push(Event::new(
        Some("message_stop"),
        &json!({"type": "message_stop"}),
        0,
    ));
    ev
}

/// `count_tokens`: the request's size at four characters a token.
pub fn count_tokens(body_len: usize) -> Value {
    json!({"input_tokens": estimate_tokens(body_len)})
}
