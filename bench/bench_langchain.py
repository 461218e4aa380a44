"""LangChain/LangGraph handler overhead: AgentWatch vs LangChain's own callback floor, Langfuse and OpenInference.

Each mode runs in its own subprocess (the instrumentations patch LangChain globally), timing a fake
chat-model ``invoke`` and a 3-node LangGraph run; passes interleave the modes (so a change in machine load
hits all alike) and the table shows medians and the added time per call and per graph step over the
uninstrumented baseline. Modes:

- ``noop handler``: a do-nothing ``BaseCallbackHandler`` passed in ``callbacks``: what LangChain's callback
  machinery itself costs for one handler (the floor any tracer pays). Goal: AgentWatch within 10 us of it.
- ``agentwatch none``: ``init(exporters=[])``. ``agentwatch down``: plain ``init()`` (the default HTTP exporter
  and its spool) with no collector. ``agentwatch up``: plain ``init()`` sending to a real collector
  (``agentwatch serve``, SQLite) in its own process.
- ``langfuse``: its ``CallbackHandler`` (host unreachable); ``openinference``: ``LangChainInstrumentor`` with
  an OpenTelemetry batch processor.

Each figure is given as wall time (median of rounds and passes) and as CPU time: this thread's, the least of the
rounds, which load on a shared machine inflates less, and the whole process's: that plus the other threads' (the
export worker's) mean over the rounds, as its batches fall in some rounds only (the least round would leave them out);
the least over the passes for both. A
profile summary (cProfile of AgentWatch's own functions per chat call and per graph step) of each AgentWatch mode
follows the table, and the garbage collections each mode set off during 30k more chat calls of the first pass
(``_collections``).

``--instructions`` instead counts, with callgrind, the instructions on the user's thread per chat call and graph
step (baseline, do-nothing handler, each AgentWatch mode): the same figure whatever the machine's load.

    python bench/bench_langchain.py [--passes N] [--no-profile] [--instructions]
"""

from __future__ import annotations

import argparse
import gc
import json
import operator
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Annotated, Any, TypedDict

MODES = ("baseline", "noop handler", "agentwatch none", "agentwatch down", "agentwatch up", "langfuse",
         "openinference")
#: Every pass runs each mode once, in turn, so a change in machine load hits all modes alike.
PASSES = 5
ROUNDS = 3
CALLS = 400
#: Chat calls watched for garbage collections (``_collections``), from the settled state: about the interval between
#: full collections when the spans themselves were queued (~28k calls), so one may fall inside the window or just
#: outside it; the young and middle collections show the objects kept alive either way.
GC_CALLS = 30_000
#: The wall-clock figures (median of rounds and passes); the CPU ones are the least.
WALL = ("invoke_us", "step_us")


class State(TypedDict):
    log: Annotated[list[str], operator.add]


