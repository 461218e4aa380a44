"""The breaker under concurrency: exact accounting, one probe, every transition reported once and in order."""

from __future__ import annotations

import asyncio
import random
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agentwatch._breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Admission,
    CircuitBreakerException,
    Monitor,
    admit,
    settle,
)
from tests.core.test_breaker import FakeClock, RecordingSink

THREADS = 16
CALLS_PER_THREAD = 500


@pytest.fixture(autouse=True)
def _switch_threads_often() -> Iterator[None]:
    # By default a thread runs for 5 ms before the interpreter switches: enough to finish all its calls
    # and race with nobody. Switching every few microseconds makes the interleavings real.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


class PerMonitorSink(RecordingSink):
    """Also files transitions per monitor, to check each monitor's chain of states."""

    def __init__(self) -> None:
        super().__init__()
        self.by_monitor: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def transition(self, monitor: Monitor, record: dict[str, Any]) -> None:
        super().transition(monitor, record)
        with self.lock:
            self.by_monitor[monitor.scope_id].append(dict(record))


def _run_threads(count: int, target: Callable[[int], None]) -> None:
    barrier = threading.Barrier(count)
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            target(index)
        except BaseException as exc:  # surfaced in the test thread below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "deadlock: a worker never finished"
    assert not failures, failures[0]


def _cost(thread: int, index: int) -> float:
    # Multiples of 2**-12: exact in binary, so the expected total is exact too.
    return ((thread * 31 + index * 7) % 13 + 1) * 2.0 ** -12


def test_threads_spend_and_calls_are_exact_across_a_scope_stack() -> None:
    clock = FakeClock()
    generous = {"budget_per_hour": 1e6, "max_error_rate": 1.0, "max_calls_per_minute": 10**6,
                "block_on_threshold": True, "clock": clock}
    agents = [Monitor("agent", f"agent-{k}", **generous) for k in range(2)]
    orchestrator = Monitor("agent", "orchestrator", **generous)
    top = Monitor("global", "global", **generous)

    def worker(thread: int) -> None:
        stack = [agents[thread % 2], orchestrator, top]
        for index in range(CALLS_PER_THREAD):
            admission = admit(stack)
            settle(admission, cost_usd=_cost(thread, index), error=index % 10 == 0)

    _run_threads(THREADS, worker)
    expected = {k: sum(_cost(t, i) for t in range(THREADS) if t % 2 == k for i in range(CALLS_PER_THREAD))
                for k in range(2)}
    total = THREADS * CALLS_PER_THREAD
    for k, agent in enumerate(agents):
        snap = agent.snapshot()
        assert snap["spend_last_hour"] == expected[k]
        assert snap["calls_last_minute"] == total // 2
    for m in (orchestrator, top):
        snap = m.snapshot()
        assert snap["spend_last_hour"] == expected[0] + expected[1]
        assert (snap["calls_last_minute"], snap["calls_in_error_window"]) == (total, total)
        assert snap["errors_in_error_window"] == total // 10


def test_concurrent_callers_cannot_overshoot_the_call_rate() -> None:
    clock = FakeClock()
    sink = PerMonitorSink()
    inner = Monitor("agent", "inner", clock=clock, sink=sink)
    outer = Monitor("global", "global", max_calls_per_minute=1000, block_on_threshold=True, clock=clock,
                    sink=sink)
    admitted: list[int] = []
    refused: list[int] = []

    def worker(thread: int) -> None:
        for _ in range(CALLS_PER_THREAD):
            try:
                settle(admit([inner, outer]), cost_usd=0.0, error=False)
                admitted.append(1)
            except CircuitBreakerException:
                refused.append(1)

    _run_threads(THREADS, worker)
    assert len(admitted) == 1000 and len(refused) == THREADS * CALLS_PER_THREAD - 1000
    assert outer.snapshot()["calls_last_minute"] == 1000
    assert inner.snapshot()["calls_last_minute"] == 1000  # blocked calls were rolled back inside
    assert outer.snapshot()["blocked_calls"] == len(refused)
    assert sink.events == ["triggered"]
    assert len(sink.blocked_errors) == len(refused)


async def test_thousand_concurrent_asyncio_calls_are_exact() -> None:
    clock = FakeClock()
    agent = Monitor("agent", "a", budget_per_hour=1e6, max_calls_per_minute=10**6, clock=clock)
    top = Monitor("global", "global", budget_per_hour=1e6, clock=clock)

    async def one(index: int) -> float:
        admission = admit([agent, top])
        await asyncio.sleep(0)  # other calls are admitted while this one is in flight
        cost = _cost(index, index)
        settle(admission, cost_usd=cost, error=False)
        return cost

    costs = await asyncio.gather(*(one(index) for index in range(1000)))
    for m in (agent, top):
        snap = m.snapshot()
        assert snap["spend_last_hour"] == sum(costs)
        assert snap["calls_last_minute"] == 1000 and snap["calls_in_error_window"] == 1000


