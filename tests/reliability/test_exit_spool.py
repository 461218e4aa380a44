"""No collector at exit: the program leaves promptly, its spans go to the spool, and a later run delivers them.

Exit timings are printed by ``bench/bench_exit.py`` (no timing asserts here).
"""

from __future__ import annotations

import gzip
import json
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentwatch.server import Settings, start_background
from tests.reliability.conftest import (
    FaultServer,
    free_port,
    run_script,
    spooled_bytes,
    spooled_files,
    spooled_spans,
    stored_span_ids,
)

SPANS = 300


def _spooled_spans(spool: Path) -> list[dict]:
    return [span for path in spooled_files(spool) for span in spooled_spans(path)]


def _run_without_collector(tmp_path: Path, event_data: str = "",
                           prelude: str = "") -> tuple[int, str, Path, dict[str, str]]:
    """A run recording ``SPANS`` events (``first-<i>``, with ``event_data``) in batches of 100 while nothing listens at
    its collector's port: every batch goes to the spool. The port, the URL, the spool and the environment naming it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/ingest"
    spool = tmp_path / "spool"
    env = {"AGENTWATCH_SPOOL_DIR": str(spool)}
    first = run_script(f"""
        {prelude}
        import agentwatch
        agentwatch.init(proxy_url="{url}", max_batch_size=100)
        for i in range({SPANS}):
            agentwatch.event(f"first-{{i}}"{event_data})
    """, tmp_path, env=env, name="first.py")
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    return port, url, spool, env


def _delivered_by_a_run(tmp_path: Path, port: int, env: dict[str, str], code: str) -> tuple[Any, set[str]]:
    """A later run (``code``, a program that flushes) with a collector now on ``port``: its result, and the span ids
    the collector stored."""
    handle = start_background(settings=Settings(db_path=tmp_path / "collector.db", alert_interval_seconds=3600),
                              port=port)
    try:
        result = run_script(code, tmp_path, env=env, name="second.py")
        assert result.returncode == 0, result.stderr
        return result, set(stored_span_ids(tmp_path / "collector.db"))
    finally:
        handle.stop()


def test_spans_of_a_run_without_collector_are_spooled_and_delivered_by_the_next_run(tmp_path: Path) -> None:
    port, url, spool, env = _run_without_collector(tmp_path)  # every connection refused: all spooled
    spooled = _spooled_spans(spool)
    names = {span["name"] for span in spooled}
    assert {f"first-{i}" for i in range(SPANS)} <= names
    first_ids = {span["span_id"] for span in spooled}

    _, stored = _delivered_by_a_run(tmp_path, port, env, f"""
        import agentwatch
        agentwatch.init(proxy_url="{url}")
        agentwatch.event("second")
        assert agentwatch.flush(30)
    """)
    assert first_ids <= stored
    assert not spooled_files(spool), "delivered batches are removed from the spool"


def test_batches_spooled_for_a_collector_on_this_machine_are_zstandard_and_every_format_is_delivered(
        tmp_path: Path) -> None:
    """With no collector on this machine (the default setup's), nothing answers a connection: each batch goes to the
    spool as the queue's entries (rows, no records made). The next run delivers those, a batch spooled as its body in
    Zstandard (one that went the records' way: loopback bodies are sent plain), a gzip batch an earlier release
    spooled, and drops a file cut short on disk and one that holds no rows, without a word on stderr."""
    port, url, spool, env = _run_without_collector(tmp_path, event_data=', {"i": i, "text": "é"}')
    files = spooled_files(spool)
    assert len(files) >= 3 and all(path.name.endswith(".rows1.zst") for path in files)
    spooled = _spooled_spans(spool)
    first_ids = {span["span_id"] for span in spooled}
    assert len(first_ids) >= SPANS
    assert {span["attributes"]["i"] for span in spooled if span["name"].startswith("first-")} == set(range(SPANS))
    # The oldest batch as an earlier release spooled it (gzip), the next as the body of a batch that went the records'
    # way (Zstandard), a copy of a rows batch cut short, and a Zstandard file that holds no rows.
    for path, ending, compress in ((files[0], ".json.gz", gzip.compress), (files[1], ".json.zst", _zstd_of)):
        body = json.dumps(spooled_spans(path), ensure_ascii=False).encode()
        path.with_name(path.name.removesuffix(".rows1.zst") + ending).write_bytes(compress(body))
        path.unlink()
    cut = files[2].with_name("00000000000000000001-1-0badf00d-100.rows1.zst")
    cut.write_bytes(files[2].read_bytes()[:-40])
    not_rows = files[2].with_name("00000000000000000002-1-0badf00d-1.rows1.zst")
    not_rows.write_bytes(_zstd_of(b'{"rows": "no"}'))

    second, stored = _delivered_by_a_run(tmp_path, port, env, f"""
        import agentwatch
        agentwatch.init(proxy_url="{url}")
        agentwatch.event("second")
        assert agentwatch.flush(30)
        print(agentwatch.get_client().processor.stats()["unspooled"])
    """)
    assert first_ids <= stored
    assert int(second.stdout.split()[-1]) == len(first_ids)  # the cut file counts for nothing
    assert not spooled_files(spool), "delivered batches and the mangled ones are gone"
    assert "agentwatch:" not in second.stderr and "Traceback" not in second.stderr


def test_without_zstandard_the_spool_keeps_gzip_and_leaves_zstandard_batches_for_a_run_that_reads_them(
        tmp_path: Path) -> None:
    """A Python where the Zstandard module does not import (a broken install; it is a dependency before 3.14): the
    batches are spooled gzip'd, read back and delivered as before; a Zstandard batch another process spooled there
    stays, undelivered, for a run that can read it (not dropped as mangled)."""
    block = "import sys; sys.modules['backports.zstd'] = sys.modules['compression'] = None"
    port, url, spool, env = _run_without_collector(tmp_path, prelude=block)
    files = spooled_files(spool)
    assert len(files) >= 3 and all(path.name.endswith(".json.gz") for path in files)
    first_ids = {span["span_id"] for span in _spooled_spans(spool)}
    zstd_batch = files[0].with_name("00000000000000000001-1-0badf00d-300.json.zst")
    (tmp_path / "zstd").mkdir()
    with_zstd = run_script(f"""
        import agentwatch
        agentwatch.init(proxy_url="{url}")
        for i in range({SPANS}):
            agentwatch.event(f"zstd-{{i}}")
    """, tmp_path / "zstd", env={"AGENTWATCH_SPOOL_DIR": str(tmp_path / "zstd-spool")}, name="zstd.py")
    assert with_zstd.returncode == 0, with_zstd.stderr
    [made] = spooled_files(tmp_path / "zstd-spool")
    zstd_batch.write_bytes(made.read_bytes())

    _, stored = _delivered_by_a_run(tmp_path, port, env, f"""
        {block}
        import agentwatch
        agentwatch.init(proxy_url="{url}")
        assert agentwatch.flush(30)
    """)
    assert first_ids <= stored
    assert spooled_files(spool) == [zstd_batch]


def _zstd_of(data: bytes) -> bytes:
    if sys.version_info >= (3, 14):
        from compression import zstd  # type: ignore[import-not-found]
    else:
        from backports import zstd  # type: ignore[import-not-found,no-redef]
    return bytes(zstd.compress(data))


def _spooled_otlp_span_names(spool: Path) -> list[str]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    names = []
    for path in spooled_files(spool):
        request = ExportTraceServiceRequest()
        request.ParseFromString(spooled_bytes(path))
        names += [span.name for spans in request.resource_spans for scope in spans.scope_spans for span in scope.spans]
    return names


@pytest.mark.parametrize("exporter", ["http", "otlp"])
def test_spans_for_a_receiver_that_does_not_answer_are_spooled_at_the_exit_deadline(
        tmp_path: Path, fault_server: Callable[..., FaultServer], exporter: str) -> None:
    """A receiver that takes the connection and never answers (it hangs, or a firewall swallows the packets): the
    worker waits on its batch beyond the exit's 5 s and dies with the process; at the deadline the undelivered
    spans go to the spool instead, with one warning (they were lost without a word)."""
    server = fault_server("slow", delay=60.0)
    spool = tmp_path / "spool"
    started = time.monotonic()
    result = run_script(f"""
        import agentwatch
        agentwatch.init(exporters=["{exporter}"], proxy_url="{server.url}", flush_interval=0.05)
        for i in range(20):
            agentwatch.event(f"hung-{{i}}")
    """, tmp_path, env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": server.url})
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert server.requests >= 1  # it did take the connection and the request
    names = _spooled_otlp_span_names(spool) if exporter == "otlp" else [s["name"] for s in _spooled_spans(spool)]
    assert {f"hung-{i}" for i in range(20)} <= set(names)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("agentwatch:")]
    assert len(warnings) == 1 and "did not answer by the shutdown deadline" in warnings[0], result.stderr
    assert elapsed < 30  # the 5 s deadline and an interpreter's start-up, not the 60 s the receiver takes


def test_spans_for_a_receiver_whose_connection_never_opens_are_spooled_at_the_exit_deadline(tmp_path: Path) -> None:
    """A collector's port that never completes a connection (its accept queue full, so its SYNs are dropped, as behind a
    firewall that drops packets): the worker's first batch waits on the connection beyond the exit's 5 s, and at the
    deadline its spans go to the spool, with one warning."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = []
    for _ in range(4):  # fill the accept queue: no further connection opens
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        queued.append(client)
    spool = tmp_path / "spool"
    try:
        started = time.monotonic()
        result = run_script(f"""
            import agentwatch
            agentwatch.init(proxy_url="http://127.0.0.1:{port}/api/ingest", flush_interval=0.05)
            for i in range(20):
                agentwatch.event(f"unconnected-{{i}}")
        """, tmp_path)
        elapsed = time.monotonic() - started
    finally:
        for client in queued:
            client.close()
        listener.close()
    assert result.returncode == 0, result.stderr
    assert {f"unconnected-{i}" for i in range(20)} <= {span["name"] for span in _spooled_spans(spool)}
    warnings = [line for line in result.stderr.splitlines() if line.startswith("agentwatch:")]
    assert len(warnings) == 1 and "did not answer by the shutdown deadline" in warnings[0], result.stderr
    assert elapsed < 30


def test_a_batch_spooled_at_the_deadline_is_taken_back_when_it_arrives_after_all(
        tmp_path: Path, fault_server: Callable[..., FaultServer]) -> None:
    """``shutdown()`` called by a program that carries on: the batch in flight is spooled at the deadline; when the
    slow receiver then takes it, it leaves the spool again (a later run would send it twice)."""
    server = fault_server("slow", delay=3.0)
    spool = tmp_path / "spool"
    result = run_script(f"""
        import time
        import agentwatch
        agentwatch.init(proxy_url="{server.url}", flush_interval=0.05, remote_control=False)
        agentwatch.event("slow")
        time.sleep(0.5)  # the worker sends its batch
        agentwatch.shutdown(timeout=1.0)
        print(sum(1 for _ in __import__("pathlib").Path("{spool}").rglob("*.json.*")), flush=True)
        time.sleep(4.0)
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]
    assert server.requests == 1
    assert not spooled_files(spool), "delivered after all: not left for a later run"


def test_spool_can_be_switched_off(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/ingest"
    result = run_script(f"""
        import agentwatch
        agentwatch.init(proxy_url="{url}", spool_dir="")
        agentwatch.event("nowhere")
        agentwatch.shutdown()
        print(agentwatch.get_state())
    """, tmp_path, env={"XDG_CACHE_HOME": str(tmp_path / "cache"), "AGENTWATCH_SPOOL_DIR": None})
    assert result.returncode == 0, result.stderr
    assert not spooled_files(tmp_path)


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG cache directory: Linux and other Unixes")
def test_default_spool_is_the_per_user_cache_directory(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/ingest"
    cache = tmp_path / "cache"
    result = run_script(f"""
        import agentwatch
        agentwatch.init(proxy_url="{url}")
        agentwatch.event("cached")
    """, tmp_path, env={"XDG_CACHE_HOME": str(cache), "HOME": str(tmp_path), "AGENTWATCH_SPOOL_DIR": None})
    assert result.returncode == 0, result.stderr
    spooled = _spooled_spans(cache / "agentwatch" / "spool")
    assert "cached" in {span["name"] for span in spooled}
    destinations = list((cache / "agentwatch" / "spool").rglob("destination.txt"))
    assert [path.read_text().strip() for path in destinations] == [url]
