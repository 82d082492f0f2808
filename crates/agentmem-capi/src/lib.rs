//! # libagentmem
//!
//! The agentmem store for C: `libagentmem.so` / `libagentmem.a` with the
//! header `include/agentmem.h`, generated from this crate by cbindgen.
//!
//! A *context* (`agentmem_ctx`) is one store: embedded in this process
//! ([`agentmem_open_embedded`]) or `agentmemd` reached over its Unix socket
//! (`agentmem_connect`). Agents are registered in a context; each agent
//! allocates semantic memory units (`agent_alloc_smu`), reads them, shares
//! them with other agents and frees its references.
//!
//! ## Conventions
//! - Every function returns an [`agentmem_result`]; `AGENTMEM_OK` (0) is
//!   success. On failure [`agentmem_last_error_message`] tells what went
//!   wrong and what to do, for the calling thread.
//! - Handles (`agentmem_ctx`, `agentmem_agent`, `agentmem_smu`,
//!   `agentmem_conversation`) are small values, not pointers. A zero, freed,
//!   made-up or closed-context handle gives `AGENTMEM_INVALID_HANDLE` (or
//!   `AGENTMEM_CLOSED` for a closed context), never a crash.
//! - NULL where a pointer is required gives `AGENTMEM_NULL_POINTER`.
//! - No function unwinds into C: a bug in the library gives `AGENTMEM_PANIC`.
//! - All functions are thread-safe.
//!
//! The seed's `agent_alloc_smu(ctx, type, data, size, &handle)` takes the
//! agent handle as its first argument: a context acts for many agents, so
//! the agent says on whose behalf the unit is stored.

// The exported names are the C API's names.
#![allow(non_camel_case_types)]

mod boundary;
mod handles;

use std::ffi::{c_char, c_void};

use agentmem_backend::{
    AgentState, EmbeddedOptions, Kind, Memory, Visibility, DEFAULT_MAX_UNIT_SIZE,
};

use boundary::{c_bytes, c_out, c_str, ffi, Fail};
use handles::{AgentEntry, ConvEntry, Found, SmuEntry, REGISTRY};

/// Result of every call. The numbers are stable.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum agentmem_result {
    /// Success.
    AGENTMEM_OK = 0,
    /// A value of the wrong shape (unknown type or state, empty data, text
    /// that is not UTF-8, agents of different contexts).
    AGENTMEM_INVALID_ARGUMENT = 1,
    /// Data larger than the store's maximum unit size.
    AGENTMEM_TOO_LARGE = 2,
    /// The agent is not registered in the store.
    AGENTMEM_UNKNOWN_AGENT = 3,
    /// No such unit, or all its references were released.
    AGENTMEM_UNKNOWN_UNIT = 4,
    /// The agent holds no reference to the unit.
    AGENTMEM_NOT_OWNER = 5,
    /// The agent may not read the unit (private to another, not shared).
    AGENTMEM_ACCESS_DENIED = 6,
    /// No such conversation.
    AGENTMEM_UNKNOWN_CONVERSATION = 7,
    /// A message index outside the conversation.
    AGENTMEM_OUT_OF_RANGE = 8,
    /// Stored bytes failed their checksum; nothing was returned.
    AGENTMEM_CORRUPT = 9,
    /// The context was closed.
    AGENTMEM_CLOSED = 10,
    /// agentmemd is not running at the socket path.
    AGENTMEM_NOT_RUNNING = 11,
    /// An I/O error talking to the daemon.
    AGENTMEM_IO = 12,
    /// The daemon answered something this library does not understand.
    AGENTMEM_PROTOCOL = 13,
    /// Any other failure.
    AGENTMEM_INTERNAL = 14,
    /// A filesystem the store writes to is full: writes are refused until
    /// space returns; reads and releases work.
    AGENTMEM_NO_SPACE = 15,
    /// A limit of agentmemd was reached (the tenant's connections, agents
    /// or stored bytes); the last error message names it and its value.
    AGENTMEM_LIMIT_REACHED = 16,
    /// A required pointer argument was NULL.
    AGENTMEM_NULL_POINTER = 100,
    /// A handle that is zero, freed, of a closed context, or made up.
    AGENTMEM_INVALID_HANDLE = 101,
    /// The buffer is too small; the size needed was stored in `*len`.
    AGENTMEM_BUFFER_TOO_SMALL = 102,
    /// A bug in libagentmem (caught before it reached the caller).
    AGENTMEM_PANIC = 103,
}

