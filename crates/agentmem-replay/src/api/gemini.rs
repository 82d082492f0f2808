//! Gemini API (`POST /v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse`, `:countTokens`).

use serde_json::{json, Map, Value};

use super::{estimate_tokens, share, text_of, BadRequest, Event, Parsed, MAX_TEXT_EVENTS};
use crate::replay::{chunks, find_cwd, Answer, Item};

fn part_texts(parts: &Value) -> Vec<String> {
    parts
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| text_of(&p["text"])).collect())
        .unwrap_or_default()
}

/// Parses a `generateContent` request body for `model`.
pub fn parse(model: &str, body: &Value, body_len: usize) -> Result<Parsed, BadRequest> {
    let contents = body["contents"]
        .as_array()
        .ok_or_else(|| BadRequest("contents: field required (an array of {role, parts})".into()))?;
    let mut items = Vec::with_capacity(contents.len());
    for (i, c) in contents.iter().enumerate() {
        let parts = &c["parts"];
        match c["role"].as_str().unwrap_or("user") {
            "user" => {
                let is_result = parts.as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p.get("functionResponse").is_some_and(|v| !v.is_null()))
                });
                items.push(if is_result {
                    Item::ToolResult
                } else {
                    Item::Person(part_texts(parts))
                });
            }
            "model" => items.push(Item::Model),
            other => {
                return Err(BadRequest(format!(
                    "contents[{i}].role: must be \"user\" or \"model\", not {other:?}"
                )))
            }
        }
    }
    // Older Gemini CLI versions open with a context message and a canned
    // "Got it" answer; that pair is set-up, not a turn.
    if contents.len() >= 2
        && part_texts(&contents[1]["parts"])
            .first()
            .is_some_and(|t| t.starts_with("Got it. Thanks for the context"))
    {
        items.drain(..2);
    }
    let mut parsed = Parsed {
        items,
        stream: false,
        model: model.to_owned(),
        input_tokens: estimate_tokens(body_len),
        ..Parsed::default()
    };
    parsed.tools.names = body["tools"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["functionDeclarations"].as_array())
                .flatten()
                .filter_map(|d| text_of(&d["name"]))
                .collect()
        })
        .unwrap_or_default();
    let mut context = part_texts(&body["systemInstruction"]["parts"]).join("\n");
    if let Some(first) = contents.first() {
        context.push('\n');
        context.push_str(&part_texts(&first["parts"]).join("\n"));
    }
    parsed.tools.cwd = find_cwd(&context);
    let config = &body["generationConfig"];
    if config["responseMimeType"] == "application/json" {
        let schema = if config["responseJsonSchema"].is_object() {
            &config["responseJsonSchema"]
        } else {
            &config["responseSchema"]
        };
        parsed.json_schema = Some(schema.clone());
    }
    Ok(parsed)
}

/// A value that satisfies `schema`: the first enum value, empty or zero
/// otherwise. Gemini CLI's router and next-speaker check ask for JSON; the
/// first enum values (`flash`, `user`) keep the CLI on its normal path.
pub fn sample_json(schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = schema["type"].as_str().unwrap_or("object").to_lowercase();
    match kind.as_str() {
        "string" => json!("replayed"),
        // Gemini CLI's router validates a 1-100 score; take the schema's
        // minimum where it gives one.
        "number" | "integer" => schema["minimum"]
            .as_f64()
            .map_or(json!(1), |m| json!(m.max(1.0))),
        "boolean" => json!(false),
        "array" => json!([]),
        _ => {
            let mut m = Map::new();
            if let Some(props) = schema["properties"].as_object() {
                for (k, v) in props {
                    m.insert(k.clone(), sample_json(v));
                }
            }
            Value::Object(m)
        }
    }
}

/// The error body Google's APIs send.
pub fn error(code: u16, status: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status}})
}

fn candidate(parts: Vec<Value>, finish: bool) -> Value {
    let mut c = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if finish {
        c["finishReason"] = json!("STOP");
    }
    c
}

fn usage(a: &Answer, p: &Parsed) -> Value {
    json!({"promptTokenCount": p.input_tokens, "candidatesTokenCount": a.output_tokens,
        "totalTokenCount": p.input_tokens + a.output_tokens})
}

fn call_parts(a: &Answer) -> Vec<Value> {
    a.calls
        .iter()
        .map(|c| json!({"functionCall": {"name": c.name, "args": c.arguments}}))
        .collect()
}

/// The whole answer as one `GenerateContentResponse`.
pub fn body(a: &Answer, p: &Parsed) -> Value {
    let mut parts = Vec::new();
    if !a.text.is_empty() {
        parts.push(json!({"text": a.text}));
    }
    parts.extend(call_parts(a));
    json!({"candidates": [candidate(parts, true)], "usageMetadata": usage(a, p), "modelVersion": p.model})
}

/// The answer as `streamGenerateContent?alt=sse` chunks.
pub fn events(a: &Answer, p: &Parsed) -> Vec<Event> {
    let parts = chunks(&a.text, MAX_TEXT_EVENTS);
    let calls = call_parts(a);
    let streamed = parts.len() + usize::from(!calls.is_empty());
    let mut ev = Vec::new();
    let last_text = parts.len().saturating_sub(1);
    for (k, part) in parts.iter().enumerate() {
        let finish = calls.is_empty() && k == last_text;
        let mut chunk = json!({"candidates": [candidate(vec![json!({"text": part})], finish)],
            "modelVersion": p.model});
        if finish {
            chunk["usageMetadata"] = usage(a, p);
        }
        ev.push(Event::new(
            None,
            &chunk,
            share(a.output_tokens, streamed, k),
        ));
    }
    if !calls.is_empty() || parts.is_empty() {
        let chunk = json!({"candidates": [candidate(calls, true)], "usageMetadata": usage(a, p),
            "modelVersion": p.model});
        ev.push(Event::new(
            None,
            &chunk,
            share(a.output_tokens, streamed, parts.len()),
        ));
    }
    ev
}

/// `countTokens`: the request's size at four characters a token.
pub fn count_tokens(body_len: usize) -> Value {
    json!({"totalTokens": estimate_tokens(body_len)})
}
