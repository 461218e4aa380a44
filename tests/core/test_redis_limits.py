"""Fleet-wide limits: several real processes sharing windows in a real redis-server.

The server is started by the tests on a free port (``--save "" --appendonly no``: nothing on disk). When
``/usr/bin/redis-server`` is missing the tests skip, or fail if ``AGENTWATCH_REQUIRE_SERVICES=1`` (CI).
Workers are separate Python processes driven line by line over stdin, so "another process sees it" is
literal: no state is shared except through Redis.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.core.test_breaker import RecordingSink

REDIS_SERVER = "/usr/bin/redis-server"
ROOT = Path(__file__).resolve().parents[2]
# gpt-4o: 1M input tokens cost $2.50, 1000 cost $0.0025
BIG, SMALL = 1_000_000, 1_000
BIG_USD = 2.5


def _init(url: str, **settings: Any) -> None:
    from importlib.metadata import entry_points

    plugins = [ep.name for ep in entry_points(group="agentwatch.plugins")]
    agentwatch.init(exporters=[], auto_instrument=False, disabled_plugins=plugins, limits_backend=url, **settings)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        self.client = client
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _need_redis_server() -> None:
    if not os.access(REDIS_SERVER, os.X_OK):
        message = f"{REDIS_SERVER} not installed (apt-get install redis-server)"
        if os.environ.get("AGENTWATCH_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    _need_redis_server()
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The sharing tests assert exact figures: on a loaded 2-core CI machine one round trip can exceed the
    default 50 ms timeout and fall back to local windows, so they allow 1 s (a URL option, as for users)."""
    redis_server.client.flushall()
    return redis_server.url + "?socket_timeout=1"


_WORKER = textwrap.dedent("""
    import json, os, sys, threading, time
    import agentwatch
    from agentwatch import CircuitBreakerException

    from importlib.metadata import entry_points
    # No framework plugins: importing them (crewai ...) costs seconds per process and proves nothing here.
    plugins = [ep.name for ep in entry_points(group="agentwatch.plugins")]
    agentwatch.init(exporters=[], auto_instrument=False, disabled_plugins=plugins, **json.loads(sys.argv[1]))
    monitor = agentwatch.get_client().monitor

    class ProviderError(Exception):
        pass

    def hold_call(hold):
        # A number: in flight for that long. A path: in flight until the test creates that file (a probe
        # held open while the test watches the other callers being blocked; order, not wall-clock).
        try:
            time.sleep(float(hold))
        except ValueError:
            deadline = time.monotonic() + 60
            while not os.path.exists(hold) and time.monotonic() < deadline:
                time.sleep(0.01)

    def call(tokens, hold, fail):
        with agentwatch.llm_call("chat", model="gpt-4o", provider="openai") as llm:
            hold_call(hold)
            llm.set_usage(input_tokens=tokens, output_tokens=0)
            if fail:
                raise ProviderError("the provider failed")

    def spend(n, tokens, threads=1, hold=0.0, fail=False, progress=None):
        # "ok": calls that were sent (a failing one included), "blocked": calls the breaker stopped.
        # With a progress file, each blocked call appends a line to it as it happens.
        result = {"ok": 0, "blocked": 0, "last": None}
        lock = threading.Lock()
        def run():
            for _ in range(n):
                try:
                    try:
                        call(tokens, hold, fail)
                    except ProviderError:
                        pass
                    with lock:
                        result["ok"] += 1
                except CircuitBreakerException as error:
                    with lock:
                        result["blocked"] += 1
                        result["last"] = [error.reason, error.threshold, error.current]
                        if progress:
                            with open(progress, "a") as marks:
                                marks.write("blocked\\n")
        workers = [threading.Thread(target=run) for _ in range(threads)]
        for w in workers: w.start()
        for w in workers: w.join()
        return result

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command in ("spend", "fail"):
            answer = spend(int(args[0]), int(args[1]), int(args[2]) if len(args) > 2 else 1,
                           args[3] if len(args) > 3 else 0.0, command == "fail", args[4] if len(args) > 4 else None)
        elif command == "pause":
            monitor.pause(float(args[0]))
            answer = {"done": True}
        elif command == "increase":
            monitor.increase_budget(float(args[0]))
            answer = {"done": True}
        elif command == "reset":
            monitor.reset_windows()
            answer = {"done": True}
        else:
            answer = monitor.snapshot()
        print(json.dumps(answer), flush=True)
""")


