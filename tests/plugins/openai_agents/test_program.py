"""A whole program in a fresh interpreter: ``init()`` before the SDK is imported (the plugin is registered
when ``agents`` is imported, without importing it itself), a handoff run blocked by Triage's budget, a top-up
and the run continued; nothing leaves loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]

PROGRAM = textwrap.dedent("""
    import json, socket, sys
    connect = socket.socket.connect
    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not str(address[0]).startswith("127."):
            raise SystemExit(f"left loopback: {address!r}")
        return connect(self, address)
    socket.socket.connect = guarded

    import agentwatch
    memory = agentwatch.InMemoryExporter()
    agentwatch.init(exporters=[memory], agents={"Triage": {"budget_per_hour": 0.0001, "block_on_threshold": True}})
    light = "agents" not in sys.modules

    from agents import Agent, OpenAIResponsesModel, Runner
    from openai import AsyncOpenAI
    from tests.stubs.provider_server import Reply, StubProvider

    out = {"light": light, "plugin": "openai_agents" in agentwatch.get_client().instrumented}
    with StubProvider() as stub:
        model = OpenAIResponsesModel("gpt-4o-mini", AsyncOpenAI(base_url=stub.openai_base_url, api_key="k"))
        billing = Agent(name="Billing", instructions="b", model=model)
        triage = Agent(name="Triage", instructions="t", model=model, handoffs=[billing])
        stub.queue(Reply(content="thinking", input_tokens=1000, output_tokens=100))
        Runner.run_sync(triage, "first question")  # Triage answers itself: $0.00021 spent
        try:
            Runner.run_sync(triage, "second question")
        except agentwatch.CircuitBreakerException as blocked:
            out["blocked"] = [blocked.scope_id, stub.count(), blocked.resume.agent.name]
            blocked.monitor.increase_budget(1.0)
            stub.queue(Reply(content="", tool_calls=[{"name": "transfer_to_billing", "arguments": {}}]),
                       Reply(content="paid"))
            out["resumed"] = Runner.run_sync(blocked.resume.agent, blocked.resume.input).final_output
        out["requests"] = stub.count()
    agentwatch.flush()
    out["llm"] = [[s["agent_name"], s["status"]] for s in memory.spans if s["kind"] == "llm"]
    print(json.dumps(out))
""")


#: An SDK layout whose run loop has no ``run_input_guardrails_with_queue`` (older or newer than the one installed).
WITHOUT_STREAMED_GUARDRAILS = textwrap.dedent("""
    from agents.run_internal import run_loop
    del run_loop.run_input_guardrails_with_queue
""")


def _run(program: str) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTWATCH_", "OPENAI_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, env=env,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "left loopback" not in done.stderr  # the SDK's default trace exporter (no API key) sends nothing
    out: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return out


def _blocked_and_resumed(out: dict[str, Any]) -> None:
    assert out["plugin"]
    assert out["blocked"] == ["triage", 1, "Triage"]
    assert out["resumed"] == "paid" and out["requests"] == 3
    assert out["llm"] == [["Triage", "ok"], ["Triage", "blocked"], ["Triage", "ok"], ["Billing", "ok"]]


def test_a_program_blocks_and_resumes_in_a_fresh_interpreter() -> None:
    out = _run(PROGRAM)
    assert out["light"]
    _blocked_and_resumed(out)


def test_an_sdk_without_the_streamed_guardrails_hook_still_limits_each_agents_model_calls() -> None:
    """Found 2026-12-07 (review): the streamed guardrails' hook was one of the run loop's globals wrapped all or none,
    so an SDK layout without it lost every model call's agent scope (Triage's budget never blocked) for the sake of
    one resume."""
    _blocked_and_resumed(_run(WITHOUT_STREAMED_GUARDRAILS + PROGRAM))


#: The usual order: the SDK imported, then ``init()``. The SDK makes its trace provider (with its exporter to OpenAI's
#: backend and that exporter's HTTP client) at its first trace.
SDK_FIRST = "import agents\nfrom agents.tracing import setup\n" + PROGRAM.replace(
    'light = "agents" not in sys.modules',
    'light = setup.GLOBAL_TRACE_PROVIDER is None and "httpcore" not in sys.modules').replace(
    'print(json.dumps(out))', 'out["kinds"] = sorted({s["kind"] for s in memory.spans})\nprint(json.dumps(out))')


def test_init_after_the_sdk_leaves_its_trace_provider_to_its_first_trace() -> None:
    """Found 2026-12-07: ``init()`` asked the SDK for its trace provider to add ours, which made it then: ~40 ms of
    imports (httpcore, h11, h2) for the exporter's HTTP client, init() ~90 ms instead of ~30 with the SDK imported
    first. Ours now goes into the provider when the SDK makes it, and the run is traced, blocked and resumed alike."""
    out = _run(SDK_FIRST)
    assert out["light"]
    _blocked_and_resumed(out)
    assert {"agent", "llm"} <= set(out["kinds"])
