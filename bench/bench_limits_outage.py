"""How long an outage costs the caller: a Redis limits backend that never answers, and a collector that is down.

Run: ``python bench/bench_limits_outage.py [--calls N]``. The tests assert only outcomes for these cases
(every call goes through on the local fallback, the outage is reported once, every span is counted); the
durations below depend on the machine and its load, so they are printed here instead:

- per-call time against a Redis that accepts connections and never answers (one 50 ms timeout, then
  local windows until the backoff ends): max and median;
- ``agentwatch.shutdown(timeout=2.0)`` with 2,000 queued spans and nothing listening on the ingest URL.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from importlib.metadata import entry_points

import agentwatch

__all__ = ["main"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _unresponsive_redis(calls: int) -> list[float]:
    plugins = [ep.name for ep in entry_points(group="agentwatch.plugins")]
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(100)
        url = f"redis://127.0.0.1:{blackhole.getsockname()[1]}/0"
        agentwatch.init(exporters=[], auto_instrument=False, disabled_plugins=plugins, limits_backend=url,
                        budget_per_hour=100.0)
        timings = []
        for _ in range(calls):
            began = time.perf_counter()
            with agentwatch.llm_call("chat", model="gpt-4o", provider="openai") as call:
                call.set_usage(input_tokens=10, output_tokens=0)
            timings.append(time.perf_counter() - began)
        agentwatch.shutdown()
    return timings


def _shutdown_with_collector_down() -> float:
    agentwatch.init(proxy_url=f"http://127.0.0.1:{_free_port()}/api/ingest", flush_interval=0.05,
                    max_batch_size=50, max_queue_size=500)
    for i in range(2_000):
        agentwatch.event(f"e{i}")
    began = time.perf_counter()
    agentwatch.shutdown(timeout=2.0)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    timings = _unresponsive_redis(args.calls)
    print(f"unresponsive redis, {args.calls} calls: max {max(timings) * 1e3:.1f} ms, "
          f"median {statistics.median(timings) * 1e6:.1f} µs, total {sum(timings) * 1e3:.1f} ms")
    print(f"shutdown(timeout=2.0) with the collector down: {_shutdown_with_collector_down() * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
