from __future__ import annotations

import gzip
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import agentwatch
from agentwatch._capture import TEXT_LIMIT
from agentwatch._exporters import LOOPBACK_RAW_MAX_BYTES, HttpExporter, HttpSender


class _Collector(ThreadingHTTPServer):
    """A loopback receiver that records what the exporter sends and answers scripted statuses."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.batches: list[list[dict]] = []
        self.alerts: list[dict] = []
        self.statuses: list[int] = []
        self.headers_seen: list[dict] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/ingest"

    @property
    def spans(self) -> list[dict]:
        return [span for batch in self.batches for span in batch]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Collector

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        with self.server.lock:
            status = self.server.statuses.pop(0) if self.server.statuses else 200
            self.server.headers_seen.append(dict(self.headers))
            if 200 <= status < 300:
                payload = json.loads(body)
                if self.path.endswith("/ingest"):
                    self.server.batches.append(payload)
                else:
                    self.server.alerts.append(payload)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[_Collector]:
    server = _Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_export_is_gzip_batched_and_authenticated(collector: _Collector) -> None:
    agentwatch.init(proxy_url=collector.url, api_key="k-123", max_batch_size=50)
    for i in range(120):
        agentwatch.event(f"e{i}")
    assert agentwatch.flush(5)
    names = {span["name"] for span in collector.spans}
    assert {f"e{i}" for i in range(120)} <= names
    assert all(len(batch) <= 50 for batch in collector.batches)
    assert all(headers.get("X-API-Key") == "k-123" for headers in collector.headers_seen)
    state = agentwatch.get_state()["exporter"]
    assert state["sent"] >= 120 and state["dropped"] == 0 and state["failed"] == 0


def test_flush_is_false_when_the_collector_refused_the_batches(collector: _Collector) -> None:
    """Found 2026-12-06: with a wrong api_key the collector answered 401 to every batch, which was dropped, and
    ``agentwatch.flush()`` returned True ("reached the exporters' destinations"), so a program checking it saw
    nothing wrong."""
    agentwatch.init(proxy_url=collector.url, api_key="wrong", remote_control=False)
    collector.statuses = [401] * 20
    agentwatch.event("refused")
    assert agentwatch.flush(5) is False
    assert collector.spans == []
    collector.statuses = []  # the key fixed on the collector's side: answered 200 from now on
    agentwatch.event("accepted")
    assert agentwatch.flush(5) is True
    assert "accepted" in {span["name"] for span in collector.spans}


def test_a_refusal_while_flush_reads_it_is_not_lost(collector: _Collector) -> None:
    """Found by review 2026-12-06: ``force_flush`` read the refused-since-the-last-flush flag and then cleared it, so a
    batch the export worker had refused in between was lost: that flush and the next both returned True. Here the
    refusal (a real 401) is made at each bytecode instruction of ``force_flush`` in turn, as the worker thread could:
    either that flush or the next one must be False."""
    exporter = HttpExporter(collector.url, max_retries=0)
    missed: list[int] = []
    at = 1
    while True:
        collector.statuses = [401]
        first, reached = _flush_refused_at(exporter, at)
        if not reached:  # force_flush ended before that instruction: every one was tried
            break
        if exporter.force_flush() and first:
            missed.append(at)
        at += 1
    assert at > 3 and missed == []


def _flush_refused_at(exporter: HttpExporter, at: int) -> tuple[bool, bool]:
    """``exporter.force_flush()`` with a batch refused when it reaches its ``at``-th bytecode instruction: what it
    returned, and whether it reached that instruction."""
    code = type(exporter).force_flush.__code__
    steps = [0]

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            steps[0] += 1
            if steps[0] == at:
                assert exporter.export([{"name": "refused", "kind": "span"}]) is False
        return tracer

    def trace_calls(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is code:
            frame.f_trace_opcodes = True
            return tracer
        return None

    sys.settrace(trace_calls)
    try:
        flushed = exporter.force_flush()
    finally:
        sys.settrace(None)
    return flushed, steps[0] >= at


def test_a_collector_on_this_machine_gets_batches_as_they_are_unless_large(collector: _Collector) -> None:
    agentwatch.init(proxy_url=collector.url)
    for i in range(20):
        agentwatch.event(f"e{i}")
    assert agentwatch.flush(5)
    ingests = [headers for headers in collector.headers_seen if "Content-Encoding" not in headers]
    assert ingests and {f"e{i}" for i in range(20)} <= {span["name"] for span in collector.spans}
    # A batch over the raw limit (captured text, say) is compressed all the same: the collector caps plain bodies.
    exporter = HttpExporter(collector.url)
    assert exporter.export([{"name": "big", "kind": "span", "input": "x" * (LOOPBACK_RAW_MAX_BYTES + 1)}])
    assert collector.headers_seen[-1].get("Content-Encoding") == "gzip"
    assert collector.batches[-1][0]["name"] == "big"


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://localhost:6274/api/ingest", True), ("http://127.0.0.1:6274/api/ingest", True),
    ("http://127.8.9.10/api/ingest", True), ("http://[::1]:6274/api/ingest", True),
    ("https://collector.example.com/api/ingest", False), ("http://10.0.0.7:6274/api/ingest", False),
    ("http://127.example.com/api/ingest", False),
])
def test_only_a_collector_on_this_machine_is_sent_uncompressed_batches(url: str, loopback: bool) -> None:
    assert HttpSender(url).loopback is loopback


def test_retries_5xx_and_429_then_delivers(collector: _Collector) -> None:
    collector.statuses = [503, 429, 500]
    agentwatch.init(proxy_url=collector.url)
    agentwatch.event("survivor")
    assert agentwatch.flush(15)
    assert "survivor" in {span["name"] for span in collector.spans}


def test_a_body_is_compressed_once_however_often_it_is_retried(collector: _Collector,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    collector.statuses = [503, 429, 500]
    compressed: list[int] = []
    real_compress = zlib.compress

    def counting_compress(data: bytes, *args: Any, **kwargs: Any) -> bytes:
        compressed.append(len(data))
        return real_compress(data, *args, **kwargs)

    monkeypatch.setattr(zlib, "compress", counting_compress)
    sender = HttpSender(collector.url, backoff=0.01)
    body = json.dumps([{"name": "retried"}]).encode()

    assert sender.post_with_retries("/api/ingest", body, "application/json")
    assert len(collector.headers_seen) == 4 and compressed == [len(body)]
    assert collector.batches == [[{"name": "retried"}]]


class _IdleClosingHandler(_Handler):
    """Closes a kept-alive connection idle for 0.2 s, as uvicorn does after 5 s and most servers after some."""

    timeout = 0.2

    def do_POST(self) -> None:  # noqa: N802
        if not self.path.endswith("/v1/traces"):
            super().do_POST()
            return
        self.rfile.read(int(self.headers["Content-Length"]))  # protobuf: only counted
        with self.server.lock:
            self.server.headers_seen.append(dict(self.headers))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.mark.parametrize("exporter", ["collector", "otlp"])
def test_a_connection_the_receiver_closed_while_idle_is_no_outage(
        exporter: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found 2026-12-05: the first batch after a quiet spell longer than the receiver's keep-alive went to the closed
    connection, warned "not reachable (BrokenPipeError)" and waited a backoff, with the receiver up."""
    server = _Collector()
    server.RequestHandlerClass = _IdleClosingHandler
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = server.url.rsplit("/api/", 1)[0]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", base)
    caplog.set_level(logging.WARNING, logger="agentwatch")
    try:
        agentwatch.init(**({"proxy_url": server.url, "remote_control": False} if exporter == "collector"
                           else {"exporters": ["otlp"]}))
        for quiet in range(3):
            agentwatch.event(f"after quiet spell {quiet}")
            assert agentwatch.flush(5)
            time.sleep(0.4)
        assert len(server.headers_seen) >= 3
        assert not [record for record in caplog.records if "not reachable" in record.getMessage()]
        assert agentwatch.get_state()["exporter"]["failed"] == 0
    finally:
        agentwatch.shutdown()
        server.shutdown()
        server.server_close()