class Worker:
    """One Python process with its own AgentWatch client, driven over stdin."""

    def __init__(self, url: str, **settings: Any) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
        env["PYTHONPATH"] = str(ROOT)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER, json.dumps({"limits_backend": url, **settings})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
        self._ready = False  # workers start in parallel: the first command waits for this one's init

    def _wait_ready(self) -> None:
        if not self._ready:
            self._ready = True
            assert self._read() == {"ready": True}

    def _read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"worker died (exit code {self.process.poll()})"
        return json.loads(line)

    def send(self, *command: object) -> None:
        self._wait_ready()
        assert self.process.stdin is not None
        self.process.stdin.write(" ".join(map(str, command)) + "\n")
        self.process.stdin.flush()

    def ask(self, *command: object) -> Any:
        self.send(*command)
        return self._read()

    def close_stdin(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()

    def close(self) -> None:
        self.close_stdin()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.close_stdin()  # all exit at once
    for worker in started:
        worker.close()


def _start(workers: list[Worker], url: str, **settings: Any) -> Worker:
    worker = Worker(url, **settings)
    workers.append(worker)
    return worker


# ---- sharing across processes ---------------------------------------------------------------------------


def test_two_processes_share_one_budget(redis_url: str, workers: list[Worker]) -> None:
    limits = {"budget_per_hour": 10 * BIG_USD, "block_on_threshold": True}
    first = _start(workers, redis_url, **limits)
    second = _start(workers, redis_url, **limits)
    assert first.ask("spend", 6, BIG) == {"ok": 6, "blocked": 0, "last": None}
    # The second process has made no call yet: only the shared window tells it the budget is 60% gone.
    answer = second.ask("spend", 10, BIG)
    assert answer["ok"] == 4 and answer["blocked"] == 6
    assert answer["last"] == ["budget_per_hour", 25.0, 25.0]
    assert first.ask("state")["spend_last_hour"] == pytest.approx(25.0)
    # Without the backend each process would have its own $25: the control case.
    local = _start(workers, "", **limits)
    assert local.ask("spend", 10, BIG)["ok"] == 10


def test_admission_is_atomic_under_concurrency(redis_url: str, workers: list[Worker]) -> None:
    """8 threads in 2 processes race 400 calls at a limit of 150/minute: exactly 150 get through, and the
    shared spend is exactly their cost (integer pico-dollars, no lost update)."""
    limits = {"max_calls_per_minute": 150, "block_on_threshold": True}
    first = _start(workers, redis_url, **limits)
    second = _start(workers, redis_url, **limits)
    first.send("spend", 50, SMALL, 4)
    second.send("spend", 50, SMALL, 4)
    answers = [first._read(), second._read()]
    assert sum(a["ok"] for a in answers) == 150
    assert sum(a["blocked"] for a in answers) == 250
    state = first.ask("state")
    assert state["calls_last_minute"] == 150
    assert state["calls_in_error_window"] == 150
    per_call = round(SMALL / 1e6 * BIG_USD * 1e12)
    assert round(state["spend_last_hour"] * 1e12) == 150 * per_call


def test_exact_spend_from_concurrent_settlements(redis_url: str, workers: list[Worker]) -> None:
    first = _start(workers, redis_url)
    second = _start(workers, redis_url)
    first.send("spend", 100, SMALL, 4)
    second.send("spend", 100, SMALL, 4)
    assert [first._read()["ok"], second._read()["ok"]] == [400, 400]
    state = second.ask("state")
    assert state["spend_last_hour"] == 800 * 0.0025
    assert state["calls_last_minute"] == 800


def test_calls_per_minute_is_shared(redis_url: str, workers: list[Worker]) -> None:
    limits = {"max_calls_per_minute": 10, "block_on_threshold": True}
    first = _start(workers, redis_url, **limits)
    second = _start(workers, redis_url, **limits)
    assert first.ask("spend", 6, SMALL)["ok"] == 6
    answer = second.ask("spend", 6, SMALL)
    assert (answer["ok"], answer["blocked"]) == (4, 2)
    assert answer["last"] == ["max_calls_per_minute", 10, 11]  # call N+1 is the violation


def test_error_rate_is_shared(redis_url: str) -> None:
    """Errors made by one process trip the limit in another (in-process store objects, same keys)."""
    from agentwatch._breaker import Monitor, admit, settle
    from agentwatch._redis_windows import RedisWindowStore, backend_for

    backend = backend_for(redis_url)
    failing = Monitor("agent", "shared", store=RedisWindowStore(backend, "agent", "shared"))
    judged = Monitor("agent", "shared", store=RedisWindowStore(backend, "agent", "shared"),
                     max_error_rate=0.5, block_on_threshold=True)
    for index in range(10):
        settle(admit([failing]), cost_usd=0.0, error=index < 6)
    with pytest.raises(CircuitBreakerException) as caught:
        admit([judged])
    assert (caught.value.reason, caught.value.threshold, caught.value.current) == ("max_error_rate", 0.5, 0.6)


# ---- recovery is fleet-wide -------------------------------------------------------------------------------


def test_a_pause_recovers_a_shared_loop_trip_everywhere(redis_url: str, workers: list[Worker]) -> None:
    """A loop trip (calls per minute, counted fleet-wide) paused for less than the call window: the probe goes
    through, and both processes get a fresh minute of calls (found 2026-12-05: the probe was blocked by the calls
    it was to test, and every call stayed blocked until the window had passed)."""
    limits = {"max_calls_per_minute": 4, "block_on_threshold": True}
    first = _start(workers, redis_url, **limits)
    second = _start(workers, redis_url, **limits)
    assert first.ask("spend", 2, SMALL)["ok"] == 2 and second.ask("spend", 2, SMALL)["ok"] == 2
    assert second.ask("spend", 1, SMALL)["last"] == ["max_calls_per_minute", 4, 5]
    first.ask("pause", 0.3)
    time.sleep(0.4)
    assert first.ask("spend", 1, SMALL) == {"ok": 1, "blocked": 0, "last": None}  # the probe
    assert first.ask("state")["state"] == "CLOSED"
    assert second.ask("spend", 4, SMALL) == {"ok": 4, "blocked": 0, "last": None}
    assert first.ask("spend", 1, SMALL)["last"] == ["max_calls_per_minute", 4, 5]



def test_increase_budget_and_reset_reach_the_other_process(redis_url: str, workers: list[Worker]) -> None:
    limits = {"budget_per_hour": 2 * BIG_USD, "block_on_threshold": True}
    first = _start(workers, redis_url, **limits)
    second = _start(workers, redis_url, **limits)
    assert first.ask("spend", 3, BIG) == {"ok": 2, "blocked": 1, "last": ["budget_per_hour", 5.0, 5.0]}
    first.ask("increase", 2 * BIG_USD)  # $5 -> $10, for the fleet
    answer = second.ask("spend", 3, BIG)
    assert answer == {"ok": 2, "blocked": 1, "last": ["budget_per_hour", 10.0, 10.0]}
    # increase_budget adds to the shared budget even where the local limit is stale ($5 here): $10 -> $12.5
    second.ask("increase", BIG_USD)
    assert first.ask("spend", 2, BIG) == {"ok": 1, "blocked": 1, "last": ["budget_per_hour", 12.5, 12.5]}
    # A process joining with the same configured budget keeps the raised one ...
    late = _start(workers, redis_url, **limits)
    assert late.ask("spend", 1, BIG)["last"] == ["budget_per_hour", 12.5, 12.5]
    # ... and reset_windows anywhere clears the windows everywhere.
    late.ask("reset")
    assert first.ask("state")["spend_last_hour"] == 0.0
    assert second.ask("spend", 1, BIG)["ok"] == 1
    assert first.ask("state")["spend_last_hour"] == BIG_USD


def test_new_configured_budget_replaces_the_shared_one(redis_url: str, workers: list[Worker]) -> None:
    old = _start(workers, redis_url, budget_per_hour=BIG_USD, block_on_threshold=True)
    # The budget is used up but not yet tripped over (a trip is fleet-wide and outlives a deploy, see below).
    assert old.ask("spend", 1, BIG)["ok"] == 1
    # A deploy with a bigger budget: the fleet budget follows the newest configuration (last writer wins).
    new = _start(workers, redis_url, budget_per_hour=3 * BIG_USD, block_on_threshold=True)
    assert new.ask("spend", 3, BIG) == {"ok": 2, "blocked": 1, "last": ["budget_per_hour", 7.5, 7.5]}


# ---- the breaker state is fleet-wide ----------------------------------------------------------------------


def test_a_trip_in_one_process_opens_the_scope_everywhere(redis_url: str, workers: list[Worker]) -> None:
    """Only the tripping process has a call-rate limit: the other one is blocked by the shared OPEN state
    alone (its own limits would let every call through), with the tripping process's reason."""
    tripper = _start(workers, redis_url, max_calls_per_minute=3, block_on_threshold=True)
    other = _start(workers, redis_url, block_on_threshold=True)
    assert tripper.ask("spend", 4, SMALL) == {"ok": 3, "blocked": 1, "last": ["max_calls_per_minute", 3, 4]}
    assert other.ask("spend", 2, SMALL) == {"ok": 0, "blocked": 2, "last": ["max_calls_per_minute", 3, 4]}
    state = other.ask("state")
    assert (state["state"], state["tripped_reason"], state["blocked_calls"]) == ("OPEN", "max_calls_per_minute", 2)
    # reset_windows in the process that did not trip closes the scope in the one that did.
    other.ask("reset")
    assert tripper.ask("spend", 1, SMALL) == {"ok": 1, "blocked": 0, "last": None}
    assert tripper.ask("state")["state"] == "CLOSED"


def test_increase_budget_in_one_process_closes_the_scope_everywhere(redis_url: str,
                                                                     workers: list[Worker]) -> None:
    limits = {"budget_per_hour": 2 * BIG_USD, "block_on_threshold": True}
    first = _start(workers, redis_url, **limits)
    second = _start(workers, redis_url, **limits)
    assert first.ask("spend", 3, BIG) == {"ok": 2, "blocked": 1, "last": ["budget_per_hour", 5.0, 5.0]}
    assert second.ask("spend", 1, BIG)["blocked"] == 1
    assert second.ask("state")["state"] == "OPEN"
    second.ask("increase", BIG_USD)  # $5 -> $7.5 for the fleet, and CLOSED everywhere
    # The first process recovered nothing itself: it follows the fleet on its next call.
    assert first.ask("spend", 2, BIG) == {"ok": 1, "blocked": 1, "last": ["budget_per_hour", 7.5, 7.5]}


def test_pause_in_one_process_then_one_probe_fleet_wide(redis_url: str, workers: list[Worker],
                                                        tmp_path: Path) -> None:
    limits = {"max_calls_per_minute": 1000, "block_on_threshold": True}
    first = _start(workers, redis_url, **limits)
    second = _start(workers, redis_url, **limits)
    assert first.ask("spend", 1, SMALL)["ok"] == 1 and second.ask("spend", 1, SMALL)["ok"] == 1
    # A pause anywhere blocks everywhere, on the Redis clock ...
    first.ask("pause", 1.0)
    paused_at = time.monotonic()
    assert second.ask("spend", 2, SMALL) == {"ok": 0, "blocked": 2, "last": ["paused", None, None]}
    assert first.ask("spend", 1, SMALL)["blocked"] == 1
    time.sleep(max(0.0, paused_at + 1.1 - time.monotonic()))
    # ... and when it is over, one probe goes through fleet-wide: 8 callers in 2 processes race, the probe
    # stays in flight until the 7 others have been blocked.
    gate, progress = tmp_path / "probe-may-finish", tmp_path / "blocked-calls"
    first.send("spend", 1, SMALL, 4, gate, progress)
    second.send("spend", 1, SMALL, 4, gate, progress)
    deadline = time.monotonic() + 60
    while not (progress.exists() and progress.read_text().count("blocked") >= 7):
        assert time.monotonic() < deadline, "the other callers were never blocked while the probe was in flight"
        time.sleep(0.02)
    gate.touch()
    answers = [first._read(), second._read()]
    assert sum(a["ok"] for a in answers) == 1 and sum(a["blocked"] for a in answers) == 7
    # The probe succeeded: CLOSED everywhere.
    assert first.ask("spend", 2, SMALL)["ok"] == 2 and second.ask("spend", 2, SMALL)["ok"] == 2
    assert first.ask("state")["state"] == second.ask("state")["state"] == "CLOSED"
    # A failing probe reopens everywhere: the other process is blocked by the probe's failure.
    second.ask("pause", 0.3)
    time.sleep(0.4)
    assert first.ask("fail", 1, SMALL) == {"ok": 1, "blocked": 0, "last": None}
    assert second.ask("spend", 1, SMALL) == {"ok": 0, "blocked": 1, "last": ["probe_failed", None, None]}
    assert first.ask("state")["state"] == "OPEN"


def test_a_process_ended_by_sigterm_frees_the_fleets_probe_slot(redis_url: str, redis_server: RedisServer,
                                                                 workers: list[Worker], tmp_path: Path) -> None:
    """Found 2026-12-06: a process stopped by SIGTERM (docker stop, Kubernetes) while its call was the fleet's
    HALF_OPEN probe left the slot taken, and every process's calls were blocked ("the probe call after the pause is
    in flight") for the slot's 120 s. Now the process gives it back before it dies, as it does its reservations."""
    import signal

    prober, other = _start(workers, redis_url), _start(workers, redis_url)
    prober.ask("pause", 0.0)
    prober.send("spend", 1, SMALL, 1, tmp_path / "never")  # the probe, in flight until the process ends
    deadline = time.monotonic() + 30
    while not redis_server.client.exists("agentwatch:{global:global}:prb"):
        assert time.monotonic() < deadline, "no probe in flight"
        time.sleep(0.02)
    assert other.ask("spend", 1, SMALL) == {"ok": 0, "blocked": 1, "last": ["paused", None, None]}
    prober.process.send_signal(signal.SIGTERM)
    assert prober.process.wait(timeout=30) == -signal.SIGTERM
    assert other.ask("spend", 1, SMALL) == {"ok": 1, "blocked": 0, "last": None}  # the next probe: CLOSED again
    assert other.ask("state")["state"] == "CLOSED"


def test_followed_transitions_are_reported_once_per_process(redis_url: str) -> None:
    """Two monitors on one scope (as two processes would have): the follower reports what the fleet did,
    marked ``fleet_sync``; a stale trip loses to a newer recovery."""
    from agentwatch._breaker import Monitor, admit, check, settle
    from agentwatch._redis_windows import RedisWindowStore, backend_for

    backend = backend_for(redis_url)
    sinks = [RecordingSink(), RecordingSink()]
    leader, follower = (Monitor("agent", "s", store=RedisWindowStore(backend, "agent", "s"), sink=sink,
                                budget_per_hour=BIG_USD, block_on_threshold=True) for sink in sinks)
    settle(admit([leader]), cost_usd=BIG_USD, error=False)
    with pytest.raises(CircuitBreakerException):
        admit([leader])
    with pytest.raises(CircuitBreakerException) as caught:
        admit([follower])
    assert (caught.value.reason, caught.value.threshold, caught.value.current) == ("budget_per_hour", 2.5, 2.5)
    with pytest.raises(CircuitBreakerException):
        check([follower])  # a boundary check sees the fleet's state too
    leader.increase_budget(BIG_USD)
    check([follower])  # ... and its recovery (the follower follows here)
    settle(admit([follower]), cost_usd=0.0, error=False)
    assert [(r["event"], r["to_state"], "fleet_sync" in r) for r in sinks[0].transitions] == [
        ("triggered", "OPEN", False), ("budget_increased", "CLOSED", False)]
    assert [(r["event"], r["from_state"], r["to_state"], r.get("fleet_sync")) for r in sinks[1].transitions] == [
        ("triggered", "CLOSED", "OPEN", True), ("budget_increased", "OPEN", "CLOSED", True)]
    assert sinks[1].transitions[0]["reason"] == "budget_per_hour"
    assert leader.state == follower.state == "CLOSED"
    # A trip decided on an older generation loses to the pause made meanwhile: the store refuses to publish
    # it and answers with what the fleet is now.
    leader.pause(60.0)
    stale = follower.store.publish(  # type: ignore[attr-defined]
        "triggered", "OPEN", "budget_per_hour", 2.5, 2.5, ("budget_per_hour", 2.5, 2.5), if_generation=True)
    assert (stale.state, stale.event, stale.trip) == ("PAUSED", "paused", ("paused", None, None))


def test_a_new_pause_elsewhere_is_followed_while_already_paused(redis_url: str) -> None:
    """A second pause made in another process is a new transition: a monitor already PAUSED reports it too
    and takes its end from the fleet, so its next call after that end is the fleet's probe."""
    from agentwatch._breaker import Monitor, admit, check, settle
    from agentwatch._redis_windows import RedisWindowStore, backend_for

    backend = backend_for(redis_url)
    sink = RecordingSink()
    leader, follower = (Monitor("agent", "repause", store=RedisWindowStore(backend, "agent", "repause"),
                                sink=s) for s in (None, sink))
    leader.pause(600.0)
    with pytest.raises(CircuitBreakerException):
        admit([follower])
    leader.pause(0.05)
    time.sleep(0.3)  # the new pause is over on the Redis clock (the first would last ten minutes more)
    admission = admit([follower])
    assert admission.probe_monitors == (follower,)
    settle(admission, cost_usd=0.0, error=False)
    assert [(r["event"], r["to_state"], r.get("fleet_sync")) for r in sink.transitions] == [
        ("paused", "PAUSED", True), ("paused", "PAUSED", True), ("half_open", "HALF_OPEN", None),
        ("recovered", "CLOSED", None)]
    check([leader])  # the leader learns of the recovery on its next look at the fleet
    assert leader.state == follower.state == "CLOSED"


def test_a_call_refused_while_the_fleets_probe_is_in_flight_says_so(redis_url: str) -> None:
    """After a pause of a loop trip, a process whose call is refused because another process's probe is in flight is
    told so, as a process refused by its own probe is (``test_breaker``'s ``test_only_one_probe_while_half_open``).
    Found by a probe: the other processes were told only "call rate exceeded: this would be call 4", with
    ``probe_in_flight`` False."""
    from agentwatch._breaker import Monitor, admit, settle
    from agentwatch._redis_windows import RedisWindowStore, backend_for

    backend = backend_for(redis_url)
    prober, other = (Monitor("agent", "probed", store=RedisWindowStore(backend, "agent", "probed"),
                             max_calls_per_minute=1, block_on_threshold=True) for _ in range(2))
    settle(admit([prober]), cost_usd=0.0, error=False)
    with pytest.raises(CircuitBreakerException):
        admit([prober])  # call 2 of 1: tripped fleet-wide
    prober.pause(0.05)
    time.sleep(0.3)
    probe = admit([prober])
    assert probe.probe_monitors == (prober,)
    refused = []
    for monitor in (prober, other):  # a call of the probe's own process, then one of another process
        with pytest.raises(CircuitBreakerException) as caught:
            admit([monitor])
        refused.append(caught.value)
    for error in refused:
        assert (error.reason, error.state["state"], error.state["probe_in_flight"]) == (
            "max_calls_per_minute", "HALF_OPEN", True)
        assert "the probe call after the pause is in flight" in str(error)
    settle(probe, cost_usd=0.0, error=False)
    settle(admit([other]), cost_usd=0.0, error=False)  # the probe succeeded: closed fleet-wide
    assert other.snapshot()["probe_in_flight"] is False


def test_keys_expire_with_their_windows(redis_url: str, redis_server: RedisServer) -> None:
    _init(redis_url, agent_name="ttl", budget_per_hour=100.0)
    with agentwatch.llm_call("chat", model="gpt-4o", provider="openai") as call:
        call.set_usage(input_tokens=SMALL, output_tokens=0)
    ttl = {key.decode().rsplit(":", 1)[1]: redis_server.client.pttl(key) for key in redis_server.client.keys("*")}
    assert set(ttl) == {"sz", "sh", "dz", "dh", "cz", "ch", "lim"}
    assert 0 < ttl["cz"] <= 61_000 and 0 < ttl["ch"] <= 61_000
    assert 300_000 < ttl["dz"] <= 301_000 and 3_600_000 < ttl["sz"] <= 3_601_000
    assert 0 < ttl["lim"] <= 24 * 3600 * 1000
    # The breaker record lives a day without calls (every call renews it), the probe slot 120 s.
    agentwatch.get_client().monitor.pause(0.0)
    with agentwatch.llm_call("chat", model="gpt-4o", provider="openai") as call:  # the probe
        probe_ttl = redis_server.client.pttl("agentwatch:{global:ttl}:prb")
        call.set_usage(input_tokens=SMALL, output_tokens=0)
    assert 0 < probe_ttl <= 120_000
    assert 23 * 3600 * 1000 < redis_server.client.pttl("agentwatch:{global:ttl}:brk") <= 24 * 3600 * 1000
    assert redis_server.client.exists("agentwatch:{global:ttl}:prb") == 0  # freed by the probe's success


# ---- Redis unreachable ----------------------------------------------------------------------------------


def _spend_quietly(n: int) -> tuple[int, int]:
    ok = blocked = 0
    for _ in range(n):
        try:
            with agentwatch.llm_call("chat", model="gpt-4o", provider="openai") as call:
                call.set_usage(input_tokens=BIG, output_tokens=0)
            ok += 1
        except CircuitBreakerException:
            blocked += 1
    return ok, blocked


def _backend_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "limits backend" in
            r.getMessage()]


