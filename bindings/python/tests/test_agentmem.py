"""The Python binding end to end on an embedded store, and on agentmemd when
AGENTMEM_TEST_SOCKET names a running daemon's socket."""

from __future__ import annotations

import itertools
import json
import os
import threading

import pytest

import agentmem
from agentmem import AgentMemory, Store, errors

PROMPT = "You are a careful coding agent. Read the code before you change it."
TOOLS = [{"name": "read_file", "parameters": {"path": "string"}}]

_serial = itertools.count()


def uniq(name: str) -> str:
    """Agent names unique in this run: agentmemd keeps a closed store's
    agents (by name) for their grace time."""
    return f"{name}-{os.getpid()}-{next(_serial)}"


BACKENDS = ["embedded"] + (["daemon"] if os.environ.get("AGENTMEM_TEST_SOCKET") else [])


@pytest.fixture(params=BACKENDS)
def store(request):
    if request.param == "embedded":
        s = Store.embedded()
    else:
        s = Store.connect(os.environ["AGENTMEM_TEST_SOCKET"])
    with s:
        yield s
    assert s.closed


def test_hundred_agents_share_one_prompt(store):
    agents = []
    for i in range(100):
        a = AgentMemory(PROMPT, TOOLS, name=uniq(f"agent-{i}"), store=store)
        a.conversation.append({"role": "user", "content": f"task {i}"})
        a.conversation.append(f"follow-up {i}")
        agents.append(a)
    s = agents[0].get_stats()
    per = len(PROMPT.encode()) + len(json.dumps(TOOLS).encode())
    assert s.total_deduplicated >= 99 * per
    assert s.hot_bytes + s.warm_bytes + s.cold_bytes < s.total_allocated / 2
    assert agents[42].conversation.get_context() == [
        {"role": "system", "content": PROMPT},
        {"role": "user", "content": "task 42"},
        {"role": "user", "content": "follow-up 42"},
    ]
    assert len(agents[42].conversation.get_context(last=1)) == 2
    assert agents[7].tools == TOOLS
    assert agents[7].system_prompt == PROMPT
    assert len(agents[7].conversation) == 2
    agents[3].set_state("paused")
    agents[3].set_state("active")
    assert len(agents[3].conversation.get_context()) == 3
    with agents[5]:
        pass  # leaving the block releases the agent
    with pytest.raises(errors.UnknownConversationError):
        agents[5].conversation.get_context()
    assert s.as_dict()["backend"] == store.backend


def test_low_level_store(store):
    a = store.register_agent(uniq("a"), "tenant-a")
    b = store.register_agent(uniq("b"), "tenant-b")
    uid = store.put(a, "tool_result", b"\x01\x02\x00\xff")
    assert len(uid) == 64
    assert store.get(a, uid) == b"\x01\x02\x00\xff"
    if store.backend == "daemon":
        # agentmemd does not tell "not yours" from "not there".
        with pytest.raises(errors.UnknownUnitError):
            store.get(b, uid)
    else:
        with pytest.raises(errors.AccessDeniedError, match="shared"):
            store.get(b, uid)
    store.share(a, uid, b)
    assert store.get(b, uid) == b"\x01\x02\x00\xff"
    store.mark_hot(b, uid)
    store.release(a, uid)
    store.release(b, uid)
    with pytest.raises(errors.UnknownUnitError) as e:
        store.release(b, uid)
    assert e.value.code == "AGENTMEM_UNKNOWN_UNIT"
    assert isinstance(e.value, LookupError)
    text = store.put(a, "blob", "héllo", public=True)
    assert store.get_text(b, text) == "héllo"
    c = store.create_conversation(a)
    for i in range(50):
        assert store.append(c, bytearray(f"m{i}", "ascii")) == i
    assert store.conversation_len(c) == 50
    assert store.read_messages(c, 48) == [b"m48", b"m49"]
    assert len(store.read_messages(c)) == 50
    store.set_state(a, "waiting_for_human")
    store.release_agent(b)
    with pytest.raises(errors.UnknownAgentError):
        store.get(b, text)


