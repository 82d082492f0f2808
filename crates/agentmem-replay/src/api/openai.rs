//! OpenAI Responses (`POST /v1/responses`, what Codex speaks) and Chat
//! Completions (`POST /v1/chat/completions`).

use serde_json::{json, Value};

use super::{estimate_tokens, share, text_of, BadRequest, Event, Parsed, MAX_TEXT_EVENTS};
use crate::replay::{chunks, find_cwd, Answer, Item};

fn part_texts(content: &Value) -> Vec<String> {
    match content {
        Value::String(s) => vec![s.clone()],
        Value::Array(parts) => parts.iter().filter_map(|p| text_of(&p["text"])).collect(),
        _ => Vec::new(),
    }
}

fn finish(parsed: &mut Parsed, extra: &str) {
    let mut texts = extra.to_owned();
    for item in &parsed.items {
        if let Item::Person(t) = item {
            texts.push('\n');
            texts.push_str(&t.join("\n"));
            break;
        }
    }
    parsed.tools.cwd = find_cwd(&texts);
}

/// The error body OpenAI's APIs send.
pub fn error(kind: &str, message: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

/// Parses a Responses request body.
pub fn parse_responses(body: &Value, body_len: usize) -> Result<Parsed, BadRequest> {
    let model = body["model"]
        .as_str()
        .ok_or_else(|| BadRequest("model: field required".into()))?;
    let mut items = Vec::new();
    let mut system = text_of(&body["instructions"]).unwrap_or_default();
    match &body["input"] {
        Value::String(s) => items.push(Item::Person(vec![s.clone()])),
        Value::Array(input) => {
            for (i, it) in input.iter().enumerate() {
                let kind = it["type"].as_str().unwrap_or("message");
                match kind {
                    "message" => match it["role"].as_str() {
                        Some("user") => items.push(Item::Person(part_texts(&it["content"]))),
                        Some("assistant") => items.push(Item::Model),
                        Some("developer" | "system") => {
                            system.push('\n');
                            system.push_str(&part_texts(&it["content"]).join("\n"));
                        }
                        _ => {
                            return Err(BadRequest(format!(
                                "input[{i}].role: must be user, assistant, developer or system"
                            )))
                        }
                    },
                    k if k.ends_with("_output") => items.push(Item::ToolResult),
                    k if k.ends_with("_call") || k == "reasoning" => items.push(Item::Model),
                    _ => {}
                }
            }
        }
        _ => {
            return Err(BadRequest(
                "input: field required (a string or an array of input items)".into(),
            ))
        }
    }
    Ok(parsed_request(body, model, body_len, items, &system))
}

/// Parses a Chat Completions request body.
pub fn parse_chat(body: &Value, body_len: usize) -> Result<Parsed, BadRequest> {
    let model = body["model"]
        .as_str()
        .ok_or_else(|| BadRequest("model: field required".into()))?;
    let messages = body["messages"]
        .as_array()
        .ok_or_else(|| BadRequest("messages: field required (an array of messages)".into()))?;
    let mut items = Vec::new();
    let mut system = String::new();
    for (i, m) in messages.iter().enumerate() {
        match m["role"].as_str() {
            Some("user") => items.push(Item::Person(part_texts(&m["content"]))),
            Some("assistant") => items.push(Item::Model),
            Some("tool" | "function") => items.push(Item::ToolResult),
            Some("system" | "developer") => system.push_str(&part_texts(&m["content"]).join("\n")),
            _ => {
                return Err(BadRequest(format!(
                    "messages[{i}].role: must be system, developer, user, assistant or tool"
                )))
            }
        }
    }
    Ok(parsed_request(body, model, body_len, items, &system))
}

/// What both OpenAI request kinds share once their items are read: the
/// stream flag, the model, the token estimate and the declared tool names
/// (Responses puts a tool's name at the top, Chat Completions under
/// `function`).
fn parsed_request(
    body: &Value,
    model: &str,
    body_len: usize,
    items: Vec<Item>,
    system: &str,
) -> Parsed {
    let mut parsed = Parsed {
        items,
        stream: body["stream"].as_bool().unwrap_or(false),
        model: model.to_owned(),
        input_tokens: estimate_tokens(body_len),
        ..Parsed::default()
    };
    parsed.tools.names = body["tools"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| text_of(&t["name"]).or_else(|| text_of(&t["function"]["name"])))
                .collect()
        })
        .unwrap_or_default();
    finish(&mut parsed, system);
    parsed
}

fn response_id(a: &Answer) -> String {
    format!("resp_replay_{}_{}_{}", a.trajectory, a.turn, a.step)
}

fn output_items(a: &Answer) -> Vec<Value> {
    let mut out = Vec::new();
    if !a.text.is_empty() {
        out.push(json!({"type": "message", "id": format!("msg_{}", response_id(a)), "status": "completed",
            "role": "assistant", "content": [{"type": "output_text", "text": a.text, "annotations": []}]}));
    }
    for c in &a.calls {
        out.push(json!({"type": "function_call", "id": format!("fc_{}", c.id), "call_id": format!("call_{}", c.id),
            "name": c.name, "arguments": c.arguments.to_string(), "status": "completed"}));
    }
    out
}