def test_redis_down_fails_open_with_one_warning_and_reconnects(caplog: pytest.LogCaptureFixture) -> None:
    _need_redis_server()
    server = RedisServer().start()
    try:
        _init(server.url, budget_per_hour=10 * BIG_USD, block_on_threshold=True, limits_fallback="local")
        assert _spend_quietly(2) == (2, 0)
        server.stop()
        caplog.set_level(logging.WARNING, logger="agentwatch")
        # The local fallback shadowed this process's $5: 8 more calls reach the $25 budget, then it blocks.
        assert _spend_quietly(50) == (8, 42)
        warnings = _backend_warnings(caplog)
        assert len(warnings) == 1 and "unreachable" in warnings[0]
        # Back on the same port: after the backoff the next call goes to Redis again (whose windows are empty).
        server.start()
        time.sleep(0.6)
        agentwatch.get_client().monitor.reset_windows()
        assert _spend_quietly(1) == (1, 0)
        assert server.client.hget("agentwatch:{global:global}:sh", "t") == str(int(BIG_USD * 1e12)).encode()
        assert "reachable again" in _backend_warnings(caplog)[-1]
    finally:
        server.stop()


@pytest.mark.parametrize("outage", ["restarted_empty", "stalled"])
def test_spend_of_an_outage_counts_toward_the_fleet_budget_after_it(outage: str) -> None:
    """Found 2026-12-05: what a process spent while Redis did not answer was never added to the fleet's window, and
    Redis coming back empty (no persistence, a failover) reset the budget for a process that knew it had spent it:
    $0.05 of budget, $0.10 spent by one process. Now the process adds both back before its next admission."""
    import signal

    _need_redis_server()
    server = RedisServer().start()
    try:
        # A budget of 5 calls; a 1 s socket timeout while Redis is up (a loaded CI machine), as users may set.
        _init(server.url + "?socket_timeout=1", budget_per_hour=5 * BIG_USD, block_on_threshold=True,
              limits_fallback="local")
        assert _spend_quietly(2) == (2, 0)
        assert server.process is not None
        if outage == "stalled":  # Redis keeps its data: the 2 calls of the outage are what it never took
            server.process.send_signal(signal.SIGSTOP)
        else:
            server.stop()
        try:
            assert _spend_quietly(2) == (2, 0)  # the local fallback: this process's 4 of 5
        finally:
            if outage == "stalled":
                server.process.send_signal(signal.SIGCONT)
            else:
                server.start()
        time.sleep(0.6)  # the reconnect backoff
        assert _spend_quietly(5) == (1, 4)
        assert server.client.hget("agentwatch:{global:global}:sh", "t") == str(int(5 * BIG_USD * 1e12)).encode()
    finally:
        server.stop()


