"""OpenAI Agents SDK plugin overhead: time per model call of ``Runner.run``, three ways.

"scripted" runs an agent on a scripted ``Model`` (no request at all): the plugin's own cost per call (limits,
agent scope, span, usage, price; the SDK's trace spans as ours) without loopback noise. "responses" and
"responses stream" send each call to the loopback stub through the openai SDK. "baseline" is no AgentWatch;
"http only" is AgentWatch with the openai_agents plugin disabled (the openai SDK and httpx taps count each
request); "agentwatch" adds the plugin (the taps then join its call). One run is one model call. Rounds
alternate the modes to cancel drift; the figures are medians of per-round means.

    .venv/bin/python bench/bench_openai_agents.py   (a venv with this checkout installed)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROUNDS = 7
CALLS = 100
MODES = ("baseline", "http only", "agentwatch")


def _scripted_model() -> Any:
    from agents import ModelResponse, Usage
    from agents.models.interface import Model
    from openai.types.responses import ResponseOutputMessage, ResponseOutputText

    response = ModelResponse(output=[ResponseOutputMessage(
        id="m", type="message", role="assistant", status="completed",
        content=[ResponseOutputText(type="output_text", text="hi", annotations=[])])],
        usage=Usage(requests=1, input_tokens=10, output_tokens=5, total_tokens=15), response_id=None)

    class Scripted(Model):
        model = "gpt-4o-mini"

        async def get_response(self, *args: Any, **kwargs: Any) -> Any:
            return response

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    return Scripted()


async def _round(agent: Any, stream: bool, calls: int) -> float:
    from agents import Runner

    start = time.perf_counter()
    for _ in range(calls):
        if stream:
            result = Runner.run_streamed(agent, "hi")
            async for _event in result.stream_events():
                pass
        else:
            await Runner.run(agent, "hi")
    return (time.perf_counter() - start) / calls


def _plugin_path(iterations: int = 5000) -> float:
    """Microseconds per model call spent in the plugin itself (limits with the agent's scope, span, usage,
    price, end) on a real ``ModelResponse``, without the SDK's own work or the network."""
    import asyncio as _asyncio

    from agents import Agent

    import agentwatch
    from agentwatch.plugins.openai_agents import _turns

    agentwatch.init(exporters=[agentwatch.InMemoryExporter()])
    model = _scripted_model()
    response = _asyncio.run(model.get_response())
    agent = Agent(name="Bench", model=model)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(iterations):
            turn = _turns.Turn(agent, model, [{"role": "user", "content": "hi"}])
            call = _turns.open_call(turn, "openai_agents.get_response")
            call.activate()
            call.deactivate()
            _turns.read_response(call, response)
            call.end()
        best = min(best, (time.perf_counter() - start) / iterations)
    agentwatch.shutdown()
    return best * 1e6


def main() -> None:
    from agents import Agent, OpenAIResponsesModel, set_trace_processors
    from openai import AsyncOpenAI

    import agentwatch
    from tests.stubs.provider_server import StubProvider

    set_trace_processors([])  # no export to OpenAI; the plugin adds its own processor
    loop = asyncio.new_event_loop()
    with StubProvider() as stub:
        client = AsyncOpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0)
        agents = {"scripted": (Agent(name="Bench", model=_scripted_model()), False, CALLS * 5),
                  "responses": (Agent(name="Bench", model=OpenAIResponsesModel("gpt-4o-mini", client)), False, CALLS),
                  "responses stream": (Agent(name="Bench", model=OpenAIResponsesModel("gpt-4o-mini", client)), True,
                                       CALLS)}
        for what, (agent, stream, calls) in agents.items():
            times: dict[str, list[float]] = {mode: [] for mode in MODES}
            loop.run_until_complete(_round(agent, stream, calls))  # warm-up
            for _ in range(ROUNDS):
                for mode in MODES:
                    if mode != "baseline":
                        agentwatch.init(exporters=[agentwatch.InMemoryExporter()],
                                        disabled_plugins=["openai_agents"] if mode == "http only" else [])
                    times[mode].append(loop.run_until_complete(_round(agent, stream, calls)))
                    agentwatch.shutdown()
                    stub.clear()
            base = statistics.median(times["baseline"])
            print(f"\n{what}: {ROUNDS} rounds of {calls} runs (one model call each)")
            for mode in MODES:
                median = statistics.median(times[mode])
                print(f"  {mode:<11} {median * 1e3:8.3f} ms/call   {(median - base) * 1e6:+9.1f} us vs baseline")
    loop.close()
    print(f"\nplugin path alone: {_plugin_path():.1f} us/call (best of 5 rounds)")


if __name__ == "__main__":
    main()
