//! # agentmem for Python
//!
//! The native module `agentmem._agentmem`: a [`Store`] class over the
//! agentmem backend (embedded store or agentmemd). The pythonic layer —
//! `AgentMemory`, conversations as lists of dicts, context managers — is in
//! `python/agentmem/__init__.py`; the exceptions, one subclass per error
//! kind, are in `python/agentmem/errors.py`, and this module raises them by
//! their stable code.
//!
//! Every store call runs with the GIL released, so Python threads using one
//! store run in parallel.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agentmem_backend::{
    parse_content_id, parse_kind, parse_state, AgentId, Backend, ConversationId, EmbeddedOptions,
    Error, Memory, Visibility,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString, PyType};

/// Raise `e` as the `agentmem.errors` class of its kind.
fn raise(py: Python<'_>, e: Error) -> PyErr {
    let code = e.kind().code();
    let message = e.to_string();
    let class = py
        .import("agentmem.errors")
        .and_then(|m| m.getattr("BY_CODE"))
        .and_then(|d| d.get_item(code))
        .and_then(|c| Ok(c.downcast_into::<PyType>()?));
    match class {
        Ok(class) => PyErr::from_type(class, message),
        Err(import_failed) => import_failed,
    }
}

/// Bytes of a `bytes`, `bytearray` or `str` (UTF-8) argument.
fn data_of(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    if let Ok(b) = value.downcast::<PyBytes>() {
        Ok(b.as_bytes().to_vec())
    } else if let Ok(s) = value.downcast::<PyString>() {
        Ok(s.to_str()?.as_bytes().to_vec())
    } else if let Ok(b) = value.downcast::<PyByteArray>() {
        Ok(b.to_vec())
    } else {
        Err(PyTypeError::new_err(format!(
            "{what} must be bytes, bytearray or str, not {}",
            value.get_type().name()?
        )))
    }
}

/// The process's default embedded store, shared by every `AgentMemory`
/// made without a store or socket path; made again if it was closed.
static DEFAULT_STORE: Mutex<Option<Memory>> = Mutex::new(None);

fn connect_daemon(path: &str) -> Result<Memory, Error> {
    Memory::connect(path)
}

/// The seed's `agent_mem_stats` figures.
#[pyclass(frozen, get_all, module = "agentmem._agentmem")]
#[derive(Debug, Clone)]
struct MemStats {
    /// Bytes the agents have stored, as they see them (every reference).
    total_allocated: u64,
    /// Bytes not stored thanks to deduplication.
    total_deduplicated: u64,
    /// Plain bytes of distinct units over bytes held.
    compression_ratio: f64,
    /// Bytes held in the hot tier.
    hot_bytes: u64,
    /// Bytes held in the warm tier.
    warm_bytes: u64,
    /// Bytes held in the cold tier.
    cold_bytes: u64,
    /// "embedded" or "daemon".
    backend: String,
}

#[pymethods]
impl MemStats {
    /// The figures as a dict.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let d = pyo3::types::PyDict::new(py);
        d.set_item("total_allocated", self.total_allocated)?;
        d.set_item("total_deduplicated", self.total_deduplicated)?;
        d.set_item("compression_ratio", self.compression_ratio)?;
        d.set_item("hot_bytes", self.hot_bytes)?;
        d.set_item("warm_bytes", self.warm_bytes)?;
        d.set_item("cold_bytes", self.cold_bytes)?;
        d.set_item("backend", &self.backend)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "MemStats(total_allocated={}, total_deduplicated={}, compression_ratio={:.3}, \
             hot_bytes={}, warm_bytes={}, cold_bytes={}, backend={:?})",
            self.total_allocated,
            self.total_deduplicated,
            self.compression_ratio,
            self.hot_bytes,
            self.warm_bytes,
            self.cold_bytes,
            self.backend
        )
    }
}

/// An agentmem store: embedded in this process (`Store.embedded()`) or
/// agentmemd over its Unix socket (`Store.connect(path)`). A context
/// manager: leaving the `with` block closes it.
#[pyclass(frozen, module = "agentmem._agentmem")]
#[derive(Debug)]
struct Store {
    mem: Memory,
}

impl Store {
    /// Run `f` on the backend with the GIL released.
    fn call<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&dyn Backend) -> Result<T, Error> + Send,
    ) -> PyResult<T> {
        let mem = &self.mem;
        py.allow_threads(|| {
            let b: Arc<dyn Backend> = mem.backend()?;
            f(&*b)
        })
        .map_err(|e| raise(py, e))
    }
}

