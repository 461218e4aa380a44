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

from agentwatch._remote_control import REPORTED_MONITORS
from agentwatch.server import ServerHandle
from tests.stubs.agent_process import PROGRAM, WAIT, Agent
from tests.stubs.provider_server import StubProvider

AGENTS = ("researcher", "writer", "critic")


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


def test_raising_or_removing_the_limit_that_stopped_an_agent_lets_it_run(collector: ServerHandle,
                                                                        tmp_path: Path) -> None:
    """Found 2026-12-05: an operator who raised the budget that had stopped an agent (PUT /api/limits), or removed
    the calls-per-minute limit that had (DELETE), left it blocked with the old reason until a separate resume. Now
    the breaker closes when no limit would block a call any more; a kill is not a limit and stays."""
    program = tmp_path / "agent_loop.py"
    program.write_text(PROGRAM)
    api = httpx.Client(base_url=collector.url, timeout=30)
    with StubProvider() as provider:
        agent = Agent("worker", program, collector.url, provider.openai_base_url)
        try:
            agent.wait_for(ok=True)
            assert api.put("/api/limits/agent/worker", json={"budget_per_hour": 0.0003,
                                                             "block_on_threshold": True}).status_code == 200
            agent.wait_for(ok=False, reason="budget_per_hour")
            assert api.put("/api/limits/agent/worker", json={"budget_per_hour": 10,
                                                             "block_on_threshold": True}).status_code == 200
            agent.wait_for(ok=True)
            assert all(o["ok"] for o in agent.outcomes(5))

            assert api.put("/api/limits/agent/worker", json={"max_calls_per_minute": 2,
                                                             "block_on_threshold": True}).status_code == 200
            agent.wait_for(ok=False, reason="max_calls_per_minute")
            assert api.delete("/api/limits/agent/worker").status_code == 200  # the process has no such limit
            agent.wait_for(ok=True)
            assert all(o["ok"] for o in agent.outcomes(5))

            # A kill is the operator's stop, not a limit: changing a limit leaves it in force.
            assert api.post("/api/circuit-breaker/kill", json={"scope": "agent", "scope_id": "worker"}).status_code \
                == 200
            agent.wait_for(ok=False, reason="operator_kill")
            assert api.put("/api/limits/agent/worker", json={"budget_per_hour": 100}).status_code == 200
            version = api.get("/api/control").json()["version"]
            deadline = time.monotonic() + WAIT
            applied = None
            while time.monotonic() < deadline:  # until the process has applied that change
                processes = api.get("/api/circuit-breaker/status").json()["processes"]
                applied = processes[0]["applied_version"] if processes else None
                if applied is not None and applied >= version:
                    break
                time.sleep(0.1)
            # Else the kill below would be checked against a process that never saw the limit change.
            assert applied is not None and applied >= version, \
                f"the process applied control version {applied}, not {version}, within {WAIT} s"
            assert all(o["reason"] == "operator_kill" for o in agent.outcomes(5))
        finally:
            agent.process.kill()
            agent.process.wait(timeout=30)
    reopened = [(t["event"], t["reason"]) for t in api.get("/api/circuit-breaker/history").json()["transitions"]
                if t["scope_id"] == "worker" and t["event"] == "resumed"]
    assert sorted(reopened) == [("resumed", "limits_cleared"), ("resumed", "limits_set")]


def test_processes_report_their_spend_and_what_stopped_them(collector: ServerHandle, tmp_path: Path) -> None:
    """Found 2026-12-05: processes[].monitors[].spend_last_hour was always null (the SDK never sent it)."""
    program = tmp_path / "agent_loop.py"
    program.write_text(PROGRAM)
    api = httpx.Client(base_url=collector.url, timeout=30)
    with StubProvider() as provider:
        agent = Agent("spender", program, collector.url, provider.openai_base_url)
        try:
            agent.wait_for(ok=True)
            assert api.put("/api/limits/agent/spender", json={"budget_per_hour": 0.0003,
                                                              "block_on_threshold": True}).status_code == 200
            agent.wait_for(ok=False, reason="budget_per_hour")
            deadline = time.monotonic() + WAIT
            while True:  # the next poll reports the trip
                processes = api.get("/api/circuit-breaker/status").json()["processes"]
                reported = {m["scope_id"]: m for m in processes[0]["monitors"]} if processes else {}
                if reported.get("spender", {}).get("state") == "OPEN" or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            agent.process.kill()
            agent.process.wait(timeout=30)
    spender = reported["spender"]
    assert (spender["state"], spender["reason"], spender["budget_per_hour"]) == ("OPEN", "budget_per_hour", 0.0003)
    assert spender["spend_last_hour"] >= 0.0003  # at least the budget it went over, in USD
    assert reported["global"]["spend_last_hour"] == pytest.approx(spender["spend_last_hour"])


def _reported(api: httpx.Client, until: Any) -> dict[str, Any]:
    """The one polling process as the status answers it, once ``until`` holds of it (or the wait is over)."""
    deadline = time.monotonic() + WAIT
    while True:
        processes = api.get("/api/circuit-breaker/status").json()["processes"]
        if processes and until(processes[0]) or time.monotonic() > deadline:
            assert processes, "the process never polled"
            return dict(processes[0])
        time.sleep(0.2)