@pytest.mark.parametrize("loss", ["restarted_empty", "record_expired"])
def test_a_kill_outlives_the_loss_of_the_fleets_record(loss: str, workers: list[Worker]) -> None:
    """Found 2026-12-06: an operator's kill (and any trip or pause) lived only in the fleet's breaker record, so
    Redis restarting without persistence, or the record expiring after a day without calls, let every call through
    again: the processes took the missing record for a recovery. Now a process still holding the state puts it
    back, and the fleet (a process started after the loss too) stays blocked until a resume."""
    _need_redis_server()
    server = RedisServer().start()
    try:
        url = server.url + "?socket_timeout=1"
        _init(url)
        monitor = agentwatch.get_client().monitor
        monitor.kill()
        assert _spend_quietly(1) == (0, 1)
        if loss == "record_expired":
            server.client.delete("agentwatch:{global:global}:brk")
        else:
            server.stop()
            assert _spend_quietly(1) == (0, 1)  # the local fallback keeps the kill
            server.start()
            time.sleep(0.6)  # the reconnect backoff
        with pytest.raises(CircuitBreakerException) as caught:
            with agentwatch.llm_call("chat", model="gpt-4o", provider="openai"):
                pytest.fail("the call was sent although the operator killed the scope")
        assert caught.value.reason == "operator_kill" and monitor.state == "OPEN"
        assert server.client.hget("agentwatch:{global:global}:brk", "st") == b"O"
        late = _start(workers, url)
        assert late.ask("spend", 1, SMALL) == {"ok": 0, "blocked": 1, "last": ["operator_kill", None, None]}
        monitor.resume()
        assert late.ask("spend", 1, SMALL)["ok"] == 1
    finally:
        server.stop()


