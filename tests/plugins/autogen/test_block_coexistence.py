"""A blocked model call leaves no span of AutoGen's own OpenTelemetry tracing open (agent invocations, the
team runtime's messages), for an agent alone and in a team: a whole program in a fresh interpreter, since
OpenTelemetry's global tracer provider can be set once per process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]

PROGRAM = textwrap.dedent("""
    import asyncio, json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanProcessor
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import MaxMessageTermination
    from autogen_agentchat.teams import RoundRobinGroupChat, SelectorGroupChat
    from autogen_ext.models.openai import OpenAIChatCompletionClient
    import agentwatch
    from agentwatch import CircuitBreakerException
    from tests.stubs.provider_server import Reply, StubProvider

    class Started(SpanProcessor):
        def __init__(self):
            self.open, self.names = {}, []
        def on_start(self, span, parent_context=None):
            self.open[span.context.span_id] = span.name
            self.names.append(span.name)
        def on_end(self, span):
            self.open.pop(span.context.span_id)

    started = Started()
    provider = TracerProvider()
    provider.add_span_processor(started)
    trace.set_tracer_provider(provider)
    how = sys.argv[1]
    # The second model call finds the hour's budget spent by the first (1,000 in / 100 out of gpt-4o-mini).
    agentwatch.init(exporters=[], budget_per_hour=0.0001, block_on_threshold=True)

    async def main():
        with StubProvider() as stub:
            stub.queue(Reply(content="a draft", input_tokens=1000, output_tokens=100), Reply(content="a review"))
            client = OpenAIChatCompletionClient(model="gpt-4o-mini", base_url=stub.openai_base_url,
                                                api_key="k", max_retries=0)
            writer = AssistantAgent("writer", model_client=client)
            critic = AssistantAgent("critic", model_client=client, model_client_stream=True)
            try:
                if how == "agent":
                    await writer.run(task="write")
                    await writer.run(task="again")
                elif how == "round_robin":
                    await RoundRobinGroupChat([writer, critic], termination_condition=MaxMessageTermination(3)).run(
                        task="write")
                else:
                    team = SelectorGroupChat([writer, critic], model_client=client,
                                             termination_condition=MaxMessageTermination(3))
                    stub.queue(Reply(content="writer", input_tokens=1000, output_tokens=100))
                    await team.run(task="write")
                outcome = "no block"
            except CircuitBreakerException:
                outcome = "blocked"
            await client.close()
            return outcome, stub.count("/chat/completions")

    outcome, requests = asyncio.run(main())
    print(json.dumps({"outcome": outcome, "requests": requests, "open": sorted(started.open.values()),
                      "started": len(started.names)}))
""")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["agent", "round_robin", "selector"])
def test_a_blocked_call_leaves_no_autogen_span_open(tmp_path: Path, how: str) -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM, how], cwd=tmp_path, capture_output=True, text=True,
                          timeout=100, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert report["outcome"] == "blocked" and report["requests"] == 1
    assert report["started"] > 1  # AutoGen traced the run
    assert report["open"] == []
