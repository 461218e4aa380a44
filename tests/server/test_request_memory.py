"""Memory of a real ``agentwatch serve`` process (its RSS, read from /proc) across requests it refuses: what a
refused request held must be freed when it is answered, not kept until a full garbage collection."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.test_server_process import LAUNCH, free_port

MB = 1024 * 1024
pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from Linux's /proc")


class Collector:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port

    def rss(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("VmRSS not in /proc status")

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory, signing_key: Path) -> Iterator[Collector]:
    folder = tmp_path_factory.mktemp("memory")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_") and k != "API_KEY"}
    env["AGENTWATCH_SIGNING_KEY"] = str(signing_key)
    process = subprocess.Popen([sys.executable, "-c", LAUNCH, "serve", "--port", str(port), "--db",
                                str(folder / "memory.db"), "--log-level", "warning"], env=env)
    handle = Collector(process, port)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "collector exited during start-up"
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, "collector did not start"
                time.sleep(0.05)
        span = {"trace_id": "ab" * 16, "span_id": "0" * 16, "name": "warm", "start_time_unix_nano": time.time_ns()}
        assert handle.post("/api/ingest", json.dumps(span).encode())[0] == 202  # imports what later requests use
        yield handle
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_refused_ingest_requests_free_their_bodies(collector: Collector) -> None:
    """The probe's requests: gzip bombs (413 once 24 MiB are inflated) and 9 MB bodies that are not JSON (400), on
    both ingest routes. Each refusal kept its buffers alive in a traceback cycle: +24 MiB a bomb, +17 MB an invalid
    body, never given back (RSS 183 -> 911 MB after 30 bombs). Together they stay within the 150 MB the README
    allows above idle."""
    bomb = gzip.compress(b" " * (100 * MB), 9)
    invalid = b'{"spans": "' + b"x" * 9_000_000
    gzipped_invalid = gzip.compress(b"[" + b"x" * 20_000_000)
    for path in ("/api/ingest", "/v1/traces"):  # one of each first: what every later one reuses is allocated
        assert collector.post(path, bomb, {"Content-Encoding": "gzip"})[0] == 413
        assert collector.post(path, invalid)[0] == 400
    idle = collector.rss()
    for _ in range(6):
        for path in ("/api/ingest", "/v1/traces"):
            assert collector.post(path, bomb, {"Content-Encoding": "gzip"})[0] == 413
            assert collector.post(path, invalid)[0] == 400
            assert collector.post(path, gzipped_invalid, {"Content-Encoding": "gzip"})[0] == 400
    grown = collector.rss() - idle
    assert grown < 150 * MB, f"RSS grew by {grown // MB} MB over 36 refused requests"