def test_bad_input_raises_normal_exceptions(store):
    a = store.register_agent(uniq("a"))
    with pytest.raises(errors.InvalidArgumentError, match="system_prompt"):
        store.put(a, "nope", b"x")
    with pytest.raises(ValueError, match="empty"):
        store.put(a, "blob", b"")
    with pytest.raises(errors.InvalidArgumentError, match="hex"):
        store.get(a, "not-an-id")
    with pytest.raises(errors.UnknownUnitError):
        store.get(a, "00" * 32)
    with pytest.raises(errors.InvalidArgumentError, match="waiting_for_human"):
        store.set_state(a, "sleepy")
    with pytest.raises(errors.UnknownConversationError):
        store.read_messages(999)
    # Wrong Python types: TypeError / OverflowError, as Python code expects.
    with pytest.raises(TypeError, match="bytes, bytearray or str"):
        store.put(a, "blob", 42)
    with pytest.raises(TypeError):
        store.get("a", 5)
    with pytest.raises(OverflowError):
        store.register_agent(uniq("x"), "t", 1000)
    with pytest.raises(TypeError):
        AgentMemory(5, store=store)
    m = AgentMemory(PROMPT, store=store)
    with pytest.raises(TypeError, match="dict or a str"):
        m.conversation.append(42)
    store.close()
    with pytest.raises(errors.ClosedError, match="open a new one"):
        store.stats()
    with pytest.raises(errors.ClosedError):
        m.conversation.append("x")
    store.close()  # closing twice is harmless


def test_oversized_data():
    with Store.embedded(max_unit_size=1024) as store:
        a = store.register_agent("a")
        with pytest.raises(errors.TooLargeError, match="maximum unit size") as e:
            store.put(a, "blob", b"x" * 4096)
        assert e.value.code == "AGENTMEM_TOO_LARGE"
        with pytest.raises(errors.TooLargeError):
            AgentMemory("p" * 2000, store=store)
    with pytest.raises(errors.InvalidArgumentError):
        Store.embedded(ram_budget=0)


def test_daemon_not_running():
    with pytest.raises(errors.NotRunningError, match="agentmemd") as e:
        Store.connect("/nonexistent/agentmem.sock")
    assert isinstance(e.value, ConnectionError)
    with pytest.raises(errors.NotRunningError):
        AgentMemory(PROMPT, socket_path="/nonexistent/agentmem.sock")


def test_default_store_is_shared():
    before = Store.default().stats().total_deduplicated
    with AgentMemory(PROMPT + " default") as x, AgentMemory(PROMPT + " default") as y:
        assert x.store.stats().total_deduplicated - before == len(PROMPT) + len(" default")
        assert y.system_prompt == PROMPT + " default"


def test_threads_share_a_store():
    with Store.embedded() as store:
        def work(i):
            a = store.register_agent(f"t{i}")
            c = store.create_conversation(a)
            for j in range(200):
                store.append(c, f"{i}:{j}")
            assert store.read_messages(c, 199) == [f"{i}:199".encode()]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert store.stats().total_allocated > 0


def test_store_in_a_directory_survives_close_and_reopen(tmp_path):
    path = tmp_path / "store"
    big = bytes(((i * 131) ^ (i >> 5)) & 0xFF for i in range(60000))
    with Store.embedded(path) as store:
        # Locked while open.
        with pytest.raises(errors.TransportError, match="already opened"):
            Store.embedded(path)
        a = store.register_agent("keeper", "team")
        unit = store.put(a, "tool_result", big)
        text = store.put(a, "blob", "héllo ✓")
        c = store.create_conversation(a)
        for i in range(12):
            store.append(c, f"message {i}")
        store.append(c, b"\x00\xff\x01")
    assert store.closed

    with Store.embedded(str(path)) as store:
        a = store.register_agent("keeper", "team")  # the restored agent
        assert store.get(a, unit) == big
        assert store.get_text(a, text) == "héllo ✓"
        assert store.conversation_len(c) == 13
        msgs = store.read_messages(c)
        assert msgs[5] == b"message 5"
        assert msgs[12] == b"\x00\xff\x01"
        stranger = store.register_agent("keeper", "other")
        with pytest.raises(errors.AccessDeniedError):
            store.get(stranger, unit)
    with pytest.raises(errors.InvalidArgumentError):
        Store.embedded("")