#[pymethods]
impl Store {
    /// A new embedded store in this process. Sizes in bytes; `None` means
    /// the default (RAM budget 256 MiB, hot budget chosen by the store,
    /// largest unit 1 GiB). With `path`, the store lives in that directory
    /// (created if missing): what was written there and closed comes back
    /// on the next open, and `register_agent` with a restored agent's name
    /// and tenant returns that agent. The directory is locked while open
    /// (a second open raises `TransportError`). Default: RAM only.
    #[staticmethod]
    #[pyo3(signature = (path=None, *, ram_budget=None, hot_budget=None, max_unit_size=None))]
    fn embedded(
        py: Python<'_>,
        path: Option<PathBuf>,
        ram_budget: Option<u64>,
        hot_budget: Option<u64>,
        max_unit_size: Option<u64>,
    ) -> PyResult<Store> {
        let d = EmbeddedOptions::default();
        for (v, what) in [
            (ram_budget, "ram_budget"),
            (hot_budget, "hot_budget"),
            (max_unit_size, "max_unit_size"),
        ] {
            if v == Some(0) {
                return Err(raise(
                    py,
                    Error::InvalidArgument(format!("{what} must be positive")),
                ));
            }
        }
        let opts = EmbeddedOptions {
            ram_budget: ram_budget.unwrap_or(d.ram_budget),
            hot_budget,
            max_unit_size: max_unit_size.unwrap_or(d.max_unit_size),
            dir: path,
        };
        let mem = py
            .allow_threads(|| Memory::embedded(&opts))
            .map_err(|e| raise(py, e))?;
        Ok(Store { mem })
    }

    /// The process's default embedded store (the one `AgentMemory` uses
    /// when given neither a store nor a socket path).
    #[staticmethod]
    fn default(py: Python<'_>) -> PyResult<Store> {
        let mut slot = DEFAULT_STORE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = slot.as_ref().filter(|m| !m.is_closed()) {
            return Ok(Store { mem: m.clone() });
        }
        let m = Memory::embedded(&EmbeddedOptions::default()).map_err(|e| raise(py, e))?;
        *slot = Some(m.clone());
        Ok(Store { mem: m })
    }

    /// agentmemd at a Unix socket path. Raises `NotRunningError` if no
    /// daemon listens there.
    #[staticmethod]
    fn connect(py: Python<'_>, socket_path: PathBuf) -> PyResult<Store> {
        let path = socket_path.to_string_lossy().into_owned();
        let mem = py
            .allow_threads(|| connect_daemon(&path))
            .map_err(|e| raise(py, e))?;
        Ok(Store { mem })
    }

    /// "embedded" or "daemon".
    #[getter]
    fn backend(&self, py: Python<'_>) -> PyResult<&'static str> {
        self.call(py, |b| Ok(b.name()))
    }

    /// Register an agent; returns its id.
    #[pyo3(signature = (name, tenant="default", importance=50))]
    fn register_agent(
        &self,
        py: Python<'_>,
        name: &str,
        tenant: &str,
        importance: u8,
    ) -> PyResult<u32> {
        self.call(py, |b| b.register_agent(name, tenant, importance))
            .map(|a| a.0)
    }

    /// Release everything an agent holds and forget it.
    fn release_agent(&self, py: Python<'_>, agent: u32) -> PyResult<()> {
        self.call(py, |b| b.release_agent(AgentId(agent)))
    }

    /// Set an agent's state: "active", "waiting_for_model",
    /// "waiting_for_human", "running_tool", "paused" or "idle".
    fn set_state(&self, py: Python<'_>, agent: u32, state: &str) -> PyResult<()> {
        let st = parse_state(state).map_err(|e| raise(py, e))?;
        self.call(py, |b| b.set_state(AgentId(agent), st))
    }

    /// Store data (bytes or str) for an agent; returns the unit id (64 hex
    /// digits). `kind`: "system_prompt", "tool_defs", "conversation",
    /// "tool_result" or "blob".
    #[pyo3(signature = (agent, kind, data, *, public=false))]
    fn put(
        &self,
        py: Python<'_>,
        agent: u32,
        kind: &str,
        data: &Bound<'_, PyAny>,
        public: bool,
    ) -> PyResult<String> {
        let kind = parse_kind(kind).map_err(|e| raise(py, e))?;
        let data = data_of(data, "data")?;
        let vis = if public {
            Visibility::Public
        } else {
            Visibility::Private
        };
        self.call(py, |b| b.put(AgentId(agent), kind, &data, vis))
            .map(|id| id.to_hex())
    }

    /// Read a unit on behalf of an agent.
    fn get<'py>(
        &self,
        py: Python<'py>,
        agent: u32,
        unit_id: &str,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let id = parse_content_id(unit_id).map_err(|e| raise(py, e))?;
        let data = self.call(py, |b| b.get(AgentId(agent), &id))?;
        Ok(PyBytes::new(py, &data))
    }

    /// Read a unit on behalf of an agent, as text (UTF-8).
    fn get_text(&self, py: Python<'_>, agent: u32, unit_id: &str) -> PyResult<String> {
        let id = parse_content_id(unit_id).map_err(|e| raise(py, e))?;
        let data = self.call(py, |b| b.get(AgentId(agent), &id))?;
        String::from_utf8(data.to_vec()).map_err(|_| {
            raise(
                py,
                Error::InvalidArgument("the unit is not UTF-8 text: read it with get()".into()),
            )
        })
    }

