"""agentmem for Python: agent memory that is deduplicated, compressed and tiered.

``AgentMemory`` keeps one agent's system prompt, tool definitions and
conversation in an agentmem store, so many agents in one process (or many
processes through ``agentmemd``) hold one copy of what they share::

    from agentmem import AgentMemory

    with AgentMemory("You are a careful agent.", tools=[{"name": "ls"}]) as mem:
        mem.conversation.append({"role": "user", "content": "hi"})
        messages = mem.conversation.get_context()  # ready for the model API
        print(mem.get_stats())

``Store`` is the lower-level access (agents, units, conversations, stats).
Errors are subclasses of :class:`AgentMemError`, see :mod:`agentmem.errors`.
"""

from __future__ import annotations

import itertools
import json
import os
from os import PathLike
from typing import Any, Optional, Union

from . import errors
from ._agentmem import MemStats, Store, __version__, release_free_memory
from .errors import (
    AccessDeniedError,
    AgentMemError,
    ClosedError,
    CorruptError,
    InternalError,
    InvalidArgumentError,
    NotOwnerError,
    NotRunningError,
    OutOfRangeError,
    ProtocolError,
    TooLargeError,
    TransportError,
    UnknownAgentError,
    UnknownConversationError,
    UnknownUnitError,
)

__all__ = [
    "AgentMemory",
    "Conversation",
    "Store",
    "MemStats",
    "release_free_memory",
    "errors",
    "AgentMemError",
    "AccessDeniedError",
    "ClosedError",
    "CorruptError",
    "InternalError",
    "InvalidArgumentError",
    "NotOwnerError",
    "NotRunningError",
    "OutOfRangeError",
    "ProtocolError",
    "TooLargeError",
    "TransportError",
    "UnknownAgentError",
    "UnknownConversationError",
    "UnknownUnitError",
    "__version__",
]

Message = Union[str, dict]

_serial = itertools.count()


class Conversation:
    """An agent's append-only conversation; messages are dicts."""

    def __init__(self, memory: "AgentMemory") -> None:
        self._memory = memory

    def append(self, message: Message) -> int:
        """Append a message: a dict (stored as JSON, e.g. ``{"role": "user",
        "content": "hi"}``) or a str (stored as a user message). Returns its
        index."""
        if isinstance(message, str):
            message = {"role": "user", "content": message}
        elif not isinstance(message, dict):
            raise TypeError(f"a message is a dict or a str, not {type(message).__name__}")
        m = self._memory
        return m.store.append(m._conversation, json.dumps(message, ensure_ascii=False))

    def __len__(self) -> int:
        m = self._memory
        return m.store.conversation_len(m._conversation)

    def messages(self, start: int = 0, end: Optional[int] = None) -> list[dict]:
        """Messages ``start:end`` as dicts."""
        m = self._memory
        return [_message(b) for b in m.store.read_messages(m._conversation, start, end)]

    def get_context(self, last: Optional[int] = None) -> list[dict]:
        """What to send to the model: the system message, then the last
        ``last`` messages (default: all)."""
        if last is not None and last < 0:
            raise InvalidArgumentError(f"last must be 0 or more, not {last}")
        start = 0 if last is None else max(len(self) - last, 0)
        messages = self.messages(start)
        return [{"role": "system", "content": self._memory.system_prompt}, *messages]


def _message(raw: bytes) -> dict:
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    return {"role": "user", "content": raw.decode("utf-8", errors="replace")}


class AgentMemory:
    """One agent's memory: system prompt, tools and conversation in a store.

    Without ``store`` or ``socket_path`` every ``AgentMemory`` of the
    process shares one embedded store (``Store.default()``), so agents with
    the same prompt hold one copy of it. ``name`` defaults to
    ``agent-<pid>-<n>``; with agentmemd it must be unique among the
    tenant's connected agents. A context manager: leaving the
    ``with`` block releases the agent's memory.
    """

    def __init__(
        self,
        system_prompt: str,
        tools: Any = None,
        *,
        name: Optional[str] = None,
        tenant: str = "default",
        store: Optional[Store] = None,
        socket_path: Union[str, "PathLike[str]", None] = None,
    ) -> None:
        if not isinstance(system_prompt, str):
            raise TypeError(f"system_prompt must be a str, not {type(system_prompt).__name__}")
        if store is not None and socket_path is not None:
            raise InvalidArgumentError("give a store or a socket_path, not both")
        if store is None:
            store = Store.connect(socket_path) if socket_path is not None else Store.default()
        self.store = store
        if name is None:
            # Unique in the process: agentmemd refuses a second connection
            # for a name already connected in the tenant.
            name = f"agent-{os.getpid()}-{next(_serial)}"
        self.agent_id = store.register_agent(name, tenant)
        try:
            self._prompt = store.put(self.agent_id, "system_prompt", system_prompt)
            self._tools = None
            if tools is not None:
                text = tools if isinstance(tools, str) else json.dumps(tools, ensure_ascii=False)
                self._tools = store.put(self.agent_id, "tool_defs", text)
            self._conversation = store.create_conversation(self.agent_id)
        except BaseException:
            store.release_agent(self.agent_id)
            raise
        self.conversation = Conversation(self)

    @property
    def system_prompt(self) -> str:
        """The system prompt, read back from the store."""
        return self.store.get_text(self.agent_id, self._prompt)

    @property
    def tools(self) -> Any:
        """The tool definitions (parsed JSON), or None."""
        if self._tools is None:
            return None
        return json.loads(self.store.get(self.agent_id, self._tools))

    def set_state(self, state: str) -> None:
        """"active", "waiting_for_model", "waiting_for_human",
        "running_tool", "paused" or "idle". Pausing compresses the agent's
        memory; "active" brings it back first."""
        self.store.set_state(self.agent_id, state)

    def get_stats(self) -> MemStats:
        """The store's summary figures."""
        return self.store.stats()

    def release(self) -> None:
        """Release the agent's memory; the object is unusable afterwards."""
        self.store.release_agent(self.agent_id)

    def __enter__(self) -> "AgentMemory":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.store.closed:
            self.release()

    def __repr__(self) -> str:
        return f"<AgentMemory agent={self.agent_id} store={self.store!r}>"
