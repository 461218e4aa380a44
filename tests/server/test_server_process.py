"""The collector as a running server: crash safety, concurrency, retention, worker processes, CLI."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agentwatch.server import ServerHandle, Settings, SQLiteStore, create_app, start_background
from agentwatch.server._cli import main as cli_main
from agentwatch.server._stats import DAY_NS
from tests.server.aw_helpers import SpanFactory, gzip_json, make_trace, run_together

HERE = Path(__file__).resolve().parent
# The same import set-up as the tests, for a collector in a process of its own.
LAUNCH = "import sys; from agentwatch.server._cli import main; sys.exit(main(sys.argv[1:]))"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post(port: int, body: bytes, timeout: float = 30) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/api/ingest", body=body,
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def spawn_collector(tmp_path: Path, signing_key: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "AGENTWATCH_SIGNING_KEY": str(signing_key)}
    process = subprocess.Popen([sys.executable, "-c", LAUNCH, "serve", "--port", str(port), "--db",
                                str(tmp_path / "crash.db"), "--log-level", "warning", *extra], env=env)
    try:
        wait_until_serving(process, port, timeout=60)
    except BaseException:
        process.kill()
        raise
    return process, port


def wait_until_serving(process: subprocess.Popen[Any], port: int, timeout: float = 120) -> None:
    """Return once the collector ``process`` started answers /health on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the collector exited during start-up"
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("the collector did not start")


def test_sigkill_loses_no_acknowledged_batch(tmp_path: Path, signing_key: Path, make_span: SpanFactory) -> None:
    process, port = spawn_collector(tmp_path, signing_key, "--workers", "1")
    batches = [[span for _ in range(32) for span in make_trace(make_span, calls=7)] for _ in range(60)]
    acknowledged: list[list[dict[str, Any]]] = []
    stop = threading.Event()

    def send() -> None:
        for batch in batches:
            if stop.is_set():
                return
            try:
                status, _ = post(port, gzip_json(batch))
            except OSError:
                return
            if status == 202:
                acknowledged.append(batch)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        deadline = time.monotonic() + 60
        while len(acknowledged) < 15 and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)  # mid-stream: no shutdown hook, no final checkpoint
        process.wait(timeout=30)
    finally:
        stop.set()
        sender.join(timeout=60)
    assert 15 <= len(acknowledged) < len(batches)
    store = SQLiteStore(tmp_path / "crash.db")
    try:
        counts = store.counts()
        expected = sum(len(batch) for batch in acknowledged)
        # Every acknowledged span is there; at most the batch in flight at the kill is there unacknowledged.
        assert expected <= counts["spans"] <= expected + 256
        for batch in acknowledged[-3:]:
            assert len(store.trace_spans(batch[0]["trace_id"])) == 8
        assert store.metrics(None, None)["spans"] == counts["spans"]
    finally:
        store.close()


