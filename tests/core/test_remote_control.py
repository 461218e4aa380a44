"""Operator control reaches running processes: a real collector, three SDK programs (plain ``init()``, no Redis)
looping OpenAI calls against the loopback stub, and the operator's API calls. Order and outcome are asserted;
how fast it happens is measured in bench/bench_remote_control.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentwatch.server import ServerHandle, start_background
from tests.stubs.agent_process import PROGRAM, WAIT, Agent
from tests.stubs.provider_server import StubProvider

AGENTS = ("researcher", "writer", "critic")


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[ServerHandle]:
    handle = start_background(port=0, db_path=tmp_path / "collector.db")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def agents(tmp_path: Path, collector: ServerHandle) -> Iterator[dict[str, Agent]]:
    program = tmp_path / "agent_loop.py"
    program.write_text(PROGRAM)
    with StubProvider() as provider:
        running = {name: Agent(name, program, collector.url, provider.openai_base_url) for name in AGENTS}
        running["_provider"] = provider  # type: ignore[assignment]
        try:
            yield running
        finally:
            for agent in running.values():
                if isinstance(agent, Agent):
                    agent.process.kill()
                    agent.process.wait(timeout=30)


def _requests_from(provider: StubProvider, name: str) -> int:
    return sum(1 for request in list(provider.requests) if request.headers.get("x-agent-process") == name)


def test_kill_resume_limits_and_override_reach_three_running_processes(collector: ServerHandle,
                                                                        agents: dict[str, Any]) -> None:
    provider: StubProvider = agents.pop("_provider")
    api = httpx.Client(base_url=collector.url, timeout=30)
    for agent in agents.values():
        agent.wait_for(ok=True)

    # Kill: every process blocks with operator_kill and sends nothing more.
    assert api.post("/api/circuit-breaker/kill", json={"reason": "runaway fleet"}).status_code == 200
    for agent in agents.values():
        blocked = agent.wait_for(ok=False, reason="operator_kill")
        assert blocked["scope"] == "global"
    sent = {name: _requests_from(provider, name) for name in agents}
    for agent in agents.values():
        assert all(not o["ok"] and o["reason"] == "operator_kill" for o in agent.outcomes(10))
    assert {name: _requests_from(provider, name) for name in agents} == sent

    # Resume: they carry on.
    assert api.post("/api/circuit-breaker/resume", json={"reason": "fixed"}).status_code == 200
    for agent in agents.values():
        agent.wait_for(ok=True)
        assert all(o["ok"] for o in agent.outcomes(3))
    resumed = {name: len(agent.seen) for name, agent in agents.items()}

    # A PUT lowering the researcher's budget: it trips at the new limit; the others carry on.
    limit = 0.0003
    put = api.put("/api/limits/agent/researcher", json={"budget_per_hour": limit, "block_on_threshold": True,
                                                       "reason": "too expensive"})
    assert put.status_code == 200
    tripped = agents["researcher"].wait_for(ok=False)
    assert (tripped["reason"], tripped["scope"], tripped["threshold"]) == ("budget_per_hour", "agent", limit)
    assert all(not o["ok"] for o in agents["researcher"].outcomes(3))
    # Override on the blocked agent scope: that agent continues; the others were never touched.
    assert api.post("/api/circuit-breaker/override", json={
        "additional_budget": 5.0, "scope": "agent", "scope_id": "researcher", "reason": "deadline"}).status_code == 200
    agents["researcher"].wait_for(ok=True)
    assert all(o["ok"] for o in agents["researcher"].outcomes(3))
    for name in ("writer", "critic"):
        agents[name].outcomes(3)
        since_resume = agents[name].seen[resumed[name]:]
        assert all(o["ok"] for o in since_resume), name

    # The processes report their breakers to the collector, and the audit trail names each action.
    status = api.get("/api/circuit-breaker/status").json()
    assert len(status["processes"]) == 3
    actions = api.get("/api/circuit-breaker/history").json()["operator_actions"]
    assert [a["action"] for a in actions] == ["override", "limits_set", "resume", "kill"]
    # The breaker spans the processes sent for the kill are flagged for Art. 12 and say who and why.
    deadline = time.monotonic() + WAIT
    while True:
        kills = [t for t in api.get("/api/circuit-breaker/history").json()["transitions"]
                 if t["event"] == "killed" and t["trace_id"]]
        if len(kills) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(kills) >= 3  # the global monitor of each process
    trace = api.get(f"/api/traces/{kills[0]['trace_id']}/spans").json()
    killed = [s for s in trace["spans"] if s["attributes"].get("event") == "killed"][0]["attributes"]
    assert killed["eu_ai_act_art12_relevant"] is True
    assert (killed["operator"], killed["operator_action"], killed["operator_reason"]) == (
        "local", "kill", "runaway fleet")


def test_remote_control_false_leaves_the_process_alone(collector: ServerHandle, tmp_path: Path) -> None:
    program = tmp_path / "agent_off.py"
    program.write_text(PROGRAM.replace("agentwatch.init()", "agentwatch.init(remote_control=False)"))
    with StubProvider() as provider:
        agent = Agent("solo", program, collector.url, provider.openai_base_url)
        try:
            agent.wait_for(ok=True)
            httpx.post(f"{collector.url}/api/circuit-breaker/kill", json={}, timeout=30)
            # Its own poll would have come within a second or two; 60 calls is three seconds of the loop.
            assert all(o["ok"] for o in agent.outcomes(60))
            assert httpx.get(f"{collector.url}/api/circuit-breaker/status", timeout=30).json()["processes"] == []
        finally:
            agent.process.kill()
            agent.process.wait(timeout=30)