def test_breaker_records_are_forwarded_to_sdk_alert(collector: _Collector) -> None:
    agentwatch.init(proxy_url=collector.url)
    agentwatch.alert("manual one")
    assert agentwatch.flush(5)
    assert collector.alerts and collector.alerts[0]["type"] == "alert"
    assert collector.alerts[0]["message"] == "manual one"


def test_collector_down_warns_once_and_bounds_memory(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agentwatch")
    agentwatch.init(proxy_url=f"http://127.0.0.1:{_free_port()}/api/ingest", max_queue_size=100,
                    max_batch_size=10, flush_interval=0.05)
    for i in range(5_000):
        agentwatch.event(f"e{i}")
    state = agentwatch.get_state()["exporter"]
    assert state["queued"] <= 100
    assert state["dropped"] >= 4_000
    agentwatch.shutdown(timeout=1.0)
    warnings = [r for r in caplog.records if "not reachable" in r.getMessage()]
    assert len(warnings) == 1


def test_verify_reports_reachability(collector: _Collector) -> None:
    agentwatch.init(proxy_url=collector.url, exporters=[])
    assert agentwatch.verify() is True
    agentwatch.shutdown()
    agentwatch.init(proxy_url=f"http://127.0.0.1:{_free_port()}/api/ingest", exporters=[])
    assert agentwatch.verify() is False


def test_jsonl_exporter_by_name(tmp_path: Path) -> None:
    target = tmp_path / "spans.jsonl"
    agentwatch.init(exporters=[f"jsonl:{target}"])
    agentwatch.event("to-file")
    agentwatch.shutdown()
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert "to-file" in {line["name"] for line in lines}


#: What ``os.listdir`` gives for a latin-1 file name on a UTF-8 system: a str with a lone surrogate.
_NOT_UTF8_NAME = os.fsdecode(b"report-\xe9t\xe9.txt")


def _a_batch_with_one_name_that_is_not_utf8() -> None:
    for i in range(20):
        agentwatch.event(f"job-{i}")
    agentwatch.event("listing", {"file": _NOT_UTF8_NAME, _NOT_UTF8_NAME: 1})


def test_text_that_is_not_utf8_costs_neither_its_span_nor_its_batch(collector: _Collector,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    agentwatch.init(proxy_url=collector.url)
    _a_batch_with_one_name_that_is_not_utf8()
    assert agentwatch.flush(5)
    by_name = {span["name"]: span for span in collector.spans}
    assert {f"job-{i}" for i in range(20)} <= set(by_name)
    shown = "report-\ufffdt\ufffd.txt"
    assert by_name["listing"]["attributes"]["file"] == shown and by_name["listing"]["attributes"][shown] == 1
    assert agentwatch.get_state()["exporter"]["failed"] == 0
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_text_that_is_not_utf8_is_written_to_a_jsonl_file(tmp_path: Path) -> None:
    target = tmp_path / "spans.jsonl"
    agentwatch.init(exporters=[f"jsonl:{target}"])
    _a_batch_with_one_name_that_is_not_utf8()
    agentwatch.shutdown()
    lines = {line["name"]: line for line in map(json.loads, target.read_text(encoding="utf-8").splitlines())}
    assert {f"job-{i}" for i in range(20)} <= set(lines)
    assert lines["listing"]["attributes"]["file"] == "report-\ufffdt\ufffd.txt"


class _BrokenExporter:
    """A program's own exporter whose every method raises (a disk full, a bug)."""

    def export(self, spans: Any) -> bool:
        raise OSError("disk full")

    def force_flush(self, timeout: float = 5.0) -> bool:
        raise OSError("disk full")

    def shutdown(self) -> None:
        raise OSError("disk full")


def test_a_failing_user_exporter_is_logged_as_the_programs_failure(caplog: pytest.LogCaptureFixture) -> None:
    """Found 2026-12-06: a program's exporter (``init(exporters=[MyExporter()])``) that raised was logged as "internal
    error in _BrokenExporter.export (ignored)", so the program's failing exporter read as a bug of AgentWatch's. The
    log line names the exporter and its error, with the traceback; the batch counts as failed."""
    with caplog.at_level(logging.WARNING, logger="agentwatch"):
        agentwatch.init(exporters=[_BrokenExporter()])
        with agentwatch.trace("t"):
            pass
        agentwatch.flush()
        failed = agentwatch.get_client().processor.stats()["failed"]  # type: ignore[union-attr]
        agentwatch.shutdown()
    assert failed >= 1
    assert "internal error" not in caplog.text
    messages = [record.getMessage() for record in caplog.records if record.exc_info]
    for method in ("export", "force_flush", "shutdown"):
        assert any(message.startswith(f"agentwatch: your exporter _BrokenExporter.{method} raised OSError('disk full')")
                   for message in messages), messages


def test_unknown_exporter_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="nope"):
        agentwatch.init(exporters=["nope"])


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)