def test_a_process_with_thousands_of_agents_keeps_following_the_operator(collector: ServerHandle,
                                                                         tmp_path: Path) -> None:
    """Found 2026-12-05: a service with an agent scope per user reported every monitor in its poll; past 1,000 the
    collector refused the poll (422), and from then on the process ignored every kill, pause and limit and vanished
    from the status. It reports its most telling monitors now (the global one, those not CLOSED, then by spend) and
    counts the rest, and the operator's actions reach every monitor it holds, reported or not."""
    program = tmp_path / "crowded.py"
    program.write_text(PROGRAM.replace("with agentwatch.agent(name):\n", "for i in range(1500):\n"
                                       "    with agentwatch.agent(f'user-{i}', budget_per_hour=5.0):\n"
                                       "        pass\n"
                                       "with agentwatch.agent(name):\n"))
    api = httpx.Client(base_url=collector.url, timeout=30)
    with StubProvider() as provider:
        agent = Agent("crowded", program, collector.url, provider.openai_base_url)
        try:
            agent.wait_for(ok=True)
            process = _reported(api, lambda p: any(m["scope_id"] == "crowded" and m["spend_last_hour"]
                                                   for m in p["monitors"]))
            monitors = process["monitors"]
            assert len(monitors) == REPORTED_MONITORS and monitors[0]["scope"] == "global"
            assert monitors[1]["scope_id"] == "crowded"  # the one spending comes before the idle users
            assert process["monitors_omitted"] == 1501 - (REPORTED_MONITORS - 1)

            # A monitor the poll does not report is paused all the same, and reported from then on.
            assert "user-1400" not in {m["scope_id"] for m in monitors}
            assert api.post("/api/circuit-breaker/pause", json={"scope": "agent", "scope_id": "user-1400",
                                                                "seconds": 600}).status_code == 200
            paused = _reported(api, lambda p: any(m["scope_id"] == "user-1400" for m in p["monitors"]))
            assert [m["state"] for m in paused["monitors"] if m["scope_id"] == "user-1400"] == ["PAUSED"]

            assert api.post("/api/circuit-breaker/kill", json={"reason": "incident"}).status_code == 200
            assert agent.wait_for(ok=False, reason="operator_kill")["scope"] == "global"
        finally:
            agent.process.kill()
            agent.process.wait(timeout=30)


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


_FLEET_MEMBER = """
import os, time, agentwatch
from importlib.metadata import entry_points

plugins = [ep.name for ep in entry_points(group="agentwatch.plugins")]
# The collector's URL and the limits backend come from the environment, as a deployment sets them.
agentwatch.init(budget_per_hour=1.0, block_on_threshold=True, auto_instrument=False, disabled_plugins=plugins)
while True:
    time.sleep(1)
"""


def test_a_budget_grant_raises_a_redis_shared_budget_once_not_once_per_process(collector: ServerHandle,
                                                                              tmp_path: Path) -> None:
    """Three processes share a $1 budget through Redis; the operator grants +$1, then +$0.50. Every process applies
    each grant (its own budget is what it reports), but the fleet's budget is raised once per grant: $2, then $2.50
    (it was $4 then $5.50: each process raised the shared budget by the grant)."""
    import os
    import subprocess
    import sys

    from tests.core.test_redis_limits import ROOT, RedisServer, _need_redis_server

    _need_redis_server()
    server = RedisServer().start()
    program = tmp_path / "fleet_member.py"
    program.write_text(_FLEET_MEMBER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update(PYTHONPATH=str(ROOT), AGENTWATCH_URL=f"{collector.url}/api/ingest",
               AGENTWATCH_LIMITS_BACKEND=server.url + "?socket_timeout=1", AGENTWATCH_SPOOL_DIR="")
    members = [subprocess.Popen([sys.executable, str(program)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for _ in range(3)]
    api = httpx.Client(base_url=collector.url, timeout=30)

    def budgets() -> list[float]:
        return sorted(m["budget_per_hour"] for p in api.get("/api/circuit-breaker/status").json()["processes"]
                      for m in p["monitors"] if m["scope"] == "global")

    def wait_for(expected: list[float]) -> None:
        deadline = time.monotonic() + WAIT
        while budgets() != expected:
            dead = [m.stderr.read() for m in members if m.poll() is not None and m.stderr is not None]
            assert not dead and time.monotonic() < deadline, (budgets(), dead)
            time.sleep(0.1)

    def shared() -> dict[str, float]:
        fields = server.client.hgetall("agentwatch:{global:global}:lim")
        return {key.decode(): int(value) / 1e12 for key, value in fields.items()}

    try:
        wait_for([1.0, 1.0, 1.0])  # all three are running and follow the collector's control
        assert shared() == {"cfg": 1.0, "eff": 1.0}
        assert api.post("/api/circuit-breaker/override", json={"additional_budget": 1.0}).status_code == 200
        wait_for([2.0, 2.0, 2.0])
        assert shared() == {"cfg": 1.0, "eff": 2.0}
        assert api.post("/api/circuit-breaker/override", json={"additional_budget": 0.5}).status_code == 200
        wait_for([2.5, 2.5, 2.5])
        assert shared() == {"cfg": 1.0, "eff": 2.5}
    finally:
        for member in members:
            member.kill()
            member.wait(timeout=30)
        server.stop()
