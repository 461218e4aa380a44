"""Operator control: what it costs the LLM-call path, and how fast an operator's action reaches processes.

    /work/venv/bin/python bench/bench_remote_control.py [--calls 2000] [--rounds 10] [--trips 5]

1. Hot path. One openai client with an in-process httpx transport (no socket: no loopback jitter), exporting to
   a real collector on loopback. Rounds alternate ``init(remote_control=True)`` (the export worker polls
   ``/api/control`` about every second, each ingest answer carries the control version) and
   ``init(remote_control=False)``; the medians of all per-call times are compared, and each round pair's own
   difference is printed (drift between rounds cancels in it). The control round trip runs on the export
   worker, never in the call: the difference should be noise.
2. Round trip. Three SDK programs (plain ``init()``, no Redis) loop calls against the loopback stub; the
   operator POSTs a kill and then a resume, ``--trips`` times. Printed: seconds from the POST to each process's
   first blocked call, and from the resume to its first call going through (target: within 2 s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import openai  # noqa: E402

import agentwatch  # noqa: E402
from agentwatch.server import start_background  # noqa: E402
from tests.stubs.agent_process import PROGRAM, Agent  # noqa: E402
from tests.stubs.provider_server import StubProvider  # noqa: E402

_CANNED = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
}).encode()


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=_CANNED, headers={"content-type": "application/json"})


def _round(url: str, remote: bool, calls: int) -> list[float]:
    agentwatch.init(proxy_url=f"{url}/api/ingest", remote_control=remote, spool_dir="")
    client = openai.OpenAI(api_key="sk-bench", base_url="http://bench.invalid/v1", max_retries=0,
                           http_client=httpx.Client(transport=httpx.MockTransport(_answer)))
    times = []
    messages = [{"role": "user", "content": "hi"}]
    for _ in range(calls):
        start = time.perf_counter()
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
    agentwatch.shutdown()
    return times


def hot_path(url: str, calls: int, rounds: int) -> None:
    _round(url, True, 200)  # warm-up: imports, price table, first connection
    on: list[float] = []
    off: list[float] = []
    pairs = []
    for index in range(rounds):
        first = index % 2 == 0
        a = _round(url, first, calls)
        b = _round(url, not first, calls)
        with_control, without = (a, b) if first else (b, a)
        on += with_control
        off += without
        pairs.append((statistics.median(with_control) - statistics.median(without)) * 1e6)
    print(f"hot path, {calls} calls x {rounds} rounds per arm (in-process transport, exporting to the collector)")
    print(f"  median per call, remote_control=True : {statistics.median(on) * 1e6:8.1f} us")
    print(f"  median per call, remote_control=False: {statistics.median(off) * 1e6:8.1f} us")
    quartiles = statistics.quantiles(pairs, n=4)
    print(f"  per-round difference (on - off): median {statistics.median(pairs):+.1f} us, "
          f"25th-75th {quartiles[0]:+.1f} .. {quartiles[2]:+.1f} us")


def round_trip(url: str, trips: int) -> None:
    with tempfile.TemporaryDirectory() as folder, StubProvider() as provider:
        program = Path(folder) / "agent_loop.py"
        program.write_text(PROGRAM)
        agents = [Agent(name, program, url, provider.openai_base_url) for name in ("researcher", "writer", "critic")]
        api = httpx.Client(base_url=url, timeout=30)
        kill_s: list[float] = []
        resume_s: list[float] = []
        try:
            for agent in agents:
                agent.wait_for(ok=True)
            for _ in range(trips):
                sent = time.time()
                api.post("/api/circuit-breaker/kill", json={"reason": "bench"})
                kill_s += [agent.wait_for(ok=False, reason="operator_kill")["t"] - sent for agent in agents]
                sent = time.time()
                api.post("/api/circuit-breaker/resume", json={"reason": "bench"})
                resume_s += [agent.wait_for(ok=True)["t"] - sent for agent in agents]
        finally:
            for agent in agents:
                agent.process.kill()
                agent.process.wait(timeout=30)
    print(f"round trip, 3 processes x {trips} kills and resumes (calls every 50 ms + call time)")
    print(f"  POST kill -> first blocked call : median {statistics.median(kill_s):.2f} s, max {max(kill_s):.2f} s")
    print(f"  POST resume -> first call through: median {statistics.median(resume_s):.2f} s, "
          f"max {max(resume_s):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--trips", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        handle = start_background(port=0, db_path=Path(folder) / "bench.db")
        try:
            hot_path(handle.url, args.calls, args.rounds)
            round_trip(handle.url, args.trips)
        finally:
            handle.stop()


if __name__ == "__main__":
    main()
