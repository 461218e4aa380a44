"""Fixtures for the reliability suite: loopback fault servers, the soak switch, subprocess helpers.

``AGENTWATCH_SOAK=1`` multiplies the load and durations of the tests that read ``soak`` (a longer run for
nightly jobs); the default sizes keep the whole folder well under 3 minutes on 2 cores.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOAK = os.environ.get("AGENTWATCH_SOAK", "").strip().lower() in ("1", "true", "yes", "on")


def scale(fast: int, soak: int) -> int:
    """A load figure: ``fast`` in CI, ``soak`` with ``AGENTWATCH_SOAK=1``."""
    return soak if SOAK else fast


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


#: Framework plugins no subprocess test exercises. Loading them costs seconds per interpreter (crewai's import
#: alone took 6-16 s at the time of writing), which would swamp the timings measured here.
UNUSED_PLUGINS = {"AGENTWATCH_DISABLED_PLUGINS": "crewai,llamaindex,autogen,ag2"}


def run_script(code: str, tmp_path: Path, *, timeout: float = 90, env: dict[str, str | None] | None = None,
               name: str = "script.py") -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (no AGENTWATCH_* variables from the developer's shell; spans it
    cannot deliver are spooled under ``tmp_path``, not in the user's cache). ``env`` values of None unset."""
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    base["PYTHONPATH"] = str(ROOT) + os.pathsep + base.get("PYTHONPATH", "")
    merged = {**base, **UNUSED_PLUGINS, "AGENTWATCH_SPOOL_DIR": str(tmp_path / "spool"), **(env or {})}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in merged.items() if v is not None}, cwd=str(ROOT))


def spooled_files(spool: Path) -> list[Path]:
    """The batches under a spool directory, oldest first: the collector's body in Zstandard (``.json.zst``: not
    compressed for sending) or gzip (``.json.gz``: as sent), or the export queue's entries as rows (``.rows1.zst``: the
    collector known down)."""
    found = [path for ending in ("*.json.zst", "*.json.gz", "*.rows1.zst") for path in spool.rglob(ending)]
    return sorted(found, key=lambda path: path.name)


#: A row's fields (``agentwatch._span.span_fields``), the attributes' keys and values last.
ROW_FIELDS = ("trace_id", "span_id", "parent_span_id", "name", "kind", "status", "start_time_unix_nano",
              "end_time_unix_nano", "agent_id", "agent_name", "agent_role", "model", "provider", "input_tokens",
              "output_tokens", "cached_input_tokens", "cost_usd", "input", "output", "keys", "values")


def spooled_bytes(path: Path) -> bytes:
    """A spooled batch inflated, by a decoder of its format's own (not the SDK's)."""
    if path.name.endswith(".json.gz"):
        return gzip.decompress(path.read_bytes())
    if sys.version_info >= (3, 14):
        from compression import zstd  # type: ignore[import-not-found]
    else:
        from backports import zstd  # type: ignore[import-not-found,no-redef]
    return bytes(zstd.decompress(path.read_bytes()))


def spooled_spans(path: Path) -> list[dict[str, Any]]:
    """A spooled collector batch's spans as the collector gets them (a rows batch read by its fields' names)."""
    document = json.loads(spooled_bytes(path))
    if not path.name.endswith(".rows1.zst"):
        return list(document)
    spans = []
    for row in document:
        span = dict(zip(ROW_FIELDS, row, strict=True))
        span["attributes"] = dict(zip(span.pop("keys"), span.pop("values"), strict=True))
        spans.append(span)
    return spans


def stored_span_ids(db_path: Path) -> list[str]:
    """Every span_id row in a collector database (read-only; a WAL left by a killed server is replayed)."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return [row[0] for row in connection.execute("SELECT span_id FROM spans")]
    finally:
        connection.close()


# ---- fault servers ------------------------------------------------------------------------------

class FaultServer(ThreadingHTTPServer):
    """A loopback "collector" that misbehaves: ``slow`` (answers 200 after ``delay`` s), ``status`` (answers
    ``status`` to everything), ``close`` (reads the request, then drops the connection without a word)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, mode: str, *, status: int = 500, delay: float = 5.0) -> None:
        super().__init__(("127.0.0.1", 0), _FaultHandler)
        self.mode = mode
        self.status = status
        self.delay = delay
        self.requests = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/ingest"


class _FaultHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultServer

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with self.server.lock:
            self.server.requests += 1
        mode = self.server.mode
        if mode == "close":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if mode == "slow" and self.server.stopping.wait(self.server.delay):
            self.close_connection = True
            return
        status = self.server.status if mode == "status" else 200
        body = b'{"detail":"fault"}' if status >= 300 else b'{"accepted":0,"duplicates":0}'
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass

    def handle_error(self, *args: object) -> None:  # pragma: no cover - a client hanging up is normal
        pass


@pytest.fixture
def fault_server() -> Iterator[Callable[..., FaultServer]]:
    servers: list[FaultServer] = []

    def start(mode: str, **kwargs: Any) -> FaultServer:
        server = FaultServer(mode, **kwargs)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stopping.set()
        server.shutdown()
        server.server_close()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture(autouse=True)
def _clean_collector_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("API_KEY", "ZERO_DATA_RETENTION", "DATA_RETENTION_DAYS", "AGENTWATCH_DB", "CORS_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
