"""What a hard budget's reservation adds to a local admission (issue 14: target <= 3 us).

Run: ``python bench/bench_hard_budget.py [--iterations N] [--passes P]``. Times, per call, admit + settle on
the global monitor (budget set, nothing tripped) in three modes, interleaved over passes so that machine load
hits them alike: ``soft`` (no hard budget), ``hard`` (``hard_budget=True``, a USD amount reserved and
released) and ``hard+estimate`` (the amount computed from a typical chat request body, as the provider layer
does). Prints medians and the difference to ``soft``. Reports only: timings depend on the box.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import agentwatch
from agentwatch._breaker import Monitor, admit, settle
from agentwatch._reservation import estimator

__all__ = ["main"]

BODY = {"model": "gpt-4o-mini", "max_tokens": 512, "temperature": 0.2, "messages": [
    {"role": "system", "content": "You are a careful research assistant. Answer briefly and cite sources."},
    {"role": "user", "content": "Summarise the main findings of the attached report in three bullet points."},
]}


def _time(step: Callable[[], None], iterations: int, batch: int = 100) -> list[float]:
    samples: list[float] = []
    for _ in range(max(1, iterations // batch)):
        start = time.perf_counter_ns()
        for _ in range(batch):
            step()
        samples.append((time.perf_counter_ns() - start) / batch / 1000.0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50_000)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    client = agentwatch.init(exporters=[], auto_instrument=False)
    soft = Monitor("global", "soft", budget_per_hour=1e9, block_on_threshold=True)
    hard = Monitor("global", "hard", budget_per_hour=1e9, block_on_threshold=True, hard_budget=True)
    soft_stack, hard_stack = (soft,), (hard,)
    estimate = estimator(client, "gpt-4o-mini", "openai", BODY)
    print(f"worst case of the sample request: ${estimate():.6f}")

    def soft_call() -> None:
        settle(admit(soft_stack, reserve=0.0005), cost_usd=0.0001, error=False)

    def hard_call() -> None:
        settle(admit(hard_stack, reserve=0.0005), cost_usd=0.0001, error=False)

    def hard_estimated() -> None:
        settle(admit(hard_stack, reserve=estimate), cost_usd=0.0001, error=False)

    modes = {"soft": soft_call, "hard": hard_call, "hard+estimate": hard_estimated}
    results: dict[str, list[float]] = {name: [] for name in modes}
    for step in modes.values():
        _time(step, 5_000)  # warm up
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(args.passes):
            for name, step in modes.items():
                results[name].extend(_time(step, args.iterations // args.passes))
    finally:
        if gc_was_enabled:
            gc.enable()
    base = statistics.median(results["soft"])
    for name, samples in results.items():
        median = statistics.median(samples)
        samples.sort()
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        added = "" if name == "soft" else f", added {median - base:+.2f} us"
        print(f"admit+settle {name:>14}: median {median:.2f} us, p99 {p99:.2f} us{added}")
    agentwatch.shutdown()


if __name__ == "__main__":
    main()