/// The type of a semantic memory unit (pass to `agent_alloc_smu`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum agentmem_smu_type {
    /// A system prompt.
    AGENTMEM_SYSTEM_PROMPT = 0,
    /// Tool definitions.
    AGENTMEM_TOOL_DEFS = 1,
    /// A conversation snapshot (for live conversations see
    /// `agent_conversation_append`).
    AGENTMEM_CONVERSATION = 2,
    /// A tool's result.
    AGENTMEM_TOOL_RESULT = 3,
    /// Anything else.
    AGENTMEM_BLOB = 4,
}

/// An agent's state (pass to `agent_set_state`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum agentmem_agent_state {
    /// Working: its units stay hot.
    AGENTMEM_ACTIVE = 0,
    /// Waiting for a model reply (seconds).
    AGENTMEM_WAITING_FOR_MODEL = 1,
    /// Waiting for a person (a good eviction victim).
    AGENTMEM_WAITING_FOR_HUMAN = 2,
    /// Running a tool.
    AGENTMEM_RUNNING_TOOL = 3,
    /// Paused: its units are compressed now.
    AGENTMEM_PAUSED = 4,
    /// Idle: its units are compressed now.
    AGENTMEM_IDLE = 5,
}

/// Flags of `agent_alloc_smu_ex`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum agentmem_alloc_flags {
    /// Deduplicated only within the agent's tenant (the default).
    AGENTMEM_PRIVATE = 0,
    /// Public content (stock prompts, bundled tools): deduplicated across
    /// tenants and readable by every agent.
    AGENTMEM_PUBLIC = 1,
}

/// An open store. Zero is never valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct agentmem_ctx {
    opaque: u64,
}

/// An agent registered in a context.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct agentmem_agent {
    opaque: u64,
}

/// One agent's reference to a unit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct agentmem_smu {
    opaque: u64,
}

/// An append-only conversation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct agentmem_conversation {
    opaque: u64,
}

/// Settings of an embedded store; zero in a field means its default.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct agentmem_embedded_options {
    /// Bytes of RAM for hot and warm units together (default 256 MiB).
    pub ram_budget: u64,
    /// Bytes for hot (plain) units (default: the store chooses).
    pub hot_budget: u64,
    /// Largest unit or message accepted (default 1 GiB).
    pub max_unit_size: u64,
}

/// The store's summary figures (the seed's `agent_mem_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct agent_mem_stats {
    /// Bytes the agents have stored, as they see them (every reference).
    pub total_allocated: u64,
    /// Bytes not stored thanks to deduplication.
    pub total_deduplicated: u64,
    /// Plain bytes of distinct units over bytes held.
    pub compression_ratio: f64,
    /// Bytes held in the hot tier (plain).
    pub hot_bytes: u64,
    /// Bytes held in the warm tier (compressed, RAM).
    pub warm_bytes: u64,
    /// Bytes held in the cold tier (disk).
    pub cold_bytes: u64,
}

// ---- lookups ------------------------------------------------------------

fn ctx_memory(ctx: agentmem_ctx) -> Result<Memory, Fail> {
    match REGISTRY.lock().ctxs.get(ctx.opaque) {
        Found::Live(m) => Ok(m),
        Found::Stale => Err(Fail::new(
            agentmem_result::AGENTMEM_CLOSED,
            "this agentmem_ctx was closed (agentmem_close): open a new one",
        )),
        Found::Never => Err(invalid_handle(
            "agentmem_ctx",
            "agentmem_open_embedded or agentmem_connect",
        )),
        Found::WrongType(t) => Err(wrong_type("agentmem_ctx", t)),
    }
}

fn wrong_type(expected: &str, got: &str) -> Fail {
    Fail::new(
        agentmem_result::AGENTMEM_INVALID_HANDLE,
        format!("a {got} handle was passed where an {expected} is expected"),
    )
}

fn invalid_handle(what: &str, from: &str) -> Fail {
    Fail::new(
        agentmem_result::AGENTMEM_INVALID_HANDLE,
        format!("invalid {what}: it is zero or was never returned by {from}"),
    )
}

fn stale_handle(what: &str, freed_by: &str) -> Fail {
    Fail::new(
        agentmem_result::AGENTMEM_INVALID_HANDLE,
        format!("this {what} is no longer valid: it was released ({freed_by}) or its context was closed"),
    )
}

fn memory_of(ctx: u64) -> Result<Memory, Fail> {
    ctx_memory(agentmem_ctx { opaque: ctx })
}