def test_a_kill_made_while_redis_does_not_answer_reaches_the_fleet_after(workers: list[Worker]) -> None:
    """Found 2026-12-06: a kill (the collector's, or ``monitor.kill()``) made while Redis did not answer held in that
    process only until Redis answered again; then the process followed the fleet's older CLOSED record and let
    every call through, and the rest of the fleet never saw the kill. Now the kill is published then."""
    import signal

    _need_redis_server()
    server = RedisServer().start()
    try:
        url = server.url + "?socket_timeout=1"
        _init(url)
        monitor = agentwatch.get_client().monitor
        other = _start(workers, url)
        monitor.pause(0.0)
        assert _spend_quietly(1) == (1, 0)  # the probe: the fleet's record is CLOSED again, and exists
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
        try:
            assert _spend_quietly(1) == (1, 0)  # Redis does not answer: the kill below is not even sent to it
            monitor.kill()
        finally:
            server.process.send_signal(signal.SIGCONT)
        time.sleep(0.6)  # the reconnect backoff
        with pytest.raises(CircuitBreakerException) as caught:
            with agentwatch.llm_call("chat", model="gpt-4o", provider="openai"):
                pytest.fail("the call was sent although the operator killed the scope")
        assert caught.value.reason == "operator_kill" and monitor.state == "OPEN"
        assert other.ask("spend", 1, SMALL) == {"ok": 0, "blocked": 1, "last": ["operator_kill", None, None]}
        monitor.resume()
        assert other.ask("spend", 1, SMALL)["ok"] == 1
    finally:
        server.stop()


