//! Drives every API the replay server speaks with a real HTTP client, the
//! way the CLIs do: a first request, the tool call it answers with, the tool
//! result sent back, the closing text; plus the error shapes.

use std::io::Write;
use std::net::SocketAddr;

use agentmem_replay::{Latency, Library, ReplayServer, Replayer};
use serde_json::{json, Value};

const CONVERSATION: &str = r#"{"conv":"test#0","messages":[
 {"role":"assistant","content":"Hi! How can I help?"},
 {"role":"user","content":"Please cancel booking EHGLP3."},
 {"role":"assistant","content":"Let me look it up.","tool_calls":[{"id":"a","name":"get_reservation_details","arguments":{"reservation_id":"EHGLP3"}}]},
 {"role":"tool","id":"a","content":"{\"reservation_id\":\"EHGLP3\",\"cabin\":\"economy\"}"},
 {"role":"assistant","content":"","tool_calls":[{"id":"b","name":"cancel_reservation","arguments":{"reservation_id":"EHGLP3"}}]},
 {"role":"tool","id":"b","content":"cancelled"},
 {"role":"assistant","content":"Your booking EHGLP3 is cancelled."},
 {"role":"user","content":"Thanks"},
 {"role":"assistant","content":"You are welcome."}]}"#;

struct Server {
    addr: SocketAddr,
    agent: ureq::Agent,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("c.jsonl")).unwrap();
    writeln!(f, "{}", CONVERSATION.replace('\n', "")).unwrap();
    let library = Library::load(dir.path()).unwrap();
    let latency = Latency {
        scale: 0.0,
        ..Latency::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime
        .block_on(ReplayServer::bind(
            Replayer::new(library, 7, latency),
            "127.0.0.1:0".parse().unwrap(),
            false,
        ))
        .unwrap();
    let addr = server.local_addr().unwrap();
    runtime.spawn(server.serve(std::future::pending()));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(20)))
        .build()
        .into();
    Server {
        addr,
        agent,
        _runtime: runtime,
        _dir: dir,
    }
}