fn agent_entry(agent: agentmem_agent) -> Result<(Memory, AgentEntry), Fail> {
    let e = match REGISTRY.lock().agents.get(agent.opaque) {
        Found::Live(e) => e,
        Found::Stale => return Err(stale_handle("agentmem_agent", "agent_unregister")),
        Found::Never => return Err(invalid_handle("agentmem_agent", "agent_register")),
        Found::WrongType(t) => return Err(wrong_type("agentmem_agent", t)),
    };
    Ok((memory_of(e.ctx)?, e))
}

fn smu_entry(smu: agentmem_smu) -> Result<(Memory, SmuEntry), Fail> {
    let e = match REGISTRY.lock().smus.get(smu.opaque) {
        Found::Live(e) => e,
        Found::Stale => return Err(stale_handle("agentmem_smu", "agent_free")),
        Found::Never => return Err(invalid_handle("agentmem_smu", "agent_alloc_smu")),
        Found::WrongType(t) => return Err(wrong_type("agentmem_smu", t)),
    };
    Ok((memory_of(e.ctx)?, e))
}

fn conv_entry(conv: agentmem_conversation) -> Result<(Memory, ConvEntry), Fail> {
    let e = match REGISTRY.lock().convs.get(conv.opaque) {
        Found::Live(e) => e,
        Found::Stale => {
            return Err(stale_handle(
                "agentmem_conversation",
                "agent_conversation_delete",
            ))
        }
        Found::Never => {
            return Err(invalid_handle(
                "agentmem_conversation",
                "agent_conversation_open",
            ))
        }
        Found::WrongType(t) => return Err(wrong_type("agentmem_conversation", t)),
    };
    Ok((memory_of(e.ctx)?, e))
}

fn kind_of(t: u32) -> Result<Kind, Fail> {
    u8::try_from(t)
        .ok()
        .and_then(Kind::from_index)
        .ok_or_else(|| {
            Fail::new(
                agentmem_result::AGENTMEM_INVALID_ARGUMENT,
                format!(
                    "unknown unit type {t}: use one of AGENTMEM_SYSTEM_PROMPT .. AGENTMEM_BLOB"
                ),
            )
        })
}

/// Copy `data` to a caller's buffer, or report the size needed.
///
/// # Safety
/// `buf` is NULL or points to `cap` writable bytes; `len` as for [`c_out`].
unsafe fn copy_out(data: &[u8], buf: *mut c_void, cap: usize, len: *mut usize) -> Result<(), Fail> {
    // SAFETY: forwarded caller contract.
    let len = unsafe { c_out(len, "len") }?;
    *len = data.len();
    if data.len() > cap || (buf.is_null() && !data.is_empty()) {
        return Err(Fail::new(
            agentmem_result::AGENTMEM_BUFFER_TOO_SMALL,
            format!(
                "the buffer holds {cap} bytes but {} are needed (stored in *len)",
                data.len()
            ),
        ));
    }
    if !data.is_empty() {
        // SAFETY: `buf` is non-NULL with at least `cap >= data.len()` writable
        // bytes by the caller's contract; a caller's buffer cannot overlap
        // bytes the store owns.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf.cast::<u8>(), data.len()) };
    }
    Ok(())
}

// ---- contexts -----------------------------------------------------------

/// Open an embedded store in this process. `options` may be NULL for the
/// defaults. On success `*out` is the new context; close it with
/// `agentmem_close`.
///
/// # Safety
/// `options` is NULL or points to a valid `agentmem_embedded_options`;
/// `out` points to a writable `agentmem_ctx`.
#[no_mangle]
pub unsafe extern "C" fn agentmem_open_embedded(
    options: *const agentmem_embedded_options,
    out: *mut agentmem_ctx,
) -> agentmem_result {
    // SAFETY: forwarded caller contract.
    ffi(|| unsafe { open_embedded_in(None, options, out) })
}

/// Open an embedded store kept in the directory `dir` (created if
/// missing): what an earlier context wrote there and closed with
/// `agentmem_close` comes back — units, agents, conversations. Registering
/// an agent under the name and tenant of a restored agent gets that agent
/// back with its units. The directory is locked: a second open (in this or
/// another process) fails with `AGENTMEM_IO` and a message saying so.
/// `options` may be NULL for the defaults.
///
/// # Safety
/// `dir` is a NUL-terminated string; `options` is NULL or points to a
/// valid `agentmem_embedded_options`; `out` points to a writable
/// `agentmem_ctx`.
#[no_mangle]
pub unsafe extern "C" fn agentmem_open_dir(
    dir: *const c_char,
    options: *const agentmem_embedded_options,
    out: *mut agentmem_ctx,
) -> agentmem_result {
    ffi(|| {
        // SAFETY: caller contract.
        let dir = unsafe { c_str(dir, "dir") }?;
        // SAFETY: forwarded caller contract.
        unsafe { open_embedded_in(Some(std::path::PathBuf::from(dir)), options, out) }
    })
}