def _workload() -> tuple[Any, Any]:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langgraph.graph import END, START, StateGraph

    class FakeModel(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "bench-fake"

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
            usage = {"input_tokens": 1000, "output_tokens": 200, "total_tokens": 1200}
            message = AIMessage(content="ok", usage_metadata=usage, response_metadata={"model_name": "gpt-4o"})
            return ChatResult(generations=[ChatGeneration(message=message)])

    model = FakeModel()

    def node(name: str) -> Any:
        return lambda state: {"log": [name + str(model.invoke(name).content)]}

    graph = StateGraph(State)
    for name in ("a", "b", "c"):
        graph.add_node(name, node(name))
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return model, graph.compile()


def _setup(mode: str, collector: str) -> list[Any]:
    """Instrument like a user would; returns callbacks to pass (empty for zero-config modes)."""
    if mode == "noop handler":
        from langchain_core.callbacks import BaseCallbackHandler

        class Noop(BaseCallbackHandler):
            pass

        return [Noop()]
    if mode.startswith("agentwatch"):
        import agentwatch

        if mode == "agentwatch none":
            agentwatch.init(exporters=[])
        elif mode == "agentwatch down":
            from _framework_overhead import scratch_dir

            agentwatch.init(proxy_url="http://127.0.0.1:9/api/ingest", spool_dir=scratch_dir("aw-lc-"))
        else:
            agentwatch.init(proxy_url=collector)
        return []
    if mode == "langfuse":
        os.environ.update(LANGFUSE_PUBLIC_KEY="pk-bench", LANGFUSE_SECRET_KEY="sk-bench",
                          LANGFUSE_HOST="http://127.0.0.1:9", LANGFUSE_BASE_URL="http://127.0.0.1:9")
        from langfuse.langchain import CallbackHandler

        return [CallbackHandler()]
    if mode == "openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter(), max_queue_size=100_000))
        LangChainInstrumentor().instrument(tracer_provider=provider)
    return []


def _child(mode: str, collector: str, profile: bool, watch_gc: bool) -> None:
    callbacks = _setup(mode, collector)
    model, graph = _workload()
    config = {"callbacks": callbacks} if callbacks else {}
    for _ in range(50):  # warm up imports, caches and price lookups
        model.invoke("hi", config=config)
        graph.invoke({"log": []}, config=config)
    # The objects of LangChain's import (after init(), which froze those before it) count toward CPython's next full
    # collection. It comes with the first collections that follow, which only a mode that allocates across calls sets
    # off (a fake chat call with no handler, or the do-nothing one, frees all it makes): ~100 ms charged to that mode's
    # rounds alone, which any program's own allocations would have set off as well. Settled here for every mode alike.
    gc.collect()
    figures: dict[str, list[float]] = {}

    def timed(key: str, work: Any, count: int, per: int) -> None:
        """Wall, this thread's CPU and the other threads' (the export worker's) per unit of work."""
        wall, thread, process = time.perf_counter_ns(), time.thread_time_ns(), time.process_time_ns()
        for _ in range(count):
            work()
        units = count * per * 1e3  # ns to us per unit
        figures.setdefault(key + "_us", []).append((time.perf_counter_ns() - wall) / units)
        figures.setdefault(key + "_thread_us", []).append((time.thread_time_ns() - thread) / units)
        figures.setdefault(key + "_others_us", []).append(
            (time.process_time_ns() - process - figures[key + "_thread_us"][-1] * units) / units)

    for _ in range(ROUNDS):
        timed("invoke", lambda: model.invoke("hi", config=config), CALLS, 1)
        timed("step", lambda: graph.invoke({"log": []}, config=config), CALLS // 4, 3)
    if profile:
        _profile(mode, "chat call", lambda: model.invoke("hi", config=config), 3000)
        _profile(mode, "graph step", lambda: graph.invoke({"log": []}, config=config), 1000, per=3)
    collections = _collections(lambda: model.invoke("hi", config=config), GC_CALLS) if watch_gc else None
    # Wall: median of the rounds. This thread's CPU: the least of the rounds (load on a shared machine only ever adds
    # to it). The other threads' (the export worker's): their mean, as a round without one of its batches would hide
    # its cost; the process's CPU is the two added.
    summary = {key: (statistics.median if key in WALL else min)(values) for key, values in figures.items()
               if not key.endswith("_others_us")}
    for what in ("invoke", "step"):
        summary[what + "_process_us"] = summary[what + "_thread_us"] + statistics.fmean(figures[what + "_others_us"])
    print(json.dumps({"mode": mode, "gc": collections, **summary}))


def _collections(call: Any, count: int) -> dict[str, float]:
    """CPython's garbage collections during ``count`` chat calls: how many of each generation per 10k calls, and the
    time they took per call (wall, on whichever thread ran them). A mode that keeps objects alive across calls (spans
    waiting for the export worker) sets off young collections, and moves objects to the oldest generation, whose
    collections go through the whole heap: invisible in a short run, a few µs a call in a long one."""
    runs = [0, 0, 0]
    spent = [0]
    started = [0]

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter_ns()
        else:
            runs[info["generation"]] += 1
            spent[0] += time.perf_counter_ns() - started[0]

    gc.callbacks.append(watch)
    try:
        for _ in range(count):
            call()
    finally:
        gc.callbacks.remove(watch)
    per_10k = 10_000 / count
    return {"young": runs[0] * per_10k, "middle": runs[1] * per_10k, "full": runs[2] * per_10k,
            "us": spent[0] / count / 1e3}


def _profile(mode: str, what: str, call: Any, count: int, per: int = 1, top: int = 8) -> None:
    """Where AgentWatch's time goes per chat call or graph step (cProfile-inflated; its own functions only)."""
    import cProfile
    import pstats
    from pathlib import Path

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        call()
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = [(tottime, cumtime, calls, func) for func, (_, calls, tottime, cumtime, _) in stats.items()
            if "/core/" in func[0] or "/plugins/" in func[0] or "agentwatch" in func[0]]
    units = count * per
    print(f"profile ({mode}, {what}, user's thread, cProfile-inflated): AgentWatch's own time "
          f"{sum(row[0] for row in rows) / units * 1e6:.1f} us per {what}; top:", file=sys.stderr)
    for tottime, cumtime, calls, (filename, line, name) in sorted(rows, reverse=True)[:top]:
        print(f"  {tottime / units * 1e6:6.2f} us self {cumtime / units * 1e6:6.2f} us cum {calls / units:4.1f}/"
              f"{what.split()[-1]}  {Path(filename).parent.name}/{Path(filename).name}:{line} {name}", file=sys.stderr)


#: ``--instructions``: each measured loop runs inside its own rarely used C function, which callgrind's
#: ``--toggle-collect`` counts alone: (loop driver, its C function) for baseline, noop handler, AgentWatch.
_TOGGLES = {"baseline": "takewhile_next", "noop handler": "dropwhile_next", "agentwatch": "filterfalse_next"}


def _instructions_child(mode: str, collector: str, what: str, count: int) -> None:
    """Run under callgrind: baseline, the do-nothing handler, then ``mode``, each ``count`` times in its loop. The
    monitors' clock steps 50 us a reading (``SteppedClock``): under callgrind a chat call takes milliseconds, and the
    real clock would open a window bucket on most calls."""
    import itertools

    from _framework_overhead import SteppedClock
    from langchain_core.callbacks import BaseCallbackHandler

    import agentwatch

    model, graph = _workload()
    work = ((lambda config: model.invoke("hi", config=config)) if what == "chat call"
            else (lambda config: graph.invoke({"log": []}, config=config)))

    class Noop(BaseCallbackHandler):
        pass

    drivers = {"takewhile_next": lambda step: list(itertools.takewhile(lambda _: step() or True, range(count))),
               "dropwhile_next": lambda step: list(itertools.dropwhile(lambda _: step() or True, range(count))),
               "filterfalse_next": lambda step: list(itertools.filterfalse(lambda _: step() and False, range(count)))}
    for name in _TOGGLES:
        if name == "agentwatch":
            _setup(mode, collector)
            client = agentwatch.get_client()
            if client is not None and client.monitor is not None:
                client.monitor._clock = SteppedClock()
        config = {"callbacks": [Noop()]} if name == "noop handler" else {}
        for _ in range(30):  # warm up outside the counted function
            work(config)
        # The objects alive now are frozen out of the collector's view: a full collection of the imports' objects fell
        # in one counted loop or another by chance (as in bench_openai_overhead.py), moving a figure by thousands.
        gc.collect()
        gc.freeze()
        drivers[_TOGGLES[name]](lambda config=config: work(config))  # type: ignore[misc]


def _instructions(collector: str, modes: list[str], chat_calls: int = 150, graph_runs: int = 30) -> None:
    """Instructions on the user's thread per chat call and graph step (callgrind: deterministic whatever the load)."""
    import re
    import shutil

    if shutil.which("valgrind") is None:
        print("instructions: valgrind not installed")
        return
    print("callgrind instructions on the user's thread (deterministic; the export worker's thread not included)")
    for mode in modes:
        cells = []
        for what, count, per in (("chat call", chat_calls, 1), ("graph step", graph_runs, 3)):
            with tempfile.TemporaryDirectory() as scratch:
                out = os.path.join(scratch, "callgrind.out")
                toggles = [f"--toggle-collect={function}" for function in _TOGGLES.values()]
                subprocess.run(["valgrind", "--tool=callgrind", "--collect-atstart=no", *toggles,
                                f"--callgrind-out-file={out}", sys.executable, __file__, "--instructions-child", mode,
                                collector, what, str(count)], capture_output=True, check=True,
                               # str hashes are seeded per process: dict probes, and so the counts, moved by
                               # ~10 % from one run to the next without a fixed seed
                               env={**os.environ, "PYTHONHASHSEED": "0"})
                annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", out], capture_output=True,
                                           text=True, check=True).stdout
            counted: dict[str, float] = {}
            for name, function in _TOGGLES.items():
                found = re.search(rf"^\s*([\d,]+) .*:{function} ", annotated, re.MULTILINE)
                counted[name] = int(found.group(1).replace(",", "")) / count / per if found else float("nan")
            cells.append(f"{what}: baseline {counted['baseline']:,.0f}, noop handler +"
                         f"{counted['noop handler'] - counted['baseline']:,.0f}, {mode} "
                         f"+{counted['agentwatch'] - counted['baseline']:,.0f} "
                         f"({counted['agentwatch'] - counted['noop handler']:+,.0f} over the noop handler)")
        print(f"  {mode:>16}: " + "; ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--passes", type=int, default=PASSES, help="interleaved passes over every mode")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile summary")
    parser.add_argument("--instructions", action="store_true",
                        help="only count instructions per call with callgrind (slow: minutes per mode)")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_openai_overhead import _collector

    if args.instructions:
        with _collector() as collector:
            _instructions(collector, ["agentwatch none", "agentwatch down", "agentwatch up"])
        return

    samples: dict[str, list[dict[str, float]]] = {}
    unavailable: set[str] = set()
    profiles: list[str] = []
    collected: dict[str, dict[str, float]] = {}
    with _collector() as collector:
        for index in range(args.passes):
            for mode in MODES:
                if mode in unavailable:
                    continue
                profiled = mode.startswith("agentwatch") and index == 0 and not args.no_profile
                run = subprocess.run([sys.executable, __file__, "--child", mode, collector, str(profiled),
                                      str(index == 0)], capture_output=True, text=True)
                if run.returncode != 0:
                    unavailable.add(mode)
                    last = run.stderr.strip().splitlines()[-1] if run.stderr else "failed"
                    print(f"{mode:>16}: not available ({last})")
                    continue
                if profiled:
                    profiles.append("\n".join(line for line in run.stderr.splitlines()
                                              if not line.startswith("agentwatch:")))
                sample = json.loads(run.stdout.strip().splitlines()[-1])
                watched = sample.pop("gc")
                if watched is not None:
                    collected[mode] = watched
                samples.setdefault(mode, []).append(sample)
    keys = [key for key in samples["baseline"][0] if key != "mode"]
    # Wall: median over passes; CPU: least over passes (as within a pass).
    results = {mode: {key: (statistics.median if key in WALL else min)(row[key] for row in rows)
                      for key in keys} for mode, rows in samples.items()}
    base = results["baseline"]
    print(f"{args.passes} interleaved passes, {ROUNDS} rounds of {CALLS} chat calls / {CALLS // 4} graph runs each. "
          "wall: median; thread CPU: least of the rounds; process CPU: that plus the other threads' (the export "
          "worker's) mean over the rounds; CPU: least of the passes")
    print(f"{'':>16} {'chat call µs':^42} {'graph step µs':^42}")
    print(f"{'mode':>16} " + " ".join(f"{'wall':>7} {'added':>6} {'thread':>7} {'added':>6} {'proc':>6} {'added':>6}"
                                      for _ in range(2)))
    for mode, row in results.items():
        cells = []
        for what in ("invoke", "step"):
            for key in (what + "_us", what + "_thread_us", what + "_process_us"):
                cells.append(f"{row[key]:>7.1f} {row[key] - base[key]:>6.1f}")
        print(f"{mode:>16} " + " ".join(cells))
    if "noop handler" in results:
        floor = results["noop handler"]
        # The same code from one process to the next: what a difference of a few µs below has to be read against.
        spread = sorted(row["invoke_thread_us"] for row in samples["noop handler"])
        print(f"the do-nothing handler from process to process ({len(spread)} passes): thread CPU {spread[0]:.1f} to "
              f"{spread[-1]:.1f} us per chat call (spread {spread[-1] - spread[0]:.1f} us)")
        for mode in ("agentwatch none", "agentwatch down", "agentwatch up"):
            if mode in results:
                over = {key: results[mode][key] - floor[key] for key in keys}
                print(f"{mode} over the do-nothing handler per chat call: wall {over['invoke_us']:+.1f} us, "
                      f"thread CPU {over['invoke_thread_us']:+.1f} us, process CPU {over['invoke_process_us']:+.1f} us"
                      f"   [goal ≤ 10]; per graph step: thread CPU {over['step_thread_us']:+.1f} us")
    others = [results[m] for m in ("langfuse", "openinference") if m in results]
    if "agentwatch down" in results and others:
        ours = results["agentwatch down"]
        for key, label in (("invoke_us", "invoke wall"), ("invoke_thread_us", "invoke thread CPU"),
                           ("step_us", "graph step wall"), ("step_thread_us", "graph step thread CPU")):
            lighter = min(r[key] - base[key] for r in others)
            print(f"AgentWatch (down) added / lighter competitor added, {label}: "
                  f"{(ours[key] - base[key]) / lighter:.2f}   [goal ≤ 0.33]")
    print(f"garbage collections during {GC_CALLS:,} chat calls of the first pass (per 10k calls: young / middle / "
          "full, and their time per call):")
    for mode, row in collected.items():
        print(f"{mode:>16}: {row['young']:6.1f} / {row['middle']:5.1f} / {row['full']:4.1f}, "
              f"{row['us']:5.2f} us a call")
    for profile in profiles:
        print(profile)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4] == "True", sys.argv[5] == "True")
    elif len(sys.argv) == 6 and sys.argv[1] == "--instructions-child":
        _instructions_child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        main()
