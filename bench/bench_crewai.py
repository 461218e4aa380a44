"""CrewAI plugin overhead: added time per LLM call, with vs without AgentWatch, same process, same run.

A real ``crewai.LLM`` calls the stub OpenAI-compatible server on 127.0.0.1, so the figures include
CrewAI's own hook dispatch and event emission. Rounds alternate baseline / AgentWatch to cancel drift;
each round ends with ``crewai_event_bus.flush()`` so the handlers' pool work is counted too. A second
table times whole crew runs (two agents, two tasks, one tool: three LLM calls each).

    /work/venv/bin/python bench/bench_crewai.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _name, _value in {"CREWAI_DISABLE_TELEMETRY": "true", "OTEL_SDK_DISABLED": "true",
                      "CREWAI_TRACING_ENABLED": "false", "CREWAI_DISABLE_TRACKING": "true"}.items():
    os.environ.setdefault(_name, _value)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROUNDS = 7
CALLS = 150
CREWS = 5
#: "other plugins": AgentWatch with the CrewAI plugin disabled (the HTTP/OpenAI taps still count the
#: calls), which isolates this plugin's share from the provider layer's.
MODES = ("baseline", "other plugins", "agentwatch")
#: The default exporter (HTTP to the collector, spooling what it cannot send) with the collector down, as a new
#: user runs a plain ``init()`` before starting ``agentwatch serve``.
SETTINGS: dict[str, Any] = {"proxy_url": "http://127.0.0.1:9/api/ingest",
                            "spool_dir": tempfile.mkdtemp(prefix="aw-bench-crewai-")}


def _llm_round(llm: Any, bus: Any) -> float:
    """Seconds per LLM call, handlers flushed."""
    messages = [{"role": "user", "content": "hello"}]
    start = time.perf_counter()
    for _ in range(CALLS):
        llm.call(messages)
    bus.flush(timeout=30)
    return (time.perf_counter() - start) / CALLS


def _crew_round(stub: Any, bus: Any) -> float:
    from tests.plugins.crewai.conftest import make_crew, script

    start = time.perf_counter()
    for _ in range(CREWS):
        script(stub)
        make_crew(stub.openai_base_url).kickoff()
    bus.flush(timeout=30)
    return (time.perf_counter() - start) / (CREWS * 3)


def _plugin_path(llm: Any, iterations: int = 20000) -> tuple[float, float]:
    """Microseconds per LLM call spent in the plugin itself: (hook on the caller's thread, whole path).

    Calls the real hook and handlers with real CrewAI hook contexts and events, without the network
    noise (about +-2 ms per request here) that hides them in the end-to-end figures.
    """
    from crewai.events import LLMCallCompletedEvent, LLMCallStartedEvent
    from crewai.events.types.llm_events import LLMCallType
    from crewai.hooks import LLMCallHookContext
    from crewai.llms.base_llm import _current_call_id

    from agentwatch.plugins.crewai import _listener

    messages = [{"role": "user", "content": "hello"}]
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "cached_prompt_tokens": 0}
    hook_time = total_time = 0.0
    for index in range(iterations):
        context = LLMCallHookContext(llm=llm, messages=messages)
        call_id = f"bench-{index}"
        started = LLMCallStartedEvent(call_id=call_id, model="gpt-4o-mini", messages=messages)
        completed = LLMCallCompletedEvent(call_id=call_id, model="gpt-4o-mini", response="hi",
                                          call_type=LLMCallType.LLM_CALL, usage=usage)
        token = _current_call_id.set(call_id)  # CrewAI's own call scope, as LLM.call sets it
        t0 = time.perf_counter()
        _listener._on_llm_started(None, started)  # CrewAI emits it before the hooks run
        _listener.before_llm_call(context)
        t1 = time.perf_counter()
        _listener._on_llm_completed(None, completed)  # inline; it also ends the activation
        t2 = time.perf_counter()
        _current_call_id.reset(token)
        hook_time += t1 - t0
        total_time += t2 - t0
    return hook_time / iterations * 1e6, total_time / iterations * 1e6


def main() -> None:
    import logging

    logging.getLogger("crewai").setLevel(logging.ERROR)
    from crewai import LLM
    from crewai.events import crewai_event_bus

    import agentwatch
    from tests.stubs.provider_server import StubProvider

    results: dict[str, dict[str, list[float]]] = {"llm.call": {mode: [] for mode in MODES},
                                                  "crew (per LLM call)": {mode: [] for mode in MODES}}
    with StubProvider() as stub:
        llm = LLM(model="openai/gpt-4o-mini", base_url=stub.openai_base_url, api_key="bench", max_retries=0)
        _llm_round(llm, crewai_event_bus)  # warm up: client creation, first-call imports, pricing tables
        for _ in range(ROUNDS):
            for mode in MODES:
                if mode != "baseline":
                    agentwatch.init(**SETTINGS, disabled_plugins=["crewai"] if mode == "other plugins" else [])
                try:
                    results["llm.call"][mode].append(_llm_round(llm, crewai_event_bus))
                    results["crew (per LLM call)"][mode].append(_crew_round(stub, crewai_event_bus))
                finally:
                    agentwatch.shutdown()
                stub.clear()

        agentwatch.init(**SETTINGS)
        try:
            hook_us, path_us = _plugin_path(llm)
        finally:
            agentwatch.shutdown()

    print(f"CrewAI plugin, per LLM call: before-hook (caller's thread) {hook_us:.1f}us; "
          f"started + hook + completed {path_us:.1f}us (20000 calls, no network)")
    print()
    print(f"End to end: CrewAI plugin overhead ({ROUNDS} rounds, {CALLS} LLM calls and {CREWS} crew runs per round; "
          "stub provider on loopback; medians)")
    print(f"{'workload':<22}{'baseline':>12}{'other plugins':>15}{'agentwatch':>12}{'added':>10}{'crewai share':>14}")
    for workload, modes in results.items():
        base, other, watched = (statistics.median(modes[mode]) * 1e6 for mode in MODES)
        print(f"{workload:<22}{base:>10.0f}µs{other:>13.0f}µs{watched:>10.0f}µs{watched - base:>8.0f}µs"
              f"{watched - other:>12.0f}µs")


if __name__ == "__main__":
    main()
