"""AgentmemSession against the OpenAI Agents SDK's Session protocol (the
openai-agents wheel does not ship the SDK's own session tests): the
documented behaviour of get_items/add_items/pop_item/clear_session, the
SessionSettings limit, and a Runner run with the SDK's ScriptedModel that
reads and writes the history through the session. Embedded, and through
agentmemd when AGENTMEM_TEST_SOCKET is set."""

import asyncio
import os
import uuid

import pytest

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
pytest.importorskip("agents")

from agents import Agent, Runner  # noqa: E402
from agents.memory import Session, SessionSettings  # noqa: E402
from agents.testing import ScriptedModel, assistant_message  # noqa: E402

import agentmem  # noqa: E402
from agentmem.openai_agents import AgentmemSession  # noqa: E402

SOCKET = os.environ.get("AGENTMEM_TEST_SOCKET")
BACKENDS = ["embedded"] + (["daemon"] if SOCKET else [])


@pytest.fixture(params=BACKENDS)
def store(request):
    if request.param == "daemon":
        s = agentmem.Store.connect(SOCKET)
    else:
        s = agentmem.Store.embedded()
    yield s
    s.close()


def new(store, **kw):
    return AgentmemSession(f"s-{uuid.uuid4()}", store=store, **kw)


def run(coro):
    return asyncio.run(coro)


def items(n, start=0):
    return [{"role": "user", "content": f"message {i}"} for i in range(start, start + n)]


def test_is_a_session(store):
    assert isinstance(new(store), Session)


def test_add_get_in_order_and_limits(store):
    s = new(store)
    assert run(s.get_items()) == []
    run(s.add_items(items(3)))
    run(s.add_items(items(2, 3)))
    assert run(s.get_items()) == items(5)
    assert run(s.get_items(limit=2)) == items(2, 3)
    assert run(s.get_items(limit=10)) == items(5)
    assert run(s.get_items(limit=0)) == []
    run(s.add_items([]))
    assert len(run(s.get_items())) == 5


def test_session_settings_limit(store):
    s = new(store, session_settings=SessionSettings(limit=2))
    run(s.add_items(items(4)))
    assert run(s.get_items()) == items(2, 2)
    assert run(s.get_items(limit=3)) == items(3, 1)


def test_pop_item_returns_latest_and_removes_it(store):
    s = new(store)
    assert run(s.pop_item()) is None
    run(s.add_items(items(70)))  # more than one sealed chunk
    assert run(s.pop_item()) == items(1, 69)[0]
    assert run(s.get_items()) == items(69)
    run(s.add_items(items(1, 100)))
    assert run(s.get_items(limit=2)) == [items(1, 68)[0], items(1, 100)[0]]


def test_clear_and_isolation(store):
    a, b = new(store), new(store)
    run(a.add_items(items(2)))
    run(b.add_items(items(1, 10)))
    same = AgentmemSession(a.session_id, store=store)
    assert run(same.get_items()) == items(2)
    run(a.clear_session())
    assert run(a.get_items()) == [] and run(same.get_items()) == []
    assert run(b.get_items()) == items(1, 10)
    run(a.add_items(items(1)))
    assert run(a.get_items()) == items(1)


def test_pause_keeps_history(store):
    s = new(store)
    run(s.add_items(items(20)))
    s.pause()
    assert run(s.get_items()) == items(20)


def test_unserializable_item_stores_nothing(store):
    s = new(store)
    run(s.add_items(items(1)))
    with pytest.raises(TypeError, match="JSON-serializable"):
        run(s.add_items([{"ok": 1}, {"bad": object()}]))
    assert run(s.get_items()) == items(1)


def test_runner_reads_and_writes_history(store):
    s = new(store)
    agent = Agent(name="a", model=ScriptedModel([[assistant_message("hello")], [assistant_message("again")]]))
    r = run(Runner.run(agent, "hi", session=s))
    assert r.final_output == "hello"
    r = run(Runner.run(agent, "more", session=s))
    assert r.final_output == "again"
    history = run(s.get_items())
    assert [h.get("content") for h in history if h.get("role") == "user"] == ["hi", "more"]
    assert len(history) == 4
    # The second call saw the first exchange.
    assert len(agent.model.calls[1].input) == 3


def test_daemon_gone_raises_a_clear_error(tmp_path):
    with pytest.raises(agentmem.NotRunningError):
        AgentmemSession("x", socket_path=tmp_path / "none.sock")
