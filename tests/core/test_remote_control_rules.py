"""Operator control in one process against a real collector: pauses end in HALF_OPEN, limit overrides are undone
by DELETE, an unreachable collector leaves the last state in force, only trusted collectors are followed, and
with Redis the change lands in the shared state that processes not following the collector obey too."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch._breaker import Monitor, admit, settle
from agentwatch._config import build_config
from agentwatch._exporters import HttpExporter
from agentwatch._limits_backend import window_store_for
from agentwatch.server import ServerHandle, start_background
from tests.core.test_redis_limits import RedisServer, redis_server, redis_url  # noqa: F401 - fixtures
from tests.reliability.conftest import FaultServer, fault_server, free_port  # noqa: F401 - fixture

WAIT = 60.0


def _until(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def _init(url: str, **settings: Any) -> agentwatch.Client:
    plugins = [ep.name for ep in entry_points(group="agentwatch.plugins")]
    settings.setdefault("spool_dir", "")
    return agentwatch.init(proxy_url=f"{url}/api/ingest", auto_instrument=False, disabled_plugins=plugins,
                           **settings)


@pytest.fixture
def sdk() -> Iterator[Callable[..., agentwatch.Client]]:
    yield _init
    agentwatch.shutdown()


def test_pause_ends_half_open_and_delete_restores_the_process_limits(collector: ServerHandle,
                                                                     sdk: Callable[..., agentwatch.Client]) -> None:
    client = sdk(collector.url, budget_per_hour=7.0, max_calls_per_minute=100)
    api = httpx.Client(base_url=collector.url, timeout=30)
    api.post("/api/circuit-breaker/pause", json={"seconds": 5, "reason": "look"})
    _until(lambda: client.monitor.state == "PAUSED", "paused")
    with pytest.raises(CircuitBreakerException) as blocked:
        admit([client.monitor])
    assert blocked.value.reason == "paused"
    _until(lambda: client.monitor.state == "HALF_OPEN", "half open after the pause")

    api.put("/api/limits/global/*", json={"budget_per_hour": 3.0, "block_on_threshold": True})
    _until(lambda: client.monitor.budget_per_hour == 3.0, "budget lowered")
    assert client.monitor.block_on_threshold is True and client.monitor.max_calls_per_minute == 100
    assert api.delete("/api/limits/global/*").status_code == 200
    _until(lambda: client.monitor.budget_per_hour == 7.0, "own budget back")
    assert client.monitor.block_on_threshold is False and client.monitor.max_calls_per_minute == 100


def test_an_unreachable_collector_leaves_the_last_state_in_force(collector: ServerHandle,
                                                                  sdk: Callable[..., agentwatch.Client]) -> None:
    client = sdk(collector.url)
    httpx.post(f"{collector.url}/api/circuit-breaker/kill", json={"reason": "stop"}, timeout=30)
    _until(lambda: client.monitor.state == "OPEN", "killed")
    control = client.exporters[0].control  # type: ignore[attr-defined]
    collector.stop()
    polled = control._next_poll
    # A failed poll later (the next waits for the exporter's probe), the kill is still in force.
    _until(lambda: control._next_poll > polled + control.POLL_INTERVAL, "two polls")
    assert client.monitor.state == "OPEN"
    with pytest.raises(CircuitBreakerException) as blocked:
        admit([client.monitor])
    assert blocked.value.reason == "operator_kill"


def test_a_collector_that_hangs_costs_the_export_worker_no_control_poll_while_it_is_known_down(
        tmp_path: Path, fault_server: Callable[..., FaultServer],  # noqa: F811
        sdk: Callable[..., agentwatch.Client]) -> None:
    """Found 2026-12-11: a collector that accepts connections but never answers made the control poll, run about
    every second whatever the exporter knew, wait out ``export_timeout`` each time on the export worker: a busy
    program dropped twice the spans it did with ``remote_control=False``, and a program that flushes per request
    waited the timeout on each flush. Now, while the collector is known down, the poll waits for the exporter's
    next probe."""
    server = fault_server("slow", delay=30.0)
    sdk(server.url.rsplit("/api/ingest", 1)[0], export_timeout=1.0, flush_interval=0.05, spool_dir=str(tmp_path))
    agentwatch.event("first")
    assert not agentwatch.flush(10)  # the outage is known: the batch or the poll waited out the timeout
    requests = server.requests
    started = time.monotonic()
    while time.monotonic() - started < 3.0:  # within the probe interval (5 s): no request to the collector
        agentwatch.event("request")
        flushed = time.monotonic()
        assert not agentwatch.flush(10)
        assert time.monotonic() - flushed < 0.9  # no wait of 1 s for a control poll
        time.sleep(0.1)
    assert server.requests == requests


def test_an_idle_program_finds_the_collector_back_and_logs_its_outage_once(
        tmp_path: Path, sdk: Callable[..., agentwatch.Client], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found 2026-12-11: with the collector down, a program logging at DEBUG got "control poll failed" once a second
    for as long as the outage lasted. Now the poll is tried once per probe interval (it is the exporter's probe in a
    program that exports nothing), its failure is logged once and its recovery once, and an operator action made
    once the collector is back still reaches the idle program within a probe interval."""
    monkeypatch.setattr(HttpExporter, "PROBE_INTERVAL", 2.0)
    caplog.set_level(logging.DEBUG, logger="agentwatch")
    port = free_port()
    client = sdk(f"http://127.0.0.1:{port}", spool_dir=str(tmp_path / "spool"))

    def logged(text: str) -> list[logging.LogRecord]:
        return [record for record in caplog.records if text in record.getMessage()]

    _until(lambda: logged("control poll failed"), "a failed control poll")
    time.sleep(3.0)  # polls go on meanwhile, every probe interval
    assert len(logged("control poll failed")) == 1
    with start_background(port=port, db_path=tmp_path / "collector.db") as collector:
        killed = time.monotonic()
        assert httpx.post(f"{collector.url}/api/circuit-breaker/kill", json={"reason": "stop"}, timeout=30).is_success
        _until(lambda: client.monitor.state == "OPEN", "killed")
        assert time.monotonic() - killed < 2.0 + 3.0  # the probe interval, and a margin for a loaded machine
        # The poll that found the collector back let the exporter deliver what it spooled (the process span).
        _until(lambda: agentwatch.get_state()["exporter"]["unspooled"] >= 1, "the spool delivered")
        assert len(logged("control poll answered again")) == 1
        agentwatch.shutdown()
    assert len(logged("control poll failed")) == 1