    /// Give agent `to_agent` a reference to a unit `from_agent` holds.
    fn share(&self, py: Python<'_>, from_agent: u32, unit_id: &str, to_agent: u32) -> PyResult<()> {
        let id = parse_content_id(unit_id).map_err(|e| raise(py, e))?;
        self.call(py, |b| b.share(AgentId(from_agent), &id, AgentId(to_agent)))
    }

    /// Drop one of an agent's references to a unit.
    fn release(&self, py: Python<'_>, agent: u32, unit_id: &str) -> PyResult<()> {
        let id = parse_content_id(unit_id).map_err(|e| raise(py, e))?;
        self.call(py, |b| b.release(AgentId(agent), &id))
    }

    /// Bring a unit to the hot tier now.
    fn mark_hot(&self, py: Python<'_>, agent: u32, unit_id: &str) -> PyResult<()> {
        let id = parse_content_id(unit_id).map_err(|e| raise(py, e))?;
        self.call(py, |b| b.mark_hot(AgentId(agent), &id))
    }

    /// Start a conversation owned by an agent; returns its id.
    fn create_conversation(&self, py: Python<'_>, agent: u32) -> PyResult<u32> {
        self.call(py, |b| b.create_conversation(AgentId(agent)))
            .map(|c| c.0)
    }

    /// A new conversation owned by `agent` holding the first `at` messages
    /// of `conversation`; returns its id. The embedded store shares the
    /// parent's sealed chunks instead of copying them. Raises
    /// `OutOfRangeError` if `at` is past the end.
    fn fork_conversation(
        &self,
        py: Python<'_>,
        agent: u32,
        conversation: u32,
        at: u64,
    ) -> PyResult<u32> {
        self.call(py, |b| {
            b.fork_conversation(AgentId(agent), ConversationId(conversation), at)
        })
        .map(|c| c.0)
    }

    /// Delete a conversation.
    fn delete_conversation(&self, py: Python<'_>, conversation: u32) -> PyResult<()> {
        self.call(py, |b| b.delete_conversation(ConversationId(conversation)))
    }

    /// Append a message (bytes or str); returns its index.
    fn append(
        &self,
        py: Python<'_>,
        conversation: u32,
        message: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let message = data_of(message, "message")?;
        self.call(py, |b| b.append(ConversationId(conversation), &message))
    }

    /// Number of messages in a conversation.
    fn conversation_len(&self, py: Python<'_>, conversation: u32) -> PyResult<u64> {
        self.call(py, |b| b.conversation_len(ConversationId(conversation)))
    }

    /// Messages `start:end` of a conversation (default: all).
    #[pyo3(signature = (conversation, start=0, end=None))]
    fn read_messages<'py>(
        &self,
        py: Python<'py>,
        conversation: u32,
        start: u64,
        end: Option<u64>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let msgs = self.call(py, |b| {
            b.read_messages(ConversationId(conversation), start..end.unwrap_or(u64::MAX))
        })?;
        Ok(msgs.iter().map(|m| PyBytes::new(py, m)).collect())
    }

    /// The store's summary figures.
    fn stats(&self, py: Python<'_>) -> PyResult<MemStats> {
        let (s, name) = self.call(py, |b| Ok((b.mem_stats()?, b.name())))?;
        Ok(MemStats {
            total_allocated: s.total_allocated,
            total_deduplicated: s.total_deduplicated,
            compression_ratio: s.compression_ratio,
            hot_bytes: s.hot_bytes,
            warm_bytes: s.warm_bytes,
            cold_bytes: s.cold_bytes,
            backend: name.to_string(),
        })
    }

    /// Close the store; later calls raise `ClosedError`. A store in a
    /// directory is checkpointed first; if that fails this raises
    /// (`TransportError`) and the store is closed all the same. Closing
    /// twice is harmless.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let mem = self.mem.clone();
        py.allow_threads(move || mem.close())
            .map_err(|e| raise(py, e))
    }

    /// Whether `close()` ran.
    #[getter]
    fn closed(&self) -> bool {
        self.mem.is_closed()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        match self.mem.backend() {
            Ok(b) => format!("<agentmem.Store {}>", b.name()),
            Err(_) => "<agentmem.Store closed>".into(),
        }
    }
}

/// Hand memory the process has freed back to the operating system
/// (glibc's `malloc_trim`); returns whether any was released. Useful after
/// parking many agents.
#[pyfunction]
fn release_free_memory(py: Python<'_>) -> bool {
    py.allow_threads(agentmem_backend::release_free_memory)
}

/// The native part of the `agentmem` package.
#[pymodule]
fn _agentmem(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Store>()?;
    m.add_class::<MemStats>()?;
    m.add_function(wrap_pyfunction!(release_free_memory, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
