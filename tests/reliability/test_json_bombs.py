"""JSON bombs against the real collector process: every request within the caps is refused or processed with
bounded memory (peak RSS of the server process, read from /proc, ≤ 150 MB above idle; ≤ 400 MB for three at once).
"""

from __future__ import annotations

import functools
import gzip
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.reliability.conftest import ROOT, free_port
from tests.server.test_server_process import wait_until_serving

LAUNCH = "import sys; from agentwatch.server._cli import main; sys.exit(main(sys.argv[1:]))"
ONE_MB = 1024 * 1024
pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")


class Collector:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"{key} not in /proc status")

    def rss(self) -> int:
        return self._status("VmRSS")

    def reset_peak(self) -> None:
        # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def peak(self) -> int:
        return self._status("VmHWM")

    def post(self, body: bytes, gzipped: bool) -> tuple[int, dict[str, object]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"Content-Type": "application/json"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        try:
            connection.request("POST", "/api/ingest", body=body, headers=headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    folder = tmp_path_factory.mktemp("bombs")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_") and k != "API_KEY"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen([sys.executable, "-c", LAUNCH, "serve", "--port", str(port), "--db",
                                str(folder / "bombs.db"), "--log-level", "warning"], env=env)
    handle = Collector(process, port)
    try:
        wait_until_serving(process, port, timeout=60)
        # Warm up: the first ingest imports and allocates what every later one reuses.
        assert handle.post(json.dumps(_span("warm")).encode(), False)[0] == 202
        yield handle
    finally:
        process.terminate()
        process.wait(timeout=30)


def _span(span_id: str, **extra: object) -> dict[str, object]:
    return {"trace_id": "b0b0" * 8, "span_id": span_id, "name": "bomb", "start_time_unix_nano": time.time_ns(),
            **extra}


def _nested(inner: bytes) -> bytes:
    """One valid span whose attributes hold ``inner`` (a JSON array body without brackets)."""
    head = json.dumps(_span(f"n{time.perf_counter_ns()}"))[:-1].encode()
    return head + b', "attributes": {"x": [' + inner + b"]}}"


# The issue's bombs (all refused) and the worst shapes that fit the caps (all stored); built on first use, not
# when the module is collected (they are tens of MB each).
_BUILDERS: dict[str, Callable[[], tuple[bytes, bool]]] = {
    "60 MB of {} in 59 KiB of gzip": lambda: (gzip.compress(b"[" + b"{}," * 20_000_000 + b"{}]", 9), True),
    "10 MB plain body of {}": lambda: (b"[" + b"{}," * 3_300_000 + b"{}]", False),
    "1e6 spans in 2.5 MB of gzip": lambda: (gzip.compress(json.dumps(
        [{"trace_id": "a", "span_id": str(i), "start_time_unix_nano": 1} for i in range(1_000_000)]).encode()), True),
    "one span holding 999,980 empty objects": lambda: (gzip.compress(_nested(b"{}," * 999_979 + b"{}"), 9), True),
    "one span holding 23 MB of text": lambda: (gzip.compress(_nested(b'"' + b"x" * 23_000_000 + b'"'), 9), True),
}


@functools.cache
def bomb(name: str) -> tuple[bytes, bool]:
    return _BUILDERS[name]()


def _measure(collector: Collector, bodies: list[tuple[bytes, bool]]) -> tuple[int, list[int]]:
    idle = collector.rss()
    collector.reset_peak()
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda b=body, g=gz: statuses.append(collector.post(b, g)[0]))
               for body, gz in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return collector.peak() - idle, statuses


@pytest.mark.parametrize("name", list(_BUILDERS))
def test_a_bomb_within_the_caps_costs_at_most_150_mb(collector: Collector, name: str) -> None:
    body, gzipped = bomb(name)
    grown, statuses = _measure(collector, [(body, gzipped)])
    assert statuses and statuses[0] in (202, 413), statuses
    assert grown <= 150 * ONE_MB, f"{name}: peak RSS grew by {grown / ONE_MB:.0f} MB"
    assert collector.post(json.dumps(_span(f"after{time.perf_counter_ns()}")).encode(), False)[0] == 202


@pytest.mark.parametrize("name", ["60 MB of {} in 59 KiB of gzip", "one span holding 999,980 empty objects",
                                  "one span holding 23 MB of text"])
def test_three_bombs_at_once_cost_at_most_400_mb(collector: Collector, name: str) -> None:
    body, gzipped = bomb(name)
    if name.startswith("one span"):
        # Three distinct spans, so that the store really writes three.
        bodies = [(gzip.compress(gzip.decompress(body).replace(b'"span_id": "n', f'"span_id": "{i}'.encode()), 1),
                   True) for i in range(3)]
    else:
        bodies = [(body, gzipped)] * 3
    grown, statuses = _measure(collector, bodies)
    assert len(statuses) == 3 and set(statuses) <= {202, 413}, statuses
    assert grown <= 400 * ONE_MB, f"{name} x3: peak RSS grew by {grown / ONE_MB:.0f} MB"
    assert collector.post(json.dumps(_span(f"after{time.perf_counter_ns()}")).encode(), False)[0] == 202


def test_the_issue_bombs_are_refused_and_the_in_cap_ones_stored(collector: Collector) -> None:
    expected = {"60 MB of {} in 59 KiB of gzip": 413, "10 MB plain body of {}": 413,
                "1e6 spans in 2.5 MB of gzip": 413, "one span holding 999,980 empty objects": 202,
                "one span holding 23 MB of text": 202}
    for name, status in expected.items():
        body, gzipped = bomb(name)
        if status == 202:  # a fresh span id, so that it is stored, not a duplicate
            body = gzip.compress(gzip.decompress(body).replace(b'"span_id": "n', b'"span_id": "fresh'), 1)
        got, answer = collector.post(body, gzipped)
        assert got == status, (name, answer)
