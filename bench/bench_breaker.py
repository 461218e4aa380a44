"""Micro-benchmark of the breaker's common path: admit + settle through a stack of scopes, nothing tripped.

Run: ``python bench/bench_breaker.py [--iterations N] [--depth D]``. Prints per-call median and p99 in
microseconds (each sample times a batch of calls, so timer overhead is spread out). Reports only: the
target (<= 5 us median at depth 3) is judged by a person, not asserted, because timings depend on the box.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from agentwatch._breaker import Monitor, admit, settle

__all__ = ["main", "run"]


def _stack(depth: int) -> list[Monitor]:
    # Every limit is set (and generous) so each check really runs; innermost first, global last.
    monitors = [
        Monitor("agent", f"agent-{level}", budget_per_hour=1e9, max_error_rate=0.99,
                max_calls_per_minute=10**12, block_on_threshold=True)
        for level in range(depth - 1)
    ]
    monitors.append(Monitor("global", "global", budget_per_hour=1e9, max_error_rate=0.99,
                            max_calls_per_minute=10**12, block_on_threshold=True))
    return monitors


def run(iterations: int, depth: int, batch: int = 100) -> dict[str, float]:
    """Time ``iterations`` admit+settle calls; per-call statistics in microseconds."""
    monitors = _stack(depth)
    for _ in range(2_000):  # warm up (and fill the windows a little)
        settle(admit(monitors, trace_id="t"), cost_usd=0.001, error=False)
    samples: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection in one batch would only add noise unrelated to the breaker
    try:
        for _ in range(max(1, iterations // batch)):
            start = time.perf_counter_ns()
            for _ in range(batch):
                settle(admit(monitors, trace_id="t"), cost_usd=0.001, error=False)
            samples.append((time.perf_counter_ns() - start) / batch / 1000.0)
    finally:
        if gc_was_enabled:
            gc.enable()
    samples.sort()
    return {
        "median_us": statistics.median(samples),
        "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        "min_us": samples[0],
        "calls": float(len(samples) * batch),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200_000)
    parser.add_argument("--depth", type=int, default=3)
    args = parser.parse_args()
    for depth in sorted({1, args.depth}):
        stats = run(args.iterations, depth)
        print(f"admit+settle, depth {depth}: median {stats['median_us']:.2f} us, p99 {stats['p99_us']:.2f} us, "
              f"min {stats['min_us']:.2f} us per call ({int(stats['calls'])} calls)")


if __name__ == "__main__":
    main()