def _fleet_monitors(scope_id: str, *urls: str, **limits: Any) -> list[tuple[Any, list[float]]]:
    """One monitor per URL on one scope, as the processes of a fleet have (a URL of its own: a connection of its own),
    each with a clock that the test moves on (the list's item)."""
    from agentwatch._breaker import Monitor
    from agentwatch._redis_windows import RedisWindowStore, backend_for

    monitors = []
    for url in urls:
        clock = [time.monotonic()]
        monitors.append((Monitor("global", scope_id, store=RedisWindowStore(backend_for(url), "global", scope_id),
                                 clock=lambda clock=clock: clock[0], **limits), clock))
    return monitors


def test_a_resumed_fleet_is_not_killed_again_when_its_record_expires(redis_url: str, redis_server: RedisServer) -> None:
    """Found 2026-12-06 (review): the fleet's CLOSED record was not renewed by calls, so it expired a day after a
    resume however busy the fleet was, and a process that still held the old kill (it had made no call since) put
    the kill back fleet-wide at its next call: no one asked for it. Now every call renews the record, and only a
    state seen in the record (or put there) within the record's lifetime is put back: an older one follows."""
    from agentwatch._breaker import admit, settle

    client, record = redis_server.client, "agentwatch:{global:resumed}:brk"
    (resumer, _), (stale, stale_clock) = _fleet_monitors("resumed", redis_url, redis_url + "&db=0")
    for monitor in (resumer, stale):
        settle(admit([monitor]), cost_usd=0.0, error=False)
    resumer.kill()
    with pytest.raises(CircuitBreakerException):
        admit([stale])  # the kill, seen in the fleet's record
    resumer.resume()
    client.pexpire(record, 1000)
    settle(admit([resumer]), cost_usd=0.0, error=False)
    assert client.pttl(record) > 23 * 3600 * 1000  # a call renews the CLOSED record
    stale_clock[0] += 24 * 3600 + 1  # a day without a call in that process, and the record expired
    client.delete(record)
    settle(admit([stale]), cost_usd=0.0, error=False)
    assert client.hget(record, "st") != b"O" and stale.state == "CLOSED"
    settle(admit([resumer]), cost_usd=0.0, error=False)


def test_a_trip_of_one_process_during_an_outage_stays_its_own_after() -> None:
    """Found 2026-12-06 (review): a process whose own fallback windows tripped it while Redis did not answer put the
    trip into the fleet's record when Redis came back empty (a restart without persistence), blocking every process
    of the fleet for a limit the fleet's windows never reached. A transition made during an outage stays local."""
    from agentwatch._breaker import admit, settle

    _need_redis_server()
    server = RedisServer().start()
    try:
        (tripped, _), (other, _) = _fleet_monitors("local_trip", server.url + "?socket_timeout=1",
                                                   server.url + "?socket_timeout=2",
                                                   max_calls_per_minute=2, block_on_threshold=True)
        settle(admit([tripped]), cost_usd=0.0, error=False)
        server.stop()
        settle(admit([tripped]), cost_usd=0.0, error=False)
        with pytest.raises(CircuitBreakerException):
            admit([tripped])  # call 3 of 2 in this process's own windows
        assert tripped.state == "OPEN"
        server.start()
        time.sleep(0.6)  # the reconnect backoff
        settle(admit([tripped]), cost_usd=0.0, error=False)  # the fleet's empty record (and windows) are followed
        assert server.client.hget("agentwatch:{global:local_trip}:brk", "st") is None
        settle(admit([other]), cost_usd=0.0, error=False)
    finally:
        server.stop()


def test_a_kill_made_during_an_outage_does_not_undo_a_later_resume(redis_server: RedisServer) -> None:
    """Found 2026-12-06 (review): a kill made while Redis did not answer that process was published when it answered
    again, over a resume another process had made after it: the operator's resume was undone. Now it is published
    only if the fleet's record is still the one seen before the outage (or is gone); a newer one is followed."""
    import signal

    from agentwatch._breaker import admit, settle

    _need_redis_server()
    server = RedisServer().start()
    try:
        (stalled, _), (resumer, _) = _fleet_monitors("outage_kill", server.url + "?socket_timeout=0.3",
                                                     server.url + "?socket_timeout=2")
        for monitor in (stalled, resumer):
            settle(admit([monitor]), cost_usd=0.0, error=False)
        resumer.kill("first")
        with pytest.raises(CircuitBreakerException):
            admit([stalled])  # follows the kill
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
        try:
            stalled.kill("second")  # Redis does not answer: not published
        finally:
            server.process.send_signal(signal.SIGCONT)
        resumer.resume()  # after the second kill: the operator's last word
        time.sleep(0.6)  # the reconnect backoff
        settle(admit([stalled]), cost_usd=0.0, error=False)
        assert server.client.hget("agentwatch:{global:outage_kill}:brk", "st") == b"C"
        settle(admit([resumer]), cost_usd=0.0, error=False)
    finally:
        server.stop()


