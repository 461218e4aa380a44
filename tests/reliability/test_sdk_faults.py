"""The SDK never hurts the host: a collector that is down, slow, failing or hanging up costs the user's LLM
calls no latency and no exception; spans wait in the bounded queue, reach the collector when it is back,
and whatever had to be dropped is counted in ``get_state()["exporter"]``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import agentwatch
from agentwatch.server import start_background
from tests.plugins.langchain.fakes import UsageChatModel
from tests.reliability.conftest import FaultServer, free_port, median_ms, scale, stored_span_ids, wait_until

CALLS = scale(400, 4_000)


def _timed_calls(model: UsageChatModel, count: int) -> list[float]:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        result = model.invoke(f"question {i}")
        samples.append(time.perf_counter() - started)
        assert result.content == "ok"
    return samples


def _baseline_ms() -> float:
    """Median latency of one LangChain chat-model call with AgentWatch exporting to memory (no network)."""
    agentwatch.init(exporters=[agentwatch.InMemoryExporter()], flush_interval=0.05)
    model = UsageChatModel()
    _timed_calls(model, 50)  # warm-up: imports, pricing cache
    baseline = median_ms(_timed_calls(model, CALLS))
    agentwatch.shutdown(timeout=1.0)
    return baseline


def _exporter_state() -> dict[str, int]:
    return dict(agentwatch.get_state()["exporter"])


@pytest.mark.parametrize("fault", ["down", "slow-5s", "http-500", "http-429", "connection-closed"])
def test_faulty_collector_costs_the_user_no_latency_and_no_error(
        fault: str, fault_server: Callable[..., FaultServer]) -> None:
    baseline = _baseline_ms()
    if fault == "down":
        url = f"http://127.0.0.1:{free_port()}/api/ingest"
        server = None
    else:
        mode, options = {"slow-5s": ("slow", {"delay": 5.0}), "http-500": ("status", {"status": 500}),
                         "http-429": ("status", {"status": 429}),
                         "connection-closed": ("close", {})}[fault]
        server = fault_server(mode, **options)
        url = server.url
    cap, batch = 300, 50
    agentwatch.init(proxy_url=url, flush_interval=0.05, max_batch_size=batch, max_queue_size=cap)
    model = UsageChatModel()
    _timed_calls(model, 50)
    faulty = median_ms(_timed_calls(model, CALLS))
    # Within noise: 50 % or 0.3 ms, whichever is larger (measured: the same median to ±10 %).
    print(f"\n[figure] {fault}: median {faulty:.3f} ms vs {baseline:.3f} ms healthy")
    assert faulty <= baseline * 1.5 + 0.3, f"{fault}: median {faulty:.3f} ms vs {baseline:.3f} ms without fault"
    produced = 1 + 50 + CALLS  # the process span + warm-up + measured calls
    state = _exporter_state()
    assert state["queued"] <= cap
    assert state["sent"] == 0
    # Nothing vanishes silently: every span is queued, in the one batch being tried, or counted.
    accounted = state["queued"] + state["dropped"] + state["failed"]
    assert produced - batch <= accounted <= produced, state
    # Beyond the bound, spans were dropped (counted), or given up by the worker after its attempts (counted): how
    # many of each depends on how often the worker ran meanwhile (a loaded machine runs it more per call).
    assert state["dropped"] + state["failed"] >= produced - cap - batch, state
    if server is not None:
        # The measured calls take well under a second; the worker's first attempt may come just after.
        deadline = time.monotonic() + 10
        while server.requests < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.requests >= 1
    agentwatch.shutdown(timeout=1.0)


def _collector_comes_back(tmp_path: Path, *, produced_calls: int, cap: int, spool: bool = True,
                          ) -> tuple[dict[str, int], list[str], list[dict[str, Any]]]:
    port = free_port()
    memory = agentwatch.InMemoryExporter()
    agentwatch.init(proxy_url=f"http://127.0.0.1:{port}/api/ingest", exporters=["http", memory],
                    flush_interval=0.05, max_batch_size=100, max_queue_size=cap,
                    **({} if spool else {"spool_dir": ""}))
    model = UsageChatModel()
    for i in range(produced_calls):
        model.invoke(f"q{i}")
    time.sleep(1.0)  # the worker has failed at least once and knows the collector is down
    if spool:
        started = time.monotonic()
        assert not agentwatch.flush(30)  # nothing could be delivered...
        assert time.monotonic() - started < 2.0  # ...and a flush is not held up by retries: all went to the spool
    db = tmp_path / "back.db"
    with start_background(port=port, db_path=db):
        assert agentwatch.flush(30)
        state = _exporter_state()
        stored = stored_span_ids(db)
    return state, stored, memory.spans


def test_spans_of_an_outage_go_to_the_spool_and_all_arrive_when_the_collector_is_back(tmp_path: Path) -> None:
    calls = scale(600, 6_000)
    state, stored, exported = _collector_comes_back(tmp_path, produced_calls=calls, cap=10_000)
    assert state["queued"] == state["dropped"] == 0
    assert state["sent"] + state["failed"] == calls + 1
    # Every span the collector missed was kept on disk, and the flush after its return delivered them.
    assert state["failed"] == state["spooled"] == state["unspooled"] > 0, state
    assert len(stored) == len(set(stored)) == calls + 1
    assert set(stored) == {span["span_id"] for span in exported}


def test_a_long_outage_spools_spans_instead_of_dropping_them(tmp_path: Path) -> None:
    """The queue holds two seconds' worth of spans; 3,000 are made over three seconds while the collector is down.
    The worker does not sit out a retry budget per batch (which filled the queue and dropped the oldest): after
    one retry the collector is known down, tried once per ``PROBE_INTERVAL``, and every batch in between goes
    straight to the spool."""
    url = f"http://127.0.0.1:{free_port()}/api/ingest"
    agentwatch.init(proxy_url=url, flush_interval=0.05, max_batch_size=50, max_queue_size=2_000)
    for i in range(3_000):
        agentwatch.event(f"e{i}")
        if i % 100 == 99:
            time.sleep(0.1)  # 1,000 spans a second
    started = time.monotonic()
    assert not agentwatch.flush(10)
    assert time.monotonic() - started < 2.0
    state = _exporter_state()
    assert state["dropped"] == 0 and state["sent"] == 0 and state["queued"] == 0, state
    assert state["failed"] == state["spooled"] == 3_001, state
    agentwatch.shutdown(timeout=1.0)


def test_without_a_spool_spans_wait_in_the_queue_and_all_arrive(tmp_path: Path) -> None:
    calls = scale(600, 6_000)
    state, stored, exported = _collector_comes_back(tmp_path, produced_calls=calls, cap=10_000, spool=False)
    assert state == {"queued": 0, "queued_bytes": 0, "sent": calls + 1, "dropped": 0, "failed": 0, "spooled": 0,
                     "unspooled": 0}
    assert len(stored) == len(set(stored)) == calls + 1
    assert set(stored) == {span["span_id"] for span in exported}


def test_overflow_is_counted_and_the_rest_arrives(tmp_path: Path) -> None:
    # Without a spool the batch in flight waits out its retries, and the queue overflows behind it.
    calls, cap = scale(1_000, 10_000), 200
    state, stored, exported = _collector_comes_back(tmp_path, produced_calls=calls, cap=cap, spool=False)
    produced = calls + 1
    assert state["failed"] == 0 and state["queued"] == 0
    assert state["sent"] + state["dropped"] == produced, state
    assert state["dropped"] >= produced - cap - 100
    assert len(stored) == len(set(stored)) == state["sent"]
    assert set(stored) == {span["span_id"] for span in exported}


def test_shutdown_with_the_collector_down_is_bounded_and_counts_everything() -> None:
    agentwatch.init(proxy_url=f"http://127.0.0.1:{free_port()}/api/ingest", flush_interval=0.05,
                    max_batch_size=50, max_queue_size=500)
    client = agentwatch.get_client()
    assert client is not None
    for i in range(2_000):
        agentwatch.event(f"e{i}")
    agentwatch.shutdown(timeout=2.0)  # how long it takes: bench/bench_limits_outage.py
    processor = client.processor
    # After stop() the sender gives up at once: the worker settles with every span counted.
    assert wait_until(lambda: processor.queued == 0 and not processor._worker.is_alive(), 5.0)
    assert processor.sent == 0
    assert processor.dropped + processor.failed == 2_001


def test_a_flush_does_not_wait_out_the_timeout_of_a_collector_that_hangs_again(
        tmp_path: Path, fault_server: Callable[..., FaultServer]) -> None:
    """A program that flushes per request, exporting to a collector that never answers (a remote one behind a
    firewall that drops packets): the first flush waits out the timeout (the attempt and one retry); the flushes
    after it, before the next probe is due, spool their spans and return at once instead of waiting again."""
    server = fault_server("slow", delay=30.0)
    # A timeout long enough that a flush slowed by a loaded machine (the worker waiting for a core) is not taken for
    # one that waited it out.
    agentwatch.init(proxy_url=server.url, export_timeout=1.0, flush_interval=0.05, spool_dir=str(tmp_path),
                    remote_control=False)  # its requests to /api/control would count too
    agentwatch.event("first")
    started = time.monotonic()
    assert not agentwatch.flush(10)
    assert 1.9 <= time.monotonic() - started < 8.0  # two attempts of 1 s each
    assert server.requests == 2
    for i in range(5):
        agentwatch.event(f"request {i}")
        started = time.monotonic()
        assert not agentwatch.flush(10)
        assert time.monotonic() - started < 0.9, i  # no third wait of 1 s
    assert server.requests == 2
    state = _exporter_state()
    assert state["failed"] == state["spooled"] == 7 and state["dropped"] == 0, state  # with the process span
    agentwatch.shutdown(timeout=1.0)


def _spans(count: int, name: str) -> list[dict[str, Any]]:
    return [{"trace_id": "t" * 32, "span_id": f"{name}{n:012x}", "kind": "event", "name": name}
            for n in range(count)]


def test_a_collector_that_does_not_answer_is_probed_once_per_interval_and_batches_between_are_spooled(
        tmp_path: Path, fault_server: Callable[..., FaultServer], monkeypatch: pytest.MonkeyPatch) -> None:
    from agentwatch._exporters import HttpExporter
    from agentwatch._spool import Spool

    monkeypatch.setattr(HttpExporter, "PROBE_INTERVAL", 0.5)
    server = fault_server("close")  # reads each request, then hangs up without an answer
    spool = Spool(tmp_path, server.url)
    exporter = HttpExporter(server.url, backoff=0.01, spool=spool)
    try:
        assert exporter.export(_spans(3, "a")) is False
        assert server.requests == 2  # the attempt and one retry (not the five of the retry budget)
        for name in ("b", "c"):  # known down: kept for later without an attempt
            assert exporter.export(_spans(2, name)) is False
        assert server.requests == 2
        # Batches keep coming (a busy program): spooling them does not put off the probe that is due.
        deadline = time.monotonic() + 0.6
        batches = 0
        while time.monotonic() < deadline:
            assert exporter.export(_spans(1, f"d{batches}")) is False
            batches += 1
            time.sleep(0.05)
        assert server.requests == 3  # the probe: one attempt, no retry
        assert exporter.spooled == 7 + batches and len(spool.pending(100)) == 3 + batches
        assert sorted(Spool.spans_in(path) for path in spool.pending(100)) == [1] * batches + [2, 2, 3]
    finally:
        exporter.shutdown()


def test_an_answering_collector_keeps_the_whole_retry_budget(
        tmp_path: Path, fault_server: Callable[..., FaultServer]) -> None:
    from agentwatch._exporters import HttpExporter
    from agentwatch._spool import Spool

    server = fault_server("status", status=503)  # up, but overloaded: worth retrying in place
    exporter = HttpExporter(server.url, backoff=0.01, max_retries=3, spool=Spool(tmp_path, server.url))
    try:
        assert exporter.export(_spans(2, "a")) is False
        assert server.requests == 4 and exporter.spooled == 2
    finally:
        exporter.shutdown()


def test_a_run_ending_soon_after_the_collector_is_back_delivers_its_spool_at_exit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker delivers a few spooled batches per wake-up once the collector answers again; whatever of this run's
    spool is left when the program ends goes at exit, to the collector that just answered."""
    from agentwatch._exporters import HttpExporter

    monkeypatch.setattr(HttpExporter, "PROBE_INTERVAL", 0.0)  # every batch and every wake-up tries the collector
    port = free_port()
    agentwatch.init(proxy_url=f"http://127.0.0.1:{port}/api/ingest", flush_interval=60, max_batch_size=10)
    for i in range(200):  # 20 full batches while the collector is down: each goes to the spool
        agentwatch.event(f"down-{i}")
    assert wait_until(lambda: _exporter_state()["spooled"] >= 200, 10), _exporter_state()
    db = tmp_path / "back.db"
    with start_background(port=port, db_path=db):
        for i in range(10):  # a full batch: the worker finds the collector back and delivers 8 spooled batches
            agentwatch.event(f"up-{i}")
        assert wait_until(lambda: _exporter_state()["sent"] >= 10, 10), str(_exporter_state())
        assert _exporter_state()["unspooled"] < 200  # the rest waits for a later wake-up...
        agentwatch.shutdown(timeout=10)  # ...or, as here, the program's end
        stored = stored_span_ids(db)
    assert len(stored) == len(set(stored)) == 1 + 200 + 10  # the process span, the outage's, the ones after
