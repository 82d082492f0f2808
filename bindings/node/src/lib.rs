//! # agentmem for Node.js
//!
//! `AgentMemory` is the seed's per-agent object: a system prompt, tool
//! definitions and a conversation kept in an agentmem store, so a hundred
//! agents in one process hold one copy of a shared prompt. `Store` is the
//! lower-level access to the same store (agents, units, conversations,
//! stats).
//!
//! A store is embedded in the process (`Store.embedded()`, or the process's
//! default store that `new AgentMemory(...)` uses) or is `agentmemd`
//! reached over its Unix socket (`Store.connect(path)`, or the
//! `socketPath` option).
//!
//! Every failure is thrown as an `Error` whose `code` is one of the stable
//! `AGENTMEM_*` codes (see `ErrorKind::code` in agentmem-backend) and whose
//! message says what to do. Calls on a closed store or agent throw
//! `AGENTMEM_CLOSED`.

use std::sync::Mutex;

use agentmem_backend::{
    parse_content_id, parse_kind, parse_state, AgentId, Backend, ContentId, ConversationId,
    EmbeddedOptions, Error, Kind, Memory, Visibility,
};
use napi::bindgen_prelude::{Buffer, Either};
use napi::{Env, JsBuffer};
use napi_derive::napi;
use serde_json::Value;

/// The `code` of a thrown error: an `AGENTMEM_*` string.
#[derive(Debug)]
pub struct Code(&'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// What every export returns (the napi macros recognise the name `Result`).
type Result<T, S = Code> = napi::Result<T, S>;

fn js(e: Error) -> napi::Error<Code> {
    napi::Error::new(Code(e.kind().code()), e.to_string())
}

fn invalid(message: String) -> napi::Error<Code> {
    js(Error::InvalidArgument(message))
}

/// Bytes from a `Buffer` or a string (UTF-8).
fn bytes_of(data: &Either<Buffer, String>) -> &[u8] {
    match data {
        Either::A(b) => b,
        Either::B(s) => s.as_bytes(),
    }
}

fn agent_id(agent: u32) -> AgentId {
    AgentId(agent)
}

fn index(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| invalid(format!("{what} must be 0 or more, not {v}")))
}

/// The process's default embedded store, shared by every `AgentMemory`
/// built without a `socketPath`; made again if it was closed.
static DEFAULT_STORE: Mutex<Option<Memory>> = Mutex::new(None);

fn default_store() -> Result<Memory> {
    let mut slot = DEFAULT_STORE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = slot.as_ref().filter(|m| !m.is_closed()) {
        return Ok(m.clone());
    }
    let m = Memory::embedded(&EmbeddedOptions::default()).map_err(js)?;
    *slot = Some(m.clone());
    Ok(m)
}

fn open_socket(path: &str) -> Result<Memory> {
    connect_daemon(path).map_err(js)
}

fn connect_daemon(path: &str) -> std::result::Result<Memory, Error> {
    Memory::connect(path)
}

/// A name unique in this process (agentmemd refuses a second connection
/// for a name already connected in the tenant).
fn default_agent_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("agent-{}-{n}", std::process::id())
}

/// Hand memory the process has freed back to the operating system
/// (glibc's `malloc_trim`); returns whether any was released. Useful after
/// parking many agents.
#[napi]
pub fn release_free_memory() -> bool {
    agentmem_backend::release_free_memory()
}

/// Settings of an embedded store.
#[napi(object)]
#[derive(Debug, Default)]
pub struct EmbeddedStoreOptions {
    /// Bytes of RAM for hot and warm units together. Default: 256 MiB.
    pub ram_budget: Option<i64>,
    /// Bytes for hot (plain) units. Default: the store chooses.
    pub hot_budget: Option<i64>,
    /// Largest unit or message accepted. Default: 1 GiB.
    pub max_unit_size: Option<i64>,
    /// Directory of a persistent store (created if missing): what was
    /// written there and `close()`d comes back on the next open — units,
    /// agents, conversations; `registerAgent` with a restored agent's name
    /// and tenant returns that agent. Locked while open: a second open
    /// throws `AGENTMEM_IO`. Default: none (RAM only).
    pub dir: Option<String>,
}