/// The body of both opens, inside their panic boundary.
///
/// # Safety
/// As for `agentmem_open_dir`.
unsafe fn open_embedded_in(
    dir: Option<std::path::PathBuf>,
    options: *const agentmem_embedded_options,
    out: *mut agentmem_ctx,
) -> Result<(), Fail> {
    // SAFETY: caller contract.
    let out = unsafe { c_out(out, "out") }?;
    // SAFETY: NULL checked by `as_ref`; otherwise valid by contract.
    let o = unsafe { options.as_ref() }.copied().unwrap_or_default();
    let d = EmbeddedOptions::default();
    let opts = EmbeddedOptions {
        ram_budget: if o.ram_budget == 0 {
            d.ram_budget
        } else {
            o.ram_budget
        },
        hot_budget: (o.hot_budget != 0).then_some(o.hot_budget),
        max_unit_size: if o.max_unit_size == 0 {
            DEFAULT_MAX_UNIT_SIZE
        } else {
            o.max_unit_size
        },
        dir,
    };
    let m = Memory::embedded(&opts)?;
    out.opaque = REGISTRY.lock().ctxs.insert(m);
    Ok(())
}

/// Connect to agentmemd listening on the Unix socket `socket_path`. Each
/// agent registered in this context gets its own connection (the daemon
/// binds a connection to one agent). `AGENTMEM_NOT_RUNNING` if no daemon
/// listens there.
///
/// # Safety
/// `socket_path` is a NUL-terminated string; `out` points to a writable
/// `agentmem_ctx`.
#[no_mangle]
pub unsafe extern "C" fn agentmem_connect(
    socket_path: *const c_char,
    out: *mut agentmem_ctx,
) -> agentmem_result {
    ffi(|| {
        // SAFETY: caller contract.
        let out = unsafe { c_out(out, "out") }?;
        // SAFETY: caller contract.
        let path = unsafe { c_str(socket_path, "socket_path") }?;
        let m = Memory::connect(path)?;
        out.opaque = REGISTRY.lock().ctxs.insert(m);
        Ok(())
    })
}

/// Close a context: every handle of it becomes invalid and the store's
/// memory is freed (an embedded store) or the connection closed (daemon).
/// A store opened with `agentmem_open_dir` is checkpointed first; if that
/// fails the result says so (`AGENTMEM_IO`: the last writes may be lost),
/// and the context is closed all the same. Closing a closed context gives
/// `AGENTMEM_CLOSED`.
#[no_mangle]
pub extern "C" fn agentmem_close(ctx: agentmem_ctx) -> agentmem_result {
    ffi(|| {
        let mut reg = REGISTRY.lock();
        let m = match reg.ctxs.remove(ctx.opaque) {
            Found::Live(m) => m,
            Found::Stale => {
                return Err(Fail::new(
                    agentmem_result::AGENTMEM_CLOSED,
                    "this agentmem_ctx is already closed",
                ))
            }
            Found::Never => return Err(invalid_handle("agentmem_ctx", "agentmem_open_embedded")),
            Found::WrongType(t) => return Err(wrong_type("agentmem_ctx", t)),
        };
        reg.drop_ctx(ctx.opaque);
        drop(reg);
        m.close()?;
        Ok(())
    })
}

/// Fill `*out` with the store's summary figures.
///
/// # Safety
/// `out` points to a writable `struct agent_mem_stats`.
#[no_mangle]
pub unsafe extern "C" fn agent_stats(
    ctx: agentmem_ctx,
    out: *mut agent_mem_stats,
) -> agentmem_result {
    ffi(|| {
        // SAFETY: caller contract.
        let out = unsafe { c_out(out, "out") }?;
        let s = ctx_memory(ctx)?.backend()?.mem_stats()?;
        *out = agent_mem_stats {
            total_allocated: s.total_allocated,
            total_deduplicated: s.total_deduplicated,
            compression_ratio: s.compression_ratio,
            hot_bytes: s.hot_bytes,
            warm_bytes: s.warm_bytes,
            cold_bytes: s.cold_bytes,
        };
        Ok(())
    })
}

// ---- agents -------------------------------------------------------------

