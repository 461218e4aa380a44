"""``serve --workers N`` spreads kept-alive clients over its worker processes.

Which worker holds a connection is read from the system: the connection's inode in ``/proc/net/tcp`` and the worker
whose file descriptors include it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agentwatch.server import ServerHandle, SQLiteStore
from agentwatch.server._balance import BOARD_ENV, WorkerBoard, create_board_file, worker_board
from tests.server.aw_helpers import SpanFactory, gzip_json, make_trace, run_together
from tests.server.test_server_process import spawn_collector

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads sockets' owners from Linux's /proc")

_HEADERS = {"Content-Type": "application/json", "Content-Encoding": "gzip"}


def worker_holding(collector: subprocess.Popen[bytes], port: int, connection: http.client.HTTPConnection) -> int:
    """The pid of the worker process that holds the server side of ``connection``."""
    assert connection.sock is not None
    client_port = connection.sock.getsockname()[1]
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)
            if local == port and remote == client_port:
                inodes.add(f"socket:[{fields[9]}]")
    workers = Path(f"/proc/{collector.pid}/task/{collector.pid}/children").read_text().split()
    for worker in workers:
        for fd in Path(f"/proc/{worker}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return int(worker)
            except OSError:
                continue
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def test_two_clients_that_connect_together_are_served_by_different_workers(
        tmp_path: Path, signing_key: Path, make_span: SpanFactory) -> None:
    # Connected back to back, both connections usually land on one worker (the first loop to wake accepts every
    # waiting connection): 8 rounds in 10 without the balancing, measured here.
    collector, port = spawn_collector(tmp_path, signing_key, "--workers", "2")
    sent: list[int] = []
    try:
        for _ in range(4):
            connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(2)]
            for connection in connections:
                connection.connect()
            closes: list[int] = []

            def send(connection: http.client.HTTPConnection, seconds: float, closes: list[int] = closes) -> None:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    batch = make_trace(make_span, calls=15)
                    connection.request("POST", "/api/ingest", body=gzip_json(batch), headers=_HEADERS)
                    response = connection.getresponse()
                    answer = json.loads(response.read())
                    assert response.status == 202 and answer["accepted"] == 16
                    sent.append(16)
                    closes.append(response.will_close)  # http.client reconnects for the next request

            # A second at a time, up to five: on a loaded machine (CI at load 8) a reconnect can land on the same
            # worker again, the other one not scheduled within its 5 ms stand-aside. Without the balancing no
            # reconnect is ever asked for, and the clients never spread.
            for _window in range(5):
                threads = [threading.Thread(target=send, args=(connection, 1.0)) for connection in connections]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                owners = {worker_holding(collector, port, connection) for connection in connections}
                if len(owners) == 2:
                    break
            assert len(owners) == 2, f"both clients on worker {owners} after {sum(closes)} reconnects"
            # Once spread, they stay: no further reconnect is asked for.
            closes.clear()
            threads = [threading.Thread(target=send, args=(connection, 0.5)) for connection in connections]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sum(closes) == 0
            assert {worker_holding(collector, port, connection) for connection in connections} == owners
            for connection in connections:
                connection.close()
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=30)
    store = SQLiteStore(tmp_path / "crash.db")
    try:
        assert store.counts()["spans"] == sum(sent)  # a reconnect loses no span and stores none twice
    finally:
        store.close()


_SDK_PROGRAM = """
import sys, agentwatch
port, count = int(sys.argv[1]), int(sys.argv[2])
agentwatch.init(proxy_url=f"http://127.0.0.1:{port}/api/ingest", max_queue_size=count + 100, max_batch_size=50,
                flush_interval=0.01, auto_instrument=False)
with agentwatch.trace("balance"):
    for _ in range(count - 1):
        with agentwatch.llm_call("chat", model="gpt-4o-mini", provider="openai") as call:
            call.set_usage(100, 20)
ok = agentwatch.flush(60)
state = agentwatch.get_state()["exporter"]
agentwatch.shutdown()
sys.exit(0 if ok and state["dropped"] == state["failed"] == 0 else 3)
"""


def test_sdk_processes_deliver_every_span_to_a_multi_worker_collector(
        tmp_path: Path, signing_key: Path) -> None:
    collector, port = spawn_collector(tmp_path, signing_key, "--workers", "2")
    try:
        programs = [subprocess.Popen([sys.executable, "-c", _SDK_PROGRAM, str(port), "6000"]) for _ in range(3)]
        assert [program.wait(timeout=120) for program in programs] == [0, 0, 0]
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=30)
    store = SQLiteStore(tmp_path / "crash.db")
    try:
        assert store.metrics(None, None)["llm_calls"] == 3 * 5999  # each program: its trace's root and 5,999 calls
    finally:
        store.close()


def test_a_single_process_collector_never_asks_a_client_to_reconnect(
        server: ServerHandle, make_span: SpanFactory) -> None:
    answers: list[Any] = []

    def send() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for _ in range(40):
            connection.request("POST", "/api/ingest", body=gzip_json(make_trace(make_span, calls=3)), headers=_HEADERS)
            response = connection.getresponse()
            response.read()
            answers.append((response.status, response.will_close))
        connection.close()

    threads = [threading.Thread(target=send) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [(202, False)] * 120


def test_workers_that_start_together_take_slots_of_their_own(tmp_path: Path) -> None:
    board = create_board_file()
    try:
        def work(index: int) -> None:
            mine = WorkerBoard(board)
            mine.publish(index + 1, 0)
            time.sleep(0.5)  # until every other one has published
            # The others published 2..6 (for the first) or 1..6 without its own: a shared slot loses one.
            assert mine.fewest_elsewhere(10**12) == (2 if index == 0 else 1)

        assert run_together(6, work) == [0] * 6
        # The six are gone: a worker started now sees no other, and takes over their slots as it needs.
        assert WorkerBoard(board).fewest_elsewhere(1) is None
        for _ in range(70):  # more workers, in turn, than the board has slots
            assert run_together(1, lambda _: WorkerBoard(board).close()) == [0]
    finally:
        board.unlink()


def test_a_worker_whose_board_is_gone_serves_without_sharing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(BOARD_ENV, str(tmp_path / "removed.board"))
    assert worker_board() is None
    assert "does not share the clients" in caplog.text