/// The seed's `agent_mem_stats` figures.
#[napi(object)]
#[derive(Debug)]
pub struct MemStats {
    /// Bytes the agents have stored, as they see them (every reference).
    pub total_allocated: i64,
    /// Bytes not stored thanks to deduplication.
    pub total_deduplicated: i64,
    /// Plain bytes of distinct units over bytes held.
    pub compression_ratio: f64,
    /// Bytes held in the hot tier.
    pub hot_bytes: i64,
    /// Bytes held in the warm tier.
    pub warm_bytes: i64,
    /// Bytes held in the cold tier.
    pub cold_bytes: i64,
    /// `"embedded"` or `"daemon"`.
    pub backend: String,
}

fn stats_of(m: &Memory) -> Result<MemStats> {
    let b = m.backend().map_err(js)?;
    let s = b.mem_stats().map_err(js)?;
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Ok(MemStats {
        total_allocated: n(s.total_allocated),
        total_deduplicated: n(s.total_deduplicated),
        compression_ratio: s.compression_ratio,
        hot_bytes: n(s.hot_bytes),
        warm_bytes: n(s.warm_bytes),
        cold_bytes: n(s.cold_bytes),
        backend: b.name().to_string(),
    })
}

/// Options of a put.
#[napi(object)]
#[derive(Debug, Default)]
pub struct PutOptions {
    /// Public content (stock prompts, bundled tools): deduplicated across
    /// tenants and readable by every agent. Default: false.
    pub public: Option<bool>,
}

/// Options of `new AgentMemory(systemPrompt, options)`.
#[napi(object)]
#[derive(Debug, Default)]
pub struct AgentMemoryOptions {
    /// Tool definitions: any JSON value (stored as its JSON text, shared
    /// by agents with the same tools). Default: none.
    pub tools: Option<Value>,
    /// The agent's name; with agentmemd, unique among the tenant's
    /// connected agents. Default: `"agent-<pid>-<n>"`.
    pub name: Option<String>,
    /// Its tenant: agents of one tenant deduplicate their private data
    /// together. Default: `"default"`.
    pub tenant: Option<String>,
    /// Talk to agentmemd at this Unix socket instead of the process's
    /// embedded store. Default: none (embedded).
    pub socket_path: Option<String>,
}

/// An agentmem store: embedded in this process or agentmemd.
#[napi]
#[derive(Debug)]
pub struct Store {
    mem: Memory,
}