def test_the_process_losing_the_race_to_put_back_a_lost_record_uncounts_its_call(redis_url: str,
                                                                                 redis_server: RedisServer) -> None:
    """Found 2026-12-06 (review): of two processes putting a lost kill back at once, the one whose publish lost left
    its blocked call counted in the fleet's calls-per-minute window. The other process puts the record back between
    this one's read and its publish (a store that lets it, at that moment)."""
    from agentwatch._breaker import Monitor, admit
    from agentwatch._redis_windows import RedisWindowStore, backend_for

    winners: list[Monitor] = []

    class OvertakenStore(RedisWindowStore):
        def publish(self, *args: Any, **kwargs: Any) -> Any:
            if winners:
                with pytest.raises(CircuitBreakerException):
                    admit([winners.pop()])
            return super().publish(*args, **kwargs)

    backend = backend_for(redis_url)
    loser = Monitor("global", "race", store=OvertakenStore(backend, "global", "race"))
    winner = Monitor("global", "race", store=RedisWindowStore(backend, "global", "race"))
    loser.kill()
    for monitor in (loser, winner):
        with pytest.raises(CircuitBreakerException):
            admit([monitor])
    redis_server.client.delete("agentwatch:{global:race}:brk")
    winners.append(winner)
    with pytest.raises(CircuitBreakerException):
        admit([loser])
    assert not winners
    assert int(redis_server.client.hget("agentwatch:{global:race}:ch", "t") or 0) == 0


def test_a_probe_slot_taken_by_a_failed_put_back_is_given_back() -> None:
    """Found 2026-12-06 (review): a process putting back a kill made while Redis did not answer, whose admission took
    the fleet's HALF_OPEN probe slot, kept the slot when Redis failed the kill's publish (here: out of memory, as a
    full Redis with noeviction answers a write): every process's calls were refused ("the probe call after the pause
    is in flight") until a later publish. Now the slot is given back (when Redis answers again, as any release)."""
    from agentwatch._breaker import Monitor, admit
    from agentwatch._redis_windows import RedisWindowStore, backend_for

    _need_redis_server()
    server = RedisServer().start()
    refusals: list[bool] = []

    class RefusedStore(RedisWindowStore):  # Redis refuses writes from right before this publish
        def publish(self, *args: Any, **kwargs: Any) -> Any:
            if refusals:
                refusals.pop()
                server.client.config_set("maxmemory", "1")
            return super().publish(*args, **kwargs)

    try:
        backend = backend_for(server.url + "?socket_timeout=0.3")
        killer = Monitor("global", "refused", store=RefusedStore(backend, "global", "refused"))
        other = Monitor("global", "refused", store=RedisWindowStore(backend, "global", "refused"))
        other.pause(1.0)
        with pytest.raises(CircuitBreakerException):
            admit([killer])  # follows the pause
        server.client.config_set("maxmemory", "1")
        try:
            killer.kill()  # not published: Redis refuses it
        finally:
            server.client.config_set("maxmemory", "0")
        assert server.client.hget("agentwatch:{global:refused}:brk", "st") == b"P"
        time.sleep(1.1)  # the pause is over (the fleet's probe is next) and the reconnect backoff too
        refusals.append(True)
        try:
            with pytest.raises(CircuitBreakerException):
                admit([killer])  # takes the probe slot, then cannot publish the kill
        finally:
            server.client.config_set("maxmemory", "0")
        assert server.client.hget("agentwatch:{global:refused}:brk", "st") == b"P"
        time.sleep(0.6)  # the reconnect backoff
        assert admit([other]).probe_monitors == (other,)  # the slot is free: this call is the fleet's probe
    finally:
        server.stop()


def test_fallback_local_enforces_per_process_while_redis_is_down(workers: list[Worker]) -> None:
    """Each process goes on from its own recent history: the one that spent is stopped sooner."""
    _need_redis_server()
    server = RedisServer().start()
    try:
        limits = {"budget_per_hour": 4 * BIG_USD, "block_on_threshold": True, "limits_fallback": "local"}
        spender = _start(workers, server.url, **limits)
        idle = _start(workers, server.url, **limits)
        assert spender.ask("spend", 2, BIG)["ok"] == 2 and idle.ask("state")["spend_last_hour"] == 2 * BIG_USD
        server.stop()
        assert spender.ask("spend", 5, BIG) == {"ok": 2, "blocked": 3, "last": ["budget_per_hour", 10.0, 10.0]}
        assert idle.ask("spend", 5, BIG) == {"ok": 4, "blocked": 1, "last": ["budget_per_hour", 10.0, 10.0]}
    finally:
        server.stop()


def test_fallback_block_blocks_while_redis_is_down_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    _need_redis_server()
    server = RedisServer().start()
    try:
        _init(server.url, limits_fallback="block")  # no limits at all: only the missing backend blocks
        monitor = agentwatch.get_client().monitor
        assert _spend_quietly(2) == (2, 0)
        server.stop()
        caplog.set_level(logging.WARNING, logger="agentwatch")
        with pytest.raises(CircuitBreakerException) as caught:
            with agentwatch.llm_call("chat", model="gpt-4o", provider="openai"):
                pytest.fail("the call was sent although the limits backend is unreachable")
        assert caught.value.reason == "limits_backend_unreachable"
        assert "limits backend unreachable" in str(caught.value)
        assert _spend_quietly(20) == (0, 20)  # durations of an outage: bench/bench_limits_outage.py
        warnings = _backend_warnings(caplog)
        assert len(warnings) == 1 and "blocking every LLM call" in warnings[0]
        assert monitor.state == "CLOSED"  # blocked, not tripped: nothing to recover afterwards
        # Back on the same port: a later call reconnects by itself (after the backoff) and goes through.
        server.start()
        deadline = time.monotonic() + 5.0
        while _spend_quietly(1) != (1, 0):
            assert time.monotonic() < deadline, "still blocked 5 s after the limits backend came back"
            time.sleep(0.1)
        assert _spend_quietly(3) == (3, 0)
        assert "reachable again" in _backend_warnings(caplog)[-1]
    finally:
        server.stop()


def test_limits_fallback_is_validated() -> None:
    from agentwatch._config import build_config

    assert build_config({}, {}).limits_fallback == "local"
    assert build_config({}, {"AGENTWATCH_LIMITS_FALLBACK": " Block"}).limits_fallback == "block"
    argument_wins = build_config({"limits_fallback": "local"}, {"AGENTWATCH_LIMITS_FALLBACK": "block"})
    assert argument_wins.limits_fallback == "local"
    with pytest.raises(ValueError, match=r"limits_fallback must be 'local' .* or 'block' .*got 'closed'"):
        agentwatch.init(limits_fallback="closed", exporters=[], auto_instrument=False)
    with pytest.raises(ValueError, match="AGENTWATCH_LIMITS_FALLBACK|limits_fallback"):
        build_config({}, {"AGENTWATCH_LIMITS_FALLBACK": "open"})
    with pytest.raises(TypeError, match="limits_fallback must be a str"):
        build_config({"limits_fallback": True}, {})


