"""The breaker's state machine as a table: ``decide`` for every state and step, without a monitor.

The monitor tests (test_breaker, test_redis_limits) drive the same function through the local and the
fleet-wide path; these pin the table itself, so a changed rule fails here first and by name.
"""

from __future__ import annotations

import pickle

import pytest

from agentwatch._breaker_contract import PAUSED_BY_OPERATOR, PROBE_FAILED
from agentwatch._breaker_states import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    PAUSED,
    Decision,
    Observation,
    Outcome,
    Step,
    Transition,
    decide,
)
from agentwatch._windows import UNREACHABLE_VERDICT, ProbeSlot

BUDGET = ("budget_per_hour", 1.0, 1.5)
RATE = ("max_error_rate", 0.5, 0.6)
TRIP = ("max_calls_per_minute", 10, 11)
PAUSE = (PAUSED_BY_OPERATOR, None, None)


def seen(state: str, verdict: tuple | None = None, probe: ProbeSlot = ProbeSlot.FREE, trip: tuple = TRIP,
         failed: bool = False) -> Observation:
    return Observation(state, verdict, probe, trip, failed)  # type: ignore[arg-type]


# ---- CLOSED ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [Step.ADMIT, Step.CHECK])
def test_closed_without_a_violation_admits(step: Step) -> None:
    assert decide(step, seen(CLOSED), False, False) == Decision(Outcome.ADMIT)


@pytest.mark.parametrize("step", [Step.ADMIT, Step.CHECK])
def test_closed_blocking_violation_trips_blocks_and_alerts(step: Step) -> None:
    decision = decide(step, seen(CLOSED, BUDGET), True, False)
    assert decision == Decision(Outcome.BLOCK, blocked_by=BUDGET, transition=Transition("triggered", OPEN, BUDGET),
                                alert=BUDGET)


def test_closed_alert_only_violation_admits_and_counts_an_admission_only() -> None:
    assert decide(Step.ADMIT, seen(CLOSED, RATE), False, False) == Decision(Outcome.ADMIT, alert=RATE, count=True)
    assert decide(Step.CHECK, seen(CLOSED, RATE), False, False) == Decision(Outcome.ADMIT, alert=RATE, count=False)


def test_hard_budget_blocks_budgets_but_not_other_limits() -> None:
    assert decide(Step.ADMIT, seen(CLOSED, BUDGET), False, True).outcome is Outcome.BLOCK
    assert decide(Step.ADMIT, seen(CLOSED, ("trace_budget", 1.0, 1.0)), False, True).outcome is Outcome.BLOCK
    assert decide(Step.ADMIT, seen(CLOSED, RATE), False, True).outcome is Outcome.ADMIT


# ---- OPEN and PAUSED ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [OPEN, PAUSED])
@pytest.mark.parametrize("step", [Step.ADMIT, Step.CHECK])
def test_open_and_paused_block_by_the_trip_without_a_transition(state: str, step: Step) -> None:
    assert decide(step, seen(state, trip=PAUSE), True, False) == Decision(Outcome.BLOCK, blocked_by=PAUSE)


# ---- HALF_OPEN ---------------------------------------------------------------------------------------


def test_half_open_admission_holding_the_slot_is_the_probe() -> None:
    assert decide(Step.ADMIT, seen(HALF_OPEN, probe=ProbeSlot.GRANTED), True, False) == Decision(Outcome.PROBE)


@pytest.mark.parametrize("probe", [ProbeSlot.FREE, ProbeSlot.HELD])
def test_half_open_admission_without_the_slot_is_blocked(probe: ProbeSlot) -> None:
    assert decide(Step.ADMIT, seen(HALF_OPEN, probe=probe), True, False) == Decision(Outcome.BLOCK, blocked_by=TRIP)


def test_half_open_probe_with_a_blocking_violation_retrips_at_once() -> None:
    decision = decide(Step.ADMIT, seen(HALF_OPEN, BUDGET, ProbeSlot.GRANTED), True, False)
    assert decision == Decision(Outcome.BLOCK, blocked_by=BUDGET, transition=Transition("retrip", OPEN, BUDGET),
                                alert=BUDGET)