#[napi]
impl Store {
    /// A new embedded store in this process.
    #[napi(factory)]
    pub fn embedded(options: Option<EmbeddedStoreOptions>) -> Result<Store> {
        let o = options.unwrap_or_default();
        let d = EmbeddedOptions::default();
        let size = |v: Option<i64>, what: &str| -> Result<Option<u64>> {
            v.map(|v| {
                u64::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| {
                    invalid(format!(
                        "{what} must be a positive number of bytes, not {v}"
                    ))
                })
            })
            .transpose()
        };
        let opts = EmbeddedOptions {
            ram_budget: size(o.ram_budget, "ramBudget")?.unwrap_or(d.ram_budget),
            hot_budget: size(o.hot_budget, "hotBudget")?,
            max_unit_size: size(o.max_unit_size, "maxUnitSize")?.unwrap_or(d.max_unit_size),
            dir: o.dir.map(std::path::PathBuf::from),
        };
        Ok(Store {
            mem: Memory::embedded(&opts).map_err(js)?,
        })
    }

    /// The process's default embedded store (the one `new AgentMemory`
    /// uses without `socketPath`).
    #[napi(factory, js_name = "default")]
    pub fn default_store() -> Result<Store> {
        Ok(Store {
            mem: default_store()?,
        })
    }

    /// agentmemd at a Unix socket path. Throws `AGENTMEM_NOT_RUNNING` if
    /// no daemon listens there.
    #[napi(factory)]
    pub fn connect(socket_path: String) -> Result<Store> {
        Ok(Store {
            mem: open_socket(&socket_path)?,
        })
    }

    fn b(&self) -> Result<std::sync::Arc<dyn Backend>> {
        self.mem.backend().map_err(js)
    }

    /// `"embedded"` or `"daemon"`.
    #[napi(getter)]
    pub fn backend(&self) -> Result<String> {
        Ok(self.b()?.name().to_string())
    }

    /// An `AgentMemory` in this store.
    #[napi]
    pub fn agent_memory(
        &self,
        system_prompt: String,
        options: Option<AgentMemoryOptions>,
    ) -> Result<AgentMemory> {
        AgentMemory::build(
            self.mem.clone(),
            &system_prompt,
            options.unwrap_or_default(),
        )
    }

    /// Register an agent; returns its id. `tenant` defaults to
    /// `"default"`, `importance` (0..=255) to 50.
    #[napi]
    pub fn register_agent(
        &self,
        name: String,
        tenant: Option<String>,
        importance: Option<u32>,
    ) -> Result<u32> {
        let importance = u8::try_from(importance.unwrap_or(50))
            .map_err(|_| invalid("importance must be 0..=255".into()))?;
        let id = self
            .b()?
            .register_agent(&name, tenant.as_deref().unwrap_or("default"), importance)
            .map_err(js)?;
        Ok(id.0)
    }

    /// Release everything an agent holds and forget it.
    #[napi]
    pub fn release_agent(&self, agent: u32) -> Result<()> {
        self.b()?.release_agent(agent_id(agent)).map_err(js)
    }

    /// Set an agent's state: `"active"`, `"waiting_for_model"`,
    /// `"waiting_for_human"`, `"running_tool"`, `"paused"` or `"idle"`.
    #[napi]
    pub fn set_state(&self, agent: u32, state: String) -> Result<()> {
        let st = parse_state(&state).map_err(js)?;
        self.b()?.set_state(agent_id(agent), st).map_err(js)
    }

    /// Store data for an agent; returns the unit's id (64 hex digits).
    /// `kind`: `"system_prompt"`, `"tool_defs"`, `"conversation"`,
    /// `"tool_result"` or `"blob"`.
    #[napi]
    pub fn put(
        &self,
        agent: u32,
        kind: String,
        data: Either<Buffer, String>,
        options: Option<PutOptions>,
    ) -> Result<String> {
        let kind = parse_kind(&kind).map_err(js)?;
        let vis = if options.and_then(|o| o.public).unwrap_or(false) {
            Visibility::Public
        } else {
            Visibility::Private
        };
        let id = self
            .b()?
            .put(agent_id(agent), kind, bytes_of(&data), vis)
            .map_err(js)?;
        Ok(id.to_hex())
    }

    /// Read a unit on behalf of an agent, as a `Buffer`.
    #[napi]
    pub fn get(&self, env: Env, agent: u32, id: String) -> Result<JsBuffer> {
        let id = parse_content_id(&id).map_err(js)?;
        let data = self.b()?.get(agent_id(agent), &id).map_err(js)?;
        // A copy into a V8-owned buffer: for small units much cheaper than
        // handing V8 an external buffer with a finalizer.
        env.create_buffer_copy(&data)
            .map(|b| b.into_raw())
            .map_err(|e| napi::Error::new(Code("AGENTMEM_INTERNAL"), e.reason.clone()))
    }

    /// Read a unit on behalf of an agent, as a string (UTF-8).
    #[napi]
    pub fn get_string(&self, agent: u32, id: String) -> Result<String> {
        let id = parse_content_id(&id).map_err(js)?;
        let data = self.b()?.get(agent_id(agent), &id).map_err(js)?;
        String::from_utf8(data.to_vec())
            .map_err(|_| invalid("the unit is not UTF-8 text: read it with get()".into()))
    }

    /// Give agent `to` a reference to a unit `from` holds.
    #[napi]
    pub fn share(&self, from: u32, id: String, to: u32) -> Result<()> {
        let id = parse_content_id(&id).map_err(js)?;
        self.b()?
            .share(agent_id(from), &id, agent_id(to))
            .map_err(js)
    }

    /// Drop one of an agent's references to a unit.
    #[napi]
    pub fn release(&self, agent: u32, id: String) -> Result<()> {
        let id = parse_content_id(&id).map_err(js)?;
        self.b()?.release(agent_id(agent), &id).map_err(js)
    }

    /// Bring a unit to the hot tier now.
    #[napi]
    pub fn mark_hot(&self, agent: u32, id: String) -> Result<()> {
        let id = parse_content_id(&id).map_err(js)?;
        self.b()?.mark_hot(agent_id(agent), &id).map_err(js)
    }

    /// Start a conversation owned by an agent; returns its id.
    #[napi]
    pub fn create_conversation(&self, agent: u32) -> Result<u32> {
        Ok(self
            .b()?
            .create_conversation(agent_id(agent))
            .map_err(js)?
            .0)
    }

    /// A new conversation owned by `agent` holding the first `at`
    /// messages of `conversation`; returns its id. The embedded store
    /// shares the parent's sealed chunks instead of copying them. Throws
    /// `AGENTMEM_OUT_OF_RANGE` if `at` is past the end.
    #[napi]
    pub fn fork_conversation(&self, agent: u32, conversation: u32, at: i64) -> Result<u32> {
        let at = index(at, "at")?;
        Ok(self
            .b()?
            .fork_conversation(agent_id(agent), ConversationId(conversation), at)
            .map_err(js)?
            .0)
    }

    /// Append a message; returns its index.
    #[napi]
    pub fn append(&self, conversation: u32, message: Either<Buffer, String>) -> Result<i64> {
        let i = self
            .b()?
            .append(ConversationId(conversation), bytes_of(&message))
            .map_err(js)?;
        Ok(i as i64)
    }

    /// Number of messages in a conversation.
    #[napi]
    pub fn conversation_length(&self, conversation: u32) -> Result<i64> {
        Ok(self
            .b()?
            .conversation_len(ConversationId(conversation))
            .map_err(js)? as i64)
    }

    /// Messages `start..end` of a conversation (default: all), as Buffers.
    #[napi]
    pub fn read_messages(
        &self,
        conversation: u32,
        start: Option<i64>,
        end: Option<i64>,
    ) -> Result<Vec<Buffer>> {
        let start = index(start.unwrap_or(0), "start")?;
        let end = end
            .map(|e| index(e, "end"))
            .transpose()?
            .unwrap_or(u64::MAX);
        let msgs = self
            .b()?
            .read_messages(ConversationId(conversation), start..end)
            .map_err(js)?;
        Ok(msgs.into_iter().map(|m| m.to_vec().into()).collect())
    }

    /// The store's summary figures.
    #[napi]
    pub fn stats(&self) -> Result<MemStats> {
        stats_of(&self.mem)
    }

    /// Close the store: every later call on it (and on agents using it)
    /// throws `AGENTMEM_CLOSED`. A store in a directory is checkpointed
    /// first; if that fails this throws (`AGENTMEM_IO`) and the store is
    /// closed all the same.
    #[napi]
    pub fn close(&self) -> Result<()> {
        self.mem.close().map_err(js)
    }

    /// Whether `close()` ran.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.mem.is_closed()
    }
}

