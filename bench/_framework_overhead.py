"""Shared by the framework benches (CrewAI, AutoGen/AG2, LlamaIndex): modes, CPU timing, profile summary.

Every framework bench compares, in one process with interleaved rounds, no AgentWatch against a plain
``init()`` (the default HTTP exporter and its spool) with the collector down (a closed loopback port) and,
unless skipped, up (``agentwatch serve`` on SQLite in its own process). The machine is shared, so rounds
are timed in process CPU time (every thread of this process: the caller's, the framework's pools, the
export worker), next to wall time; the medians over rounds are compared.

On a loaded machine even CPU medians move by more than these overheads (a crewAI crew costs ~40 ms of
CPU per LLM call, the target is 100 µs). For decisions, count instructions instead: run one mode under
``valgrind --tool=callgrind --instr-atstart=no`` and switch counting on around the timed calls with
``callgrind_control -i on <pid>`` (then ``off``), no AgentWatch against plain ``init()``; the difference
per call, divided by the core cycle's count (``start_llm_call`` + ``set_usage`` + ``end``, ~54k
instructions, 3.6 µs in ``bench_core``), is what AgentWatch adds in core cycles.
"""

from __future__ import annotations

import atexit
import contextlib
import cProfile
import gc
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))

__all__ = ["ROOT", "SteppedClock", "Timing", "collector", "init_settings", "median_table", "profile_summary",
           "scratch_dir", "timed_round"]


class SteppedClock:
    """The monitors' clock under callgrind, advancing 50 us per reading: a call there takes ~50 ms, and with the
    real clock each would open a window bucket of its own (work a program at full speed does once a second)."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        self.now += 50e-6
        return self.now

#: A closed port: the collector a new user has not started yet.
DOWN_URL = "http://127.0.0.1:9/api/ingest"

Timing = tuple[float, float]  # (CPU µs per call, wall µs per call)


@contextlib.contextmanager
def collector(wanted: bool) -> Iterator[str | None]:
    """A real collector in its own process (its ingest URL), or None when skipped."""
    if not wanted:
        yield None
        return
    from bench_openai_overhead import _collector

    with _collector() as url:
        yield url


def scratch_dir(prefix: str) -> str:
    """A temporary directory (a spool) removed when the bench exits."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(_remove_after_shutdown, path)
    return path


def _remove_after_shutdown(path: str) -> None:
    # AgentWatch's own exit hook was registered at its import, before this one, so it runs after it: its exit flush
    # would spool into the directory again once removed. Shut down first (shutdown is idempotent).
    import agentwatch

    agentwatch.shutdown(1.0)
    shutil.rmtree(path, ignore_errors=True)


def init_settings(collector_url: str | None) -> dict[str, dict[str, Any]]:
    """``init()`` keyword arguments per instrumented mode: only where to send (and spool), as a user would."""
    modes: dict[str, dict[str, Any]] = {"down": {"proxy_url": DOWN_URL, "spool_dir": scratch_dir("aw-bench-fw-")}}
    if collector_url is not None:
        modes["up"] = {"proxy_url": collector_url, "spool_dir": scratch_dir("aw-bench-fw-")}
    return modes


def timed_round(call: Callable[[], Any], count: int, settle: Callable[[], Any] | None = None) -> Timing:
    """Process CPU and wall µs per call over ``count`` calls (``settle`` waits for deferred work, counted)."""
    gc.collect()
    cpu, wall = time.process_time_ns(), time.perf_counter_ns()
    for _ in range(count):
        call()
    if settle is not None:
        settle()
    return (time.process_time_ns() - cpu) / count / 1000, (time.perf_counter_ns() - wall) / count / 1000


Samples = dict[str, dict[str, list[Timing]]]  # case -> mode -> one timing per round


def interleaved_rounds(cases: dict[str, Callable[[], Any]], settings: dict[str, dict[str, Any]], rounds: int,
                       count: Callable[[str], int], warm_up: int) -> tuple[tuple[str, ...], Samples]:
    """Each mode in turn (no AgentWatch, then ``init(**settings[mode])`` for each setting) times every case,
    ``rounds`` times after one warm-up round of ``warm_up`` calls per case (imports, caches, prices); returns
    the modes and the timings per case and mode."""
    import agentwatch

    modes = ("baseline", *settings)
    samples: Samples = {name: {mode: [] for mode in modes} for name in cases}
    for round_index in range(rounds + 1):
        for mode in modes:
            if mode != "baseline":
                agentwatch.init(**settings[mode])
            try:
                for name, call in cases.items():
                    timing = timed_round(call, count(name) if round_index else warm_up)
                    if round_index:
                        samples[name][mode].append(timing)
            finally:
                agentwatch.shutdown()
    return modes, samples


def median_table(title: str, samples: dict[str, dict[str, list[Timing]]], modes: tuple[str, ...],
                 targets: dict[str, float] | None = None) -> str:
    """Per workload: CPU and wall medians per mode and what each instrumented mode adds to the baseline."""
    lines = [title, f"{'workload':<44}{'mode':>10}{'CPU µs':>10}{'added':>9}{'wall µs':>10}{'added':>9}"]
    for workload, per_mode in samples.items():
        base_cpu = statistics.median(t[0] for t in per_mode["baseline"])
        base_wall = statistics.median(t[1] for t in per_mode["baseline"])
        for mode in modes:
            if not per_mode.get(mode):
                continue
            cpu = statistics.median(t[0] for t in per_mode[mode])
            wall = statistics.median(t[1] for t in per_mode[mode])
            goal = ""
            if targets and workload in targets and mode != "baseline":
                goal = f"   [goal ≤ {targets[workload]:.0f}]"
            added_cpu = f"{cpu - base_cpu:+9.1f}" if mode != "baseline" else " " * 9
            added_wall = f"{wall - base_wall:+9.1f}" if mode != "baseline" else " " * 9
            lines.append(f"{workload if mode == 'baseline' else '':<44}{mode:>10}{cpu:>10.1f}{added_cpu}"
                         f"{wall:>10.1f}{added_wall}{goal}")
    return "\n".join(lines)


def profile_summary(call: Callable[[], Any], count: int, label: str, top: int = 10,
                    settle: Callable[[], Any] | None = None) -> str:
    """Where AgentWatch's time goes per call: cProfile of every thread's AgentWatch functions is not possible,
    so this is the calling thread's (plus ``settle``), own functions only, cProfile-inflated."""
    profiler = cProfile.Profile(time.thread_time_ns, 1e-9)  # CPU, not wall: the machine is shared
    profiler.enable()
    for _ in range(count):
        call()
    if settle is not None:
        settle()
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = [(tottime, cumtime, calls, func) for func, (_, calls, tottime, cumtime, _) in stats.items()
            if "/agentwatch/" in func[0] or f"{ROOT}/core/" in func[0] or f"{ROOT}/plugins/" in func[0]]
    lines = [f"profile ({label}; calling thread, thread CPU, cProfile-inflated): AgentWatch's own time "
             f"{sum(row[0] for row in rows) / count * 1e6:.1f} µs/call; top:"]
    for tottime, cumtime, calls, (filename, line, name) in sorted(rows, key=lambda row: row[0], reverse=True)[:top]:
        lines.append(f"  {tottime / count * 1e6:6.2f} µs self {cumtime / count * 1e6:7.2f} µs cum "
                     f"{calls / count:4.1f}/call  {Path(filename).parent.name}/{Path(filename).name}:{line} {name}")
    return "\n".join(lines)
