"""AgentmemSaver and AgentmemStore in LangGraph graphs, beyond the
conformance suite: messages stored once and forked on time travel, copy_thread
sharing the prefix, a directory store reopened, bad input, a daemon that
goes away mid-run."""

import os
import shutil
import signal
import subprocess
import time
import uuid
from typing import Annotated, TypedDict

import pytest

pytest.importorskip("langgraph")

from langchain_core.messages import AIMessage, HumanMessage  # noqa: E402
from langgraph.graph import StateGraph  # noqa: E402
from langgraph.graph.message import add_messages  # noqa: E402

import agentmem  # noqa: E402
from agentmem.langgraph import AgentmemSaver, AgentmemStore  # noqa: E402

SOCKET = os.environ.get("AGENTMEM_TEST_SOCKET")
AGENTMEMD = os.path.join(os.path.dirname(__file__), "../../../target/release/agentmemd")


class State(TypedDict):
    messages: Annotated[list, add_messages]


def graph(saver):
    b = StateGraph(State)
    b.add_node("echo", lambda s: {"messages": [AIMessage(f"echo {len(s['messages'])}", id=str(uuid.uuid4()))]})
    b.set_entry_point("echo")
    b.set_finish_point("echo")
    return b.compile(checkpointer=saver)


def cfg(tid):
    return {"configurable": {"thread_id": tid}}


def say(g, tid, text):
    return g.invoke({"messages": [HumanMessage(text, id=str(uuid.uuid4()))]}, cfg(tid))


def conversations(saver, tid):
    t = saver._threads[tid]
    return {c.id for c in t.convs.values()}


def test_messages_are_stored_once_per_thread():
    saver = AgentmemSaver()
    g = graph(saver)
    for i in range(10):
        out = say(g, "t", f"hi {i}")
    assert len(out["messages"]) == 20
    (conv,) = conversations(saver, "t")
    # Every message once: 10 inputs and 10 replies.
    assert saver.store.conversation_len(conv) == 20
    assert [m.content for m in g.get_state(cfg("t")).values["messages"]][-2:] == ["hi 9", "echo 19"]


def test_time_travel_forks_and_keeps_both_branches():
    saver = AgentmemSaver()
    g = graph(saver)
    for i in range(3):
        say(g, "t", f"hi {i}")
    history = list(g.get_state_history(cfg("t")))
    # The state after the first exchange: 2 messages.
    old = next(s for s in history if len(s.values.get("messages", [])) == 2 and not s.next)
    forked = g.invoke({"messages": [HumanMessage("other", id="o1")]}, old.config)
    assert [m.content for m in forked["messages"]] == ["hi 0", "echo 1", "other", "echo 3"]
    # The old branch is still there, whole.
    assert len(saver.get_tuple(history[0].config).checkpoint["channel_values"]["messages"]) == 6
    assert len(conversations(saver, "t")) == 1  # the current one is the fork
    say(g, "t", "next")
    assert [m.content for m in g.get_state(cfg("t")).values["messages"]][-2:] == ["next", "echo 5"]


def test_copy_thread_shares_the_prefix_and_diverges():
    saver = AgentmemSaver()
    g = graph(saver)
    for i in range(3):
        say(g, "a", f"hi {i}")
    saver.copy_thread("a", "b")
    say(g, "b", "only b")
    a = [m.content for m in g.get_state(cfg("a")).values["messages"]]
    b = [m.content for m in g.get_state(cfg("b")).values["messages"]]
    assert b[:6] == a and b[6:] == ["only b", "echo 7"]
    assert conversations(saver, "a").isdisjoint(conversations(saver, "b"))


def test_pause_and_resume_a_thread():
    saver = AgentmemSaver()
    g = graph(saver)
    say(g, "t", "hello")
    saver.pause_thread("t")
    assert saver._threads["t"].state == "paused"
    assert len(saver.get_tuple(cfg("t")).checkpoint["channel_values"]["messages"]) == 2
    assert saver._threads["t"].state == "active"
    saver.pause_thread("unknown thread")  # ignored


def test_directory_store_comes_back(tmp_path):
    with AgentmemSaver.open(tmp_path / "s") as saver:
        g = graph(saver)
        for i in range(4):
            say(g, "t", f"hi {i}")
        saver.copy_thread("t", "u")
        saver.delete_thread("u")
        n = len(list(saver.list(cfg("t"))))
    with AgentmemSaver.open(tmp_path / "s") as saver:
        g = graph(saver)
        assert len(list(saver.list(cfg("t")))) == n
        assert saver.get_tuple(cfg("u")) is None
        out = say(g, "t", "after reopen")
        assert [m.content for m in out["messages"]][-3:] == ["echo 7", "after reopen", "echo 9"]