def test_spans_are_flushed_at_exit(tmp_path: Path) -> None:
    target = tmp_path / "exit.jsonl"
    result = _run(f"""
        import agentwatch
        agentwatch.init(exporters=["jsonl:{target}"], flush_interval=60)
        for i in range(500):
            agentwatch.event(f"e{{i}}")
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    names = {json.loads(line)["name"] for line in target.read_text().splitlines()}
    assert {f"e{i}" for i in range(500)} <= names


def test_unhandled_exception_becomes_an_error_span(tmp_path: Path) -> None:
    target = tmp_path / "crash.jsonl"
    result = _run(f"""
        import agentwatch
        agentwatch.init(exporters=["jsonl:{target}"])
        raise RuntimeError("boom")
    """, tmp_path)
    assert result.returncode == 1
    assert "RuntimeError: boom" in result.stderr  # the previous hook still printed the traceback
    errors = [json.loads(line) for line in target.read_text().splitlines() if '"kind":"error"' in line]
    assert errors and errors[0]["attributes"]["error.message"] == "boom"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_forked_child_exports_its_own_spans(tmp_path: Path) -> None:
    target = tmp_path / "fork.jsonl"
    result = _run(f"""
        import os, agentwatch
        agentwatch.init(exporters=["jsonl:{target}"], flush_interval=60)
        agentwatch.event("parent-before")
        pid = os.fork()
        if pid == 0:
            agentwatch.event("child")
            ok = agentwatch.flush(5)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        agentwatch.event("parent-after")
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    names = [json.loads(line)["name"] for line in target.read_text().splitlines()]
    assert names.count("child") == 1
    assert names.count("parent-before") == 1 and names.count("parent-after") == 1


def test_any_2xx_answer_is_delivery(collector: _Collector) -> None:
    """ATP receivers (and our collector) answer 202 Accepted: that is success, not a failure to retry."""
    collector.statuses = [202, 204]
    agentwatch.init(proxy_url=collector.url, max_batch_size=5)
    for i in range(10):
        agentwatch.event(f"accepted-{i}")
    assert agentwatch.flush(5)
    assert {f"accepted-{i}" for i in range(10)} <= {span["name"] for span in collector.spans}
    state = agentwatch.get_state()["exporter"]
    assert state["failed"] == 0 and state["spooled"] == 0


class _HugeAnswer(BaseHTTPRequestHandler):
    """Announces a 300 MB answer, sends 1 MB of it, then stalls: a reader that wants it all never returns."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(300 * 1024 * 1024))
        self.end_headers()
        self.wfile.write(b"x" * (1024 * 1024))
        self.wfile.flush()
        self.server.release.wait(30)  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        pass


def test_the_collectors_answer_is_read_only_up_to_a_bound() -> None:
    from agentwatch._exporters import MAX_ANSWER_BYTES

    server = ThreadingHTTPServer(("127.0.0.1", 0), _HugeAnswer)
    server.daemon_threads = True
    server.release = threading.Event()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sender = HttpSender(f"http://127.0.0.1:{server.server_address[1]}/api/ingest", timeout=5.0, max_retries=0)
    try:
        status, data = sender.post(sender.path, b"[]", "application/json")
        assert status == 200
        assert len(data) == MAX_ANSWER_BYTES
        assert sender.send(sender.path, b"[]", "application/json") == "sent"  # a fresh connection, not the stuck one
    finally:
        server.release.set()  # type: ignore[attr-defined]
        sender.stop()
        server.shutdown()
        server.server_close()


def test_queue_is_bounded_in_bytes_as_well_as_spans() -> None:
    limit = 2 * 1024 * 1024
    agentwatch.init(proxy_url=f"http://127.0.0.1:{_free_port()}/api/ingest", max_queue_size=100_000,
                    max_queue_bytes=limit, flush_interval=3600, max_batch_size=100_000, capture_messages=True)
    client = agentwatch.get_client()
    assert client is not None
    prompt = "p" * 20_000
    for i in range(1_000):
        span = client.start_span(f"call-{i}", "llm")
        span.input = [{"role": "user", "content": prompt}]
        client.end_span(span)
    state = agentwatch.get_state()["exporter"]
    assert state["queued_bytes"] <= limit
    # Each prompt is kept to TEXT_LIMIT characters when its span ends (agentwatch._capture).
    assert state["queued"] <= limit // TEXT_LIMIT
    assert state["dropped"] >= 1_000 - limit // TEXT_LIMIT
    agentwatch.shutdown(timeout=1.0)


def test_plain_spans_count_a_flat_size_against_the_byte_bound() -> None:
    from agentwatch._export import PLAIN_SPAN_BYTES, BatchProcessor
    from agentwatch._exporters import InMemoryExporter
    from agentwatch._span import Span

    exporter = InMemoryExporter()
    processor = BatchProcessor([exporter], max_queue_size=1_000, max_queue_bytes=10 * PLAIN_SPAN_BYTES,
                               max_batch_size=10_000, flush_interval=3600)
    try:
        for i in range(25):
            span = Span(f"plain-{i}", "llm", attributes={"latency_ms": 1.0})
            span.finish()
            processor.enqueue(span)
        assert processor.stats()["queued"] == 10 and processor.stats()["dropped"] == 15
        assert processor.stats()["queued_bytes"] == 10 * PLAIN_SPAN_BYTES
        text = Span("with-text", "llm")
        text.input = "t" * (4 * PLAIN_SPAN_BYTES)
        text.finish()
        processor.enqueue(text)  # sized: the oldest plain spans make room for it
        state = processor.stats()
        assert state["queued_bytes"] <= 10 * PLAIN_SPAN_BYTES and state["dropped"] > 15
        assert processor.force_flush(5.0)
        names = [span["name"] for span in exporter.spans]
        assert names[-1] == "with-text" and names[:-1] == sorted(names[:-1], key=lambda n: int(n.split("-")[1]))
        assert processor.stats()["queued_bytes"] == 0
    finally:
        processor.shutdown(1.0)


def test_queued_spans_are_not_moved_to_the_oldest_generation() -> None:
    """Spans wait in the queue for up to a batch, long enough for CPython's young collections to move what is then
    alive to its oldest generation, where enough such moves set off a collection of the whole heap (~70 ms with
    LangChain imported, about once per 30k LLM calls when each queued span was moved). What the queue keeps of a
    plain span is untracked by the young collections before it could be moved; the worker still exports every span
    whole."""
    import gc

    from agentwatch._export import BatchProcessor
    from agentwatch._exporters import InMemoryExporter
    from agentwatch._span import Span

    exporter = InMemoryExporter()
    processor = BatchProcessor([exporter], max_batch_size=10_000, flush_interval=3600, start=False)
    count = 2_000
    gc.collect()
    oldest = len(gc.get_objects(2))
    for i in range(count):
        span = Span(f"call-{i}", "llm", model="gpt-4o", provider="openai",
                    attributes={"latency_ms": 1.5, "gen_ai.operation.name": "chat", "stream": False})
        span.input_tokens, span.cost_usd = i, 0.25
        span.finish()
        processor.enqueue(span)
    del span
    gc.collect(0)  # as the program's own collections go: the youngest first,
    gc.collect(1)  # then the middle generation's, whose survivors go to the oldest
    moved = len(gc.get_objects(2)) - oldest
    assert processor.queued == count and moved < count // 20
    processor.start()
    try:
        assert processor.force_flush(5.0)
        assert [span["name"] for span in exporter.spans] == [f"call-{i}" for i in range(count)]
        assert exporter.spans[7]["attributes"] == {"latency_ms": 1.5, "gen_ai.operation.name": "chat", "stream": False}
        assert (exporter.spans[7]["input_tokens"], exporter.spans[7]["cost_usd"]) == (7, 0.25)
    finally:
        processor.shutdown(1.0)


def test_an_exported_batch_is_not_kept_alive_by_its_exporter(tmp_path: Path) -> None:
    """The HTTP exporter remembers the batch it last finished (for a shutdown past its deadline) without keeping its
    records alive until the next batch, which would have them moved to the oldest generation as well."""
    import gc

    from agentwatch._export import BatchProcessor
    from agentwatch._span import Span
    from agentwatch._spool import Spool

    url = f"http://127.0.0.1:{_free_port()}/api/ingest"  # nothing listens: the batch goes to the spool
    exporter = HttpExporter(url, max_retries=0, spool=Spool(tmp_path, url))
    processor = BatchProcessor([exporter], flush_interval=3600)
    try:
        for i in range(50):
            span = Span(f"kept-alive-check-{i}", "llm", attributes={"latency_ms": 1.0})
            span.finish()
            processor.enqueue(span)
        processor.force_flush(5.0)
        assert exporter.spooled == 50
        gc.collect()
        alive = [record for record in gc.get_objects()
                 if type(record) is dict and str(record.get("name")).startswith("kept-alive-check")]
        assert alive == []
    finally:
        processor.shutdown(1.0)


def test_a_stopped_processor_queues_nothing() -> None:
    from agentwatch._export import BatchProcessor
    from agentwatch._exporters import InMemoryExporter
    from agentwatch._span import Span

    exporter = InMemoryExporter()
    processor = BatchProcessor([exporter], flush_interval=3600)
    processor.shutdown(1.0)
    span = Span("late", "llm")
    span.finish()
    processor.enqueue(span)
    assert processor.stats()["queued"] == 0 and exporter.spans == []


def test_span_size_estimate_tracks_the_serialised_size() -> None:
    from agentwatch import Span
    from agentwatch._export import estimate_size

    samples = []
    plain = Span("chain", "chain", attributes={"framework": "langchain", "run_type": "chain", "tags": ["a", "b"]})
    samples.append(plain)
    chat = Span("openai.chat", "llm", attributes={"gen_ai.request.model": "gpt-4o", "temperature": 0.2})
    chat.input = [{"role": "system", "content": "s" * 2_000}, {"role": "user", "content": "u" * 18_000}]
    chat.output = "o" * 5_000
    samples.append(chat)
    many = Span("retriever", "retriever")
    many.output = [f"document {i} " + "d" * 500 for i in range(200)]
    samples.append(many)
    for span in samples:
        real = len(json.dumps(span.to_dict()))
        assert real / 2 <= estimate_size(span) <= real * 2, (span, real, estimate_size(span))


def test_a_batch_past_the_retry_budget_goes_to_the_spool_while_the_program_runs(tmp_path: Path) -> None:
    from agentwatch._exporters import HttpExporter
    from agentwatch._spool import Spool

    url = f"http://127.0.0.1:{_free_port()}/api/ingest"  # nothing listens: every attempt is refused
    spool = Spool(tmp_path, url)
    exporter = HttpExporter(url, max_retries=1, backoff=0.01, spool=spool)
    spans = [{"trace_id": "t" * 32, "span_id": f"{n:016x}", "kind": "event", "name": "kept"} for n in range(3)]
    assert exporter.export(spans) is False  # not sent...
    assert exporter.spooled == 3 and len(spool.pending(10)) == 1  # ...but kept on disk for a later delivery
    exporter.shutdown()


def test_an_unwritable_spool_drops_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from agentwatch._exporters import HttpExporter
    from agentwatch._spool import Spool

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the spool directory should be")
    spool = Spool(blocker, "http://127.0.0.1:1/api/ingest")
    exporter = HttpExporter(f"http://127.0.0.1:{_free_port()}/api/ingest", max_retries=0, spool=spool)
    caplog.set_level(logging.WARNING, logger="agentwatch")
    span = {"trace_id": "t" * 32, "span_id": "s" * 16, "kind": "event", "name": "lost"}
    assert exporter.export([span]) is False
    assert exporter.export([span]) is False
    exporter.shutdown()
    assert spool.dropped_batches == 2 and exporter.spooled == 0
    assert len([r for r in caplog.records if "cannot write the spool" in r.getMessage()]) == 1
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]


def test_spool_is_bounded_in_bytes(tmp_path: Path) -> None:
    from agentwatch._spool import Spool

    spool = Spool(tmp_path, "http://collector/api/ingest", max_bytes=10_000)
    assert all(spool.write(os.urandom(3_000)) for _ in range(3))
    assert spool.write(os.urandom(3_000)) is False
    assert spool.size() <= 10_000 and spool.dropped_batches == 1
    assert len(spool.pending(10)) == 3


def test_spool_bound_holds_with_other_writers_and_frees_room_after_delivery(tmp_path: Path) -> None:
    from agentwatch._spool import Spool

    url = "http://collector/api/ingest"
    # Two processes spooling for one collector at once, each remembering only its own writes between counts.
    first, second = Spool(tmp_path, url, max_bytes=64_000), Spool(tmp_path, url, max_bytes=64_000)
    accepted = [spool.write(os.urandom(3_000)) for _ in range(20) for spool in (first, second)]
    assert accepted.count(True) >= 20 and first.size() <= 64_000  # the bound holds and its room is used
    assert first.write(os.urandom(3_000)) is False and second.write(os.urandom(3_000)) is False
    for path in first.pending(5):  # delivered by the next run: room again, for either writer
        Spool.remove(path)
    assert first.write(os.urandom(3_000)) and second.write(os.urandom(3_000))
    assert first.size() <= 64_000


def test_a_spool_removed_while_the_program_runs_is_made_again_and_its_batches_read_back(tmp_path: Path) -> None:
    import shutil

    from agentwatch._spool import Spool

    spool = Spool(tmp_path / "cache", "http://collector/api/ingest")
    assert spool.write(b"first", 1)
    shutil.rmtree(tmp_path / "cache")  # a person clearing the cache
    path = spool.write_batch(b"second", 2)
    assert path is not None and spool.read(path) == b"second" and spool.pending(10) == [path]
    assert not [name for name in os.listdir(spool.directory) if name.endswith(".tmp")]


def test_a_zstandard_batch_is_named_for_its_encoding_and_counted_as_a_gzip_one_is(tmp_path: Path) -> None:
    from agentwatch._spool import ZSTD_BODY, ZSTD_ROWS, Spool

    spool = Spool(tmp_path, "http://collector/api/ingest", max_bytes=100)
    assert spool.write(b"z" * 40, 7, ZSTD_BODY) and spool.write(b"g" * 40, 3)
    assert spool.write(b"x" * 40, 1, ZSTD_ROWS) is False  # one bound for every form
    zstandard, gzip_batch = spool.pending(10)  # oldest first, whatever the format
    assert zstandard.name.endswith(".json.zst") and gzip_batch.name.endswith(".json.gz")
    assert [Spool.encoding_of(zstandard), Spool.encoding_of(gzip_batch)] == ["zstd", "gzip"]
    assert [Spool.spans_in(zstandard), Spool.spans_in(gzip_batch)] == [7, 3]
    assert spool.size() == 80 and spool.pending_of(os.getpid()) == [zstandard, gzip_batch]


def test_a_batch_spooled_as_rows_is_delivered_as_the_records_it_would_have_been_sent_as(tmp_path: Path) -> None:
    """With no collector there (no connection opens), a batch goes to the spool as the queue's entries (rows), no
    records made; read back, they make the very body the records would have (text, attributes of every kind, absent
    text left out)."""
    from agentwatch._compression import decoded
    from agentwatch._span import span_fields, wire_records
    from agentwatch._spool import Spool

    url = f"http://127.0.0.1:{_free_port()}/api/ingest"
    spool = Spool(tmp_path, url)
    exporter = HttpExporter(url, spool=spool, max_retries=0)
    spans = _spans_with_everything(50)
    entries = [span_fields(span) for span in spans]
    expected = exporter.body(wire_records(list(entries)))
    try:
        assert exporter.export_entries(list(entries)) is False  # no connection opens: spooled as they are
        assert exporter.export(wire_records(list(entries))) is False  # the records' way (known down): the body spooled
        rows_file, body_file = spool.pending(10)
        assert body_file.name.endswith(".json.zst") and rows_file.name.endswith(".rows1.zst")
        assert Spool.spans_in(rows_file) == 50 and exporter.spooled == 100
        rows = decoded(rows_file.read_bytes(), "zstd")
        assert rows is not None
        assert exporter.body_of_rows(rows) == expected == decoded(body_file.read_bytes(), "zstd")
        # A value orjson cannot write (an int past 64 bits): declined, left whole for the records' way (json).
        spans[0].attributes["big"] = 2**70
        odd = [span_fields(span) for span in spans]
        assert exporter.export_entries(odd) is None and odd[0] is not None and len(spool.pending(10)) == 2
    finally:
        exporter.shutdown()



def test_the_first_batch_with_no_collector_there_is_spooled_as_rows(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A program whose collector is not running: its first batch is spooled as the queue's entries, no records made
    (they cost the worker ~20k machine instructions a span more), and the collector is warned about once."""
    caplog.set_level(logging.WARNING, logger="agentwatch")
    agentwatch.init(proxy_url=f"http://127.0.0.1:{_free_port()}/api/ingest", spool_dir=str(tmp_path),
                    remote_control=False, flush_interval=3600)
    try:
        for i in range(30):
            agentwatch.event(f"e{i}")
        assert agentwatch.flush(5) is False
        for i in range(30):
            agentwatch.event(f"again{i}")
        assert agentwatch.flush(5) is False
        spooled = sorted(path.name.split(".", 1)[1] for path in tmp_path.rglob("*") if path.suffix in (".zst", ".gz"))
        assert spooled == ["rows1.zst", "rows1.zst"]
        assert sum("not reachable" in record.getMessage() for record in caplog.records) == 1
    finally:
        agentwatch.shutdown()


def test_a_collector_back_at_the_probe_gets_the_batch_and_the_spool(tmp_path: Path) -> None:
    """Rows spooled while nothing answered; at the next probe a collector is there: the batch goes the records' way
    (it has not said it takes rows), its answer says it does, the next batch goes as rows, and the spool is
    delivered."""
    from agentwatch._span import span_fields, wire_records
    from agentwatch._spool import Spool
    from agentwatch.server import Settings, start_background

    port = _free_port()
    url = f"http://127.0.0.1:{port}/api/ingest"
    exporter = HttpExporter(url, spool=Spool(tmp_path / "spool", url), max_retries=0)
    exporter.PROBE_INTERVAL = 0.2
    spans = _spans_with_everything(30)
    handle = None
    try:
        assert exporter.export_entries([span_fields(span) for span in spans[:10]]) is False
        assert exporter.sender.down and len(exporter.spool.pending(10)) == 1  # type: ignore[union-attr]
        handle = start_background(settings=Settings(db_path=tmp_path / "collector.db", alert_interval_seconds=3600),
                                  port=port)
        time.sleep(0.3)  # the probe is due
        second = [span_fields(span) for span in spans[10:20]]
        assert exporter.export_entries(list(second)) is None  # there now, rows not announced: the records' way
        assert exporter.export(wire_records(second)) is True and exporter.sender.takes_rows
        assert exporter.export_entries([span_fields(span) for span in spans[20:]]) is True
        exporter.begin_flush()
        exporter.on_idle()
        assert exporter.unspooled == 10 and not exporter.spool.pending(10)  # type: ignore[union-attr]
        assert len(_stored(url, list({span.trace_id for span in spans}))) == 30
    finally:
        exporter.shutdown()
        if handle is not None:
            handle.stop()


def _spans_with_everything(count: int) -> list[Any]:
    """Ended LLM spans with attributes of every kind, text on every third (what a batch of rows must carry whole)."""
    import datetime

    from agentwatch._span import Span

    spans = []
    for i in range(count):
        span = Span(f"call-{i}", "llm", model="gpt-4o", provider="openai",
                    attributes={"latency_ms": 1.5 + i, "stream": i % 2 == 0, "tags": ["a", "é"], "nested": {"k": [1]},
                                "none": None, "when": datetime.date(2026, 12, 6), "text": "日本語 \u2028"})
        span.input_tokens, span.output_tokens, span.cost_usd = i, 2 * i, 0.1 + i / 3
        if i % 3 == 0:
            span.input, span.output = [{"role": "user", "content": f"q{i}"}], "answer"
        span.finish()
        spans.append(span)
    return spans


def _stored(url: str, trace_ids: list[str]) -> list[dict[str, Any]]:
    import httpx

    with httpx.Client(base_url=url.rsplit("/api/", 1)[0], timeout=30) as client:
        return [span for trace_id in trace_ids for span in client.get(f"/api/traces/{trace_id}/spans").json()["spans"]]


def test_a_collector_that_takes_rows_gets_them_and_stores_what_the_records_would_have_made(tmp_path: Path) -> None:
    """A collector's answer says it takes rows: the exporter's next batches go as the queue's entries (rows), no records
    made, and the collector stores exactly what the same batch sent as records makes (two real collectors compared)."""
    from agentwatch._span import span_fields, wire_records
    from agentwatch.server import Settings, start_background

    spans = _spans_with_everything(40)
    entries = [span_fields(span) for span in spans]
    handles = [start_background(settings=Settings(db_path=tmp_path / f"{name}.db", alert_interval_seconds=3600))
               for name in ("records", "rows")]
    by_records, by_rows = (HttpExporter(f"{handle.url}/api/ingest", max_retries=0) for handle in handles)
    try:
        assert by_rows.export_entries(list(entries)) is None  # no answer yet says so: the records' way
        assert by_records.export(wire_records(list(entries))) is True
        warm_up = _spans_with_everything(1)
        assert by_rows.export(wire_records([span_fields(warm_up[0])])) is True  # its answer announces rows
        sent = list(entries)
        assert by_rows.export_entries(sent) is True and by_rows.sender.takes_rows
        assert sent[0] is not None  # taken as they are: no record made from them
        trace_ids = [span.trace_id for span in spans]
        as_records, as_rows = _stored(by_records.url, trace_ids), _stored(by_rows.url, trace_ids)
        assert len(as_rows) == 40 and as_rows == as_records
        assert as_rows[0]["input"] == [{"role": "user", "content": "q0"}] and "input" not in as_rows[1]
        assert as_rows[5]["attributes"]["when"] == "2026-12-06" and as_rows[5]["attributes"]["text"] == "日本語 \u2028"
        assert by_rows.force_flush() and by_rows.spooled == 0
    finally:
        for exporter in (by_records, by_rows):
            exporter.shutdown()
        for handle in handles:
            handle.stop()


class _RowsRefusingHandler(BaseHTTPRequestHandler):
    """A receiver that says it takes rows, then answers them ``refusal`` (a collector replaced meanwhile)."""

    protocol_version = "HTTP/1.1"
    refusal = 415
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = self.headers.get("Content-Type", "")
        self.seen.append(kind)
        self.answer(*((self.refusal, b'{"detail":"no rows"}') if "rows" in kind else (202, b'{"accepted":1}')))

    def answer(self, status: int, body: bytes) -> None:
        """As the collector answers: with the header that says it takes rows."""
        self.send_response(status)
        self.send_header("X-AgentWatch-Rows", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("refusal", [415, 401])
def test_rows_refused_go_the_records_way_unless_any_batch_would_be(refusal: int) -> None:
    """Rows refused by a receiver that announced them (415: it takes no rows after all): declined, so the worker sends
    the records, and rows are not tried again. Refused for a reason of any format (401): dropped and counted once, as
    a refused batch of records is."""
    from agentwatch._span import span_fields

    handler = type("Handler", (_RowsRefusingHandler,), {"refusal": refusal, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    exporter = HttpExporter(f"http://127.0.0.1:{server.server_address[1]}/api/ingest", max_retries=0)
    try:
        entries = [span_fields(span) for span in _spans_with_everything(3)]
        assert exporter.export(exporter.selected([{"kind": "event", "name": "x"}])) is True
        assert exporter.sender.takes_rows
        taken = exporter.export_entries(list(entries))
        if refusal == 415:
            assert taken is None and exporter.force_flush()
            assert exporter.export(exporter.selected([{"kind": "event", "name": "y"}])) is True
            assert exporter.sender.takes_rows and exporter.export_entries(list(entries)) is None  # not tried again
        else:
            assert taken is False and not exporter.force_flush()
        assert handler.seen[:2] == ["application/json", "application/vnd.agentwatch.rows+json"]
        assert handler.seen.count("application/vnd.agentwatch.rows+json") == 1
    finally:
        exporter.shutdown()
        server.shutdown()
        server.server_close()



class _SlowRowsHandler(_RowsRefusingHandler):
    """Takes rows, answering them only once ``release`` is set (a collector that answers late)."""

    release = threading.Event()
    arrived = threading.Event()

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "rows" in self.headers.get("Content-Type", ""):
            self.arrived.set()
            self.release.wait(10)
        self.answer(202, b'{"accepted":1}')


def test_rows_in_flight_at_the_shutdown_deadline_are_spooled_and_taken_back_when_they_arrive(tmp_path: Path) -> None:
    """The shutdown deadline passes while a batch of rows is being sent (``abandon`` on the thread that shuts down):
    it is written to the spool as rows, and taken out again when the collector's answer comes after all."""
    from agentwatch._span import span_fields
    from agentwatch._spool import Spool

    handler = type("Handler", (_SlowRowsHandler,), {"release": threading.Event(), "arrived": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/ingest"
    exporter = HttpExporter(url, spool=Spool(tmp_path, url), max_retries=0)
    outcome: list[bool | None] = []
    try:
        assert exporter.export(exporter.selected([{"kind": "event", "name": "x"}])) is True
        entries = [span_fields(span) for span in _spans_with_everything(5)]
        sending = threading.Thread(target=lambda: outcome.append(exporter.export_entries(entries)))
        sending.start()
        assert handler.arrived.wait(10)
        exporter.abandon(None, [])
        (spooled,) = exporter.spool.pending(10)  # type: ignore[union-attr]
        assert spooled.name.endswith(".rows1.zst") and exporter.spooled == 5
        handler.release.set()
        sending.join(10)
        assert outcome == [True] and exporter.spooled == 0 and not exporter.spool.pending(10)  # type: ignore[union-attr]
    finally:
        handler.release.set()
        exporter.shutdown()
        server.shutdown()
        server.server_close()

def test_rows_a_collector_does_not_answer_are_spooled_as_rows_and_delivered_when_it_is_back(tmp_path: Path) -> None:
    """A batch of rows the collector does not answer (it stopped): spooled as rows at once, and delivered by the
    worker's idle pass once a collector answers again on that port."""
    from agentwatch._span import span_fields, wire_records
    from agentwatch._spool import Spool
    from agentwatch.server import Settings, start_background

    settings = Settings(db_path=tmp_path / "collector.db", alert_interval_seconds=3600)
    handle = start_background(settings=settings)
    port = int(handle.url.rsplit(":", 1)[1])
    url = f"{handle.url}/api/ingest"
    exporter = HttpExporter(url, spool=Spool(tmp_path / "spool", url), max_retries=0)
    spans = _spans_with_everything(30)
    try:
        assert exporter.export(wire_records([span_fields(spans[0])])) is True and exporter.sender.takes_rows
        handle.stop()
        assert exporter.export_entries([span_fields(span) for span in spans[1:]]) is False
        (spooled,) = exporter.spool.pending(10)  # type: ignore[union-attr]
        assert spooled.name.endswith(".rows1.zst") and exporter.spooled == 29
        handle = start_background(settings=settings, port=port)
        exporter.begin_flush()
        exporter.on_idle()
        assert exporter.unspooled == 29 and not exporter.spool.pending(10)  # type: ignore[union-attr]
        assert len(_stored(url, list({span.trace_id for span in spans}))) == 30
    finally:
        exporter.shutdown()
        handle.stop()

def test_an_export_hook_gets_the_records_of_batches_spooled_while_the_collector_is_down(tmp_path: Path) -> None:
    """A plugin reading each batch's records (``agentwatch_export``): the worker makes them, and the spool then holds
    the collector's body, not rows."""
    seen: list[str] = []

    class Reader:
        @agentwatch.hookimpl
        def agentwatch_export(self, spans: list[dict[str, Any]]) -> None:
            seen.extend(span["name"] for span in spans)

    client = agentwatch.init(proxy_url=f"http://127.0.0.1:{_free_port()}/api/ingest", spool_dir=str(tmp_path),
                             remote_control=False, max_batch_size=20, flush_interval=3600)
    client.register_plugin(Reader(), "reader")
    try:
        agentwatch.event("first")
        assert agentwatch.flush(5) is False  # the collector is known down from here on
        for i in range(60):  # full batches, each woken by its last span: no flush, no attempt, straight to the spool
            agentwatch.event(f"e{i}")
        processor = client.processor
        deadline = time.monotonic() + 10
        while processor.stats()["failed"] < 61 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert {"first", *(f"e{i}" for i in range(60))} <= set(seen)
        assert list(tmp_path.rglob("*.json.zst")) and not list(tmp_path.rglob("*.rows1.zst"))
    finally:
        agentwatch.shutdown()


def test_a_spooled_batch_names_its_span_count(tmp_path: Path) -> None:
    from agentwatch._spool import Spool

    spool = Spool(tmp_path, "http://collector/api/ingest")
    assert spool.write(b"batch", 37)
    [path] = spool.pending(10)
    assert Spool.spans_in(path) == 37
    # A file an earlier release spooled (no count in its name) is delivered all the same, counted as 0.
    assert Spool.spans_in(path.with_name("00000000000000000001-12-abcd1234.json.gz")) == 0
