"""agentmem as LangGraph's memory: a checkpointer and a long-term store.

``AgentmemSaver`` is a LangGraph ``BaseCheckpointSaver``::

    from agentmem.langgraph import AgentmemSaver
    graph = builder.compile(checkpointer=AgentmemSaver())

``AgentmemSaver()`` keeps everything in an embedded in-RAM store, like
``InMemorySaver()``; ``AgentmemSaver.open(path)`` in a directory (what was
put comes back after a reopen); ``AgentmemSaver.connect(socket)`` in
agentmemd. ``AgentmemStore`` is LangGraph's ``BaseStore`` (long-term memory).

How a thread is stored
----------------------
Each thread is an agentmem *agent* with a *log*: an append-only agentmem
conversation of records, one per ``put`` (the checkpoint without its channel
values, its metadata, and a reference per channel) and one per
``put_writes`` write. Only what changed is written:

* a channel named in ``conversation_channels`` (default ``messages``) whose
  value is a list that grows is an agentmem conversation, one message per
  item; a checkpoint refers to a prefix length of it. A value that is not an
  extension of the stored one (a message removed or edited, time travel)
  forks the conversation where they part, sharing the common prefix;
* other channel values are serialized with the saver's ``serde``: up to
  ``inline_limit`` bytes they live in the record itself, larger ones are
  agentmem units (content-addressed, so equal values are stored once);
* a channel whose version did not change is not written again: the record
  refers to what the earlier one stored.

Records, messages and units are compressed and tiered by the store. The
saver keeps in Python only, per thread, the latest checkpoint id and log
position per namespace and a 64-bit hash per stored message (to see whether
a list grew), so its resident cost does not grow with the checkpoints.

A thread's agent is registered on its first ``put`` and set ``active`` by
every ``put``, ``put_writes`` and ``get_tuple``. ``pause_thread`` parks it
(its data is demoted to the compressed tiers, and spilled to disk if the
store has a directory), ``idle_thread`` marks it idle; the next access makes
it active again. ``delete_thread`` releases the agent.
"""

from __future__ import annotations

import os
import random
import threading
from array import array
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, Optional, Union

try:
    import ormsgpack
    from langchain_core.messages import BaseMessage
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        SerializerProtocol,
        get_checkpoint_id,
        get_checkpoint_metadata,
        writes_sort_key,
    )
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        "agentmem.langgraph needs LangGraph: pip install 'agentmem[langgraph]'"
    ) from e

from . import Store

__all__ = ["AgentmemSaver", "AgentmemStore"]

PathLike = Union[str, "os.PathLike[str]"]

# Record tags (first field of every log record).
_CP = 0  # a checkpoint
_WR = 1  # one pending write
# Reference kinds (second field of a channel reference).
_EMPTY = 0  # the channel had no value at that version
_INLINE = 1  # (version, _INLINE, type, bytes)
_UNIT = 2  # (version, _UNIT, type, unit id hex, owned)
_CONV = 3  # (version, _CONV, conversation id, length)
_SLICE = 4  # (_SLICE, conversation id, start, count, was a list): messages
_DICT = 5  # (version, _DICT, type, bytes, key, slice): a dict with messages

_CATALOG_FILE = "langgraph-saver.catalog"


def _pack(record: Any) -> bytes:
    return ormsgpack.packb(record)


def _unpack(raw: bytes) -> list:
    return ormsgpack.unpackb(raw)


class _Conv:
    """A conversation the saver appends to, with a hash per message (to see
    whether a new list value extends it without reading it back)."""

    __slots__ = ("id", "hashes")

    def __init__(self, conv_id: int, hashes: Optional[array] = None) -> None:
        self.id = conv_id
        self.hashes = hashes  # None until needed after a reopen


