"""agentmem as an OpenAI Agents SDK session (conversation history).

``AgentmemSession`` follows the SDK's ``Session`` protocol (``get_items``,
``add_items``, ``pop_item``, ``clear_session``, all async)::

    from agents import Agent, Runner
    from agentmem.openai_agents import AgentmemSession

    session = AgentmemSession("user-42")
    result = await Runner.run(agent, "hi", session=session)

A session is an agentmem agent (``openai-agents/<session id>/<n>``) holding
one conversation; every item is one message (JSON), so sessions share the
store's deduplication, compression and tiering. Without ``store`` or
``socket_path``, sessions use the process's default embedded store
(``agentmem.Store.default()``); two ``AgentmemSession`` objects with the same
id on the same store see the same history, as with ``SQLiteSession`` on one
file. ``pause()`` parks the session's agent (its history moves to the
compressed tier) until the next call.
"""

from __future__ import annotations

import json
import os
import random
import threading
from typing import Any, Optional, Union

try:
    from agents.memory.session import SessionABC
    from agents.memory.session_settings import SessionSettings, resolve_session_limit
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        "agentmem.openai_agents needs the OpenAI Agents SDK: pip install 'agentmem[openai-agents]'"
    ) from e

from . import Store

__all__ = ["AgentmemSession"]

# (store identity, session id) -> [agent, conversation, state]
_SESSIONS: dict[tuple[int, str], list] = {}
_LOCK = threading.Lock()


class AgentmemSession(SessionABC):
    """The conversation history of one Agents SDK session, in agentmem.

    ``session_settings.limit`` (or ``limit=`` of ``get_items``) returns only
    the latest items. ``tenant`` names the tenant of the session's agent.
    """

    def __init__(
        self,
        session_id: str,
        *,
        store: Optional[Store] = None,
        socket_path: Union[str, "os.PathLike[str]", None] = None,
        tenant: str = "default",
        session_settings: Optional[SessionSettings] = None,
    ) -> None:
        if store is not None and socket_path is not None:
            raise ValueError("give a store or a socket_path, not both")
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("session_id must be a non-empty str")
        self.session_id = session_id
        self.session_settings = session_settings
        if store is None:
            store = Store.connect(os.fspath(socket_path)) if socket_path is not None else Store.default()
        self.store = store
        self.tenant = tenant
        self._key = (id(store), session_id)

    def _agent_name(self) -> str:
        # A fresh name per agent: agentmemd re-attaches a released agent
        # that registers again under its name within its grace time.
        return f"openai-agents/{self.session_id}/{random.getrandbits(48):012x}"

    def _slot(self, create: bool) -> Optional[list]:
        slot = _SESSIONS.get(self._key)
        if slot is None and create:
            agent = self.store.register_agent(self._agent_name(), self.tenant)
            try:
                conv = self.store.create_conversation(agent)
            except BaseException:
                self.store.release_agent(agent)
                raise
            slot = _SESSIONS[self._key] = [agent, conv, "active"]
        if slot is not None and slot[2] != "active":
            self.store.set_state(slot[0], "active")
            slot[2] = "active"
        return slot

    def _get_items(self, limit: Optional[int]) -> list[Any]:
        with _LOCK:
            slot = self._slot(create=False)
            if slot is None:
                return []
            n = self.store.conversation_len(slot[1])
            if limit is None or limit < 0:
                start = 0
            elif limit == 0:
                return []
            else:
                start = max(n - limit, 0)
            return [json.loads(m) for m in self.store.read_messages(slot[1], start, n)]

    async def get_items(self, limit: Optional[int] = None) -> list[Any]:
        """The history, oldest first; with ``limit``, only the latest
        ``limit`` items (``0``: none; negative: all)."""
        return self._get_items(resolve_session_limit(limit, self.session_settings))

    async def add_items(self, items: list[Any]) -> None:
        """Append items (JSON-serializable dicts, as the SDK gives them).
        Nothing is stored if one of them cannot be serialized."""
        try:
            encoded = [json.dumps(item, ensure_ascii=False, separators=(",", ":")) for item in items]
        except (TypeError, ValueError) as e:
            raise TypeError(f"session items must be JSON-serializable: {e}") from e
        if not encoded:
            return
        with _LOCK:
            slot = self._slot(create=True)
            for m in encoded:
                self.store.append(slot[1], m)

    async def pop_item(self) -> Optional[Any]:
        """Remove and return the latest item (``None`` if there is none).
        Conversations only grow, so the history moves to a new agent holding
        a fork of all but the last item, and the old agent is released."""
        with _LOCK:
            slot = self._slot(create=False)
            if slot is None:
                return None
            n = self.store.conversation_len(slot[1])
            if n == 0:
                return None
            last = json.loads(self.store.read_messages(slot[1], n - 1, n)[0])
            agent = self.store.register_agent(self._agent_name(), self.tenant)
            try:
                conv = self.store.fork_conversation(agent, slot[1], n - 1)
            except BaseException:
                self.store.release_agent(agent)
                raise
            old = slot[0]
            slot[0], slot[1] = agent, conv
            self.store.release_agent(old)
            return last

    async def clear_session(self) -> None:
        """Forget the history (the session's agent is released)."""
        with _LOCK:
            slot = _SESSIONS.pop(self._key, None)
            if slot is not None:
                self.store.release_agent(slot[0])

    def pause(self) -> None:
        """Park the session's agent until its next use."""
        with _LOCK:
            slot = _SESSIONS.get(self._key)
            if slot is not None and slot[2] != "paused":
                self.store.set_state(slot[0], "paused")
                slot[2] = "paused"
