"""Fixtures for the collector tests: real SQLite files, the real app, a real uvicorn server on loopback.

``client`` runs every API test three times: on the SQLite store, on the ClickHouse store over embedded ClickHouse
(the ``chdb`` package, one database per test), and on the ClickHouse store's server path (the official driver,
``clickhouse-connect``, against ClickHouse's HTTP interface on loopback). Without chdb or clickhouse-connect
those runs skip, or fail when ``AGENTWATCH_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from agentwatch.server import ServerHandle, Settings, SQLiteStore, create_app, start_background
from agentwatch.server._signing import ReportSigner
from tests.server.aw_helpers import SpanFactory, WebhookHandler, span_factory

if TYPE_CHECKING:
    from agentwatch.server._clickhouse import ClickHouseStore


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The collector reads its configuration from the environment; a developer's own must not leak in.
    for name in ("API_KEY", "JWT_SECRET", "HOST", "PORT", "AGENTWATCH_DB", "CORS_ORIGINS", "ZERO_DATA_RETENTION",
                 "DATA_RETENTION_DAYS", "AGENTWATCH_SIGNING_KEY", "SMTP_HOST", "SMTP_PORT", "ALERT_EMAIL",
                 "AGENTWATCH_WORKERS", "AGENTWATCH_SYNCHRONOUS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One RSA key for the whole run: generating a 3072-bit key per test would dominate the suite's time."""
    path = tmp_path_factory.mktemp("keys") / "signing-key.pem"
    ReportSigner(path)
    return path


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path) -> Settings:
    # Rules are evaluated by the tests themselves (deterministic clocks), not by the background thread.
    return Settings(db_path=tmp_path / "agentwatch.db", signing_key_path=signing_key,
                    alert_interval_seconds=3600, alert_min_interval_seconds=3600)


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One embedded ClickHouse for the run (chdb allows one data directory per process); tests get databases."""
    if importlib.util.find_spec("chdb") is None:
        if os.environ.get("AGENTWATCH_REQUIRE_SERVICES") == "1":
            pytest.fail("chdb is not installed (pip install chdb)")
        pytest.skip("chdb is not installed")
    from agentwatch.server._clickhouse_conn import ChdbConnection

    path = tmp_path_factory.mktemp("chdb")
    keeper = ChdbConnection(path, "default")  # keeps the engine up between tests
    yield path
    keeper.close()


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of ClickHouse's HTTP interface on loopback (tests/stubs/clickhouse_http.py: the real engine
    in a process of its own), for the store's server path through the official driver."""
    for module in ("chdb", "clickhouse_connect"):
        if importlib.util.find_spec(module) is None:
            if os.environ.get("AGENTWATCH_REQUIRE_SERVICES") == "1":
                pytest.fail(f"{module} is not installed (pip install -e '.[dev]')")
            pytest.skip(f"{module} is not installed")
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen([sys.executable, "-m", "tests.stubs.clickhouse_http",
                                str(tmp_path_factory.mktemp("clickhouse-server"))],
                               cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        if not port:
            pytest.fail("the ClickHouse HTTP stub did not start")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(params=["sqlite", "clickhouse", "clickhouse-server"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.contextmanager
def _fresh_clickhouse_store(kind: str, request: pytest.FixtureRequest) -> Iterator[ClickHouseStore]:
    """A ClickHouse store on a database of its own: over chdb (``clickhouse``) or on the server (``clickhouse-server``);
    dropped after."""
    from agentwatch.server._clickhouse import ClickHouseStore

    database = f"t_{uuid.uuid4().hex}"
    if kind == "clickhouse-server":
        opened = ClickHouseStore(f"clickhouse://{request.getfixturevalue('clickhouse_server')}/{database}")
    else:
        opened = ClickHouseStore(f"chdb://{request.getfixturevalue('chdb_dir')}?database={database}")
    try:
        yield opened
    finally:
        opened.drop_database()
        opened.close()


@pytest.fixture
def client(settings: Settings, store_kind: str, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    if store_kind == "sqlite":
        with TestClient(create_app(settings=settings), base_url="http://localhost") as test_client:
            yield test_client
        return
    with _fresh_clickhouse_store(store_kind, request) as opened, \
            TestClient(create_app(store=opened, settings=settings), base_url="http://localhost") as test_client:
        yield test_client


@pytest.fixture
def collector(settings: Settings, store_kind: str, request: pytest.FixtureRequest) -> Iterator[ServerHandle]:
    """A real collector on loopback, on each store ``client`` runs on, for programs that send it their spans."""
    with contextlib.ExitStack() as stack:
        store = None if store_kind == "sqlite" else stack.enter_context(_fresh_clickhouse_store(store_kind, request))
        handle = start_background(settings=settings, store=store, port=0)
        try:
            yield handle
        finally:
            handle.stop()


@pytest.fixture(params=["clickhouse", "clickhouse-server"])
def clickhouse_store(request: pytest.FixtureRequest) -> Iterator[ClickHouseStore]:
    """The ClickHouse store by itself, over chdb and on the server."""
    with _fresh_clickhouse_store(request.param, request) as opened:
        yield opened


@pytest.fixture
def server(settings: Settings) -> Iterator[ServerHandle]:
    handle = start_background(settings=settings, port=0)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "store.db")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def make_span() -> SpanFactory:
    return span_factory()


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real webhook receiver on 127.0.0.1: its URL and the JSON bodies it received."""
    received: list[dict[str, Any]] = []
    handler = type("Hook", (WebhookHandler,), {"received": received})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", received
    finally:
        httpd.shutdown()
        httpd.server_close()