def test_worker_processes_share_the_database(tmp_path: Path, signing_key: Path, make_span: SpanFactory) -> None:
    process, port = spawn_collector(tmp_path, signing_key, "--workers", "2")
    try:
        batches = [make_trace(make_span, calls=7) * 8 for _ in range(24)]  # each sent twice: duplicates
        results: list[dict[str, Any]] = []

        def send(share: list[list[dict[str, Any]]]) -> None:
            for batch in share:
                status, body = post(port, gzip_json(batch))
                assert status == 202
                results.append(body)

        threads = [threading.Thread(target=send, args=(batches[i::4],)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(r["accepted"] for r in results) == 24 * 8
        assert sum(r["duplicates"] for r in results) == 24 * 8 * 7
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    store = SQLiteStore(tmp_path / "crash.db")
    try:
        assert store.counts() == {"spans": 24 * 8, "traces": 24}
    finally:
        store.close()


def test_concurrent_clients_on_a_real_server(server: ServerHandle, make_span: SpanFactory) -> None:
    traces = [make_trace(make_span, calls=5) for _ in range(40)]
    payloads = [gzip_json([span for trace in traces[i:i + 4] for span in trace]) for i in range(0, 40, 4)]
    answers: list[dict[str, Any]] = []

    def send() -> None:
        for body in payloads:  # every client sends everything: each span is accepted exactly once
            status, answer = post(server.port, body)
            assert status == 202
            answers.append(answer)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(a["accepted"] for a in answers) == 240
    assert sum(a["duplicates"] for a in answers) == 3 * 240
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/api/metrics")
    metrics = json.loads(connection.getresponse().read())
    assert metrics["spans"] == 240 and metrics["traces"] == 40 and metrics["llm_calls"] == 200


def test_two_stores_on_one_file_serialise_their_writes(tmp_path: Path, make_span: SpanFactory) -> None:
    from agentwatch.server._ingest import parse_spans

    first, second = SQLiteStore(tmp_path / "shared.db"), SQLiteStore(tmp_path / "shared.db")
    try:
        batches = [parse_spans(json.dumps(make_trace(make_span, calls=9)).encode(), 100).records for _ in range(30)]

        def write(store: SQLiteStore) -> None:
            for records in batches:
                store.ingest(records)

        threads = [threading.Thread(target=write, args=(store,)) for store in (first, second, first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert first.counts() == {"spans": 300, "traces": 30}
        assert second.metrics(None, None)["spans"] == 300
    finally:
        first.close()
        second.close()


def test_old_data_is_deleted_on_start(tmp_path: Path, signing_key: Path, make_span: SpanFactory) -> None:
    path = tmp_path / "retention.db"
    now = time.time_ns()
    store = SQLiteStore(path)
    old = make_trace(make_span, start=now - 40 * DAY_NS, agent="ancient")
    new = make_trace(make_span, start=now - 2 * DAY_NS)
    from agentwatch.server._ingest import parse_spans

    store.ingest(parse_spans(json.dumps(old + new).encode(), 100).records)
    store.record_breaker_event({"event": "triggered", "to_state": "open", "scope": "global",
                                "timestamp_unix_nano": now - 40 * DAY_NS}, "sdk-alert")
    store.close()
    settings = Settings(db_path=path, signing_key_path=signing_key, data_retention_days=30)
    with TestClient(create_app(settings=settings), base_url="http://localhost") as client:
        assert client.get("/api/traces").json()["total"] == 1
        assert client.get("/api/metrics").json()["spans"] == 4
        assert [a["agent_id"] for a in client.get("/api/cost/by-agent").json()["agents"]] == ["researcher"]
        assert client.get("/api/traces", params={"agent_id": "ancient"}).json()["total"] == 0
        assert client.get("/api/circuit-breaker/history").json()["transitions"] == []
        assert client.get(f"/api/traces/{old[0]['trace_id']}/spans").status_code == 404
    # 0 keeps everything.
    store = SQLiteStore(path)
    store.ingest(parse_spans(json.dumps(make_trace(make_span, start=now - 400 * DAY_NS)).encode(), 100).records)
    store.close()
    app = create_app(settings=settings.replace(data_retention_days=0))
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/api/traces").json()["total"] == 2


def test_purged_text_is_not_left_in_the_database_file(tmp_path: Path, make_span: SpanFactory,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite leaves a deleted row's bytes in the file unless ``secure_delete`` is on, and its default is off (the
    Debian build this runs on turns it on): the prompts a retention purge deleted stayed readable there."""
    import sqlite3

    from agentwatch.server._ingest import parse_spans

    connect = sqlite3.connect

    def as_sqlite_ships(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = connect(*args, **kwargs)
        connection.execute("PRAGMA secure_delete=OFF")  # what a build with SQLite's defaults starts with
        return connection

    monkeypatch.setattr(sqlite3, "connect", as_sqlite_ships)
    marker = "PURGEDPROMPT7f3a"
    old = [make_span(start=time.time_ns() - 40 * DAY_NS + index, input=[{"role": "user", "content": marker * 20}])
           for index in range(200)]
    path = tmp_path / "purge.db"
    store = SQLiteStore(path)
    store.ingest(parse_spans(json.dumps(old).encode(), 1000).records)
    assert store.purge(time.time_ns() - 30 * DAY_NS)["spans"] == 200
    store.close()
    left = {file.name: file.read_bytes().count(marker.encode()) for file in tmp_path.iterdir()
            if file.name.startswith("purge.db")}
    assert not any(left.values()), left


def test_start_background_from_another_module(tmp_path: Path, make_span: SpanFactory) -> None:
    handle = start_background("127.0.0.1", 0, tmp_path / "bg.db")
    try:
        assert handle.running and handle.port > 0 and handle.url == f"http://127.0.0.1:{handle.port}"
        status, answer = post(handle.port, gzip_json(make_trace(make_span)))
        assert status == 202 and answer["accepted"] == 4
    finally:
        handle.stop()
    assert not handle.running
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", handle.port, timeout=1).request("GET", "/health")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main([])
    assert cli_main(["verify", str(tmp_path / "missing.pdf")]) == 2
    assert cli_main(["serve", "--port", "99999", "--db", str(tmp_path / "x.db")]) == 2


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_port_0_says_the_port_it_listens_on(tmp_path: Path, signing_key: Path, workers: str) -> None:
    """Found 2026-12-06: `agentwatch serve --port 0` announced "http://127.0.0.1:0"; with --log-level warning (no
    uvicorn line) the port a client must use was nowhere to be read. With --workers 2 it still did (uvicorn bound a
    socket of its own for the workers)."""
    import re

    env = {**os.environ, "AGENTWATCH_SIGNING_KEY": str(signing_key)}
    process = subprocess.Popen([sys.executable, "-c", LAUNCH, "serve", "--port", "0", "--db", str(tmp_path / "p.db"),
                                "--workers", workers, "--log-level", "warning"], env=env, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        found = re.match(r"AgentWatch collector on http://127\.0\.0\.1:(\d+) ", first)
        assert found is not None and found.group(1) != "0", first
        wait_until_serving(process, int(found.group(1)), timeout=60)
    finally:
        process.terminate()
        process.wait(30)
    assert process.returncode == 0


def test_demo_without_langgraph_says_what_to_install(tmp_path: Path) -> None:
    # A fresh interpreter in which LangGraph cannot be imported, as after `pip install agentwatch[server]`.
    hide_langgraph = "import sys; sys.modules['langgraph'] = None; "
    result = subprocess.run([sys.executable, "-c", hide_langgraph + LAUNCH, "demo", "--no-serve", "--port", "0",
                             "--db", str(tmp_path / "demo.db")], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert result.returncode == 2, result.stderr
    assert "needs the LangGraph plugin" in result.stderr and "agentwatch[langchain,server]" in result.stderr
    assert not (tmp_path / "demo.db").exists()


def _serve_and_fail(db: Path, signing_key: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "AGENTWATCH_SIGNING_KEY": str(signing_key)}
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-c", LAUNCH, "serve", "--port", str(free_port()), "--db", str(db)],
                            env=env, capture_output=True, text=True, timeout=60)
    return result, time.monotonic() - began


@pytest.mark.parametrize("content", [b"this is my shopping list, not a database\n" * 100,
                                     b"SQLite format 3\x00" + bytes(range(256)) * 64])
def test_a_file_that_is_not_a_database_is_one_clear_line(tmp_path: Path, signing_key: Path, content: bytes) -> None:
    db = tmp_path / "notes.db"
    db.write_bytes(content)
    result, took = _serve_and_fail(db, signing_key)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(db) in lines[0] and "--db" in lines[0] and "Traceback" not in result.stderr
    assert db.read_bytes() == content  # nothing was written to the user's file
    print(f"not a database: exit in {took:.1f} s")


def test_a_locked_database_is_reported_promptly(tmp_path: Path, signing_key: Path) -> None:
    import sqlite3

    db = tmp_path / "busy.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result, took = _serve_and_fail(db, signing_key)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "locked" in lines[0] and str(db) in lines[0], result.stderr
    assert "waited 3 s" in lines[0]  # not SQLite's silent 30 s
    print(f"locked: exit in {took:.1f} s")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks the processes that open the database together")
def test_worker_processes_that_open_a_new_database_together_all_start(tmp_path: Path) -> None:
    # serve --workers N: every worker opens the file at start-up. A fresh file is switched to WAL, which SQLite
    # refuses at once ("database is locked") to all but one of those that try at the same moment.
    for round_ in range(60):
        path = tmp_path / f"fresh-{round_}.db"
        assert run_together(4, lambda _, path=path: SQLiteStore(path).close()) == [0] * 4
