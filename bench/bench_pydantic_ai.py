"""Pydantic AI plugin overhead: time per model request of ``Agent.run``, three ways.

"scripted" runs an agent on Pydantic AI's ``TestModel`` (no request at all): the plugin's own cost per request
(agent scope and span, the limit check before the request hooks, the wrapped model's call, usage, price)
without loopback noise. "chat" and "chat stream" send each request to the loopback stub through the openai
SDK. "baseline" is no AgentWatch; "http only" is AgentWatch with the pydantic_ai plugin disabled (the openai
SDK and httpx taps count each request); "agentwatch" adds the plugin (the taps then join its call). One run
is one model request. Rounds alternate the modes to cancel drift; the figures are medians of per-round means.

    .venv/bin/python bench/bench_pydantic_ai.py   (a venv with this checkout installed)
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


async def _round(agent: Any, stream: bool, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        if stream:
            async with agent.run_stream("hi") as result:
                async for _text in result.stream_text(delta=True):
                    pass
        else:
            await agent.run("hi")
    return (time.perf_counter() - start) / calls


def _plugin_path(iterations: int = 5000) -> float:
    """Microseconds per request spent in the plugin itself (the check before the hooks, the wrapped model,
    the call's span, usage, price and end) on a real ``ModelResponse``, without Pydantic AI or the network."""
    from pydantic_ai.messages import ModelResponse, TextPart
    from pydantic_ai.models.test import TestModel
    from pydantic_ai.usage import RequestUsage

    import agentwatch
    from agentwatch.plugins.pydantic_ai import _model

    agentwatch.init(exporters=[agentwatch.InMemoryExporter()])
    inner = TestModel(model_name="gpt-4o-mini")
    response = ModelResponse(parts=[TextPart("hi")], usage=RequestUsage(input_tokens=10, output_tokens=5),
                             model_name="gpt-4o-mini")
    best = float("inf")
    with agentwatch.agent("Bench"):
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(iterations):
                agentwatch.check_limits()
                wrapper = _model.AgentWatchModel(inner)
                call = wrapper._open("pydantic_ai.request")
                call.activate()
                call.deactivate()
                _model._finish(call, response)
            best = min(best, (time.perf_counter() - start) / iterations)
    agentwatch.shutdown()
    return best * 1e6


def main() -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.models.test import TestModel
    from pydantic_ai.providers.openai import OpenAIProvider

    import agentwatch
    from tests.stubs.provider_server import StubProvider

    loop = asyncio.new_event_loop()
    with StubProvider() as stub:
        chat = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=stub.openai_base_url, api_key="k"))
        agents = {"scripted": (Agent(TestModel(model_name="gpt-4o-mini"), name="Bench"), False, CALLS * 5),
                  "chat": (Agent(chat, name="Bench"), False, CALLS),
                  "chat stream": (Agent(chat, name="Bench"), True, CALLS)}
        for what, (agent, stream, calls) in agents.items():
            times: dict[str, list[float]] = {mode: [] for mode in MODES}
            loop.run_until_complete(_round(agent, stream, calls))  # warm-up
            for _ in range(ROUNDS):
                for mode in MODES:
                    if mode != "baseline":
                        agentwatch.init(exporters=[agentwatch.InMemoryExporter()],
                                        disabled_plugins=["pydantic_ai"] if mode == "http only" else [])
                    times[mode].append(loop.run_until_complete(_round(agent, stream, calls)))
                    agentwatch.shutdown()
                    stub.clear()
            base = statistics.median(times["baseline"])
            print(f"\n{what}: {ROUNDS} rounds of {calls} runs (one model request each)")
            for mode in MODES:
                median = statistics.median(times[mode])
                print(f"  {mode:<11} {median * 1e3:8.3f} ms/call   {(median - base) * 1e6:+9.1f} us vs baseline")
    loop.close()
    print(f"\nplugin path alone: {_plugin_path():.1f} us/call (best of 5 rounds)")


if __name__ == "__main__":
    main()
