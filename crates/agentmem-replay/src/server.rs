//! The HTTP server: routes, the stream player, statistics.
//!
//! Concurrency: one tokio task per connection (hyper via axum) and one per
//! streamed answer. A request is parsed and its whole answer encoded at once
//! (that is the server's *handling time*, measured and reported); the
//! player task then only sleeps and writes, so thousands of sessions waiting
//! for "the model" cost timers, not CPU. The statistics lock is held for one
//! push.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::{self, anthropic, gemini, openai, BadRequest, Event, Parsed};
use crate::replay::{Answer, Position, Replayer};
use crate::Error;

/// Which API a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Anthropic Messages.
    Anthropic,
    /// OpenAI Responses.
    Responses,
    /// OpenAI Chat Completions.
    Chat,
    /// Gemini generateContent.
    Gemini,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::Anthropic => "anthropic",
            Api::Responses => "responses",
            Api::Chat => "chat",
            Api::Gemini => "gemini",
        }
    }

    fn error(self, status: StatusCode, message: &str) -> Response {
        let body = match self {
            Api::Anthropic => anthropic::error(
                if status == StatusCode::NOT_FOUND {
                    "not_found_error"
                } else {
                    "invalid_request_error"
                },
                message,
            ),
            Api::Responses | Api::Chat => openai::error("invalid_request_error", message),
            Api::Gemini => gemini::error(
                status.as_u16(),
                if status == StatusCode::NOT_FOUND {
                    "NOT_FOUND"
                } else {
                    "INVALID_ARGUMENT"
                },
                message,
            ),
        };
        (status, Json(body)).into_response()
    }
}

/// Counters and server-side handling times, for `GET /replay/stats`.
#[derive(Debug, Default)]
struct Stats {
    exchanges: u64,
    bad_requests: u64,
    exhausted: u64,
    not_found: u64,
    /// Microseconds from request body in hand to answer encoded (wall
    /// time: includes waiting for a CPU on a loaded machine); capped so a
    /// long run cannot grow it without bound.
    handling_us: Vec<u32>,
    /// The same span in CPU time of the handling thread: the server's own
    /// work, whatever the machine's load.
    handling_cpu_us: Vec<u32>,
    /// Per trajectory, what main-loop requests (those that declare tools)
    /// have reached; a session driver follows its agent with it.
    sessions: std::collections::HashMap<usize, SessionProgress>,
    /// Tool calls sent, by tool name.
    tool_calls: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct SessionProgress {
    /// The last person turn a request was answered for.
    last_request_turn: Option<usize>,
    /// The last person turn whose final answer (text, no tool call) was sent.
    last_final_turn: Option<usize>,
    /// How many final answers were sent.
    finals: u64,
}

const MAX_SAMPLES: usize = 1 << 20;

#[derive(Debug)]
struct Shared {
    replayer: Replayer,
    stats: Mutex<Stats>,
    /// Where to write every request body (to learn what a CLI sends).
    dump_dir: Option<std::path::PathBuf>,
}

/// A replay server bound to a loopback address, ready to serve.
#[derive(Debug)]
pub struct ReplayServer {
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
}

impl ReplayServer {
    /// Binds `addr`; refuses an address that is not loopback unless
    /// `allow_non_loopback` (the server has no authentication).
    pub async fn bind(
        replayer: Replayer,
        addr: SocketAddr,
        allow_non_loopback: bool,
    ) -> Result<ReplayServer, Error> {
        if !addr.ip().is_loopback() && !allow_non_loopback {
            return Err(Error::NotLoopback(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Bind(addr, e))?;
        Ok(ReplayServer {
            listener,
            shared: Arc::new(Shared {
                replayer,
                stats: Mutex::new(Stats::default()),
                dump_dir: None,
            }),
        })
    }

    /// Writes every model request body to `dir` as `NNNNNN-API.json`.
    /// Default: off.
    pub fn dump_requests(mut self, dir: std::path::PathBuf) -> ReplayServer {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.dump_dir = Some(dir);
        }
        self
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Bind("0.0.0.0:0".parse().expect("literal address"), e))
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let addr = self.local_addr()?;
        axum::serve(self.listener, router(self.shared))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Error::Bind(addr, e))
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(root).head(root))
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/responses", post(responses).get(responses_websocket))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/v1beta/models/{*rest}", post(gemini_route))
        .route("/v1/models/{*rest}", post(gemini_route))
        .route("/replay/stats", get(stats))
        .route("/replay/trajectories", get(trajectories))
        .route("/replay/sessions", get(sessions))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(log_request))
        .with_state(shared)
}