/// Register an agent named `name` of tenant `tenant` (NULL: "default").
/// Agents of one tenant deduplicate their private units together. In a
/// store opened with `agentmem_open_dir`, the first registration of the
/// name and tenant of an agent restored from the directory gets that agent
/// back, with its units and conversations.
///
/// # Safety
/// `name` and `tenant` are NULL or NUL-terminated strings; `out` points to
/// a writable `agentmem_agent`.
#[no_mangle]
pub unsafe extern "C" fn agent_register(
    ctx: agentmem_ctx,
    name: *const c_char,
    tenant: *const c_char,
    out: *mut agentmem_agent,
) -> agentmem_result {
    ffi(|| {
        // SAFETY: caller contract.
        let out = unsafe { c_out(out, "out") }?;
        // SAFETY: caller contract.
        let name = unsafe { c_str(name, "name") }?;
        let tenant = if tenant.is_null() {
            "default"
        } else {
            // SAFETY: caller contract.
            unsafe { c_str(tenant, "tenant") }?
        };
        let agent = ctx_memory(ctx)?
            .backend()?
            .register_agent(name, tenant, 50)?;
        out.opaque = REGISTRY.lock().agents.insert(AgentEntry {
            ctx: ctx.opaque,
            agent,
        });
        Ok(())
    })
}

/// Release everything an agent holds (units, conversations) and forget it;
/// its handles and those of its units and conversations become invalid.
#[no_mangle]
pub extern "C" fn agent_unregister(agent: agentmem_agent) -> agentmem_result {
    ffi(|| {
        let (m, e) = agent_entry(agent)?;
        {
            let mut reg = REGISTRY.lock();
            if let Found::Live(_) = reg.agents.remove(agent.opaque) {
                reg.drop_agent(e.ctx, e.agent);
            }
        }
        m.backend()?.release_agent(e.agent)?;
        Ok(())
    })
}

/// Set an agent's state (an `agentmem_agent_state`). Pausing or idling
/// compresses its units; `AGENTMEM_ACTIVE` brings them back first.
#[no_mangle]
pub extern "C" fn agent_set_state(agent: agentmem_agent, state: u32) -> agentmem_result {
    ffi(|| {
        let (m, e) = agent_entry(agent)?;
        let st = u8::try_from(state)
            .ok()
            .and_then(AgentState::from_index)
            .ok_or_else(|| {
                Fail::new(
                    agentmem_result::AGENTMEM_INVALID_ARGUMENT,
                    format!(
                        "unknown agent state {state}: use one of AGENTMEM_ACTIVE .. AGENTMEM_IDLE"
                    ),
                )
            })?;
        m.backend()?.set_state(e.agent, st)?;
        Ok(())
    })
}

// ---- units --------------------------------------------------------------