fn response(a: &Answer, p: &Parsed, status: &str, output: Vec<Value>) -> Value {
    json!({"id": response_id(a), "object": "response", "created_at": 0, "status": status,
        "model": p.model, "output": output, "parallel_tool_calls": true,
        "usage": {"input_tokens": p.input_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": a.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": p.input_tokens + a.output_tokens}})
}

/// The whole answer as one Responses object.
pub fn responses_body(a: &Answer, p: &Parsed) -> Value {
    response(a, p, "completed", output_items(a))
}

/// The answer as Responses streaming events.
pub fn responses_events(a: &Answer, p: &Parsed) -> Vec<Event> {
    let mut seq = 0u32;
    let mut ev = Vec::new();
    let mut push = |ev: &mut Vec<Event>, name: &'static str, mut data: Value, tokens: u32| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        seq += 1;
        ev.push(Event::new(Some(name), &data, tokens));
    };
    push(
        &mut ev,
        "response.created",
        json!({"response": response(a, p, "in_progress", vec![])}),
        0,
    );
    let parts = chunks(&a.text, MAX_TEXT_EVENTS);
    let streamed = parts.len() + a.calls.len();
    let items = output_items(a);
    let mut k = 0;
    for (output_index, item) in items.iter().enumerate() {
        let id = item["id"].clone();
        if item["type"] == "message" {
            push(
                &mut ev,
                "response.output_item.added",
                json!({"output_index": output_index,
                "item": {"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []}}),
                0,
            );
            push(
                &mut ev,
                "response.content_part.added",
                json!({"item_id": id, "output_index": output_index,
                "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
                0,
            );
            for part in &parts {
                push(
                    &mut ev,
                    "response.output_text.delta",
                    json!({"item_id": id, "output_index": output_index,
                    "content_index": 0, "delta": part}),
                    share(a.output_tokens, streamed, k),
                );
                k += 1;
            }
            push(
                &mut ev,
                "response.output_text.done",
                json!({"item_id": id, "output_index": output_index,
                "content_index": 0, "text": a.text}),
                0,
            );
            push(
                &mut ev,
                "response.content_part.done",
                json!({"item_id": id, "output_index": output_index,
                "content_index": 0, "part": {"type": "output_text", "text": a.text, "annotations": []}}),
                0,
            );
        } else {
            let mut added = item.clone();
            added["arguments"] = json!("");
            added["status"] = json!("in_progress");
            push(
                &mut ev,
                "response.output_item.added",
                json!({"output_index": output_index, "item": added}),
                0,
            );
            push(
                &mut ev,
                "response.function_call_arguments.delta",
                json!({"item_id": id,
                "output_index": output_index, "delta": item["arguments"]}),
                share(a.output_tokens, streamed, k),
            );
            k += 1;
            push(
                &mut ev,
                "response.function_call_arguments.done",
                json!({"item_id": id,
                "output_index": output_index, "arguments": item["arguments"]}),
                0,
            );
        }
        push(
            &mut ev,
            "response.output_item.done",
            json!({"output_index": output_index, "item": item}),
            0,
        );
    }
    push(
        &mut ev,
        "response.completed",
        json!({"response": response(a, p, "completed", items)}),
        0,
    );
    ev
}

fn chat_calls(a: &Answer) -> Vec<Value> {
    a.calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"index": i, "id": format!("call_{}", c.id), "type": "function",
            "function": {"name": c.name, "arguments": c.arguments.to_string()}})
        })
        .collect()
}

fn finish_reason(a: &Answer) -> &'static str {
    if a.calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }
}

fn usage(a: &Answer, p: &Parsed) -> Value {
    json!({"prompt_tokens": p.input_tokens, "completion_tokens": a.output_tokens,
        "total_tokens": p.input_tokens + a.output_tokens})
}

/// The whole answer as one chat completion.
pub fn chat_body(a: &Answer, p: &Parsed) -> Value {
    let mut message = json!({"role": "assistant", "content": a.text});
    if !a.calls.is_empty() {
        message["tool_calls"] = json!(chat_calls(a));
    }
    json!({"id": format!("chatcmpl-{}", response_id(a)), "object": "chat.completion", "created": 0,
        "model": p.model, "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(a)}],
        "usage": usage(a, p)})
}

/// The answer as chat completion chunks, closed by `data: [DONE]`.
pub fn chat_events(a: &Answer, p: &Parsed) -> Vec<Event> {
    let id = format!("chatcmpl-{}", response_id(a));
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": p.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let parts = chunks(&a.text, MAX_TEXT_EVENTS);
    let streamed = parts.len() + a.calls.len();
    let mut ev = vec![Event::new(
        None,
        &chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        0,
    )];
    let mut k = 0;
    for part in &parts {
        ev.push(Event::new(
            None,
            &chunk(json!({"content": part}), Value::Null),
            share(a.output_tokens, streamed, k),
        ));
        k += 1;
    }
    for call in chat_calls(a) {
        ev.push(Event::new(
            None,
            &chunk(json!({"tool_calls": [call]}), Value::Null),
            share(a.output_tokens, streamed, k),
        ));
        k += 1;
    }
    let mut last = chunk(json!({}), json!(finish_reason(a)));
    last["usage"] = usage(a, p);
    ev.push(Event::new(None, &last, 0));
    ev.push(Event {
        name: None,
        data: "[DONE]".to_owned(),
        tokens: 0,
    });
    ev
}