/// Every request at debug level (`RUST_LOG=agentmem_replay=debug`), to see
/// all a CLI sends, health checks and token counting included.
async fn log_request(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let response = next.run(req).await;
    tracing::debug!(%method, %uri, %agent, status = response.status().as_u16(), "request");
    response
}

async fn root() -> &'static str {
    "agentmem replay-model\n"
}

async fn not_found(State(s): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    s.stats.lock().not_found += 1;
    tracing::info!(%method, %uri, "refused: no such endpoint");
    let message = format!(
        "agentmem replay-model does not serve {method} {}",
        uri.path()
    );
    let api = if uri.path().starts_with("/v1beta") {
        Api::Gemini
    } else {
        Api::Anthropic
    };
    api.error(StatusCode::NOT_FOUND, &message)
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [
        {"id": "replay", "object": "model", "created": 0, "owned_by": "agentmem"}]}))
}

async fn responses_websocket(uri: Uri) -> Response {
    // Codex tries a WebSocket upgrade on GET first; refusing it plainly
    // makes it fall back to POST with server-sent events.
    tracing::info!(%uri, "refused: WebSocket transport (clients fall back to POST)");
    Api::Responses.error(
        StatusCode::NOT_FOUND,
        "the WebSocket transport is not served; use POST /v1/responses",
    )
}

fn parse_json(api: Api, body: &Bytes) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(api.error(
            StatusCode::BAD_REQUEST,
            &format!("the request body is not valid JSON: {e}"),
        ))
    })
}

async fn messages(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    exchange(s, Api::Anthropic, None, headers, body).await
}

async fn responses(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    exchange(s, Api::Responses, None, headers, body).await
}

async fn chat(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    exchange(s, Api::Chat, None, headers, body).await
}

async fn count_tokens(body: Bytes) -> Response {
    match parse_json(Api::Anthropic, &body) {
        Ok(v) if v["messages"].is_array() => {
            Json(anthropic::count_tokens(body.len())).into_response()
        }
        Ok(_) => Api::Anthropic.error(StatusCode::BAD_REQUEST, "messages: field required"),
        Err(r) => *r,
    }
}

#[derive(Debug, Deserialize)]
struct AltQuery {
    alt: Option<String>,
}

async fn gemini_route(
    State(s): State<Arc<Shared>>,
    Path(rest): Path<String>,
    Query(q): Query<AltQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((model, action)) = rest.rsplit_once(':') else {
        return Api::Gemini.error(
            StatusCode::NOT_FOUND,
            &format!("models/{rest}: expected models/MODEL:generateContent"),
        );
    };
    match action {
        "generateContent" => exchange(s, Api::Gemini, Some((model, false)), headers, body).await,
        "streamGenerateContent" => {
            if q.alt.as_deref() != Some("sse") {
                return Api::Gemini.error(
                    StatusCode::BAD_REQUEST,
                    "streamGenerateContent: only alt=sse is served",
                );
            }
            exchange(s, Api::Gemini, Some((model, true)), headers, body).await
        }
        "countTokens" => Json(gemini::count_tokens(body.len())).into_response(),
        other => Api::Gemini.error(
            StatusCode::NOT_FOUND,
            &format!("models/{model}:{other}: not served (generateContent, streamGenerateContent, countTokens are)"),
        ),
    }
}

/// The session key a client may set explicitly instead of relying on its
/// first message.
const SESSION_HEADER: &str = "x-replay-session";