/// Store `size` bytes at `data` as a unit of `type` (an `agentmem_smu_type`)
/// for `agent`: deduplicated (identical content is stored once) and
/// compressed when it cools. `*handle` is the agent's reference; free it
/// with `agent_free`. Same as `agent_alloc_smu_ex` with `AGENTMEM_PRIVATE`.
///
/// # Safety
/// `data` points to `size` readable bytes; `handle` to a writable
/// `agentmem_smu`.
#[no_mangle]
pub unsafe extern "C" fn agent_alloc_smu(
    agent: agentmem_agent,
    r#type: u32,
    data: *const c_void,
    size: usize,
    handle: *mut agentmem_smu,
) -> agentmem_result {
    // SAFETY: forwarded caller contract.
    unsafe { agent_alloc_smu_ex(agent, r#type, data, size, 0, handle) }
}

/// `agent_alloc_smu` with `flags` (an `agentmem_alloc_flags`).
///
/// # Safety
/// As `agent_alloc_smu`.
#[no_mangle]
pub unsafe extern "C" fn agent_alloc_smu_ex(
    agent: agentmem_agent,
    r#type: u32,
    data: *const c_void,
    size: usize,
    flags: u32,
    handle: *mut agentmem_smu,
) -> agentmem_result {
    ffi(|| {
        // SAFETY: caller contract.
        let handle = unsafe { c_out(handle, "handle") }?;
        // SAFETY: caller contract.
        let data = unsafe { c_bytes(data.cast(), size, "data") }?;
        let kind = kind_of(r#type)?;
        let vis = match flags {
            0 => Visibility::Private,
            1 => Visibility::Public,
            f => {
                return Err(Fail::new(
                    agentmem_result::AGENTMEM_INVALID_ARGUMENT,
                    format!("unknown flags {f:#x}: use AGENTMEM_PRIVATE or AGENTMEM_PUBLIC"),
                ))
            }
        };
        let (m, e) = agent_entry(agent)?;
        let id = m.backend()?.put(e.agent, kind, data, vis)?;
        handle.opaque = REGISTRY.lock().smus.insert(SmuEntry {
            ctx: e.ctx,
            agent: e.agent,
            id,
            size: data.len() as u64,
        });
        Ok(())
    })
}

/// Size in bytes of a unit's content.
///
/// # Safety
/// `size` points to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn agent_smu_size(handle: agentmem_smu, size: *mut usize) -> agentmem_result {
    ffi(|| {
        // SAFETY: caller contract.
        let size = unsafe { c_out(size, "size") }?;
        let (_, e) = smu_entry(handle)?;
        *size = e.size as usize;
        Ok(())
    })
}

/// Copy a unit's content into `buf` (`cap` bytes) and its size into
/// `*len`. If `cap` is too small (or `buf` is NULL) nothing is copied,
/// `*len` is the size needed and the result is `AGENTMEM_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `buf` is NULL or points to `cap` writable bytes; `len` points to a
/// writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn agent_read(
    handle: agentmem_smu,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
) -> agentmem_result {
    ffi(|| {
        let (m, e) = smu_entry(handle)?;
        let data = m.backend()?.get(e.agent, &e.id)?;
        // SAFETY: caller contract.
        unsafe { copy_out(&data, buf, cap, len) }
    })
}

/// Give `target` (an agent of the same context) its own reference to the
/// unit; `*out` (may be NULL) receives the target's handle, which it frees
/// with `agent_free` independently of the sharer's.
///
/// # Safety
/// `out` is NULL or points to a writable `agentmem_smu`.
#[no_mangle]
pub unsafe extern "C" fn agent_share(
    handle: agentmem_smu,
    target: agentmem_agent,
    out: *mut agentmem_smu,
) -> agentmem_result {
    ffi(|| {
        let (m, e) = smu_entry(handle)?;
        let (_, t) = agent_entry(target)?;
        if t.ctx != e.ctx {
            return Err(Fail::new(
                agentmem_result::AGENTMEM_INVALID_ARGUMENT,
                "the target agent belongs to another context: share only within one store",
            ));
        }
        m.backend()?.share(e.agent, &e.id, t.agent)?;
        // SAFETY: NULL checked by `as_mut`; otherwise valid by contract.
        // Without `out` the reference lives until agent_unregister.
        if let Some(out) = unsafe { out.as_mut() } {
            out.opaque = REGISTRY.lock().smus.insert(SmuEntry {
                agent: t.agent,
                ..e
            });
        }
        Ok(())
    })
}

/// Drop this reference; the unit is freed when no agent holds one. The
/// handle is invalid afterwards (using it again gives
/// `AGENTMEM_INVALID_HANDLE`).
#[no_mangle]
pub extern "C" fn agent_free(handle: agentmem_smu) -> agentmem_result {
    ffi(|| {
        let (m, e) = smu_entry(handle)?;
        if let Found::Live(_) = REGISTRY.lock().smus.remove(handle.opaque) {
            m.backend()?.release(e.agent, &e.id)?;
            Ok(())
        } else {
            Err(stale_handle("agentmem_smu", "agent_free"))
        }
    })
}

/// Bytes of a unit id as text: 64 hex digits and the terminating NUL.
pub const AGENTMEM_ID_LEN: usize = 65;

/// Write the unit's id, 64 hex digits and a NUL, to `out` (at least
/// `AGENTMEM_ID_LEN` bytes). Ids stay valid across a close and reopen of a
/// store directory (`agentmem_open_dir`); `agent_smu_find` turns one back
/// into a handle.
///
/// # Safety
/// `out` points to `AGENTMEM_ID_LEN` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn agent_smu_id(handle: agentmem_smu, out: *mut c_char) -> agentmem_result {
    ffi(|| {
        // SAFETY: caller contract (non-NULL checked by `c_out`).
        let out = unsafe { c_out(out, "out") }?;
        let (_, e) = smu_entry(handle)?;
        let hex = e.id.to_hex();
        debug_assert_eq!(hex.len() + 1, AGENTMEM_ID_LEN);
        // SAFETY: `out` has AGENTMEM_ID_LEN writable bytes by contract; the
        // hex text is 64 bytes, then the NUL.
        unsafe {
            let p = std::ptr::from_mut(out).cast::<u8>();
            std::ptr::copy_nonoverlapping(hex.as_ptr(), p, hex.len());
            *p.add(hex.len()) = 0;
        }
        Ok(())
    })
}

