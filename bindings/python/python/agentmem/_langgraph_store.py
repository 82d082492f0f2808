"""``AgentmemStore``: LangGraph's ``BaseStore`` (long-term memory) over agentmem.

Every item's value is a JSON unit of one agent (``langgraph-store-…``), so
equal values are stored once and compressed with the rest; the namespace,
key and timestamps of each item are kept in a Python index. Every put and
delete is also appended to a log conversation, from which a store in a
directory (``AgentmemStore.open(path)``) is rebuilt when opened again.

Search filters by namespace prefix and by value (``filter``: equality, or
``$eq``/``$ne``/``$gt``/``$gte``/``$lt``/``$lte`` as LangGraph's
``InMemoryStore`` does); semantic (vector) search is not supported: a
``query`` or an ``index`` configuration raises ``NotImplementedError``.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, Optional, Union

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)
from langgraph.store.memory import _compare_values, _does_match

from . import Store

_LOG_FILE = "langgraph-store.catalog"

_VECTOR = (
    "AgentmemStore has no semantic (vector) search: search by namespace and "
    "filter instead, or use a store with an embedding index"
)


class AgentmemStore(BaseStore):
    """LangGraph's long-term memory store over an agentmem store (see the
    module doc). ``AgentmemStore()`` opens a fresh embedded in-RAM store;
    ``store=`` uses an existing :class:`agentmem.Store`; :meth:`open` a
    directory; :meth:`connect` agentmemd."""

    supports_ttl = False

    def __init__(
        self,
        *,
        store: Optional[Store] = None,
        tenant: str = "default",
        index: Any = None,
        _log_path: Optional[str] = None,
    ) -> None:
        if index is not None:
            raise NotImplementedError(_VECTOR)
        self._owns_store = store is None
        self.store = store if store is not None else Store.embedded()
        self.tenant = tenant
        self._lock = threading.RLock()
        # namespace -> key -> (unit id, created_at, updated_at)
        self._data: dict[tuple[str, ...], dict[str, tuple[str, datetime, datetime]]] = {}
        if _log_path is not None and os.path.exists(_log_path):
            with open(_log_path) as f:
                name, conv = f.read().split()
            self._agent = self.store.register_agent(name, tenant)
            self._log = int(conv)
            for raw in self.store.read_messages(self._log):
                rec = json.loads(raw)
                ns, key = tuple(rec["ns"]), rec["key"]
                if rec.get("unit") is None:
                    self._drop(ns, key)
                else:
                    self._data.setdefault(ns, {})[key] = (
                        rec["unit"],
                        datetime.fromisoformat(rec["created"]),
                        datetime.fromisoformat(rec["updated"]),
                    )
        else:
            name = f"langgraph-store-{random.getrandbits(48):012x}"
            self._agent = self.store.register_agent(name, tenant)
            self._log = self.store.create_conversation(self._agent)
            if _log_path is not None:
                tmp = _log_path + ".tmp"
                with open(tmp, "w") as f:
                    f.write(f"{name} {self._log}\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, _log_path)

    @classmethod
    def open(cls, path: Union[str, "os.PathLike[str]"], **kwargs: Any) -> "AgentmemStore":
        """A store in directory ``path``; its items come back when reopened."""
        path = os.fspath(path)
        s = cls(store=Store.embedded(path), _log_path=os.path.join(path, _LOG_FILE), **kwargs)
        s._owns_store = True
        return s

    @classmethod
    def connect(cls, socket_path: Union[str, "os.PathLike[str]"], **kwargs: Any) -> "AgentmemStore":
        """A store in agentmemd at ``socket_path``."""
        s = cls(store=Store.connect(os.fspath(socket_path)), **kwargs)
        s._owns_store = True
        return s

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> "AgentmemStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _drop(self, ns: tuple[str, ...], key: str) -> Optional[str]:
        items = self._data.get(ns)
        if not items or key not in items:
            return None
        unit = items.pop(key)[0]
        if not items:
            del self._data[ns]
        return unit

    def _item(self, ns: tuple[str, ...], key: str, cls: type = Item) -> Optional[Item]:
        entry = self._data.get(ns, {}).get(key)
        if entry is None:
            return None
        value = json.loads(self.store.get(self._agent, entry[0]))
        return cls(value=value, key=key, namespace=ns, created_at=entry[1], updated_at=entry[2])

    def _put(self, op: PutOp) -> None:
        ns, key = tuple(op.namespace), op.key
        if op.value is None:
            old = self._drop(ns, key)
            if old is not None:
                self.store.append(self._log, json.dumps({"ns": ns, "key": key, "unit": None}))
                self.store.release(self._agent, old)
            return
        if op.index not in (None, False):
            raise NotImplementedError(_VECTOR)
        try:
            data = json.dumps(op.value, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise TypeError(f"AgentmemStore values are JSON: {ns}/{key} is not ({e})") from e
        now = datetime.now(timezone.utc)
        old = self._data.get(ns, {}).get(key)
        unit = self.store.put(self._agent, "blob", data)
        created = old[1] if old else now
        self.store.append(
            self._log,
            json.dumps({"ns": ns, "key": key, "unit": unit, "created": created.isoformat(), "updated": now.isoformat()}),
        )
        self._data.setdefault(ns, {})[key] = (unit, created, now)
        if old is not None:
            self.store.release(self._agent, old[0])

    def _search(self, op: SearchOp) -> list[SearchItem]:
        if op.query:
            raise NotImplementedError(_VECTOR)
        n = len(op.namespace_prefix)
        hits: list[SearchItem] = []
        for ns, items in self._data.items():
            if ns[:n] != tuple(op.namespace_prefix):
                continue
            for key in items:
                item = self._item(ns, key, SearchItem)
                if op.filter and not all(_matches(item.value.get(k), v) for k, v in op.filter.items()):
                    continue
                hits.append(item)
        hits.sort(key=lambda i: i.updated_at, reverse=True)
        return hits[op.offset : op.offset + op.limit]

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        namespaces = list(self._data)
        if op.match_conditions:
            namespaces = [ns for ns in namespaces if all(_does_match(c, ns) for c in op.match_conditions)]
        if op.max_depth is not None:
            namespaces = sorted({ns[: op.max_depth] for ns in namespaces})
        else:
            namespaces = sorted(namespaces)
        return namespaces[op.offset : op.offset + op.limit]

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        results: list[Result] = []
        with self._lock:
            for op in ops:
                if isinstance(op, GetOp):
                    results.append(self._item(tuple(op.namespace), op.key))
                elif isinstance(op, SearchOp):
                    results.append(self._search(op))
                elif isinstance(op, ListNamespacesOp):
                    results.append(self._list_namespaces(op))
                elif isinstance(op, PutOp):
                    self._put(op)
                    results.append(None)
                else:
                    raise ValueError(f"unknown store operation {type(op).__name__}")
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return self.batch(ops)


def _matches(value: Any, condition: Any) -> bool:
    """LangGraph's filter comparison; a value that cannot be compared (a
    missing field against ``$gt``) does not match instead of raising."""
    try:
        return _compare_values(value, condition)
    except (TypeError, ValueError):
        return False