class _Thread:
    """What the saver keeps in Python for one thread."""

    __slots__ = ("name", "agent", "log", "log_len", "state", "heads", "convs", "last", "stray")

    def __init__(self, name: str, agent: int, log: int) -> None:
        self.name = name
        self.agent = agent
        self.log = log
        self.log_len = 0
        self.state = "active"
        # namespace -> (latest checkpoint id, its log index)
        self.heads: dict[str, tuple[str, int]] = {}
        # (namespace, channel) -> the conversation last appended to
        self.convs: dict[tuple[str, str], _Conv] = {}
        # namespace -> (id, channel references) of the last checkpoint put
        self.last: dict[str, tuple[str, dict]] = {}
        # (namespace, checkpoint id) that got writes while not the head
        self.stray: set[tuple[str, str]] = set()


class AgentmemSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer over an agentmem store (see the module doc).

    ``AgentmemSaver()`` opens a fresh embedded in-RAM store; pass ``store``
    to use an existing :class:`agentmem.Store`, or use :meth:`open` (a
    directory) and :meth:`connect` (agentmemd). ``tenant`` names the tenant
    the threads' agents belong to. ``conversation_channels``: the channels
    stored as conversations when their value is a list. ``inline_limit``:
    serialized values up to this many bytes stay in the log record.
    """

    def __init__(
        self,
        *,
        store: Optional[Store] = None,
        serde: Optional[SerializerProtocol] = None,
        tenant: str = "default",
        conversation_channels: Iterable[str] = ("messages",),
        inline_limit: int = 256,
        _catalog_path: Optional[str] = None,
    ) -> None:
        super().__init__(serde=serde)
        self._owns_store = store is None
        self.store = store if store is not None else Store.embedded()
        self.tenant = tenant
        self.conversation_channels = frozenset(conversation_channels)
        self.inline_limit = inline_limit
        self._threads: dict[str, _Thread] = {}
        self._lock = threading.RLock()
        self._catalog: Optional[tuple[int, int]] = None  # (agent, conversation)
        self._catalog_path = _catalog_path
        if _catalog_path is not None:
            self._open_catalog(_catalog_path)

    # ---- constructors -------------------------------------------------

    @classmethod
    def open(cls, path: PathLike, **kwargs: Any) -> "AgentmemSaver":
        """A saver over an embedded store in directory ``path`` (created if
        missing). Threads put there come back when it is opened again."""
        path = os.fspath(path)
        store_kwargs = {k: kwargs.pop(k) for k in ("ram_budget", "hot_budget") if k in kwargs}
        store = Store.embedded(path, **store_kwargs)
        saver = cls(store=store, _catalog_path=os.path.join(path, _CATALOG_FILE), **kwargs)
        saver._owns_store = True
        return saver

    @classmethod
    def connect(cls, socket_path: PathLike, **kwargs: Any) -> "AgentmemSaver":
        """A saver over agentmemd at ``socket_path``; each thread is one of
        its agents (one connection each). Raises ``NotRunningError`` if no
        daemon listens there."""
        saver = cls(store=Store.connect(os.fspath(socket_path)), **kwargs)
        saver._owns_store = True
        return saver

    def close(self) -> None:
        """Close the store if the saver opened it (a directory store is
        checkpointed first)."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> "AgentmemSaver":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "AgentmemSaver":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    # ---- thread states -------------------------------------------------

    def pause_thread(self, thread_id: str) -> None:
        """Park a thread's agent: its data moves to the compressed tiers
        until the thread is used again. Unknown threads are ignored."""
        self._set_state(thread_id, "paused")

    def idle_thread(self, thread_id: str) -> None:
        """Mark a thread's agent idle (a hint that it may be demoted)."""
        self._set_state(thread_id, "idle")

    def _set_state(self, thread_id: str, state: str) -> None:
        with self._lock:
            t = self._threads.get(str(thread_id))
            if t is not None and t.state != state:
                self.store.set_state(t.agent, state)
                t.state = state

    def _touch(self, t: _Thread) -> None:
        if t.state != "active":
            self.store.set_state(t.agent, "active")
            t.state = "active"

    # ---- catalog (threads of a directory store) -------------------------

    def _open_catalog(self, path: str) -> None:
        if os.path.exists(path):
            with open(path) as f:
                name, conv = f.read().split()
            agent = self.store.register_agent(name, self.tenant)
            self._catalog = (agent, int(conv))
            live: dict[str, tuple[str, int]] = {}
            for raw in self.store.read_messages(int(conv)):
                rec = _unpack(raw)
                if rec[0] == "t":
                    live[rec[1]] = (rec[2], rec[3])
                else:
                    live.pop(rec[1], None)
            for thread_id, (name, log) in live.items():
                t = _Thread(name, self.store.register_agent(name, self.tenant), log)
                self._load(thread_id, t)
                self._threads[thread_id] = t
            return
        name = f"langgraph-catalog-{random.getrandbits(48):012x}"
        agent = self.store.register_agent(name, self.tenant)
        conv = self.store.create_conversation(agent)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{name} {conv}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._catalog = (agent, conv)

    def _catalog_note(self, record: list) -> None:
        if self._catalog is not None:
            self.store.append(self._catalog[1], _pack(record))

    def _load(self, thread_id: str, t: _Thread) -> None:
        """Rebuild a reopened thread's Python side from its log."""
        records = self.store.read_messages(t.log)
        t.log_len = len(records)
        t.state = "restored"  # the first use sets it active
        for i, raw in enumerate(records):
            rec = _unpack(raw)
            if rec[0] == _CP:
                self._note_checkpoint(t, rec, i)
                t.stray.discard((rec[1], rec[2]))
            else:
                head = t.heads.get(rec[1])
                if head is None or head[0] != rec[2]:
                    t.stray.add((rec[1], rec[2]))

    # ---- threads ---------------------------------------------------------

    def _thread(self, thread_id: str, create: bool) -> Optional[_Thread]:
        t = self._threads.get(thread_id)
        if t is None and create:
            name = f"langgraph-{random.getrandbits(48):012x}"
            agent = self.store.register_agent(name, self.tenant)
            try:
                log = self.store.create_conversation(agent)
                self._catalog_note(["t", thread_id, name, log])
            except BaseException:
                self.store.release_agent(agent)
                raise
            t = _Thread(name, agent, log)
            self._threads[thread_id] = t
        return t

    def _append(self, t: _Thread, record: list) -> int:
        i = self.store.append(t.log, _pack(record))
        t.log_len = i + 1
        return i

    @staticmethod
    def _note_checkpoint(t: _Thread, rec: list, index: int) -> None:
        ns, cp_id, refs = rec[1], rec[2], rec[8]
        head = t.heads.get(ns)
        if head is None or cp_id >= head[0]:
            t.heads[ns] = (cp_id, index)
        t.last[ns] = (cp_id, refs)
        for ch, ref in refs.items():
            if ref[1] == _CONV:
                cur = t.convs.get((ns, ch))
                if cur is None or cur.id != ref[2]:
                    t.convs[(ns, ch)] = _Conv(ref[2])

    # ---- values ------------------------------------------------------------

    def _dump(self, value: Any) -> tuple[str, bytes]:
        try:
            return self.serde.dumps_typed(value)
        except Exception as e:
            raise TypeError(
                f"cannot serialize a value of type {type(value).__name__} for the checkpoint: {e}"
            ) from e

    def _store_value(self, t: _Thread, typed: tuple[str, bytes]) -> tuple:
        """(kind, ...) of a serialized value: inline or a unit (owned)."""
        typ, data = typed
        if len(data) <= self.inline_limit:
            return (_INLINE, typ, data)
        return (_UNIT, typ, self.store.put(t.agent, "blob", data), True)

    def _load_value(self, t: _Thread, ref: Sequence) -> Any:
        if ref[0] == _INLINE:
            return self.serde.loads_typed((ref[1], ref[2]))
        if ref[0] == _SLICE:
            items = self._load_list(ref[1], ref[2] + ref[3], ref[2])
            return items if ref[4] else items[0]
        return self.serde.loads_typed((ref[1], self.store.get(t.agent, ref[2])))

    def _conv_hashes(self, c: _Conv) -> array:
        if c.hashes is None:
            c.hashes = array("q", (hash(m) for m in self.store.read_messages(c.id)))
        return c.hashes

    def _store_list(self, t: _Thread, ns: str, channel: str, encoded: list[bytes]) -> tuple[int, int]:
        """Store a list value (its items encoded) as a conversation prefix;
        (conversation, length)."""
        hashes = [hash(m) for m in encoded]
        c = t.convs.get((ns, channel))
        if c is not None:
            old = self._conv_hashes(c)
            p = 0
            n = min(len(old), len(hashes))
            while p < n and old[p] == hashes[p]:
                p += 1
            if p < len(old):
                # The value parts from the stored one at p: fork there.
                c = _Conv(self.store.fork_conversation(t.agent, c.id, p), array("q", old[:p]))
        else:
            c = _Conv(self.store.create_conversation(t.agent), array("q"))
            p = 0
        for m, h in zip(encoded[p:], hashes[p:]):
            self.store.append(c.id, m)
            c.hashes.append(h)
        t.convs[(ns, channel)] = c
        return c.id, len(encoded)

    def _load_list(self, conv: int, length: int, start: int = 0) -> list:
        out = []
        for m in self.store.read_messages(conv, start, length):
            typ, _, data = bytes(m).partition(b"\0")
            out.append(self.serde.loads_typed((typ.decode(), data)))
        return out

    def _channel_values(self, t: _Thread, refs: dict) -> dict[str, Any]:
        values = {}
        for ch, ref in refs.items():
            kind = ref[1]
            if kind == _EMPTY:
                continue
            if kind == _CONV:
                values[ch] = self._load_list(ref[2], ref[3])
            elif kind == _DICT:
                value = self.serde.loads_typed((ref[2], ref[3]))
                value[ref[4]] = self._load_value(t, ref[5])
                values[ch] = value
            else:
                values[ch] = self._load_value(t, ref[1:])
        return values

    # ---- reading the log ---------------------------------------------------

    def _records(self, t: _Thread, start: int = 0) -> list[list]:
        return [_unpack(r) for r in self.store.read_messages(t.log, start, t.log_len)]

    @staticmethod
    def _index(records: list[list], start: int = 0) -> tuple[dict, dict]:
        """(checkpoints, writes): (ns, id) -> (index, record) (the last put
        of an id wins) and (ns, id) -> {(task, idx): record} (a write with
        idx >= 0 is kept from its first put, special ones from their last)."""
        cps: dict[tuple[str, str], tuple[int, list]] = {}
        writes: dict[tuple[str, str], dict] = {}
        for i, rec in enumerate(records, start):
            key = (rec[1], rec[2])
            if rec[0] == _CP:
                cps[key] = (i, rec)
            else:
                w = writes.setdefault(key, {})
                k = (rec[3], rec[5])
                if k[1] >= 0 and k in w:
                    continue
                w[k] = rec
        return cps, writes

    def _pending(self, t: _Thread, ws: Optional[dict]) -> list[tuple[str, str, Any]]:
        if not ws:
            return []
        ordered = sorted(ws.items(), key=lambda kv: writes_sort_key(kv[1][4], *kv[0]))
        return [(rec[3], rec[6], self._load_value(t, rec[7])) for _, rec in ordered]

    def _tuple(self, thread_id: str, t: _Thread, rec: list, ws: Optional[dict]) -> CheckpointTuple:
        ns, cp_id, parent = rec[1], rec[2], rec[3]
        checkpoint = self.serde.loads_typed((rec[4], rec[5]))
        checkpoint["channel_values"] = self._channel_values(t, rec[8])
        return CheckpointTuple(
            config={"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cp_id}},
            checkpoint=checkpoint,
            metadata=self.serde.loads_typed((rec[6], rec[7])),
            parent_config=(
                {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": parent}}
                if parent
                else None
            ),
            pending_writes=self._pending(t, ws),
        )

    # ---- BaseCheckpointSaver -----------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> Optional[CheckpointTuple]:
        """The checkpoint ``config`` names (``checkpoint_id``), or the
        thread's latest in its namespace; ``None`` if there is none."""
        thread_id = str(config["configurable"]["thread_id"])
        ns = config["configurable"].get("checkpoint_ns", "")
        cp_id = get_checkpoint_id(config)
        with self._lock:
            t = self._thread(thread_id, create=False)
            if t is None:
                return None
            head = t.heads.get(ns)
            if head is None:
                return None
            self._touch(t)
            if (cp_id is None or cp_id == head[0]) and (ns, head[0]) not in t.stray:
                # The head and its writes are at its log index onwards.
                cps, writes = self._index(self._records(t, head[1]), head[1])
                hit = cps.get((ns, head[0]))
                if hit is not None:
                    return self._tuple(thread_id, t, hit[1], writes.get((ns, head[0])))
            cps, writes = self._index(self._records(t))
            target = cp_id if cp_id is not None else head[0]
            hit = cps.get((ns, target))
            if hit is None:
                return None
            return self._tuple(thread_id, t, hit[1], writes.get((ns, target)))

    def list(
        self,
        config: Optional[RunnableConfig],
        *,
        filter: Optional[dict[str, Any]] = None,
        before: Optional[RunnableConfig] = None,
        limit: Optional[int] = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints, newest first per thread and namespace, matching
        ``config`` (thread, namespace, id), ``filter`` (metadata equality),
        ``before`` (ids below its checkpoint id), at most ``limit``."""
        with self._lock:
            if config is not None:
                thread_ids = [str(config["configurable"]["thread_id"])]
                want_ns = config["configurable"].get("checkpoint_ns")
                want_id = get_checkpoint_id(config)
            else:
                thread_ids = list(self._threads)
                want_ns = want_id = None
            before_id = get_checkpoint_id(before) if before else None
            out: list[CheckpointTuple] = []
            for thread_id in thread_ids:
                t = self._threads.get(thread_id)
                if t is None:
                    continue
                cps, writes = self._index(self._records(t))
                by_ns: dict[str, list] = {}
                for (ns, cp_id), (_, rec) in cps.items():
                    by_ns.setdefault(ns, []).append(rec)
                for ns, recs in by_ns.items():
                    if want_ns is not None and ns != want_ns:
                        continue
                    for rec in sorted(recs, key=lambda r: r[2], reverse=True):
                        cp_id = rec[2]
                        if want_id and cp_id != want_id:
                            continue
                        if before_id and cp_id >= before_id:
                            continue
                        if filter:
                            md = self.serde.loads_typed((rec[6], rec[7]))
                            if not all(md.get(k) == v for k, v in filter.items()):
                                continue
                        if limit is not None and len(out) >= limit:
                            break
                        out.append(self._tuple(thread_id, t, rec, writes.get((ns, cp_id))))
        yield from out

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint: what changed (``new_versions``) is written,
        the rest refers to what earlier checkpoints stored."""
        thread_id = str(config["configurable"]["thread_id"])
        ns = config["configurable"].get("checkpoint_ns", "")
        parent = config["configurable"].get("checkpoint_id")
        c = dict(checkpoint)
        values: dict[str, Any] = c.pop("channel_values")
        # Serialize what does not touch the store first: a bad value fails
        # before anything is written.
        cp_typed = self._dump(c)
        md_typed = self._dump(get_checkpoint_metadata(config, metadata))
        prepared = {ch: self._prepare(ch, values[ch]) for ch in new_versions if ch in values}
        with self._lock:
            t = self._thread(thread_id, create=True)
            self._touch(t)
            refs: dict[str, tuple] = {}
            # A channel whose version did not change has its parent's value.
            last = t.last.get(ns)
            if last is not None and last[0] == parent:
                base = last[1]
            else:
                base = self._parent_refs(t, ns, parent)
            for ch, ver in c.get("channel_versions", {}).items():
                if ch in new_versions:
                    continue
                ref = base.get(ch)
                if ref is None or ref[0] != ver:
                    ref = self._find_ref(t, ns, ch, ver)
                if ref is not None:
                    refs[ch] = _unowned(ref)
            for ch, ver in new_versions.items():
                if ch not in prepared:
                    refs[ch] = (ver, _EMPTY)
                else:
                    refs[ch] = (ver, *self._store_prepared(t, ns, ch, parent, prepared[ch]))
            rec = [_CP, ns, checkpoint["id"], parent, cp_typed[0], cp_typed[1], md_typed[0], md_typed[1], refs]
            i = self._append(t, rec)
            self._note_checkpoint(t, rec, i)
            t.stray.discard((ns, checkpoint["id"]))
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    def _parent_refs(self, t: _Thread, ns: str, parent: Optional[str]) -> dict:
        if parent is None:
            return {}
        for rec in reversed(self._records(t)):
            if rec[0] == _CP and rec[1] == ns and rec[2] == parent:
                return rec[8]
        return {}

    def _find_ref(self, t: _Thread, ns: str, ch: str, ver: Any) -> Optional[tuple]:
        """The newest reference stored for ``ch`` at version ``ver``."""
        for rec in reversed(self._records(t)):
            if rec[0] == _CP and rec[1] == ns:
                ref = rec[8].get(ch)
                if ref is not None and ref[0] == ver:
                    return tuple(ref)
        return None

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store the writes of a task for the checkpoint ``config`` names."""
        thread_id = str(config["configurable"]["thread_id"])
        ns = config["configurable"].get("checkpoint_ns", "")
        cp_id = config["configurable"]["checkpoint_id"]
        typed = []
        for ch, v in writes:
            items = _keyed_messages(v) if ch in self.conversation_channels else None
            if items is not None:
                typed.append((ch, v, [self._encode(item) for item in items]))
            else:
                typed.append((ch, v, self._dump(v)))
        with self._lock:
            t = self._thread(thread_id, create=True)
            self._touch(t)
            head = t.heads.get(ns)
            if head is None or head[0] != cp_id:
                t.stray.add((ns, cp_id))
            for idx, (ch, v, enc) in enumerate(typed):
                ref: Optional[tuple] = None
                if isinstance(enc, list):
                    ref = self._append_write(t, ns, cp_id, ch, enc, type(v) is list)
                    if ref is None:
                        enc = self._dump(v)
                if ref is None:
                    typ, data = enc
                    if len(data) <= self.inline_limit:
                        ref = (_INLINE, typ, data)
                    else:
                        ref = (_UNIT, typ, self.store.put(t.agent, "blob", data), True)
                self._append(t, [_WR, ns, cp_id, task_id, task_path, WRITES_IDX_MAP.get(ch, idx), ch, ref])

    def _prepare(self, ch: str, value: Any) -> tuple:
        """Serialize a channel value before anything is written: ("list",
        encoded items), ("input", key, rest, encoded items, was a list) for a
        dict holding messages with ids under a conversation channel's name
        (a graph input, the ``__start__`` channel), or ("value", typed)."""
        if ch in self.conversation_channels and type(value) is list:
            return ("list", [self._encode(m) for m in value])
        if type(value) is dict:
            for key in self.conversation_channels:
                items = _keyed_messages(value.get(key))
                if items is None:
                    continue
                rest = self._dump({k: v for k, v in value.items() if k != key})
                if len(rest[1]) <= self.inline_limit:
                    encoded = [self._encode(m) for m in items]
                    return ("input", key, rest, encoded, type(value[key]) is list, self._dump(value))
        return ("value", self._dump(value))

    def _store_prepared(self, t: _Thread, ns: str, ch: str, parent: Optional[str], p: tuple) -> tuple:
        if p[0] == "list":
            return (_CONV, *self._store_list(t, ns, ch, p[1]))
        if p[0] == "input":
            _, key, rest, encoded, was_list, whole = p
            sl = self._append_write(t, ns, parent, key, encoded, was_list)
            if sl is not None:
                return (_DICT, rest[0], rest[1], key, sl)
            return self._store_value(t, whole)
        return self._store_value(t, p[1])

    def _encode(self, item: Any) -> bytes:
        typ, data = self._dump(item)
        return typ.encode() + b"\0" + data

    def _append_write(
        self, t: _Thread, ns: str, cp_id: Optional[str], ch: str, encoded: list[bytes], was_list: bool
    ) -> Optional[tuple]:
        """Messages with ids written to a conversation channel of the latest
        checkpoint ``cp_id``: ``add_messages`` appends them unchanged, so
        they go to the end of the conversation now (unless they are already
        there, past the checkpoint's prefix, from the same input), and the
        next checkpoint finds them there instead of storing them again.
        ``None`` when that does not apply (the value is stored as such)."""
        last = t.last.get(ns)
        if cp_id is None or last is None or last[0] != cp_id:
            if cp_id is not None or last is not None:
                return None
            head_ref = None
        else:
            head_ref = last[1].get(ch)
        c = t.convs.get((ns, ch))
        if head_ref is not None and head_ref[1] == _CONV:
            if c is None or c.id != head_ref[2]:
                return None
            prefix = head_ref[3]
        elif head_ref is not None and head_ref[1] != _EMPTY:
            return None
        elif c is None:
            c = _Conv(self.store.create_conversation(t.agent), array("q"))
            t.convs[(ns, ch)] = c
            prefix = 0
        else:
            prefix = 0
        hashes = self._conv_hashes(c)
        new = [hash(m) for m in encoded]
        k = len(new)
        if len(hashes) - prefix >= k and list(hashes[len(hashes) - k :]) == new:
            return (_SLICE, c.id, len(hashes) - k, k, was_list)
        start = len(hashes)
        for m, h in zip(encoded, new):
            self.store.append(c.id, m)
            hashes.append(h)
        return (_SLICE, c.id, start, k, was_list)

    def delete_thread(self, thread_id: str) -> None:
        """Forget a thread: its agent and everything it holds are released."""
        thread_id = str(thread_id)
        with self._lock:
            t = self._threads.pop(thread_id, None)
            if t is None:
                return
            self._catalog_note(["d", thread_id])
            self.store.release_agent(t.agent)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of a thread to another. Units are
        shared, not copied; conversations are forked (the embedded store
        shares their sealed chunks)."""
        src_id, dst_id = str(source_thread_id), str(target_thread_id)
        with self._lock:
            src = self._threads.get(src_id)
            if src is None:
                return
            dst = self._thread(dst_id, create=True)
            self._touch(dst)
            self._transfer(src, self._records(src), dst)

    def _transfer(self, src: _Thread, records: list[list], dst: _Thread) -> None:
        """Append ``records`` of ``src`` to ``dst``'s log, giving ``dst`` its
        own reference to every unit and a fork of every conversation."""
        convs: dict[int, int] = {}
        units: set[str] = set()

        def unit(ref: Sequence, at: int) -> tuple:
            # The first record to use a unit holds dst's reference to it.
            own = ref[at] not in units
            if own:
                self.store.share(src.agent, ref[at], dst.agent)
                units.add(ref[at])
            return (*ref[: at + 1], own)

        def fork_slice(ref: Sequence) -> tuple:
            if ref[1] not in convs:
                n = self.store.conversation_len(ref[1])
                convs[ref[1]] = self.store.fork_conversation(dst.agent, ref[1], n)
            return (_SLICE, convs[ref[1]], *ref[2:])

        for rec in records:
            if rec[0] == _CP:
                refs = {}
                for ch, ref in rec[8].items():
                    if ref[1] == _CONV:
                        if ref[2] not in convs:
                            n = self.store.conversation_len(ref[2])
                            convs[ref[2]] = self.store.fork_conversation(dst.agent, ref[2], n)
                        ref = (ref[0], _CONV, convs[ref[2]], ref[3])
                    elif ref[1] == _UNIT:
                        ref = unit(ref, 3)
                    elif ref[1] == _DICT:
                        ref = (*ref[:5], fork_slice(ref[5]))
                    refs[ch] = tuple(ref)
                rec = [*rec[:8], refs]
                i = self._append(dst, rec)
                self._note_checkpoint(dst, rec, i)
            else:
                if rec[7][0] == _UNIT:
                    rec = [*rec[:7], unit(rec[7], 2)]
                elif rec[7][0] == _SLICE:
                    rec = [*rec[:7], fork_slice(rec[7])]
                self._append(dst, rec)
                dst.stray.add((rec[1], rec[2]))
        for key, c in src.convs.items():
            if c.id in convs:
                hashes = None if c.hashes is None else array("q", c.hashes)
                dst.convs[key] = _Conv(convs[c.id], hashes)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata ``run_id`` is one of
        ``run_ids``, with their writes."""
        runs = set(run_ids)
        if not runs:
            return
        with self._lock:
            for thread_id in list(self._threads):
                t = self._threads[thread_id]
                records = self._records(t)
                drop = set()
                for rec in records:
                    if rec[0] == _CP:
                        md = self.serde.loads_typed((rec[6], rec[7]))
                        if md.get("run_id") in runs:
                            drop.add((rec[1], rec[2]))
                if drop:
                    self._rewrite(thread_id, t, records, lambda rec: (rec[1], rec[2]) not in drop)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``keep_latest``: keep only each namespace's latest checkpoint
        (and its writes); ``delete``: delete the threads."""
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
        with self._lock:
            for thread_id in thread_ids:
                thread_id = str(thread_id)
                t = self._threads.get(thread_id)
                if t is None:
                    continue
                if strategy == "delete":
                    self.delete_thread(thread_id)
                    continue
                keep = {(ns, head[0]) for ns, head in t.heads.items()}
                self._rewrite(thread_id, t, self._records(t), lambda rec: (rec[1], rec[2]) in keep)

    def _rewrite(self, thread_id: str, t: _Thread, records: list[list], keep: Any) -> None:
        """Keep only the records ``keep`` accepts: they move to a new agent
        (units shared, conversations forked) and the old one is released,
        with everything only the dropped records used."""
        kept = [r for r in records if keep(r)]
        if len(kept) == len(records):
            return
        if not kept:
            self.delete_thread(thread_id)
            return
        name = f"langgraph-{random.getrandbits(48):012x}"
        agent = self.store.register_agent(name, self.tenant)
        try:
            new = _Thread(name, agent, self.store.create_conversation(agent))
            self._transfer(t, kept, new)
            self._catalog_note(["t", thread_id, name, new.log])
        except BaseException:
            self.store.release_agent(agent)
            raise
        self._threads[thread_id] = new
        self.store.release_agent(t.agent)

    # ---- async: the same calls (each is a short store call) ---------------

    async def aget_tuple(self, config: RunnableConfig) -> Optional[CheckpointTuple]:
        return self.get_tuple(config)

    async def alist(
        self,
        config: Optional[RunnableConfig],
        *,
        filter: Optional[dict[str, Any]] = None,
        before: Optional[RunnableConfig] = None,
        limit: Optional[int] = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in self.list(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self.delete_thread(thread_id)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.copy_thread(source_thread_id, target_thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.delete_for_runs(run_ids)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self.prune(thread_ids, strategy=strategy)

    def get_next_version(self, current: Optional[Union[int, str]], channel: None) -> int:
        """Versions are small integers (they are in every record); a put
        resolves an unchanged channel through its parent checkpoint, so
        equal numbers on two branches do not mix."""
        if current is None:
            return 1
        if isinstance(current, int):
            return current + 1
        return int(str(current).split(".")[0]) + 1


def _keyed_messages(value: Any) -> Optional[list]:
    """The messages of a write value if all carry ids (a message or a list
    of them), else ``None``."""
    items = value if type(value) is list else [value]
    if not items:
        return None
    for m in items:
        if not isinstance(m, BaseMessage) or not m.id:
            return None
    return items


def _unowned(ref: Sequence) -> tuple:
    """A reference to a value another record holds."""
    if ref[1] == _UNIT:
        return (*ref[:4], False)
    return tuple(ref)


from ._langgraph_store import AgentmemStore  # noqa: E402
