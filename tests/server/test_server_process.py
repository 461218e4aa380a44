"""The collector as a running server: crash safety, concurrency, retention, worker processes, CLI."""

from __future__ import annotations

import http.client
import importlib.util
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
from tests.server.aw_helpers import SpanFactory, gzip_json, make_trace

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
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "collector exited during start-up"
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise TimeoutError("collector did not start")


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
    with TestClient(create_app(settings=settings)) as client:
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
    with TestClient(create_app(settings=settings.replace(data_retention_days=0))) as client:
        assert client.get("/api/traces").json()["total"] == 2


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
    if importlib.util.find_spec("agentwatch.server._demo") is None:
        assert cli_main(["demo", "--no-serve"]) == 2
        assert "LangGraph plugin" in capsys.readouterr().err