/// A handle on the unit with id `id` (as `agent_smu_id` wrote it) for
/// `agent`, which must be allowed to read it — typically a unit the agent
/// stored before its store directory was closed and reopened.
/// `agent_free` on the handle drops one of the agent's references, as for
/// the handle `agent_alloc_smu` gave. `AGENTMEM_UNKNOWN_UNIT` or
/// `AGENTMEM_ACCESS_DENIED` otherwise.
///
/// # Safety
/// `id` is a NUL-terminated string; `out` points to a writable
/// `agentmem_smu`.
#[no_mangle]
pub unsafe extern "C" fn agent_smu_find(
    agent: agentmem_agent,
    id: *const c_char,
    out: *mut agentmem_smu,
) -> agentmem_result {
    ffi(|| {
        // SAFETY: caller contract.
        let out = unsafe { c_out(out, "out") }?;
        // SAFETY: caller contract.
        let id = agentmem_backend::parse_content_id(unsafe { c_str(id, "id") }?)?;
        let (m, e) = agent_entry(agent)?;
        let size = m.backend()?.get(e.agent, &id)?.len() as u64;
        out.opaque = REGISTRY.lock().smus.insert(SmuEntry {
            ctx: e.ctx,
            agent: e.agent,
            id,
            size,
        });
        Ok(())
    })
}

/// Bring a unit to the hot tier now (it will be read soon).
#[no_mangle]
pub extern "C" fn agent_mark_hot(handle: agentmem_smu) -> agentmem_result {
    ffi(|| {
        let (m, e) = smu_entry(handle)?;
        m.backend()?.mark_hot(e.agent, &e.id)?;
        Ok(())
    })
}

// ---- conversations ------------------------------------------------------

/// Start an empty conversation owned by `agent`.
///
/// # Safety
/// `out` points to a writable `agentmem_conversation`.
#[no_mangle]
pub unsafe extern "C" fn agent_conversation_open(
    agent: agentmem_agent,
    out: *mut agentmem_conversation,
) -> agentmem_result {
    ffi(|| {
        // SAFETY: caller contract.
        let out = unsafe { c_out(out, "out") }?;
        let (m, e) = agent_entry(agent)?;
        let conv = m.backend()?.create_conversation(e.agent)?;
        out.opaque = REGISTRY.lock().convs.insert(ConvEntry {
            ctx: e.ctx,
            agent: e.agent,
            conv,
        });
        Ok(())
    })
}

/// The conversation's id: stable across a close and reopen of a store
/// directory; `agent_conversation_find` turns it back into a handle.
///
/// # Safety
/// `id` points to a writable `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn agent_conversation_id(
    conv: agentmem_conversation,
    id: *mut u32,
) -> agentmem_result {
    ffi(|| {
        // SAFETY: caller contract.
        let id = unsafe { c_out(id, "id") }?;
        let (_, e) = conv_entry(conv)?;
        *id = e.conv.0;
        Ok(())
    })
}

/// A handle on the existing conversation `id` (from
/// `agent_conversation_id`) of `agent` — typically one it kept in a store
/// directory that was closed and reopened. `AGENTMEM_UNKNOWN_CONVERSATION`
/// if there is none.
///
/// # Safety
/// `out` points to a writable `agentmem_conversation`.
#[no_mangle]
pub unsafe extern "C" fn agent_conversation_find(
    agent: agentmem_agent,
    id: u32,
    out: *mut agentmem_conversation,
) -> agentmem_result {
    ffi(|| {
        // SAFETY: caller contract.
        let out = unsafe { c_out(out, "out") }?;
        let (m, e) = agent_entry(agent)?;
        let conv = agentmem_backend::ConversationId(id);
        m.backend()?.conversation_len(conv)?;
        out.opaque = REGISTRY.lock().convs.insert(ConvEntry {
            ctx: e.ctx,
            agent: e.agent,
            conv,
        });
        Ok(())
    })
}

/// Append a message of `len` bytes; `*index` (may be NULL) receives its
/// index.
///
/// # Safety
/// `message` points to `len` readable bytes; `index` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn agent_conversation_append(
    conv: agentmem_conversation,
    message: *const c_void,
    len: usize,
    index: *mut u64,
) -> agentmem_result {
    ffi(|| {
        // SAFETY: caller contract.
        let message = unsafe { c_bytes(message.cast(), len, "message") }?;
        let (m, e) = conv_entry(conv)?;
        let i = m.backend()?.append(e.conv, message)?;
        // SAFETY: NULL checked by `as_mut`; otherwise valid by contract.
        if let Some(index) = unsafe { index.as_mut() } {
            *index = i;
        }
        Ok(())
    })
}