def test_only_a_collector_on_loopback_or_one_the_process_authenticates_to_is_followed(
        sdk: Callable[..., agentwatch.Client]) -> None:
    # 192.0.2.0/24 is reserved for documentation: nothing answers there, and nothing needs to.
    assert sdk("http://192.0.2.1:3001").exporters[0].control is None  # type: ignore[attr-defined]
    agentwatch.shutdown()
    assert sdk("http://192.0.2.1:3001", api_key="k").exporters[0].control is not None  # type: ignore[attr-defined]
    agentwatch.shutdown()
    assert sdk("http://127.0.0.1:9", remote_control=False).exporters[0].control is None  # type: ignore[attr-defined]


def test_with_redis_the_kill_lands_in_the_shared_state(collector: ServerHandle, redis_url: str,  # noqa: F811
                                                       sdk: Callable[..., agentwatch.Client]) -> None:
    client = sdk(collector.url, limits_backend=redis_url)
    # Another process's monitor on the same Redis that does not follow the collector itself.
    other = Monitor("global", "global", store=window_store_for(build_config({"limits_backend": redis_url}),
                                                                "global", "global"))
    settle(admit([other]), cost_usd=0.0, error=False)
    httpx.post(f"{collector.url}/api/circuit-breaker/kill", json={"reason": "fleet"}, timeout=30)
    _until(lambda: client.monitor.state == "OPEN", "killed here")
    with pytest.raises(CircuitBreakerException) as blocked:
        admit([other])
    assert blocked.value.reason == "operator_kill"
    httpx.post(f"{collector.url}/api/circuit-breaker/resume", json={}, timeout=30)
    _until(lambda: client.monitor.state == "CLOSED", "resumed here")
    settle(admit([other]), cost_usd=0.0, error=False)  # the fleet's record is closed again


