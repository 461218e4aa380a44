"""Memory of a real ``agentwatch serve`` process (its RSS, read from /proc) across requests it refuses: what a
refused request held must be freed when it is answered, not kept until a full garbage collection."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.test_server_process import LAUNCH, free_port, wait_until_serving

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
        wait_until_serving(process, port, timeout=60)
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


def _chunked_post(port: int, path: str, total: int) -> tuple[bytes, int]:
    """POST ``total`` bytes chunked (64 KiB at a time) until the server answers: (status line, bytes sent)."""
    chunk = b" " * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n".encode())
        sent = 0
        try:
            while sent < total:
                if select.select([connection], [], [], 0)[0]:
                    break  # answered before the body ended
                connection.sendall(b"10000\r\n" + chunk + b"\r\n")
                sent += len(chunk)
            else:
                connection.sendall(b"0\r\n\r\n")
            answer = connection.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""
        return answer.split(b"\r\n", 1)[0], sent


@pytest.mark.parametrize("path", ["/api/control", "/api/circuit-breaker/pause", "/api/alerts"])
def test_a_json_route_stops_reading_a_body_past_its_bound(collector: Collector, path: str) -> None:
    """A route that takes a few KB of JSON read any body whole before answering 422: one 300 MB chunked body to
    /api/control took RSS from 79 to 678 MB, for good. Now the client is answered 413 at the first MiB over the
    bound, and nothing of it is kept."""
    idle = collector.rss()
    status, sent = _chunked_post(collector.port, path, 96 * MB)
    assert status in (b"HTTP/1.1 413 Request Entity Too Large", b"")  # b"": the close reached us first
    assert sent < 16 * MB, f"{sent // MB} MB were sent before the answer"
    assert collector.rss() - idle < 30 * MB


def test_a_declared_length_over_the_bound_is_refused_at_once(collector: Collector) -> None:
    """Content-Length: 100 GB was waited for (the body read, had it come). Now 413 is the answer to the
    headers; the ingest routes keep their own (larger) cap, and a small body is taken as before."""
    for path, declared in (("/api/control", 2 * MB), ("/api/limits/agent/a", 10**11),
                           ("/api/crons/nightly", 10**11), ("/api/ingest", 10**11)):
        with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as connection:
            method = "PUT" if path.startswith(("/api/limits", "/api/crons")) else "POST"
            connection.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                               f"Content-Length: {declared}\r\n\r\n".encode())
            answer = b""
            while chunk := connection.recv(65536):  # to the close that follows a 413
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413 "), (path, answer[:80])
        # The bound named is the one the client may send: for ingest its own (AGENTWATCH_MAX_BODY_BYTES), not the
        # backstop's margin above it (the answer said 11534336 bytes where 10485760 is the cap).
        cap = 10 * MB if path == "/api/ingest" else MB
        assert f"larger than {cap} bytes".encode() in answer, (path, answer)
    # Within the bound: the route answers (422: not a valid report; 202: stored).
    assert collector.post("/api/control", b'{"x": "' + b"y" * 500_000 + b'"}')[0] == 422
    span = {"trace_id": "cd" * 16, "span_id": "1" * 16, "name": "big", "start_time_unix_nano": time.time_ns(),
            "attributes": {"text": "z" * (2 * MB)}}
    assert collector.post("/api/ingest", json.dumps(span).encode())[0] == 202