/// Number of messages in a conversation.
///
/// # Safety
/// `len` points to a writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn agent_conversation_len(
    conv: agentmem_conversation,
    len: *mut u64,
) -> agentmem_result {
    ffi(|| {
        // SAFETY: caller contract.
        let len = unsafe { c_out(len, "len") }?;
        let (m, e) = conv_entry(conv)?;
        *len = m.backend()?.conversation_len(e.conv)?;
        Ok(())
    })
}

/// Copy message `index` into `buf`, like `agent_read`.
///
/// # Safety
/// As `agent_read`.
#[no_mangle]
pub unsafe extern "C" fn agent_conversation_read(
    conv: agentmem_conversation,
    index: u64,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
) -> agentmem_result {
    ffi(|| {
        let (m, e) = conv_entry(conv)?;
        let b = m.backend()?;
        let msgs = b.read_messages(e.conv, index..index.saturating_add(1))?;
        let Some(msg) = msgs.first() else {
            let n = b.conversation_len(e.conv)?;
            return Err(Fail::new(
                agentmem_result::AGENTMEM_OUT_OF_RANGE,
                format!("the conversation has {n} messages; index {index} is out of range"),
            ));
        };
        // SAFETY: caller contract.
        unsafe { copy_out(msg, buf, cap, len) }
    })
}

/// Delete a conversation and invalidate its handle.
#[no_mangle]
pub extern "C" fn agent_conversation_delete(conv: agentmem_conversation) -> agentmem_result {
    ffi(|| {
        let (m, e) = conv_entry(conv)?;
        let _ = REGISTRY.lock().convs.remove(conv.opaque);
        m.backend()?.delete_conversation(e.conv)?;
        Ok(())
    })
}

// ---- messages -----------------------------------------------------------

/// A static description of a result code (never NULL).
#[no_mangle]
pub extern "C" fn agentmem_result_message(result: u32) -> *const c_char {
    use agentmem_result::*;
    let all = [
        (AGENTMEM_OK, c"success"),
        (AGENTMEM_INVALID_ARGUMENT, c"invalid argument"),
        (
            AGENTMEM_TOO_LARGE,
            c"data larger than the store's maximum unit size",
        ),
        (AGENTMEM_UNKNOWN_AGENT, c"unknown agent"),
        (
            AGENTMEM_UNKNOWN_UNIT,
            c"unknown unit (never stored or released)",
        ),
        (
            AGENTMEM_NOT_OWNER,
            c"the agent holds no reference to the unit",
        ),
        (AGENTMEM_ACCESS_DENIED, c"the agent may not read the unit"),
        (AGENTMEM_UNKNOWN_CONVERSATION, c"unknown conversation"),
        (AGENTMEM_OUT_OF_RANGE, c"message index out of range"),
        (AGENTMEM_CORRUPT, c"stored bytes are damaged"),
        (AGENTMEM_CLOSED, c"the context is closed"),
        (
            AGENTMEM_NOT_RUNNING,
            c"agentmemd is not running at the socket path",
        ),
        (AGENTMEM_IO, c"I/O error talking to agentmemd"),
        (
            AGENTMEM_PROTOCOL,
            c"agentmemd answered something unexpected",
        ),
        (AGENTMEM_INTERNAL, c"internal error"),
        (
            AGENTMEM_NO_SPACE,
            c"a filesystem the store writes to is full",
        ),
        (AGENTMEM_LIMIT_REACHED, c"a limit of agentmemd was reached"),
        (
            AGENTMEM_NULL_POINTER,
            c"a required pointer argument is NULL",
        ),
        (AGENTMEM_INVALID_HANDLE, c"invalid, freed or closed handle"),
        (
            AGENTMEM_BUFFER_TOO_SMALL,
            c"buffer too small (the size needed is in *len)",
        ),
        (
            AGENTMEM_PANIC,
            c"internal error in libagentmem (please report it)",
        ),
    ];
    all.iter()
        .find(|(r, _)| *r as u32 == result)
        .map_or(c"unknown result code".as_ptr(), |(_, m)| m.as_ptr())
}

/// The message of the last call that failed on this thread: what went
/// wrong, with which input, and what to do. Valid until the next failing
/// call on this thread; empty if none failed.
#[no_mangle]
pub extern "C" fn agentmem_last_error_message() -> *const c_char {
    boundary::last_error_ptr()
}

/// Hand memory the process has freed back to the operating system (glibc's
/// `malloc_trim`); returns 1 if any was released, else 0. Useful after
/// parking many agents.
#[no_mangle]
pub extern "C" fn agentmem_release_free_memory() -> u32 {
    std::panic::catch_unwind(agentmem_backend::release_free_memory).map_or(0, u32::from)
}

/// The library's version, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn agentmem_version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr().cast()
}
