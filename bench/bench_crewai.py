"""CrewAI overhead: time AgentWatch adds per LLM call, end to end, with a plain ``init()``.

A real ``crewai.LLM`` (CrewAI's native OpenAI provider, on the openai SDK) calls the stub provider on
127.0.0.1, so the figures include CrewAI's hook dispatch, its event bus and the provider layer's taps.
Rounds alternate in one process: no AgentWatch (``baseline``), plain ``init()`` with the collector down
(``down``: the default HTTP exporter spooling) and up (``up``: ``agentwatch serve`` in its own process).
Each round ends with ``crewai_event_bus.flush()`` so the handlers' pool work is counted too, and is timed
in process CPU time (every thread: caller, CrewAI's pool, export worker, and the in-process stub, which
is the same in every mode) and wall time. A second workload times whole crew runs (two agents, two tasks,
one tool: three LLM calls each). A profile summary (cProfile, AgentWatch's functions) follows.

    python bench/bench_crewai.py [--rounds 5] [--calls 150] [--no-collector]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

for _name, _value in {"CREWAI_DISABLE_TELEMETRY": "true", "OTEL_SDK_DISABLED": "true",
                      "CREWAI_TRACING_ENABLED": "false", "CREWAI_DISABLE_TRACKING": "true",
                      "CREWAI_STORAGE_DIR": "/tmp/agentwatch-crewai-bench"}.items():
    os.environ.setdefault(_name, _value)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _framework_overhead import Timing, collector, init_settings, median_table, profile_summary, timed_round  # noqa: E402

CREWS = 5
TARGET_US = 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per mode")
    parser.add_argument("--calls", type=int, default=150, help="LLM calls per round")
    parser.add_argument("--no-collector", action="store_true", help="skip the collector-up mode")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile summary")
    args = parser.parse_args()

    import logging

    logging.getLogger("crewai").setLevel(logging.ERROR)
    from crewai import LLM
    from crewai.events import crewai_event_bus

    import agentwatch
    from tests.plugins.crewai.conftest import make_crew, script
    from tests.stubs.provider_server import StubProvider

    messages: Any = [{"role": "user", "content": "hello"}]

    def settle() -> None:
        crewai_event_bus.flush(timeout=30)

    with collector(not args.no_collector) as collector_url, StubProvider() as stub:
        settings = init_settings(collector_url)
        modes = ("baseline", *settings)
        llm = LLM(model="openai/gpt-4o-mini", base_url=stub.openai_base_url, api_key="bench", max_retries=0)

        def crew() -> None:
            script(stub)
            make_crew(stub.openai_base_url).kickoff()

        workloads: dict[str, tuple[Any, int, int]] = {
            "LLM.call()": (lambda: llm.call(messages), args.calls, 1),
            "crew kickoff (per LLM call, 3 per crew)": (crew, CREWS, 3)}
        samples: dict[str, dict[str, list[Timing]]] = {name: {mode: [] for mode in modes} for name in workloads}
        for mode in modes:  # warm up every mode: imports, clients, first-call caches, price lookups
            if mode != "baseline":
                agentwatch.init(**settings[mode])
            for call, _, _ in workloads.values():
                timed_round(call, 3, settle)
            agentwatch.shutdown()
            stub.clear()
        for _ in range(args.rounds):
            for mode in modes:
                if mode != "baseline":
                    agentwatch.init(**settings[mode])
                try:
                    for name, (call, count, per) in workloads.items():
                        cpu, wall = timed_round(call, count, settle)
                        samples[name][mode].append((cpu / per, wall / per))
                finally:
                    agentwatch.shutdown()
                stub.clear()
        profile = ""
        if not args.no_profile:
            agentwatch.init(**settings["down"])
            try:
                profile = profile_summary(lambda: llm.call(messages), 300, "down, LLM.call()", settle=settle)
            finally:
                agentwatch.shutdown()

    print(median_table(f"CrewAI, {args.rounds} interleaved rounds of {args.calls} LLM calls and {CREWS} crews; "
                       "medians; stub provider in-process on loopback", samples, modes,
                       {"LLM.call()": TARGET_US, "crew kickoff (per LLM call, 3 per crew)": TARGET_US}))
    if profile:
        print(profile)


if __name__ == "__main__":
    main()
