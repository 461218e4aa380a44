"""LiteLLM plugin overhead: time per ``litellm.completion`` against the loopback stub, three ways.

The first table uses LiteLLM's ``mock_response`` (no request at all), so it shows the plugin's own cost
per call without the loopback noise (about +-1 ms per request here). "baseline" is no AgentWatch;
"http only" is AgentWatch with the litellm plugin disabled (the openai SDK

and httpx taps count each request); "agentwatch" adds the plugin (the taps then join its call). Rounds
alternate the modes to cancel drift; the figures are medians of per-round means.

    /work/venv/bin/python bench/bench_litellm.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROUNDS = 7
CALLS = 100
MODES = ("baseline", "http only", "agentwatch")


def _mock_round(kwargs: dict[str, Any]) -> float:
    import litellm

    start = time.perf_counter()
    for _ in range(CALLS * 5):
        litellm.completion(model="openai/gpt-4o-mini", messages=kwargs["messages"], mock_response="hi")
    return (time.perf_counter() - start) / (CALLS * 5)


def _round(kwargs: dict[str, Any], stream: bool) -> float:
    import litellm

    start = time.perf_counter()
    for _ in range(CALLS):
        if stream:
            for _chunk in litellm.completion(stream=True, **kwargs):
                pass
        else:
            litellm.completion(**kwargs)
    return (time.perf_counter() - start) / CALLS


def _plugin_path(iterations: int = 5000) -> float:
    """Microseconds per call spent in the plugin itself (limits, span, usage, price, end), on a real
    ``ModelResponse``, without LiteLLM's own work or the network."""
    import litellm

    import agentwatch
    from agentwatch.plugins.litellm import _patch

    agentwatch.init(exporters=[agentwatch.InMemoryExporter()])
    messages = [{"role": "user", "content": "hi"}]
    response = litellm.completion.__wrapped__(model="openai/gpt-4o-mini", messages=messages, mock_response="hi")
    kwargs = {"model": "openai/gpt-4o-mini", "messages": messages}
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(iterations):
            call = _patch._open("completion", "llm", (), kwargs)
            assert call is not None
            call.activate()
            call.deactivate()
            _patch._returned(call, response)
        best = min(best, (time.perf_counter() - start) / iterations)
    agentwatch.shutdown()
    return best * 1e6


def main() -> None:
    import litellm

    import agentwatch
    from tests.stubs.provider_server import StubProvider

    litellm.telemetry = False
    with StubProvider() as stub:
        kwargs = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                  "api_base": stub.openai_base_url, "api_key": "k"}
        for what in ("mock_response", "completion", "stream"):
            times: dict[str, list[float]] = {mode: [] for mode in MODES}
            def run(what: str = what) -> float:
                return _mock_round(kwargs) if what == "mock_response" else _round(kwargs, what == "stream")

            run()  # warm-up
            for _ in range(ROUNDS):
                for mode in MODES:
                    if mode != "baseline":
                        agentwatch.init(exporters=[agentwatch.InMemoryExporter()],
                                        disabled_plugins=["litellm"] if mode == "http only" else [])
                    times[mode].append(run())
                    agentwatch.shutdown()
                    stub.clear()
            base = statistics.median(times["baseline"])
            print(f"\n{what}: {ROUNDS} rounds")
            for mode in MODES:
                median = statistics.median(times[mode])
                print(f"  {mode:<11} {median * 1e3:8.3f} ms/call   {(median - base) * 1e6:+9.1f} us vs baseline")
    print(f"\nplugin path alone: {_plugin_path():.1f} us/call (best of 5 rounds)")


if __name__ == "__main__":
    main()