/// One agent's memory: its system prompt, tools and conversation, held in
/// an agentmem store (deduplicated with every other agent's).
#[napi]
#[derive(Debug)]
pub struct AgentMemory {
    mem: Memory,
    agent: AgentId,
    prompt: ContentId,
    tools: Option<ContentId>,
    conversation: ConversationId,
}

impl AgentMemory {
    fn build(mem: Memory, system_prompt: &str, o: AgentMemoryOptions) -> Result<AgentMemory> {
        let b = mem.backend().map_err(js)?;
        let agent = b
            .register_agent(
                &o.name.clone().unwrap_or_else(default_agent_name),
                o.tenant.as_deref().unwrap_or("default"),
                50,
            )
            .map_err(js)?;
        let built = (|| {
            let prompt = b.put(
                agent,
                Kind::SystemPrompt,
                system_prompt.as_bytes(),
                Visibility::Private,
            )?;
            let tools = match &o.tools {
                None | Some(Value::Null) => None,
                Some(t) => {
                    let text = serde_json::to_string(t).expect("a JSON value serializes");
                    Some(b.put(agent, Kind::ToolDefs, text.as_bytes(), Visibility::Private)?)
                }
            };
            let conversation = b.create_conversation(agent)?;
            Ok::<_, Error>((prompt, tools, conversation))
        })();
        match built {
            Ok((prompt, tools, conversation)) => Ok(AgentMemory {
                mem,
                agent,
                prompt,
                tools,
                conversation,
            }),
            Err(e) => {
                // Leave nothing half-made behind.
                let _ = b.release_agent(agent);
                Err(js(e))
            }
        }
    }

    fn b(&self) -> Result<std::sync::Arc<dyn Backend>> {
        self.mem.backend().map_err(js)
    }

    fn read_text(&self, id: &ContentId) -> Result<String> {
        let data = self.b()?.get(self.agent, id).map_err(js)?;
        String::from_utf8(data.to_vec()).map_err(|_| invalid("stored text is not UTF-8".into()))
    }
}