def test_a_process_applying_the_operators_limits_leaves_the_fleets_open_scope_open(
        collector: ServerHandle, redis_server: RedisServer, redis_url: str,  # noqa: F811
        sdk: Callable[..., agentwatch.Client]) -> None:
    """A process that first applies the operator's limits (a new process, an agent scope made later) changes no
    limit of the fleet: a scope they tripped whose windows have cleared since stays OPEN until someone recovers it
    (before, that process closed the fleet's record without a probe). Raising the limit still lets it run."""
    api = httpx.Client(base_url=collector.url, timeout=30)
    assert api.put("/api/limits/agent/*", json={"budget_per_hour": 1.0, "block_on_threshold": True}).status_code \
        == 200
    # Another process of the fleet, following the operator's limits, trips the agent's scope.
    tripper = Monitor("agent", "researcher", budget_per_hour=1.0, block_on_threshold=True,
                      store=window_store_for(build_config({"limits_backend": redis_url}), "agent", "researcher"))
    settle(admit([tripper]), cost_usd=1.5, error=False)
    with pytest.raises(CircuitBreakerException):
        admit([tripper])
    # An hour later its spend has left the window: what the keys' expiry does, without waiting for it.
    redis_server.client.delete(*redis_server.client.keys("agentwatch:{agent:researcher}:s*"))
    client = sdk(collector.url, limits_backend=redis_url)
    control = client.exporters[0].control  # type: ignore[attr-defined]
    _until(lambda: control.version > 0, "the control state applied")
    with agentwatch.agent("researcher") as scope:
        assert scope.monitor is not None
        with pytest.raises(CircuitBreakerException) as blocked:
            admit([scope.monitor])
        assert blocked.value.reason == "budget_per_hour"
        _until(lambda: scope.monitor.budget_per_hour == 1.0, "the operator's limits applied to the agent")
        polled = control._next_poll
        _until(lambda: control._next_poll > polled, "the poll after")  # the application before it has ended
        assert scope.monitor.state == "OPEN"
        with pytest.raises(CircuitBreakerException) as blocked:
            admit([tripper])
        assert blocked.value.reason == "budget_per_hour"

        assert api.put("/api/limits/agent/*", json={"budget_per_hour": 2.0, "block_on_threshold": True}) \
            .status_code == 200
        _until(lambda: scope.monitor.state == "CLOSED", "closed by the raised limit")
        settle(admit([tripper]), cost_usd=0.0, error=False)  # the fleet's record is closed


def test_a_process_with_an_ingest_token_follows_an_operator_of_a_keyed_collector(
        tmp_path: Path, sdk: Callable[..., agentwatch.Client]) -> None:
    from agentwatch.server import Settings
    from agentwatch.server._auth import create_token

    secret = "0123456789abcdef0123456789abcdef"
    settings = Settings(db_path=tmp_path / "keyed.db", api_key="admin-key", jwt_secret=secret)
    handle = start_background(port=0, settings=settings)
    try:
        client = sdk(handle.url, api_key=create_token(secret, "ingest", "ci-fleet"))
        operator = {"Authorization": f"Bearer {create_token(secret, 'operator', 'alice')}"}
        answer = httpx.post(f"{handle.url}/api/circuit-breaker/kill", json={"reason": "incident 42"},
                            headers=operator, timeout=30)
        assert answer.status_code == 200
        _until(lambda: client.monitor.state == "OPEN", "killed through the keyed collector")
        status = httpx.get(f"{handle.url}/api/circuit-breaker/status", headers=operator, timeout=30).json()
        assert [p["credential"] for p in status["processes"]] == ["ci-fleet"]
    finally:
        agentwatch.shutdown()
        handle.stop()
