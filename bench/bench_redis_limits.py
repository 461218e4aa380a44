"""Cost of fleet-wide limits: admit + settle per LLM call, local windows vs Redis windows and breaker state.

Starts a throw-away redis-server on 127.0.0.1 (loopback: the floor of the round trip; add your network's
RTT per scope and per phase on a real deployment). "added" is the median admit+settle minus the local
one: what fleet-wide limits cost per call (target <= 300 us for one scope on loopback). The "breaker
record present" case is a scope whose fleet state was changed once (paused, then reset): the admission
script then also finds a record to compare. Run: python bench/bench_redis_limits.py [calls]
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time

from agentwatch._breaker import Monitor, admit, settle
from agentwatch._redis_windows import RedisWindowStore, backend_for


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _measure(monitors: list[Monitor], calls: int) -> tuple[float, float, float, float]:
    admit_ns: list[int] = []
    settle_ns: list[int] = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        admission = admit(monitors)
        t1 = time.perf_counter_ns()
        settle(admission, cost_usd=0.0025, error=False)
        t2 = time.perf_counter_ns()
        admit_ns.append(t1 - t0)
        settle_ns.append(t2 - t1)
    both = sorted(a + s for a, s in zip(admit_ns, settle_ns, strict=True))
    return (statistics.median(admit_ns) / 1e3, statistics.median(settle_ns) / 1e3, statistics.median(both) / 1e3,
            both[int(len(both) * 0.99) - 1] / 1e3)


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    port = _free_port()
    server = subprocess.Popen(["/usr/bin/redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        backend = backend_for(f"redis://127.0.0.1:{port}/0")
        limits = {"budget_per_hour": 1e9, "max_error_rate": 0.5, "max_calls_per_minute": 10**9}
        recovered = Monitor("global", "r", store=RedisWindowStore(backend, "global", "r"), **limits)
        recovered.pause(60.0)
        recovered.reset_windows()  # CLOSED again, with a breaker record (and a generation) in Redis
        cases = {
            "local, 1 scope": [Monitor("global", "g", **limits)],
            "redis, 1 scope": [Monitor("global", "g", store=RedisWindowStore(backend, "global", "g"), **limits)],
            "redis, 1 scope, breaker record present": [recovered],
            "redis, 2 scopes (agent + global)": [
                Monitor("agent", "a", store=RedisWindowStore(backend, "agent", "a"), **limits),
                Monitor("global", "g2", store=RedisWindowStore(backend, "global", "g2"), **limits)],
        }
        print(f"{calls} calls each, median microseconds (p99 of admit+settle)")
        local_us = 0.0
        for name, monitors in cases.items():
            _measure(monitors, min(500, calls))  # warm-up: scripts loaded, connections open
            admit_us, settle_us, total_us, p99 = _measure(monitors, calls)
            local_us = local_us or total_us
            print(f"  {name:40s} admit {admit_us:7.1f}  settle {settle_us:7.1f}  p99 total {p99:8.1f}  "
                  f"added {total_us - local_us:7.1f}")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