def test_exactly_one_probe_passes_when_threads_race() -> None:
    clock = FakeClock()
    sink = PerMonitorSink()
    m = Monitor("agent", "bot", max_calls_per_minute=1, block_on_threshold=True, clock=clock, sink=sink)
    probes: list[Admission] = []
    refused: list[CircuitBreakerException] = []

    def worker(_: int) -> None:
        for _ in range(5):
            try:
                probes.append(admit([m]))
            except CircuitBreakerException as exc:
                refused.append(exc)

    for _ in range(20):
        probes.clear()
        refused.clear()
        m.reset_windows()
        settle(admit([m]), cost_usd=0.0, error=False)
        try:
            admit([m])
        except CircuitBreakerException:
            pass
        assert m.state == OPEN
        clock.advance(60)
        m.pause(5)
        clock.advance(5)  # PAUSED → HALF_OPEN is noticed lazily, by whichever thread comes first
        _run_threads(THREADS, worker)
        assert len(probes) == 1 and len(refused) == THREADS * 5 - 1
        assert {error.state["state"] for error in refused} == {HALF_OPEN}
        assert probes[0].probe_monitors == (m,)
        settle(probes[0], cost_usd=0.0, error=False)
        assert m.state == CLOSED
    events = Counter(sink.events)
    assert events == {"reset": 20, "triggered": 20, "paused": 20, "half_open": 20, "recovered": 20}


def test_every_transition_reported_once_and_in_order_under_chaos() -> None:
    lock = threading.Lock()
    now = [0.0]

    def clock() -> float:
        return now[0]

    def tick(seconds: float) -> None:
        with lock:  # a shared clock must not run backwards when two threads move it
            now[0] += seconds

    sink = PerMonitorSink()
    made: Counter[tuple[str, str]] = Counter()

    def on_block(event: Any) -> None:
        if random.random() < 0.3:
            event.monitor.pause(0)
            with lock:
                made[(event.monitor.scope_id, "paused")] += 1

    agent = Monitor("agent", "agent", budget_per_hour=0.5, max_error_rate=0.3, max_calls_per_minute=40,
                    block_on_threshold=True, clock=clock, sink=sink, on_block=on_block)
    top = Monitor("global", "global", budget_per_hour=2.0, max_calls_per_minute=60, block_on_threshold=True,
                  clock=clock, sink=sink, on_block=on_block)
    monitors = {"agent": agent, "global": top}

    def worker(thread: int) -> None:
        rng = random.Random(thread)
        for _ in range(400):
            roll = rng.random()
            target = monitors["agent" if rng.random() < 0.6 else "global"]
            if roll < 0.75:
                try:
                    admission = admit([agent, top])
                except CircuitBreakerException:
                    continue
                settle(admission, cost_usd=rng.choice([0.0, 0.0625, 0.125]), error=rng.random() < 0.3)
            elif roll < 0.83:
                target.pause(rng.choice([0.0, 0.5, 2.0]))
                with lock:
                    made[(target.scope_id, "paused")] += 1
            elif roll < 0.88:
                target.increase_budget(0.25)
                with lock:
                    made[(target.scope_id, "budget_increased")] += 1
            elif roll < 0.91:
                target.reset_windows()
                with lock:
                    made[(target.scope_id, "reset")] += 1
            elif roll < 0.96:
                target.snapshot()
                _ = target.state
            else:
                tick(rng.choice([0.5, 5.0, 30.0]))

    _run_threads(8, worker)
    for scope_id, m in monitors.items():
        final = m.snapshot()["state"]
        records = sink.by_monitor[scope_id]
        assert records, "the chaos made no transitions"
        assert records[0]["from_state"] == CLOSED
        for before, after in zip(records, records[1:], strict=False):
            # A missing, duplicated or reordered report would break the chain.
            assert before["to_state"] == after["from_state"], (before, after)
        assert records[-1]["to_state"] == final
        counts = Counter(record["event"] for record in records)
        for event in ("paused", "budget_increased", "reset"):
            assert counts[event] == made[(scope_id, event)], event
    assert Counter(record["event"] for record in sink.by_monitor["agent"])["triggered"] > 0
