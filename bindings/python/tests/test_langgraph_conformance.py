"""AgentmemSaver against LangGraph's own checkpointer conformance suite
(langgraph-checkpoint-conformance): every base and extended capability must
be detected and pass, over the embedded store and, with
AGENTMEM_TEST_SOCKET set, over agentmemd."""

import asyncio
import os

import pytest

pytest.importorskip("langgraph.checkpoint.conformance")

from langgraph.checkpoint.conformance import checkpointer_test, validate  # noqa: E402
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES  # noqa: E402

from agentmem.langgraph import AgentmemSaver  # noqa: E402

SOCKET = os.environ.get("AGENTMEM_TEST_SOCKET")


def _check(report):
    report.print_report()
    caps = {c.value for c in ALL_CAPABILITIES}
    assert set(report.results) == caps
    for cap, r in report.results.items():
        assert r.detected, f"{cap} not detected"
        assert r.passed is True and r.tests_failed == 0, f"{cap}: {r.failures}"
    total = sum(r.tests_passed for r in report.results.values())
    print(f"conformance: {total} passed, level {report.conformance_level()}")
    assert report.conformance_level() == "FULL"
    return total


def test_embedded_in_ram():
    @checkpointer_test(name="AgentmemSaver(embedded)")
    async def factory():
        with AgentmemSaver() as saver:
            yield saver

    assert _check(asyncio.run(validate(factory))) >= 58


def test_embedded_in_a_directory(tmp_path):
    n = iter(range(100))

    @checkpointer_test(name="AgentmemSaver.open(dir)")
    async def factory():
        with AgentmemSaver.open(tmp_path / f"s{next(n)}") as saver:
            yield saver

    assert _check(asyncio.run(validate(factory))) >= 58


@pytest.mark.skipif(not SOCKET, reason="no agentmemd (AGENTMEM_TEST_SOCKET unset)")
def test_through_agentmemd():
    @checkpointer_test(name="AgentmemSaver.connect(agentmemd)")
    async def factory():
        with AgentmemSaver.connect(SOCKET) as saver:
            yield saver

    assert _check(asyncio.run(validate(factory))) >= 58