def test_half_open_probe_with_an_alert_only_violation_goes_ahead_and_counts() -> None:
    decision = decide(Step.ADMIT, seen(HALF_OPEN, RATE, ProbeSlot.GRANTED), False, False)
    assert decision == Decision(Outcome.PROBE, alert=RATE, count=True)


def test_half_open_probe_goes_ahead_despite_the_errors_it_is_to_test() -> None:
    # The errors that tripped the breaker are still in the error window: they alert, they do not block the probe.
    decision = decide(Step.ADMIT, seen(HALF_OPEN, RATE, ProbeSlot.GRANTED, trip=RATE), True, False)
    assert decision == Decision(Outcome.PROBE, alert=RATE, count=True)
    settled = decide(Step.PROBE_SETTLED, seen(HALF_OPEN, RATE, ProbeSlot.GRANTED, trip=RATE), True, False)
    assert settled.transition == Transition("recovered", CLOSED, ("probe_succeeded", None, None))


def test_half_open_check_passes_unless_a_probe_is_in_flight() -> None:
    assert decide(Step.CHECK, seen(HALF_OPEN), True, False) == Decision(Outcome.ADMIT)
    assert decide(Step.CHECK, seen(HALF_OPEN, probe=ProbeSlot.HELD), True, False).blocked_by == TRIP


def test_settled_probe_recovers_retrips_on_failure_or_a_blocking_limit() -> None:
    ok = decide(Step.PROBE_SETTLED, seen(HALF_OPEN, probe=ProbeSlot.GRANTED), True, False)
    assert ok.transition == Transition("recovered", CLOSED, ("probe_succeeded", None, None)) and ok.alert is None
    failed = decide(Step.PROBE_SETTLED, seen(HALF_OPEN, probe=ProbeSlot.GRANTED, failed=True), True, False)
    assert failed.transition == Transition("retrip", OPEN, (PROBE_FAILED, None, None)) and failed.alert is None
    over = decide(Step.PROBE_SETTLED, seen(HALF_OPEN, BUDGET, ProbeSlot.GRANTED), True, False)
    assert over.transition == Transition("retrip", OPEN, BUDGET) and over.alert == BUDGET
    alert_only = decide(Step.PROBE_SETTLED, seen(HALF_OPEN, RATE, ProbeSlot.GRANTED), False, False)
    assert alert_only.transition is not None and alert_only.transition.to_state == CLOSED
    assert alert_only.alert == RATE


# ---- a shared store that cannot be reached (limits_fallback="block") ---------------------------------


@pytest.mark.parametrize("state", [CLOSED, OPEN, PAUSED, HALF_OPEN])
def test_unreachable_backend_blocks_and_alerts_in_every_state_without_tripping(state: str) -> None:
    decision = decide(Step.ADMIT, seen(state, UNREACHABLE_VERDICT), True, False)
    assert decision == Decision(Outcome.BLOCK, blocked_by=UNREACHABLE_VERDICT, alert=UNREACHABLE_VERDICT)


def test_the_records_are_values_as_frozen_dataclasses_were() -> None:
    """``Decision``, ``Transition``, ``Observation`` (and ``SharedState``) are plain classes now (making them as frozen
    dataclasses was ~3.5 ms of ``import agentwatch``): equal and hashed by their fields, shown by them, frozen, and
    pickled whole."""
    decision = Decision(Outcome.BLOCK, blocked_by=BUDGET, transition=Transition("triggered", OPEN, BUDGET))
    same = Decision(Outcome.BLOCK, BUDGET, Transition("triggered", OPEN, BUDGET), None, False)
    assert decision == same and hash(decision) == hash(same) and len({decision, same}) == 1
    assert decision != Decision(Outcome.BLOCK, blocked_by=BUDGET) and decision != ("block", BUDGET)
    assert repr(Transition("recovered", CLOSED, TRIP)) == \
        "Transition(event='recovered', to_state='CLOSED', cause=('max_calls_per_minute', 10, 11))"
    with pytest.raises(AttributeError):
        decision.count = True  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del decision.alert  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(decision)) == decision
    assert seen(CLOSED).failed is False
