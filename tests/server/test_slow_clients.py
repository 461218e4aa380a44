"""Clients that stop sending a request are disconnected after the read timeout (AGENTWATCH_READ_TIMEOUT), over real
sockets to a running collector with a short timeout; slow clients that keep sending are served."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentwatch.server import ServerHandle, Settings, start_background
from tests.server.aw_helpers import SpanFactory

TIMEOUT = 1.0
# Long enough to tell a disconnect from a collector that waits for ever, short enough for a fast test.
PATIENCE = TIMEOUT + 4


@pytest.fixture
def quick(tmp_path: Path, signing_key: Path) -> Iterator[ServerHandle]:
    settings = Settings(db_path=tmp_path / "slow.db", signing_key_path=signing_key, read_timeout_seconds=TIMEOUT,
                        alert_interval_seconds=3600, alert_min_interval_seconds=3600)
    handle = start_background(settings=settings)
    yield handle
    handle.stop()


def _connect(handle: ServerHandle) -> socket.socket:
    connection = socket.create_connection((handle.host, handle.port), timeout=PATIENCE)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def _answer_then_close(connection: socket.socket) -> bytes:
    """All the collector sends until it closes the connection; fails if it is still open after PATIENCE s."""
    received = b""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        connection.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            return received
        received += chunk
    pytest.fail(f"the connection is still open after {PATIENCE} s (received {received[:80]!r})")


def _head(path: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_headers_must_arrive_within_the_timeout_even_a_byte_at_a_time(quick: ServerHandle) -> None:
    stalled = _connect(quick)
    stalled.sendall(b"POST /api/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ")
    started = time.monotonic()
    assert _answer_then_close(stalled).startswith(b"HTTP/1.1 408 ")
    assert TIMEOUT * 0.9 <= time.monotonic() - started
    # Each byte within the timeout of the last, the whole header not: the deadline is not pushed back.
    trickle = _connect(quick)
    started = time.monotonic()
    with pytest.raises(OSError):
        for byte in _head("/api/ingest", 2):
            trickle.sendall(bytes([byte]))
            time.sleep(TIMEOUT / 5)
            assert time.monotonic() - started < PATIENCE, "still open"
    assert time.monotonic() - started < TIMEOUT + 2


def test_a_body_that_stops_arriving_is_dropped_and_a_slow_one_is_served(quick: ServerHandle,
                                                                         make_span: SpanFactory) -> None:
    for path in ("/api/ingest", "/v1/traces"):
        stalled = _connect(quick)
        stalled.sendall(_head(path, 1_000_000) + b"[" + b" " * 500_000)
        assert _answer_then_close(stalled).startswith(b"HTTP/1.1 408 "), path
    # A body that keeps coming, each pause shorter than the timeout, all of it longer: stored.
    body = json.dumps([make_span()]).encode()
    slow = _connect(quick)
    slow.sendall(_head("/api/ingest", len(body)))
    pieces = [body[index:index + len(body) // 4 + 1] for index in range(0, len(body), len(body) // 4 + 1)]
    for piece in pieces:
        time.sleep(TIMEOUT / 2)
        slow.sendall(piece)
    answer = slow.recv(65536)
    slow.close()
    assert answer.startswith(b"HTTP/1.1 202 "), answer
    with httpx.Client(base_url=quick.url, timeout=10) as client:
        assert client.get("/api/metrics").json()["spans"] == 1


def test_the_read_timeout_is_configured_from_the_environment() -> None:
    assert Settings.from_env({}).read_timeout_seconds == 30.0
    assert Settings.from_env({"AGENTWATCH_READ_TIMEOUT": "2.5"}).read_timeout_seconds == 2.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ValueError, match="AGENTWATCH_READ_TIMEOUT"):
            Settings.from_env({"AGENTWATCH_READ_TIMEOUT": bad})


def _exchange(handle: ServerHandle, *parts: bytes) -> bytes:
    """What the collector answers to ``parts`` (sent as they come) until it closes the connection."""
    connection = _connect(handle)
    try:
        for part in parts:
            try:
                connection.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # refused before the rest was read
        return _answer_then_close(connection)
    except ConnectionResetError:
        return b""
    finally:
        connection.close()


def test_headers_larger_than_the_bound_are_refused_as_they_arrive(quick: ServerHandle) -> None:
    """Found 2026-12-06 (server probe 13): uvicorn's httptools protocol puts no bound on a request's headers. One
    request with a 200 MB header raised the collector's peak memory by 320 MB before the read timeout ended it.
    Headers over 64 KiB now get 431 as soon as the bound is passed; a request within it, its body arriving in the
    same reads as the end of its headers, and several on one connection are served as before."""
    from agentwatch.server._read_timeouts import MAX_HEADER_BYTES

    megabyte = b"a" * (1 << 20)
    answer = _exchange(quick, b"GET /api/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ", *[megabyte] * 50,
                       b"\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ") and str(MAX_HEADER_BYTES).encode() in answer, answer[:200]
    many = b"".join(b"X-%d: %s\r\n" % (index, b"b" * 100) for index in range(20_000))
    answer = _exchange(quick, b"GET /api/traces HTTP/1.1\r\nHost: 127.0.0.1\r\n", many, b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    cookie = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + b"c" * 60_000 + b"\r\nConnection: close\r\n\r\n"
    assert _exchange(quick, cookie).startswith(b"HTTP/1.1 200 ")
    spans = json.dumps([{"trace_id": "ab", "span_id": str(index), "name": "x", "start_time_unix_nano": 1}
                        for index in range(5000)]).encode()
    assert len(spans) > 4 * MAX_HEADER_BYTES
    answer = _exchange(quick, _head("/api/ingest", len(spans)).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
                       + spans)
    assert answer.startswith(b"HTTP/1.1 202 "), answer[:200]
    # Each request of a kept-alive connection has the bound to itself.
    with httpx.Client(base_url=quick.url, timeout=10) as client:
        for _ in range(3):
            assert client.get("/health", headers={"X-Pad": "p" * 40_000}).status_code == 200


def test_the_rest_of_a_body_refused_before_it_was_read_is_not_counted_as_the_next_request_s_headers(
        tmp_path: Path, signing_key: Path, make_span: SpanFactory) -> None:
    """Found by CI (2026-12-06): a body declared larger than ``/api/ingest`` takes is refused (413) before a byte of it
    is read, on a connection kept alive; the client sends the body anyway (as httpx does) and then its next request.
    The rest of the refused body, arriving after the answer, was counted as the next request's headers: past 64 KiB
    the client got 431 for a request it had not finished sending, or for its next one."""
    settings = Settings(db_path=tmp_path / "cap.db", signing_key_path=signing_key, max_body_bytes=64 * 1024,
                        alert_interval_seconds=3600, alert_min_interval_seconds=3600)
    handle = start_background(settings=settings)
    connection = _connect(handle)
    try:
        body = b"[" + b" " * (200 * 1024) + b"]"
        connection.sendall(_head("/api/ingest", len(body)))
        first = b""
        while b"\r\n\r\n" not in first or not first.endswith(b"}"):
            first += connection.recv(65536)
        assert first.startswith(b"HTTP/1.1 413 "), first[:200]
        for start in range(0, len(body), 16 * 1024):  # after the answer, as a client that writes it all first sends it
            connection.sendall(body[start:start + 16 * 1024])
        time.sleep(0.2)
        span = json.dumps(make_span(name="after")).encode()
        connection.sendall(_head("/api/ingest", len(span)).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
                           + span)
        second = _answer_then_close(connection)
    finally:
        connection.close()
        handle.stop()
    assert second.startswith(b"HTTP/1.1 202 "), second[:200]
