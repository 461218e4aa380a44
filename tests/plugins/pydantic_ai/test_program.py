"""A whole program in a fresh interpreter: ``init()`` before Pydantic AI is imported (the plugin is registered
when ``pydantic_ai`` is imported, without importing it itself), a run blocked by the agent's budget, a
top-up and a second run; nothing leaves loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

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
    agentwatch.init(exporters=[memory], agents={"Support": {"budget_per_hour": 0.0001, "block_on_threshold": True}})
    light = "pydantic_ai" not in sys.modules

    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from tests.stubs.provider_server import Reply, StubProvider

    out = {"light": light, "plugin": "pydantic_ai" in agentwatch.get_client().instrumented}
    with StubProvider() as stub:
        model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=stub.openai_base_url, api_key="k"))
        support = Agent(model, name="Support")
        stub.queue(Reply(content="first", input_tokens=1000, output_tokens=100))
        out["first"] = support.run_sync("first question").output  # $0.00021 spent
        try:
            support.run_sync("second question")
        except agentwatch.CircuitBreakerException as blocked:
            out["blocked"] = [blocked.scope_id, stub.count()]
            blocked.monitor.increase_budget(1.0)
            stub.queue(Reply(content="second"))
            out["again"] = support.run_sync("second question").output
        out["requests"] = stub.count()
    agentwatch.flush()
    out["llm"] = [[s["agent_name"], s["status"]] for s in memory.spans if s["kind"] == "llm"]
    print(json.dumps(out))
""")


def test_a_program_blocks_and_recovers_in_a_fresh_interpreter() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTWATCH_", "OPENAI_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120, env=env,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["light"] and out["plugin"]
    assert out["first"] == "first" and out["blocked"] == ["support", 1]
    assert out["again"] == "second" and out["requests"] == 2
    assert out["llm"] == [["Support", "ok"], ["Support", "blocked"], ["Support", "ok"]]
