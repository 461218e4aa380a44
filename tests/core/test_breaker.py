"""The circuit breaker: limits, the state machine, hooks, alerts, scopes and the reports it sends."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from agentwatch._breaker import (
    ALERT_COOLDOWN_S,
    CLOSED,
    HALF_OPEN,
    OPEN,
    PAUSED,
    Admission,
    BlockEvent,
    BreakerSink,
    CircuitBreakerException,
    Monitor,
    admit,
    settle,
)
from agentwatch._safe import PASS_THROUGH

# ---- helpers (also imported by test_breaker_concurrency) ----------------------------------------------


class FakeClock:
    """A clock the test moves; reading a float attribute is atomic, so threads may share it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSink:
    """Keeps every report, in the order received."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[str, Any]] = []

    def transition(self, monitor: Monitor, record: dict[str, Any]) -> None:
        with self.lock:
            self.log.append(("transition", dict(record)))

    def alert(self, monitor: Monitor, alert: dict[str, Any]) -> None:
        with self.lock:
            self.log.append(("alert", dict(alert)))

    def blocked(self, error: CircuitBreakerException) -> None:
        with self.lock:
            self.log.append(("blocked", error))

    @property
    def transitions(self) -> list[dict[str, Any]]:
        return [item for kind, item in self.log if kind == "transition"]

    @property
    def events(self) -> list[str]:
        return [record["event"] for record in self.transitions]

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return [item for kind, item in self.log if kind == "alert"]

    @property
    def blocked_errors(self) -> list[CircuitBreakerException]:
        return [item for kind, item in self.log if kind == "blocked"]


def call(monitors: list[Monitor] | Monitor, cost: float = 0.0, error: bool = False) -> Admission:
    """One LLM call: admit, then settle (raises CircuitBreakerException if blocked)."""
    stack = [monitors] if isinstance(monitors, Monitor) else monitors
    admission = admit(stack, trace_id="trace-1")
    settle(admission, cost_usd=cost, error=error)
    return admission


def blocked(monitors: list[Monitor] | Monitor) -> CircuitBreakerException:
    with pytest.raises(CircuitBreakerException) as info:
        call(monitors)
    return info.value


def monitor(clock: FakeClock, sink: RecordingSink | None = None, **limits: Any) -> Monitor:
    limits.setdefault("block_on_threshold", True)
    return Monitor("agent", "bot", clock=clock, sink=sink, **limits)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def _trip_on_budget(clock: FakeClock, sink: RecordingSink, **extra: Any) -> Monitor:
    m = monitor(clock, sink, budget_per_hour=1.0, **extra)
    call(m, cost=1.0)
    blocked(m)
    assert m.state == OPEN
    return m


# ---- limits -------------------------------------------------------------------------------------------


def test_calls_per_minute_n_pass_and_n_plus_one_is_blocked(clock: FakeClock, sink: RecordingSink) -> None:
    m = monitor(clock, sink, max_calls_per_minute=3)
    for _ in range(3):
        call(m)
    error = blocked(m)
    assert (error.reason, error.threshold, error.current) == ("max_calls_per_minute", 3, 4)
    assert m.snapshot()["calls_last_minute"] == 3  # the blocked call was not counted


def test_calls_per_minute_window_slides(clock: FakeClock) -> None:
    m = monitor(clock, block_on_threshold=False, max_calls_per_minute=2)
    alerts: list[dict[str, Any]] = []
    m.on_alert = alerts.append
    call(m)
    clock.advance(30)
    call(m)
    clock.advance(29.9)
    call(m)  # three calls within 60 s: violation (alert only)
    assert [a["current"] for a in alerts] == [3]
    clock.advance(0.1)  # the first call (t=0) has left the window: 2 remain, this one is the 3rd
    assert m.snapshot()["calls_last_minute"] == 2


def test_budget_blocks_when_reached_exactly(clock: FakeClock) -> None:
    m = monitor(clock, budget_per_hour=1.0)
    call(m, cost=0.5)
    call(m, cost=0.25)
    call(m, cost=0.25)  # admitted at 0.75: the check happens before the call
    error = blocked(m)
    assert (error.reason, error.threshold, error.current) == ("budget_per_hour", 1.0, 1.0)


def test_budget_below_limit_passes(clock: FakeClock) -> None:
    m = monitor(clock, budget_per_hour=1.0)
    call(m, cost=0.75)
    call(m, cost=0.125)
    assert m.state == CLOSED


def test_budget_window_evicts_after_an_hour(clock: FakeClock) -> None:
    m = monitor(clock, budget_per_hour=1.0, block_on_threshold=False)
    call(m, cost=1.0)
    assert m.snapshot()["spend_last_hour"] == 1.0
    clock.advance(3599)
    assert m.snapshot()["spend_last_hour"] == 1.0
    clock.advance(1)
    assert m.snapshot()["spend_last_hour"] == 0.0


def test_spend_left_over_from_an_hour_ago_does_not_block(clock: FakeClock) -> None:
    m = monitor(clock, budget_per_hour=1.0)
    call(m, cost=0.75)
    clock.advance(3600)
    call(m, cost=0.75)
    call(m)  # only 0.75 in the last hour
    assert m.state == CLOSED


def test_error_rate_judged_only_from_ten_completed_calls(clock: FakeClock) -> None:
    m = monitor(clock, max_error_rate=0.5)
    for _ in range(9):
        call(m, error=True)
    call(m, error=True)  # admitted: 9 completed calls are not judged
    error = blocked(m)  # 10 completed, all failed
    assert (error.reason, error.threshold, error.current) == ("max_error_rate", 0.5, 1.0)


def test_error_rate_at_the_maximum_passes(clock: FakeClock) -> None:
    m = monitor(clock, max_error_rate=0.5)
    for index in range(10):
        call(m, error=index % 2 == 0)
    call(m)  # 5 of 10 failed: 50 % is not over 50 %
    assert m.state == CLOSED


def test_error_window_is_five_minutes(clock: FakeClock) -> None:
    m = monitor(clock, max_error_rate=0.1)
    for _ in range(10):
        call(m, error=True)
    clock.advance(300)
    call(m)
    snap = m.snapshot()
    assert snap["calls_in_error_window"] == 1 and snap["error_rate"] == 0.0


def test_limit_violated_with_blocking_off_alerts_and_proceeds(clock: FakeClock, sink: RecordingSink) -> None:
    alerts: list[dict[str, Any]] = []
    m = monitor(clock, sink, budget_per_hour=1.0, block_on_threshold=False, on_alert=alerts.append)
    call(m, cost=2.0)
    admission = call(m, cost=2.0)  # violated, but goes ahead
    assert isinstance(admission, Admission)
    assert m.state == CLOSED and sink.transitions == []
    assert alerts == [{"reason": "budget_per_hour", "scope": "agent", "scope_id": "bot", "threshold": 1.0,
                       "current": 2.0, "state": CLOSED}]
    snap = m.snapshot()
    assert snap["spend_last_hour"] == 4.0 and snap["calls_last_minute"] == 2 and snap["blocked_calls"] == 0


# ---- transitions --------------------------------------------------------------------------------------


def test_triggered_record(clock: FakeClock, sink: RecordingSink) -> None:
    _trip_on_budget(clock, sink)
    assert sink.transitions == [{
        "event": "triggered", "from_state": CLOSED, "to_state": OPEN, "scope": "agent", "scope_id": "bot",
        "reason": "budget_per_hour", "threshold": 1.0, "current": 1.0, "eu_ai_act_art12_relevant": True,
    }]


def test_open_blocks_every_call_with_the_tripping_reason(clock: FakeClock, sink: RecordingSink) -> None:
    m = _trip_on_budget(clock, sink)
    clock.advance(7200)  # the spend has left the window, but OPEN blocks until someone recovers
    error = blocked(m)
    assert (error.reason, error.threshold, error.current) == ("budget_per_hour", 1.0, 1.0)
    assert error.state["state"] == OPEN and error.state["blocked_calls"] == 2
    assert sink.events == ["triggered"]


def test_pause_then_half_open_then_recovered(clock: FakeClock, sink: RecordingSink) -> None:
    m = monitor(clock, sink, max_calls_per_minute=1)
    call(m)
    blocked(m)
    m.pause(60)
    assert m.state == PAUSED
    clock.advance(59)
    error = blocked(m)
    assert error.state["state"] == PAUSED and error.reason == "max_calls_per_minute"
    assert error.state["paused_until"] == 1.0
    clock.advance(1)
    probe = admit([m])
    assert probe.probe_monitors == (m,)
    assert m.state == HALF_OPEN
    settle(probe, cost_usd=0.0, error=False)
    assert m.state == CLOSED
    assert sink.events == ["triggered", "paused", "half_open", "recovered"]
    paused, half_open, recovered = sink.transitions[1:]
    assert (paused["from_state"], paused["to_state"], paused["current"]) == (OPEN, PAUSED, 60.0)
    assert (half_open["from_state"], half_open["to_state"]) == (PAUSED, HALF_OPEN)
    assert (recovered["from_state"], recovered["to_state"]) == (HALF_OPEN, CLOSED)
    assert m.snapshot()["tripped_reason"] is None


def test_half_open_is_reported_once_however_it_is_noticed(clock: FakeClock, sink: RecordingSink) -> None:
    m = _trip_on_budget(clock, sink)
    m.pause(10)
    clock.advance(10)
    assert m.snapshot()["state"] == HALF_OPEN  # noticed by snapshot
    assert m.state == HALF_OPEN
    m.snapshot()
    assert sink.events == ["triggered", "paused", "half_open"]


def test_only_one_probe_while_half_open(clock: FakeClock, sink: RecordingSink) -> None:
    m = monitor(clock, sink, max_calls_per_minute=1)
    call(m)
    blocked(m)
    clock.advance(60)
    m.pause(0)
    probe = admit([m])
    error = blocked(m)
    assert error.state["state"] == HALF_OPEN and error.reason == "max_calls_per_minute"
    assert error.state["probe_in_flight"] is True
    assert "the probe call after the pause is in flight" in str(error)
    settle(probe, cost_usd=0.0, error=False)
    assert m.state == CLOSED


def test_probe_failure_retrips(clock: FakeClock, sink: RecordingSink) -> None:
    m = _trip_on_budget(clock, sink)
    clock.advance(3600)
    m.pause(0)
    probe = admit([m])
    settle(probe, cost_usd=0.0, error=True)
    assert m.state == OPEN
    assert sink.events == ["triggered", "paused", "half_open", "retrip"]
    retrip = sink.transitions[-1]
    assert (retrip["from_state"], retrip["to_state"], retrip["reason"]) == (HALF_OPEN, OPEN, "probe_failed")
    assert blocked(m).reason == "probe_failed"


def test_limit_still_violated_when_probing_retrips_without_sending(clock: FakeClock,
                                                                   sink: RecordingSink) -> None:
    m = _trip_on_budget(clock, sink)
    m.pause(30)
    clock.advance(30)
    error = blocked(m)  # would-be probe: the budget is still spent, so nothing is sent
    assert error.state["state"] == OPEN and error.reason == "budget_per_hour"
    assert sink.events == ["triggered", "paused", "half_open", "retrip"]
    assert m.snapshot()["calls_last_minute"] == 1


def test_probe_that_reaches_a_limit_retrips(clock: FakeClock, sink: RecordingSink) -> None:
    m = _trip_on_budget(clock, sink)
    clock.advance(3600)
    m.pause(0)
    probe = admit([m])
    settle(probe, cost_usd=1.0, error=False)  # succeeded, but spent the whole budget again
    assert m.state == OPEN
    assert sink.transitions[-1]["event"] == "retrip"
    assert sink.transitions[-1]["reason"] == "budget_per_hour"


def test_increase_budget_closes_at_once(clock: FakeClock, sink: RecordingSink) -> None:
    m = _trip_on_budget(clock, sink)
    m.increase_budget(0.5)
    assert m.state == CLOSED and m.budget_per_hour == 1.5
    call(m, cost=0.25)
    assert sink.transitions[-1] == {
        "event": "budget_increased", "from_state": OPEN, "to_state": CLOSED, "scope": "agent",
        "scope_id": "bot", "reason": "increase_budget", "threshold": 1.5, "current": 1.0,
        "eu_ai_act_art12_relevant": True,
    }


def test_increase_budget_without_a_budget_starts_from_current_spend(clock: FakeClock) -> None:
    m = monitor(clock)
    call(m, cost=2.0)
    m.increase_budget(3.0)
    assert m.budget_per_hour == 5.0


def test_increase_budget_from_half_open_and_paused(clock: FakeClock, sink: RecordingSink) -> None:
    m = _trip_on_budget(clock, sink)
    m.pause(100)
    m.increase_budget(1.0)
    assert m.state == CLOSED
    assert sink.events == ["triggered", "paused", "budget_increased"]


def test_reset_windows_clears_and_closes(clock: FakeClock, sink: RecordingSink) -> None:
    m = _trip_on_budget(clock, sink)
    m.reset_windows()
    snap = m.snapshot()
    assert snap["state"] == CLOSED and snap["spend_last_hour"] == 0.0 and snap["calls_last_minute"] == 0
    assert sink.transitions[-1]["event"] == "reset"
    assert (sink.transitions[-1]["from_state"], sink.transitions[-1]["to_state"]) == (OPEN, CLOSED)
    call(m, cost=0.5)


def test_stale_probe_decides_nothing(clock: FakeClock, sink: RecordingSink) -> None:
    m = _trip_on_budget(clock, sink)
    clock.advance(3600)
    m.pause(0)
    probe = admit([m])
    m.pause(100)  # the operator pauses again while the probe is in flight
    settle(probe, cost_usd=0.0, error=True)
    assert m.state == PAUSED
    assert sink.events == ["triggered", "paused", "half_open", "paused"]


def test_pausing_a_closed_monitor_blocks_until_the_probe(clock: FakeClock, sink: RecordingSink) -> None:
    m = monitor(clock, sink)
    m.pause(5)
    error = blocked(m)
    assert error.reason == "paused" and error.state["state"] == PAUSED
    clock.advance(5)
    call(m)
    assert m.state == CLOSED
    assert sink.events == ["paused", "half_open", "recovered"]


# ---- scopes -------------------------------------------------------------------------------------------


def test_inner_scope_trips_first_and_the_outer_still_applies(clock: FakeClock, sink: RecordingSink) -> None:
    outer = Monitor("global", "global", budget_per_hour=2.0, block_on_threshold=True, clock=clock, sink=sink)
    first = Monitor("agent", "first", budget_per_hour=1.0, block_on_threshold=True, clock=clock, sink=sink)
    second = Monitor("agent", "second", budget_per_hour=5.0, block_on_threshold=True, clock=clock, sink=sink)
    call([first, outer], cost=1.0)
    error = blocked([first, outer])
    assert (error.scope, error.scope_id, error.monitor) == ("agent", "first", first)
    assert outer.state == CLOSED  # the call stopped at the inner scope
    call([second, outer], cost=1.0)  # second's own budget is fine ...
    error = blocked([second, outer])  # ... but together they have spent the global budget
    assert (error.scope, error.scope_id, error.reason) == ("global", "global", "budget_per_hour")
    assert second.state == CLOSED and outer.state == OPEN
    assert second.snapshot()["spend_last_hour"] == 1.0 and outer.snapshot()["spend_last_hour"] == 2.0


def test_innermost_violation_is_the_one_reported(clock: FakeClock) -> None:
    inner = Monitor("agent", "inner", max_calls_per_minute=1, block_on_threshold=True, clock=clock)
    middle = Monitor("agent", "middle", max_calls_per_minute=1, block_on_threshold=True, clock=clock)
    outer = Monitor("global", "global", max_calls_per_minute=1, block_on_threshold=True, clock=clock)
    call([inner, middle, outer])
    assert blocked([inner, middle, outer]).monitor is inner


def test_a_call_blocked_outside_is_not_counted_inside(clock: FakeClock) -> None:
    inner = Monitor("agent", "inner", max_calls_per_minute=100, block_on_threshold=True, clock=clock)
    outer = Monitor("global", "global", max_calls_per_minute=2, block_on_threshold=True, clock=clock)
    call([inner, outer])
    call([inner, outer])
    for _ in range(5):
        blocked([inner, outer])
    assert inner.snapshot()["calls_last_minute"] == 2
    assert outer.snapshot()["calls_last_minute"] == 2


def test_a_probe_slot_taken_inside_is_released_when_blocked_outside(clock: FakeClock) -> None:
    inner = monitor(clock, budget_per_hour=1.0)
    outer = Monitor("global", "global", block_on_threshold=True, clock=clock)
    call([inner, outer], cost=1.0)
    blocked([inner, outer])
    clock.advance(3600)
    inner.pause(0)
    outer.pause(100)
    blocked([inner, outer])  # inner took its probe slot, outer blocked: the slot must be given back
    assert inner.snapshot()["probe_in_flight"] is False
    probe = admit([inner])  # the next caller can probe
    assert probe.probe_monitors == (inner,)


def test_scopes_without_limits_still_record(clock: FakeClock) -> None:
    inner = Monitor("agent", "a", clock=clock)
    outer = Monitor("global", "global", clock=clock)
    call([inner, outer], cost=0.5, error=True)
    for m in (inner, outer):
        snap = m.snapshot()
        assert (snap["spend_last_hour"], snap["calls_last_minute"], snap["error_rate"]) == (0.5, 1, 1.0)


def test_a_monitor_without_limits_counts_every_lock_free_admission(clock: FakeClock) -> None:
    from agentwatch._breaker import CATCH_UP_EVERY, admit_call, settle_call

    m = Monitor("global", "global", clock=clock)
    calls = CATCH_UP_EVERY * 3 + 5  # past several catch-ups, and some still pending when read
    for i in range(calls):
        admission = admit_call((m,), "trace-1")
        assert admission == (m,)  # nothing held for the call: no Admission object
        settle_call(admission, 0.25, i % 4 == 0)
        clock.advance(0.01)
    snap = m.snapshot()
    assert snap["calls_last_minute"] == calls
    assert snap["spend_last_hour"] == calls * 0.25
    assert snap["calls_in_error_window"] == calls
    assert snap["errors_in_error_window"] == len(range(0, calls, 4))
    clock.advance(61)  # the calls window forgets them all, pending or not
    assert m.snapshot()["calls_last_minute"] == 0


def test_a_limit_set_later_counts_the_admissions_made_without_one(clock: FakeClock) -> None:
    m = Monitor("global", "global", clock=clock)
    for _ in range(3):
        call(m, cost=0.5)
    m.update(max_calls_per_minute=4, budget_per_hour=10.0, block_on_threshold=True)
    call(m)
    assert blocked(m).reason == "max_calls_per_minute"
    m.update(max_calls_per_minute=None)
    m.resume()  # (the call rate tripped it)
    call(m, cost=9.0)  # spend 1.5 + 9.0 reaches the budget
    assert blocked(m).reason == "budget_per_hour"


def test_a_killed_monitor_without_limits_blocks_the_next_call(clock: FakeClock) -> None:
    m = Monitor("global", "global", clock=clock)
    call(m)
    m.kill()
    assert blocked(m).reason == "operator_kill"
    m.resume()
    call(m)
    assert m.snapshot()["calls_last_minute"] == 2


# ---- alerts -------------------------------------------------------------------------------------------


def test_alert_cooldown_is_60_seconds_per_reason(clock: FakeClock, sink: RecordingSink) -> None:
    alerts: list[dict[str, Any]] = []
    m = monitor(clock, sink, budget_per_hour=1.0, max_calls_per_minute=1000, block_on_threshold=False,
                on_alert=alerts.append)
    call(m, cost=1.0)
    for _ in range(5):
        call(m)
    assert len(alerts) == 1
    clock.advance(ALERT_COOLDOWN_S - 0.5)
    call(m)
    assert len(alerts) == 1
    clock.advance(0.5)
    call(m)
    assert len(alerts) == 2
    assert sink.alerts == alerts  # the sink gets exactly the alerts that were not suppressed
    m.update(max_calls_per_minute=1)  # a different reason has its own cooldown
    m.update(budget_per_hour=None)
    call(m)
    assert [a["reason"] for a in alerts] == ["budget_per_hour", "budget_per_hour", "max_calls_per_minute"]


def test_alert_cooldown_is_per_scope(clock: FakeClock) -> None:
    alerts: list[dict[str, Any]] = []
    a = Monitor("agent", "a", budget_per_hour=0.0, clock=clock, on_alert=alerts.append)
    b = Monitor("agent", "b", budget_per_hour=0.0, clock=clock, on_alert=alerts.append)
    call(a)
    call(b)
    call(a)
    assert [alert["scope_id"] for alert in alerts] == ["a", "b"]


def test_blocking_violation_alerts_with_the_new_state(clock: FakeClock, sink: RecordingSink) -> None:
    alerts: list[dict[str, Any]] = []
    m = _trip_on_budget(clock, sink, on_alert=alerts.append)
    assert alerts == [{"reason": "budget_per_hour", "scope": "agent", "scope_id": "bot", "threshold": 1.0,
                       "current": 1.0, "state": OPEN}]
    blocked(m)
    assert len(alerts) == 1  # blocked because OPEN: no new violation is judged


def test_async_on_alert_is_awaited(clock: FakeClock) -> None:
    seen: list[str] = []

    async def on_alert(alert: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        seen.append(alert["reason"])

    m = monitor(clock, budget_per_hour=0.0, block_on_threshold=False, on_alert=on_alert)
    call(m)
    assert seen == ["budget_per_hour"]


# ---- on_block -----------------------------------------------------------------------------------------


def test_sync_on_block_fires_before_the_exception(clock: FakeClock, sink: RecordingSink) -> None:
    order: list[str] = []
    events: list[BlockEvent] = []

    def on_block(event: BlockEvent) -> None:
        events.append(event)
        order.append("on_block")
        assert sink.blocked_errors == []  # sink.blocked comes after the hook

    m = monitor(clock, sink, max_calls_per_minute=0, on_block=on_block)
    with pytest.raises(CircuitBreakerException) as info:
        admit([m], trace_id="t-42")
    order.append("raised")
    assert order == ["on_block", "raised"]
    event = events[0]
    assert (event.monitor, event.scope, event.scope_id, event.reason, event.threshold, event.current,
            event.trace_id) == (m, "agent", "bot", "max_calls_per_minute", 0, 1, "t-42")
    assert sink.blocked_errors == [info.value]


def test_async_on_block_without_a_running_loop_is_awaited(clock: FakeClock) -> None:
    done = threading.Event()

    async def on_block(event: BlockEvent) -> None:
        await asyncio.sleep(0.01)
        done.set()

    m = monitor(clock, max_calls_per_minute=0, on_block=on_block)
    with pytest.raises(CircuitBreakerException):
        admit([m])
        pytest.fail("not blocked")
    assert done.is_set()


async def test_async_on_block_with_a_running_loop_completes_in_a_helper_thread(clock: FakeClock) -> None:
    ran_in: list[threading.Thread] = []
    done = threading.Event()

    async def on_block(event: BlockEvent) -> None:
        await asyncio.sleep(0.01)
        ran_in.append(threading.current_thread())
        done.set()

    m = monitor(clock, max_calls_per_minute=0, on_block=on_block)
    with pytest.raises(CircuitBreakerException):
        admit([m])  # synchronous, from inside the running loop: must neither deadlock nor skip the hook
    assert done.is_set()
    assert ran_in[0] is not threading.current_thread()


async def test_async_on_block_recovering_from_a_running_loop(clock: FakeClock) -> None:
    async def on_block(event: BlockEvent) -> None:
        await asyncio.sleep(0)
        event.monitor.increase_budget(1.0)

    m = monitor(clock, budget_per_hour=1.0, on_block=on_block)
    call(m, cost=1.0)
    call(m, cost=0.5)
    assert m.state == CLOSED and m.budget_per_hour == 2.0


@pytest.mark.parametrize("recovery", ["increase_budget", "reset_windows"])
def test_on_block_that_recovers_lets_the_call_through(clock: FakeClock, sink: RecordingSink,
                                                      recovery: str) -> None:
    def on_block(event: BlockEvent) -> None:
        if recovery == "increase_budget":
            event.monitor.increase_budget(5.0)
        else:
            event.monitor.reset_windows()

    m = monitor(clock, sink, budget_per_hour=1.0, on_block=on_block)
    call(m, cost=1.0)
    admission = admit([m])
    assert isinstance(admission, Admission)
    assert m.state == CLOSED
    assert sink.blocked_errors == [] and m.snapshot()["blocked_calls"] == 0
    assert sink.events == ["triggered", "budget_increased" if recovery == "increase_budget" else "reset"]
    assert m.snapshot()["calls_last_minute"] == (2 if recovery == "increase_budget" else 1)


def test_on_block_pause_zero_makes_the_call_the_probe(clock: FakeClock, sink: RecordingSink) -> None:
    m = _trip_on_budget(clock, sink)
    clock.advance(3600)  # the spend is gone, but the monitor is still OPEN
    m.on_block = lambda event: event.monitor.pause(0)
    admission = admit([m])
    assert admission.probe_monitors == (m,)
    settle(admission, cost_usd=0.25, error=False)
    assert m.state == CLOSED
    assert sink.events == ["triggered", "paused", "half_open", "recovered"]


def test_on_block_that_cannot_recover_runs_once_and_the_call_is_blocked(clock: FakeClock,
                                                                        sink: RecordingSink) -> None:
    calls: list[BlockEvent] = []

    def on_block(event: BlockEvent) -> None:
        calls.append(event)
        event.monitor.pause(0)  # the budget is still spent: the probe retrips, no endless loop

    m = monitor(clock, sink, budget_per_hour=1.0, on_block=on_block)
    call(m, cost=1.0)
    error = blocked(m)
    assert len(calls) == 1
    assert error.state["state"] == OPEN
    assert sink.events == ["triggered", "paused", "half_open", "retrip"]


def test_on_block_pause_keeps_the_call_blocked(clock: FakeClock) -> None:
    m = monitor(clock, budget_per_hour=1.0, on_block=lambda event: event.monitor.pause(30))
    call(m, cost=1.0)
    error = blocked(m)
    assert error.state["state"] == PAUSED and error.state["paused_until"] == 30.0


def test_outer_on_block_runs_after_the_inner_one_recovered(clock: FakeClock) -> None:
    hooks: list[str] = []

    def inner_hook(event: BlockEvent) -> None:
        hooks.append("inner")
        event.monitor.reset_windows()

    inner = Monitor("agent", "a", max_calls_per_minute=1, block_on_threshold=True, clock=clock,
                    on_block=inner_hook)
    outer = Monitor("global", "g", max_calls_per_minute=1, block_on_threshold=True, clock=clock,
                    on_block=lambda event: hooks.append("outer"))
    call([inner, outer])
    error = blocked([inner, outer])
    assert hooks == ["inner", "outer"] and error.monitor is outer
    assert inner.snapshot()["calls_last_minute"] == 0  # counted on the retry, rolled back again


# ---- hook and sink failures ---------------------------------------------------------------------------


def test_failing_on_block_is_logged_and_the_call_blocked(clock: FakeClock,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    def on_block(event: BlockEvent) -> None:
        raise ValueError("hook bug")

    m = monitor(clock, max_calls_per_minute=0, on_block=on_block)
    with caplog.at_level(logging.ERROR, logger="agentwatch"):
        error = blocked(m)
    assert error.reason == "max_calls_per_minute"
    assert "hook bug" in caplog.text


def test_failing_async_on_block_is_logged(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    async def on_block(event: BlockEvent) -> None:
        raise RuntimeError("async hook bug")

    m = monitor(clock, max_calls_per_minute=0, on_block=on_block)
    with caplog.at_level(logging.ERROR, logger="agentwatch"):
        blocked(m)
    assert "async hook bug" in caplog.text


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("callback", ["on_block", "on_alert"])
def test_a_failing_user_callback_is_logged_as_the_programs_bug(clock: FakeClock, caplog: pytest.LogCaptureFixture,
                                                               callback: str, kind: str) -> None:
    """Found 2026-12-13: a user's ``on_block`` that raised was logged as "internal error in _run_hook (ignored)", so
    the program's bug read as one of AgentWatch's. The log line names the callback and the error, with its traceback."""
    def broken(argument: Any) -> None:
        raise ValueError("bug in the program's callback")

    async def abroken(argument: Any) -> None:
        broken(argument)

    m = monitor(clock, budget_per_hour=1.0, **{callback: broken if kind == "sync" else abroken})
    with caplog.at_level(logging.WARNING, logger="agentwatch"):
        call(m, cost=1.0)
        error = blocked(m)
    assert error.reason == "budget_per_hour"
    [record] = [record for record in caplog.records if record.exc_info]
    assert record.getMessage().startswith(
        f"agentwatch: your {callback} callback raised ValueError(\"bug in the program's callback\")")
    assert "internal error" not in caplog.text and record.levelno >= logging.WARNING
    assert "bug in the program's callback" in logging.Formatter().formatException(record.exc_info)


async def test_a_failure_to_run_an_async_callback_is_not_blamed_on_the_callback(
        clock: FakeClock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found 2026-12-06: anything raised while AgentWatch awaited an async ``on_block`` (here: no thread can be
    started for it, as at interpreter shutdown) was logged as "your on_block callback raised", the program's bug."""
    async def on_block(event: BlockEvent) -> None:
        pass

    def no_thread(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    m = monitor(clock, max_calls_per_minute=0, on_block=on_block)
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    with caplog.at_level(logging.WARNING, logger="agentwatch"):
        error = blocked(m)  # from inside the running loop: the callback would be awaited on a helper thread
    monkeypatch.undo()
    assert error.reason == "max_calls_per_minute"
    assert "your on_block callback" not in caplog.text
    assert "agentwatch: internal error in awaiting the on_block callback (ignored)" in caplog.text


def test_failing_on_alert_and_sink_do_not_break_the_call(clock: FakeClock,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    class BrokenSink(RecordingSink):
        def transition(self, monitor: Monitor, record: dict[str, Any]) -> None:
            super().transition(monitor, record)
            raise RuntimeError("sink bug")

        def alert(self, monitor: Monitor, alert: dict[str, Any]) -> None:
            raise RuntimeError("sink alert bug")

        def blocked(self, error: CircuitBreakerException) -> None:
            raise RuntimeError("sink blocked bug")

    def on_alert(alert: dict[str, Any]) -> None:
        raise RuntimeError("alert hook bug")

    broken = BrokenSink()
    m = monitor(clock, broken, budget_per_hour=1.0, on_alert=on_alert)
    with caplog.at_level(logging.ERROR, logger="agentwatch"):
        call(m, cost=1.0)
        error = blocked(m)
        m.increase_budget(1.0)
    assert error.reason == "budget_per_hour"
    assert [record["event"] for record in broken.transitions] == ["triggered", "budget_increased"]
    for text in ("sink bug", "sink alert bug", "sink blocked bug", "alert hook bug"):
        assert text in caplog.text


def test_sink_calling_back_into_the_monitor_keeps_order(clock: FakeClock) -> None:
    class PausingSink(RecordingSink):
        def transition(self, monitor: Monitor, record: dict[str, Any]) -> None:
            super().transition(monitor, record)
            monitor.snapshot()
            if record["event"] == "triggered":
                monitor.pause(10)  # re-entrant: queued and sent after this report, not deadlocked

    sink = PausingSink()
    m = monitor(clock, sink, max_calls_per_minute=0)
    error = blocked(m)
    assert sink.events == ["triggered", "paused"]
    assert error.state["state"] == PAUSED


# ---- snapshot, exception, configuration ---------------------------------------------------------------


def test_snapshot_contents(clock: FakeClock) -> None:
    m = Monitor("agent", "bot", budget_per_hour=10.0, max_error_rate=0.5, max_calls_per_minute=100,
                block_on_threshold=True, clock=clock, name="Bot")
    call(m, cost=0.5, error=True)
    call(m, cost=0.25)
    clock.advance(61)
    call(m, cost=0.25)
    m.pause(20)
    clock.advance(5)
    assert m.snapshot() == {
        "state": PAUSED, "scope": "agent", "scope_id": "bot", "name": "Bot",
        "limits": {"budget_per_hour": 10.0, "max_error_rate": 0.5, "max_calls_per_minute": 100,
                   "block_on_threshold": True, "hard_budget": False},
        "spend_last_hour": 1.0, "reserved": 0.0, "calls_last_minute": 1, "error_rate": 1 / 3,
        "calls_in_error_window": 3,
        "errors_in_error_window": 1, "blocked_calls": 0, "tripped_reason": "paused", "tripped_threshold": None,
        "tripped_current": None, "paused_until": 15.0, "probe_in_flight": False,
    }


def test_exception_attributes_and_message(clock: FakeClock) -> None:
    m = monitor(clock, budget_per_hour=2.0)
    call(m, cost=2.5)
    with pytest.raises(CircuitBreakerException) as info:
        admit([m], trace_id="abc")
    error = info.value
    assert (error.reason, error.threshold, error.current, error.scope, error.scope_id, error.trace_id) == (
        "budget_per_hour", 2.0, 2.5, "agent", "bot", "abc")
    assert error.monitor is m and error.state["state"] == OPEN and error.state["blocked_calls"] == 1
    assert str(error) == ("AgentWatch blocked the LLM call (agent 'bot', state OPEN): hourly budget reached: "
                          "$2.5 spent in the last hour, limit $2")
    assert CircuitBreakerException in PASS_THROUGH
    assert isinstance(error, Exception)


@pytest.mark.parametrize(("reason_limits", "text"), [
    ({"max_error_rate": 0.25}, "error rate 100.0% over the last 5 minutes exceeds the limit of 25.0%"),
    ({"max_calls_per_minute": 10}, "this would be call 11 in the last minute, limit 10"),
])
def test_exception_messages_per_reason(clock: FakeClock, reason_limits: dict[str, Any], text: str) -> None:
    m = monitor(clock, **reason_limits)
    for _ in range(10):
        call(m, error=True)
    assert text in str(blocked(m))


def test_update_changes_limits_and_hooks(clock: FakeClock) -> None:
    m = monitor(clock)
    m.update(budget_per_hour=1, max_error_rate=0.5, max_calls_per_minute=3, block_on_threshold=False)
    assert (m.budget_per_hour, m.max_error_rate, m.max_calls_per_minute, m.block_on_threshold) == (
        1.0, 0.5, 3, False)
    m.max_calls_per_minute = None
    assert m.max_calls_per_minute is None
    sink = RecordingSink()
    m.sink = sink
    m.name = "Renamed"
    assert m.sink is sink and m.name == "Renamed" and isinstance(sink, BreakerSink)


@pytest.mark.parametrize(("kwargs", "kind", "name"), [
    ({"budget_per_hour": -1.0}, ValueError, "budget_per_hour"),
    ({"max_error_rate": -0.1}, ValueError, "max_error_rate"),
    ({"max_error_rate": 1.5}, ValueError, "max_error_rate"),
    ({"max_calls_per_minute": -5}, ValueError, "max_calls_per_minute"),
    ({"budget_per_hour": float("nan")}, ValueError, "budget_per_hour"),
    ({"budget_per_hour": "10"}, TypeError, "budget_per_hour"),
    ({"budget_per_hour": True}, TypeError, "budget_per_hour"),
    ({"max_calls_per_minute": 2.5}, TypeError, "max_calls_per_minute"),
    ({"block_on_threshold": "yes"}, TypeError, "block_on_threshold"),
    ({"on_block": 42}, TypeError, "on_block"),
    ({"on_alert": "print"}, TypeError, "on_alert"),
    ({"sink": object()}, TypeError, "sink"),
    ({"budget": 1.0}, TypeError, "budget"),
])
def test_update_validates(clock: FakeClock, kwargs: dict[str, Any], kind: type[Exception], name: str) -> None:
    m = monitor(clock, budget_per_hour=5.0)
    with pytest.raises(kind, match=name):
        m.update(**kwargs)
    assert m.budget_per_hour == 5.0  # nothing changed
    with pytest.raises(kind, match=name):
        Monitor("agent", "x", **kwargs)


@pytest.mark.parametrize(("method", "value"), [("pause", -1.0), ("increase_budget", -2.0)])
def test_recovery_arguments_are_validated(clock: FakeClock, method: str, value: float) -> None:
    m = monitor(clock)
    with pytest.raises(ValueError):
        getattr(m, method)(value)


def test_settle_twice_records_once(clock: FakeClock) -> None:
    m = monitor(clock)
    admission = admit([m])
    settle(admission, cost_usd=1.0, error=False)
    settle(admission, cost_usd=1.0, error=False)
    assert admission.settled and m.snapshot()["spend_last_hour"] == 1.0


@pytest.mark.parametrize("cost", [None, float("nan"), float("inf"), -1.0, "1.0"])
def test_bad_costs_are_recorded_as_zero(clock: FakeClock, cost: Any) -> None:
    m = monitor(clock)
    settle(admit([m]), cost_usd=cost, error=False)
    snap = m.snapshot()
    assert snap["spend_last_hour"] == 0.0 and snap["calls_in_error_window"] == 1


def test_monitors_with_different_clocks_each_use_their_own(clock: FakeClock) -> None:
    other = FakeClock(start=5.0)
    a = Monitor("agent", "a", max_calls_per_minute=1, block_on_threshold=True, clock=clock)
    b = Monitor("global", "g", max_calls_per_minute=1, block_on_threshold=True, clock=other)
    call([a, b])
    other.advance(60)  # only b's minute has passed
    assert (a.snapshot()["calls_last_minute"], b.snapshot()["calls_last_minute"]) == (1, 0)
    assert blocked([a, b]).monitor is a


def test_reports_and_hooks_run_outside_the_monitor_lock(clock: FakeClock) -> None:
    held: list[bool] = []

    class LockCheckingSink(RecordingSink):
        def transition(self, monitor: Monitor, record: dict[str, Any]) -> None:
            held.append(monitor._lock.locked())

        def alert(self, monitor: Monitor, alert: dict[str, Any]) -> None:
            held.append(monitor._lock.locked())

        def blocked(self, error: CircuitBreakerException) -> None:
            assert error.monitor is not None
            held.append(error.monitor._lock.locked())

    m = monitor(clock, LockCheckingSink(), max_calls_per_minute=0)
    m.on_block = lambda event: held.append(event.monitor._lock.locked())
    m.on_alert = lambda alert: held.append(m._lock.locked())
    blocked(m)
    m.pause(0)
    m.increase_budget(1.0)
    assert held == [False] * 7  # triggered, alert, on_alert, on_block, blocked, paused, budget_increased


def test_a_replacement_store_needs_only_the_protocol(clock: FakeClock) -> None:
    from agentwatch._windows import LocalWindowStore, WindowStore

    class DelegatingStore:
        """A stand-in for a shared (e.g. Redis) store: only the protocol's methods, no fast paths."""

        def __init__(self) -> None:
            self.inner = LocalWindowStore()
            self.records: list[tuple[float, float, bool]] = []
            self.monitor: Monitor | None = None

        def set_limits(self, budget: float | None, rate: float | None, calls: int | None) -> None:
            self.inner.set_limits(budget, rate, calls)

        def evaluate(self, now: float, count_call: bool) -> Any:
            assert self.monitor is None or self.monitor._lock.locked()
            return self.inner.evaluate(now, count_call)

        def count_call(self, now: float) -> None:
            self.inner.count_call(now)

        def uncount_call(self, now: float) -> None:
            self.inner.uncount_call(now)

        def record(self, now: float, cost_usd: float, error: bool) -> None:
            self.records.append((now, cost_usd, error))
            self.inner.record(now, cost_usd, error)

        def spend(self, now: float) -> float:
            return self.inner.spend(now)

        def calls(self, now: float) -> int:
            return self.inner.calls(now)

        def outcomes(self, now: float) -> tuple[int, int]:
            return self.inner.outcomes(now)

        def clear(self) -> None:
            self.inner.clear()

    store = DelegatingStore()
    assert isinstance(store, WindowStore)
    m = Monitor("agent", "bot", budget_per_hour=1.0, block_on_threshold=True, clock=clock, store=store)
    store.monitor = m
    assert m.store is store
    call(m, cost=0.5)
    call(m, cost=0.5, error=True)
    assert blocked(m).reason == "budget_per_hour"
    assert store.records == [(clock.now, 0.5, False), (clock.now, 0.5, True)]
    m.increase_budget(1.0)
    assert store.inner.evaluate(clock.now, False) is None  # the new budget reached the store


def test_admit_with_no_monitors_and_admission_details(clock: FakeClock) -> None:
    empty = admit([])
    settle(empty, cost_usd=1.0, error=False)
    assert empty.monitors == () and empty.probe_monitors == () and empty.settled
    m = monitor(clock)
    admission = admit((m,), trace_id="t")
    assert (admission.monitors, admission.trace_id, admission.probe_monitors) == ((m,), "t", ())


def test_closing_within_limits_needs_the_tripping_limit_lifted(clock: FakeClock, sink: RecordingSink) -> None:
    """The operator's path (remote control after a limit change): a trip by a limit closes once no limit blocks."""
    m = _trip_on_budget(clock, sink)
    clock.advance(3601)  # the spend has left the window, the budget is as it tripped: not the operator's doing
    m.update(budget_per_hour=1.0)
    assert m.close_if_within_limits("limits_set") is False and m.state == OPEN
    m.update(budget_per_hour=1.5)
    assert m.close_if_within_limits("limits_set") is True
    assert (sink.transitions[-1]["event"], sink.transitions[-1]["reason"]) == ("resumed", "limits_set")
    call(m, cost=0.4)  # 1.4 of 1.5
    assert m.state == CLOSED

    rates = monitor(clock, sink, max_error_rate=0.5)
    for _ in range(10):
        call(rates, error=True)
    assert blocked(rates).reason == "max_error_rate"
    rates.update(max_error_rate=0.9)  # still under the current rate (1.0): nothing to lift
    assert rates.close_if_within_limits("limits_set") is False and rates.state == OPEN
    rates.update(max_error_rate=None)
    assert rates.close_if_within_limits("limits_cleared") is True and rates.state == CLOSED

    for stopped in (monitor(clock, sink), _trip_on_budget(clock, sink)):
        if stopped.state == CLOSED:
            stopped.kill()
        else:  # a failed probe is the monitor's own finding, not a limit's
            clock.advance(3600)
            stopped.pause(0)
            settle(admit([stopped]), cost_usd=0.0, error=True)
        stopped.update(budget_per_hour=None)
        assert stopped.close_if_within_limits("limits_cleared") is False and stopped.state == OPEN


def test_turning_blocking_off_leaves_an_open_monitor_open(clock: FakeClock, sink: RecordingSink) -> None:
    m = _trip_on_budget(clock, sink)
    m.update(block_on_threshold=False)
    assert blocked(m).state["state"] == OPEN  # recovery stays explicit: pause, increase_budget, reset
    m.reset_windows()
    call(m, cost=5.0)
    call(m)
    assert m.state == CLOSED