async fn exchange(
    s: Arc<Shared>,
    api: Api,
    gemini_model: Option<(&str, bool)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let cpu_started = thread_cpu();
    if let Some(dir) = &s.dump_dir {
        let n = {
            let st = s.stats.lock();
            st.exchanges + st.bad_requests
        };
        let path = dir.join(format!("{n:06}-{}.json", api.name()));
        if let Err(e) = std::fs::write(&path, &body) {
            tracing::warn!(path = %path.display(), %e, "could not dump the request");
        }
    }
    let value = match parse_json(api, &body) {
        Ok(v) => v,
        Err(r) => {
            s.stats.lock().bad_requests += 1;
            tracing::warn!(api = api.name(), "bad request: not JSON");
            return *r;
        }
    };
    let parsed = match api {
        Api::Anthropic => anthropic::parse(&value, body.len()),
        Api::Responses => openai::parse_responses(&value, body.len()),
        Api::Chat => openai::parse_chat(&value, body.len()),
        Api::Gemini => {
            let (model, stream) = gemini_model.unwrap_or(("gemini", false));
            gemini::parse(model, &value, body.len()).map(|mut p| {
                p.stream = stream;
                p
            })
        }
    };
    let parsed: Parsed = match parsed {
        Ok(p) => p,
        Err(BadRequest(message)) => {
            s.stats.lock().bad_requests += 1;
            tracing::warn!(api = api.name(), %message, "bad request");
            return api.error(StatusCode::BAD_REQUEST, &message);
        }
    };
    let pos = Position::from_items(&parsed.items);
    if pos.person_turns == 0 {
        s.stats.lock().bad_requests += 1;
        let message = "the conversation has no user message to answer";
        tracing::warn!(api = api.name(), message, "bad request");
        return api.error(StatusCode::BAD_REQUEST, message);
    }
    let key = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut answer: Answer = s.replayer.answer(&pos, &parsed.tools, key.as_deref());
    if let Some(schema) = &parsed.json_schema {
        answer.text = gemini::sample_json(schema).to_string();
        answer.calls.clear();
    }
    let events: Option<Vec<Event>> = parsed.stream.then(|| match api {
        Api::Anthropic => anthropic::events(&answer, &parsed),
        Api::Responses => openai::responses_events(&answer, &parsed),
        Api::Chat => openai::chat_events(&answer, &parsed),
        Api::Gemini => gemini::events(&answer, &parsed),
    });
    let whole = (!parsed.stream).then(|| match api {
        Api::Anthropic => anthropic::message(&answer, &parsed),
        Api::Responses => openai::responses_body(&answer, &parsed),
        Api::Chat => openai::chat_body(&answer, &parsed),
        Api::Gemini => gemini::body(&answer, &parsed),
    });
    let handling_us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
    let handling_cpu_us =
        u32::try_from(thread_cpu().saturating_sub(cpu_started).as_micros()).unwrap_or(u32::MAX);
    {
        let mut st = s.stats.lock();
        st.exchanges += 1;
        st.exhausted += u64::from(answer.exhausted);
        for c in &answer.calls {
            *st.tool_calls.entry(c.name.clone()).or_default() += 1;
        }
        if !parsed.tools.names.is_empty() {
            let e = st.sessions.entry(answer.trajectory).or_default();
            e.last_request_turn = e.last_request_turn.max(Some(answer.turn));
        }
        if st.handling_us.len() < MAX_SAMPLES {
            st.handling_us.push(handling_us);
            st.handling_cpu_us.push(handling_cpu_us);
        }
    }
    let trajectory = &s.replayer.library().trajectories()[answer.trajectory].id;
    let calls: Vec<&str> = answer.calls.iter().map(|c| c.name.as_str()).collect();
    tracing::info!(
        api = api.name(),
        model = %parsed.model,
        trajectory = %trajectory,
        turn = answer.turn,
        step = answer.step,
        calls = %calls.join(","),
        tools_declared = parsed.tools.names.len(),
        stream = parsed.stream,
        exhausted = answer.exhausted,
        output_tokens = answer.output_tokens,
        handling_us,
        handling_cpu_us,
        "exchange"
    );
    // A final answer to a main-loop request counts once it has all been
    // sent: a driver that types the next turn earlier would interrupt it.
    let done = (answer.calls.is_empty() && !parsed.tools.names.is_empty()).then(|| FinalAnswer {
        shared: s.clone(),
        trajectory: answer.trajectory,
        turn: answer.turn,
    });
    match (events, whole) {
        (Some(events), _) => stream(events, answer.pacing, done),
        (None, Some(body)) => {
            tokio::time::sleep(api::whole_answer_delay(&answer)).await;
            if let Some(d) = done {
                d.record();
            }
            Json(body).into_response()
        }
        (None, None) => unreachable!("either streamed or whole"),
    }
}