@pytest.mark.parametrize("url", ["redis://:s3cret@127.0.0.1:{port}/0", "redis://127.0.0.1:{port}/2?password=s3cret",
                                 "redis://127.0.0.1:{port}/0?db=3&username=bob&password=s3cret",
                                 "rediss://127.0.0.1:{port}/0?ssl_password=s3cret"])
def test_the_outage_warning_shows_no_password(url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Found 2026-12-06: a password given as a URL parameter (``?password=``, which redis-py reads as it does the
    user info) was written to the log in full by the warning that Redis is unreachable; so was ``?ssl_password=`` (a
    TLS key's passphrase) after that fix, found by review: every parameter naming a password or a user is hidden."""
    caplog.set_level(logging.WARNING, logger="agentwatch")
    _init(url.format(port=_free_port()))
    assert _spend_quietly(1) == (1, 0)
    warnings = _backend_warnings(caplog)
    assert len(warnings) == 1 and "unreachable" in warnings[0]
    assert "s3cret" not in warnings[0] and "bob" not in warnings[0] and "127.0.0.1:" in warnings[0]


def test_unresponsive_redis_does_not_hang_the_call(caplog: pytest.LogCaptureFixture) -> None:
    """A server that accepts connections and never answers (a stuck host): bounded by the 50 ms timeouts."""
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(100)
        url = f"redis://127.0.0.1:{blackhole.getsockname()[1]}/0"
        caplog.set_level(logging.WARNING, logger="agentwatch")
        _init(url, budget_per_hour=100.0)
        # Every call goes through on the local fallback (pytest-timeout catches a hang; the per-call
        # durations are printed by bench/bench_limits_outage.py), and the outage is reported once.
        assert _spend_quietly(20) == (20, 0)
        assert len(_backend_warnings(caplog)) == 1


def test_threads_survive_an_outage(redis_url: str, redis_server: RedisServer) -> None:
    """Concurrent callers while the backend dies: no exception other than the breaker's reaches them."""
    server = RedisServer().start()
    try:
        _init(server.url, max_calls_per_minute=10_000)
        failures: list[BaseException] = []

        def run() -> None:
            try:
                _spend_quietly(200)
            except BaseException as exc:  # anything here is a bug: record it for the assertion
                failures.append(exc)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.05)
        server.stop()
        for thread in threads:
            thread.join(timeout=30)
        assert failures == []
    finally:
        server.stop()


def test_a_hiccup_does_not_leave_a_finished_calls_reservation_held() -> None:
    """Hard budget of $1 in Redis, two calls in flight holding $0.45 each. Redis stops answering (SIGSTOP: it keeps
    its data) as the first call settles: that round trip times out (and Redis runs it once it is back), the backend
    is down, and the second call settles inside the backoff, without a round trip. Both settlements were dropped:
    the reservations stayed held for 15 minutes and the next call ($0.50) was refused with $0.20 spent. Now they
    reach Redis when it answers again, before the reconnecting call's own round trip, and each cost counts once."""
    import signal

    from agentwatch._breaker import Monitor, admit, settle
    from agentwatch._redis_windows import RedisWindowStore, backend_for

    _need_redis_server()
    server = RedisServer().start()
    try:
        backend = backend_for(server.url)  # the default 50 ms timeouts: a stopped Redis is an outage at once
        monitor = Monitor("global", "hiccup", budget_per_hour=1.0, hard_budget=True,
                          store=RedisWindowStore(backend, "global", "hiccup"))
        first, second = admit([monitor], reserve=0.45), admit([monitor], reserve=0.45)
        held = "agentwatch:{global:hiccup}:rh"
        assert int(server.client.hget(held, "t")) == int(0.9e12)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            settle(first, cost_usd=0.1, error=False)  # sent, no answer: the backend is down
            assert backend.down
            settle(second, cost_usd=0.1, error=False)  # inside the backoff: not sent
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        time.sleep(0.6)  # past the backoff: the next call reconnects
        third = admit([monitor], reserve=0.5)  # was refused: hard_budget, $0.9 reserved by calls long finished
        assert not backend.down
        assert int(server.client.hget(held, "t")) == int(0.5e12)  # only the call in flight
        assert int(server.client.hget("agentwatch:{global:hiccup}:sh", "t")) == int(0.2e12)  # each cost once
        settle(third, cost_usd=0.5, error=False)
        assert int(server.client.hget(held, "t")) == 0
    finally:
        server.stop()


def test_a_settlement_sent_again_counts_once(redis_url: str, redis_server: RedisServer) -> None:
    """A settlement whose round trip failed may have run in Redis all the same; it is sent again marked so: it counts
    only while its reservation is still held."""
    from agentwatch._breaker import Monitor, admit, settle
    from agentwatch._redis_windows import RedisWindowStore, backend_for

    backend = backend_for(redis_url)
    store = RedisWindowStore(backend, "global", "resend")
    monitor = Monitor("global", "resend", budget_per_hour=1.0, hard_budget=True, store=store)
    admission = admit([monitor], reserve=0.3)
    settle(admission, cost_usd=0.1, error=False)
    rid = f"{store._token}:{admission._rid}"
    units = admission._units
    backend.settle_reserved(keys=store._settle_keys, args=[int(0.1e12), 0, units, rid, "1"])  # already ran: no-op
    spent = redis_server.client.hget("agentwatch:{global:resend}:sh", "t")
    assert int(spent) == int(0.1e12)
    held = admit([monitor], reserve=0.3)  # never settled: the resend is its settlement
    backend.settle_reserved(keys=store._settle_keys, args=[int(0.1e12), 0, held._units,
                                                           f"{store._token}:{held._rid}", "1"])
    assert int(redis_server.client.hget("agentwatch:{global:resend}:sh", "t")) == int(0.2e12)
    assert int(redis_server.client.hget("agentwatch:{global:resend}:rh", "t")) == 0