impl Server {
    fn post(&self, path: &str, body: &Value) -> (u16, String) {
        let mut r = self
            .agent
            .post(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }
}

/// The `data:` payloads of a server-sent event stream.
fn sse(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

const PROMPT: &str = "Please cancel booking EHGLP3.";

#[test]
fn anthropic_messages_stream_tool_use_then_text() {
    let s = start();
    let head = s.agent.head(format!("http://{}/", s.addr)).call().unwrap();
    assert_eq!(head.status().as_u16(), 200);
    let tools = json!([{"name": "Bash", "input_schema": {}}, {"name": "Read", "input_schema": {}},
        {"name": "Write", "input_schema": {}}, {"name": "Glob", "input_schema": {}}]);
    let system = "Env\n - Primary working directory: /tmp/agent7\n";
    let mut messages = vec![json!({"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>ctx</system-reminder>"}, {"type": "text", "text": PROMPT}]})];
    let (status, body) = s.post(
        "/v1/messages?beta=true",
        &json!({"model": "m", "stream": true, "system": system, "tools": tools, "messages": messages}),
    );
    assert_eq!(status, 200, "{body}");
    let ev = sse(&body);
    let types: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"message_start"));
    assert_eq!(types.last(), Some(&"message_stop"));
    let tool = ev
        .iter()
        .find(|e| e["type"] == "content_block_start" && e["content_block"]["type"] == "tool_use")
        .expect("a tool_use block");
    assert_eq!(tool["content_block"]["name"], "Read");
    let args: String = ev
        .iter()
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    let args: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(args["file_path"], "/tmp/agent7/README.md");
    let delta = ev.iter().find(|e| e["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    // Send the result back: the next recorded step writes a file.
    let id = tool["content_block"]["id"].clone();
    messages.push(
        json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Read", "input": args}]}),
    );
    messages.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "# repo"}]}));
    let (_, body) = s.post(
        "/v1/messages",
        &json!({"model": "m", "system": system, "tools": tools, "messages": messages}),
    );
    let msg: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(msg["content"][0]["name"], "Write", "{msg}");
    assert!(msg["content"][0]["input"]["content"]
        .as_str()
        .unwrap()
        .contains("cancelled"));
    messages.push(json!({"role": "assistant", "content": msg["content"]}));
    messages.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "ok"}]}));
    let (_, body) = s.post(
        "/v1/messages",
        &json!({"model": "m", "system": system, "tools": tools, "messages": messages}),
    );
    let msg: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(msg["stop_reason"], "end_turn");
    assert_eq!(
        msg["content"][0]["text"],
        "Your booking EHGLP3 is cancelled."
    );

    // Past the end of the recording: a clean final answer, not an error.
    for turn in ["Thanks", "And one more thing"] {
        messages.push(json!({"role": "assistant", "content": "..."}));
        messages.push(json!({"role": "user", "content": turn}));
    }
    let (status, body) = s.post("/v1/messages", &json!({"model": "m", "messages": messages}));
    assert_eq!(status, 200);
    let msg: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(msg["stop_reason"], "end_turn");
    assert!(msg["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("ended"));

    let (status, body) = s.post(
        "/v1/messages/count_tokens",
        &json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}]}),
    );
    assert_eq!(status, 200);
    assert!(
        serde_json::from_str::<Value>(&body).unwrap()["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn openai_responses_and_chat_stream_function_calls() {
    let s = start();
    let input = json!([
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be good"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context><cwd>/w</cwd></environment_context>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": PROMPT}]}]);
    let tools = json!([{"type": "function", "name": "exec_command", "parameters": {}}]);
    let (status, body) = s.post(
        "/v1/responses",
        &json!({"model": "gpt", "stream": true, "input": input, "tools": tools}),
    );
    assert_eq!(status, 200, "{body}");
    let ev = sse(&body);
    assert_eq!(ev[0]["type"], "response.created");
    assert_eq!(ev.last().unwrap()["type"], "response.completed");
    let call = ev
        .iter()
        .find(|e| e["type"] == "response.output_item.done" && e["item"]["type"] == "function_call")
        .expect("a function call");
    assert_eq!(call["item"]["name"], "exec_command");
    let args: Value = serde_json::from_str(call["item"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["cmd"], "cat 'README.md'");
    let seqs: Vec<u64> = ev
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));

    // Codex's WebSocket attempt is refused plainly so it falls back to POST.
    let r = s
        .agent
        .get(format!("http://{}/v1/responses", s.addr))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    let messages =
        json!([{"role": "system", "content": "sys"}, {"role": "user", "content": PROMPT}]);
    let tools = json!([{"type": "function", "function": {"name": "shell", "parameters": {}}}]);
    let (status, body) = s.post(
        "/v1/chat/completions",
        &json!({"model": "gpt", "stream": true, "messages": messages, "tools": tools}),
    );
    assert_eq!(status, 200);
    assert!(body.trim_end().ends_with("data: [DONE]"));
    let ev = sse(&body);
    let call = ev
        .iter()
        .find_map(|e| e["choices"][0]["delta"]["tool_calls"][0].as_object())
        .expect("a tool call chunk");
    assert_eq!(call["function"]["name"], "shell");
    assert_eq!(
        ev.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[test]
fn gemini_stream_and_generate() {
    let s = start();
    let contents = json!([
        {"role": "user", "parts": [{"text": "<session_context>I'm currently working in the directory: /g\n</session_context>"}]},
        {"role": "user", "parts": [{"text": PROMPT}]}]);
    let tools = json!([{"functionDeclarations": [{"name": "read_file"}, {"name": "run_shell_command"},
        {"name": "list_directory"}, {"name": "write_file"}]}]);
    let (status, body) = s.post(
        "/v1beta/models/gemini-x:streamGenerateContent?alt=sse",
        &json!({"contents": contents, "tools": tools}),
    );
    assert_eq!(status, 200, "{body}");
    let ev = sse(&body);
    let last = ev.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    let call = &last["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(call["name"], "read_file");
    assert_eq!(call["args"]["file_path"], "/g/README.md");

    // The router asks for JSON that follows a schema.
    let (status, body) = s.post(
        "/v1beta/models/flash:generateContent",
        &json!({"contents": contents, "generationConfig": {"responseMimeType": "application/json",
            "responseJsonSchema": {"type": "OBJECT", "properties": {
                "complexity_score": {"type": "INTEGER"}, "choice": {"type": "STRING", "enum": ["flash", "pro"]}}}}}),
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let text = v["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    let answer: Value = serde_json::from_str(text).unwrap();
    assert_eq!(answer, json!({"complexity_score": 1, "choice": "flash"}));
}

#[test]
fn bad_input_gets_each_apis_error_shape() {
    let s = start();
    let (status, body) = s.post("/v1/messages", &json!({"model": "m"}));
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error");
    assert!(v["error"]["message"].as_str().unwrap().contains("messages"));

    let (status, body) = s.post("/v1/responses", &json!({"input": "hi"}));
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("model"));

    let (status, body) = s.post("/v1beta/models/g:generateContent", &json!({}));
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
    assert!(v["error"]["message"].as_str().unwrap().contains("contents"));

    let mut r = s
        .agent
        .post(format!("http://{}/v1/messages", s.addr))
        .send("not json")
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r
        .body_mut()
        .read_to_string()
        .unwrap()
        .contains("not valid JSON"));

    let (status, _) = s.post("/api/event_logging/batch", &json!({}));
    assert_eq!(status, 404);

    let stats: Value = serde_json::from_str(
        &s.agent
            .get(format!("http://{}/replay/stats", s.addr))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stats["bad_requests"], 4);
    assert_eq!(stats["not_found"], 1);
}

#[test]
fn refuses_non_loopback_addresses() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(Library::from_trajectories(Vec::new()).is_none());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.jsonl"), CONVERSATION.replace('\n', "")).unwrap();
    let lib = Library::load(dir.path()).unwrap();
    let err = rt
        .block_on(ReplayServer::bind(
            Replayer::new(lib, 0, Latency::default()),
            "0.0.0.0:0".parse().unwrap(),
            false,
        ))
        .unwrap_err();
    assert!(err.to_string().contains("not a loopback"), "{err}");
}