def test_bad_input():
    saver = AgentmemSaver()
    assert saver.get_tuple(cfg("never seen")) is None
    assert list(saver.list(cfg("never seen"))) == []
    g = graph(saver)
    say(g, "t", "hi")
    missing = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "no-such-id"}}
    assert saver.get_tuple(missing) is None
    before = len(list(saver.list(cfg("t"))))
    latest = saver.get_tuple(cfg("t"))
    cp = dict(latest.checkpoint, id=str(uuid.uuid4()), channel_values={"x": object()}, channel_versions={"x": 1})
    with pytest.raises(TypeError, match="cannot serialize"):
        saver.put(latest.config, cp, {}, {"x": 1})
    (conv,) = conversations(saver, "t")
    n = saver.store.conversation_len(conv)
    grown = latest.checkpoint["channel_values"]["messages"] + [HumanMessage("new", id="new")]
    cp = dict(cp, channel_values={"messages": grown, "x": object()}, channel_versions={"messages": 9, "x": 1})
    with pytest.raises(TypeError, match="cannot serialize"):
        saver.put(latest.config, cp, {}, {"messages": 9, "x": 1})
    assert saver.store.conversation_len(conv) == n
    with pytest.raises(TypeError, match="cannot serialize"):
        saver.put_writes(latest.config, [("x", object())], "task")
    # Nothing half-written.
    assert len(list(saver.list(cfg("t")))) == before
    assert saver.get_tuple(cfg("t")).checkpoint["id"] == latest.checkpoint["id"]
    with pytest.raises(ValueError, match="unknown prune strategy"):
        saver.prune(["t"], strategy="nope")


@pytest.mark.skipif(not os.access(AGENTMEMD, os.X_OK), reason="agentmemd not built")
def test_daemon_going_away_mid_run(tmp_path):
    sock = str(tmp_path / "d.sock")
    d = subprocess.Popen([AGENTMEMD, "--ram-only", "--socket", sock], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        saver = AgentmemSaver.connect(sock)
        g = graph(saver)
        say(g, "t", "before")
        d.send_signal(signal.SIGKILL)
        d.wait()
        with pytest.raises(agentmem.AgentMemError) as e:
            say(g, "t", "after")
        assert "agentmemd" in str(e.value)
    finally:
        if d.poll() is None:
            d.kill()
            d.wait()


@pytest.mark.skipif(not SOCKET, reason="no agentmemd (AGENTMEM_TEST_SOCKET unset)")
def test_graph_through_agentmemd():
    with AgentmemSaver.connect(SOCKET) as saver:
        g = graph(saver)
        for i in range(5):
            out = say(g, "t", f"hi {i}")
        assert len(out["messages"]) == 10
        saver.copy_thread("t", "u")
        saver.prune(["u"])
        assert len(list(saver.list(cfg("u")))) == 1
        assert len(saver.get_tuple(cfg("u")).checkpoint["channel_values"]["messages"]) == 10


def test_store_namespaces_filters_and_no_vectors(tmp_path):
    for store in (AgentmemStore(), AgentmemStore.open(tmp_path / "st")):
        store.put(("users", "1"), "prefs", {"lang": "fr", "n": 3})
        store.put(("users", "2"), "prefs", {"lang": "en", "n": 5})
        store.put(("users", "2"), "notes", {"text": "hi"})
        assert store.get(("users", "1"), "prefs").value == {"lang": "fr", "n": 3}
        assert store.get(("users", "1"), "nope") is None
        assert {i.key for i in store.search(("users",), filter={"lang": "en"})} == {"prefs"}
        assert len(store.search(("users",), filter={"n": {"$gt": 2}})) == 2
        assert store.list_namespaces(prefix=("users",)) == [("users", "1"), ("users", "2")]
        assert store.list_namespaces(max_depth=1) == [("users",)]
        store.delete(("users", "2"), "notes")
        assert store.get(("users", "2"), "notes") is None
        with pytest.raises(NotImplementedError, match="vector"):
            store.search(("users",), query="french speakers")
        with pytest.raises(TypeError, match="JSON"):
            store.put(("users", "3"), "bad", {"x": object()})
        store.close()
    with AgentmemStore.open(tmp_path / "st") as store:
        assert store.get(("users", "2"), "prefs").value == {"lang": "en", "n": 5}
        assert store.get(("users", "2"), "notes") is None


def test_store_in_a_graph():
    store = AgentmemStore()

    def node(state, *, store):
        store.put(("mem",), "last", {"text": state["messages"][-1].content})
        return {}

    b = StateGraph(State)
    b.add_node("n", node)
    b.set_entry_point("n")
    b.set_finish_point("n")
    g = b.compile(checkpointer=AgentmemSaver(), store=store)
    say(g, "t", "remember me")
    assert store.get(("mem",), "last").value == {"text": "remember me"}