#[napi]
impl AgentMemory {
    /// An agent with this system prompt, in the process's default embedded
    /// store (or agentmemd, with `socketPath`).
    #[napi(constructor)]
    pub fn new(system_prompt: String, options: Option<AgentMemoryOptions>) -> Result<Self> {
        let o = options.unwrap_or_default();
        let mem = match &o.socket_path {
            Some(p) => open_socket(p)?,
            None => default_store()?,
        };
        AgentMemory::build(mem, &system_prompt, o)
    }

    /// The agent's id in its store.
    #[napi(getter)]
    pub fn agent_id(&self) -> u32 {
        self.agent.0
    }

    /// The system prompt, read back from the store.
    #[napi(getter)]
    pub fn system_prompt(&self) -> Result<String> {
        self.read_text(&self.prompt)
    }

    /// The tool definitions as given, read back from the store, or `null`.
    #[napi(getter)]
    pub fn tools(&self) -> Result<Option<Value>> {
        match &self.tools {
            None => Ok(None),
            Some(id) => {
                let text = self.read_text(id)?;
                Ok(Some(serde_json::from_str(&text).map_err(|e| {
                    invalid(format!("stored tool definitions are not JSON: {e}"))
                })?))
            }
        }
    }

    /// The agent's conversation.
    #[napi(getter)]
    pub fn conversation(&self) -> Conversation {
        Conversation {
            mem: self.mem.clone(),
            id: self.conversation,
            prompt: self.prompt,
            agent: self.agent,
        }
    }

    /// Set the agent's state (`"active"`, `"waiting_for_model"`,
    /// `"waiting_for_human"`, `"running_tool"`, `"paused"`, `"idle"`).
    /// Pausing compresses its memory; `"active"` brings it back first.
    #[napi]
    pub fn set_state(&self, state: String) -> Result<()> {
        let st = parse_state(&state).map_err(js)?;
        self.b()?.set_state(self.agent, st).map_err(js)
    }

    /// The store's summary figures.
    #[napi]
    pub fn get_stats(&self) -> Result<MemStats> {
        stats_of(&self.mem)
    }

    /// Release this agent's memory in the store. The object is unusable
    /// afterwards (calls throw `AGENTMEM_UNKNOWN_AGENT`).
    #[napi]
    pub fn release(&self) -> Result<()> {
        self.b()?.release_agent(self.agent).map_err(js)
    }
}

/// An agent's append-only conversation.
#[napi]
#[derive(Debug)]
pub struct Conversation {
    mem: Memory,
    id: ConversationId,
    prompt: ContentId,
    agent: AgentId,
}

#[napi]
impl Conversation {
    /// Append a message: an object (stored as JSON, e.g.
    /// `{role: "user", content: "hi"}`) or a string (stored as a user
    /// message). Returns its index.
    #[napi(ts_args_type = "message: string | Record<string, unknown>")]
    pub fn append(&self, message: Value) -> Result<i64> {
        let message = match message {
            Value::String(s) => serde_json::json!({ "role": "user", "content": s }),
            v @ Value::Object(_) => v,
            other => {
                return Err(invalid(format!(
                    "a message is an object or a string, not {other}"
                )))
            }
        };
        let text = serde_json::to_vec(&message).expect("a JSON value serializes");
        let b = self.mem.backend().map_err(js)?;
        Ok(b.append(self.id, &text).map_err(js)? as i64)
    }

    /// Number of messages.
    #[napi(getter)]
    pub fn length(&self) -> Result<i64> {
        let b = self.mem.backend().map_err(js)?;
        Ok(b.conversation_len(self.id).map_err(js)? as i64)
    }

    /// What to send to the model: the system message, then the last
    /// `last` messages (default: all) as objects.
    #[napi]
    pub fn get_context(&self, last: Option<i64>) -> Result<Vec<Value>> {
        let b = self.mem.backend().map_err(js)?;
        let len = b.conversation_len(self.id).map_err(js)?;
        let start = match last {
            Some(n) => len.saturating_sub(index(n, "last")?),
            None => 0,
        };
        let prompt = b.get(self.agent, &self.prompt).map_err(js)?;
        let mut out = vec![serde_json::json!({
            "role": "system",
            "content": String::from_utf8_lossy(&prompt),
        })];
        for m in b.read_messages(self.id, start..len).map_err(js)? {
            out.push(serde_json::from_slice(&m).unwrap_or_else(
                |_| serde_json::json!({ "role": "user", "content": String::from_utf8_lossy(&m) }),
            ));
        }
        Ok(out)
    }
}