/// A turn's final answer, recorded in the session progress once sent.
struct FinalAnswer {
    shared: Arc<Shared>,
    trajectory: usize,
    turn: usize,
}

impl FinalAnswer {
    fn record(self) {
        let mut st = self.shared.stats.lock();
        let e = st.sessions.entry(self.trajectory).or_default();
        e.last_final_turn = e.last_final_turn.max(Some(self.turn));
        e.finals += 1;
    }
}

fn stream(
    events: Vec<Event>,
    pacing: crate::replay::Pacing,
    done: Option<FinalAnswer>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        tokio::time::sleep(pacing.first_token).await;
        for e in events {
            if e.tokens > 0 {
                tokio::time::sleep(pacing.per_token * e.tokens).await;
            }
            if tx.send(Ok(Bytes::from(e.encode()))).await.is_err() {
                // The client went away (a CLI interrupted by its person).
                return;
            }
        }
        if let Some(d) = done {
            d.record();
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// CPU time of the calling thread (the handler runs start to end on one
/// thread: there is no await between the two readings).
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn stats(State(s): State<Arc<Shared>>) -> Json<Value> {
    let (mut samples, mut cpu, exchanges, bad, exhausted, not_found, tool_calls) = {
        let st = s.stats.lock();
        (
            st.handling_us.clone(),
            st.handling_cpu_us.clone(),
            st.exchanges,
            st.bad_requests,
            st.exhausted,
            st.not_found,
            st.tool_calls.clone(),
        )
    };
    samples.sort_unstable();
    cpu.sort_unstable();
    Json(json!({
        "exchanges": exchanges, "tool_calls": tool_calls, "bad_requests": bad, "exhausted": exhausted, "not_found": not_found,
        "handling_us": {"p50": percentile(&samples, 0.5), "p99": percentile(&samples, 0.99),
            "max": samples.last().copied().unwrap_or(0), "samples": samples.len()},
        "handling_cpu_us": {"p50": percentile(&cpu, 0.5), "p99": percentile(&cpu, 0.99),
            "max": cpu.last().copied().unwrap_or(0), "total": cpu.iter().map(|&c| u64::from(c)).sum::<u64>()}
    }))
}

async fn sessions(State(s): State<Arc<Shared>>) -> Json<Value> {
    let st = s.stats.lock();
    let map: serde_json::Map<String, Value> = st
        .sessions
        .iter()
        .map(|(t, p)| {
            (
                t.to_string(),
                json!({"last_request_turn": p.last_request_turn,
                    "last_final_turn": p.last_final_turn, "finals": p.finals}),
            )
        })
        .collect();
    Json(Value::Object(map))
}

#[derive(Debug, Deserialize)]
struct TrajectoryQuery {
    min_turns: Option<usize>,
}

async fn trajectories(
    State(s): State<Arc<Shared>>,
    Query(q): Query<TrajectoryQuery>,
) -> Json<Value> {
    let min = q.min_turns.unwrap_or(0);
    let list: Vec<Value> = s
        .replayer
        .library()
        .trajectories()
        .iter()
        .enumerate()
        .filter(|(_, t)| t.turns.len() >= min)
        .map(|(i, t)| {
            let steps: usize = t.turns.iter().map(|pt| pt.steps.len()).sum();
            let calls: usize = t
                .turns
                .iter()
                .flat_map(|pt| &pt.steps)
                .map(|st| st.calls.len())
                .sum();
            // Several recorded runs share a first message (one task, many
            // models); typing it selects the first of them, the canonical one.
            let canonical = s.replayer.library().find_by_first_person(&t.turns[0].person) == Some(i);
            json!({"index": i, "id": t.id, "steps": steps, "tool_calls": calls, "canonical": canonical,
                "turns": t.turns.iter().map(|pt| &pt.person).collect::<Vec<_>>()})
        })
        .collect();
    Json(Value::Array(list))
}

/// Delay helper kept public for the CLI's own pacing tests.
pub fn total_delay(answer: &Answer) -> Duration {
    api::whole_answer_delay(answer)
}
