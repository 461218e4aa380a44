"""The breaker's state machine: what a monitor in each state does with a call, as one pure function.

A monitor is in one of four states:

* ``CLOSED``: calls go ahead. A violated limit trips the breaker (``triggered``: OPEN, the call is blocked)
  if it blocks (``block_on_threshold``, or a budget under ``hard_budget``); otherwise it only alerts and
  the call goes ahead.
* ``OPEN``: every call is blocked by the trip, until an operator recovers the monitor (``pause``,
  ``increase_budget``, ``reset_windows``, ``resume``). ``kill`` opens it with reason ``operator_kill``.
* ``PAUSED``: every call is blocked until the pause ends; then the monitor is HALF_OPEN (a clock-driven
  move, made lazily by the first look after the end).
* ``HALF_OPEN``: one call, the probe, goes ahead while every other call is blocked. The probe's windows
  are checked as in CLOSED (a blocking limit retrips at once), except the rates (errors, calls per minute), which
  are what the probe tests; when it settles, a failure or a blocking limit retrips (OPEN), anything else recovers
  (CLOSED, the error and call windows forgotten). A boundary check goes through while no probe is
  in flight (the next real call may be it).

``decide`` is that table, given what the monitor observed: its state, the windows' verdict where they were
read, the probe slot and the blocking policy. It reads nothing and changes nothing; the monitor
(``_monitor``) gathers the observation, from its own state and windows or from the fleet's shared record
(``_redis_windows``), and applies the decision. The local and the fleet-wide breaker decide by it alike.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from ._breaker_contract import PROBE_FAILED
from ._records import FrozenRecord
from ._records import set_field as _set
from ._windows import (
    BUDGET_PER_HOUR,
    HARD_BUDGET,
    LIMITS_BACKEND_UNREACHABLE,
    MAX_CALLS_PER_MINUTE,
    MAX_ERROR_RATE,
    TRACE_BUDGET,
    ProbeSlot,
    Violation,
)

__all__ = [
    "CLOSED",
    "OPEN",
    "PAUSED",
    "HALF_OPEN",
    "STATES",
    "EVENTS",
    "Trip",
    "Step",
    "Outcome",
    "Observation",
    "Transition",
    "Decision",
    "BUDGET_REASONS",
    "decide",
]

CLOSED: Final = "CLOSED"
OPEN: Final = "OPEN"
PAUSED: Final = "PAUSED"
HALF_OPEN: Final = "HALF_OPEN"
#: Limits on rates, which a HALF_OPEN probe tests rather than obeys.
_RATES: Final = frozenset({MAX_ERROR_RATE, MAX_CALLS_PER_MINUTE})
STATES: Final = (CLOSED, OPEN, PAUSED, HALF_OPEN)
EVENTS: Final = ("triggered", "paused", "half_open", "recovered", "retrip", "budget_increased", "reset", "killed",
                  "resumed")

#: (reason, threshold, current): what trips a monitor or blocks a call.
Trip = tuple[str, float | None, float | None]

#: Violations that a hard budget blocks even without ``block_on_threshold``.
BUDGET_REASONS: Final = frozenset({BUDGET_PER_HOUR, TRACE_BUDGET, HARD_BUDGET})


class Step(Enum):
    """What the monitor is asked about."""

    #: A call about to be sent: if it goes ahead it is counted (and may be the probe).
    ADMIT = "admit"
    #: A boundary (e.g. a graph node) before any call: would one be let through? Nothing is counted.
    CHECK = "check"
    #: This monitor's probe call has finished: close or open again.
    PROBE_SETTLED = "probe_settled"


class Outcome(Enum):
    ADMIT = "admit"  # the call goes ahead
    PROBE = "probe"  # the call goes ahead as the HALF_OPEN probe (the monitor takes the slot)
    BLOCK = "block"  # the call is blocked by ``Decision.blocked_by``
    SETTLED = "settled"  # a probe's settlement: only the transition matters


class Observation(FrozenRecord):
    """What the monitor saw, under its lock, before deciding.

    ``verdict`` is the windows' first violated limit where they were read (CLOSED; HALF_OPEN when this
    admission holds the probe slot; a settled probe), else None. ``trip`` is what blocks calls while OPEN or
    PAUSED. ``failed``: the settled probe call raised.
    """

    __slots__ = ("state", "verdict", "probe", "trip", "failed")
    state: str
    verdict: Violation | None
    probe: ProbeSlot
    trip: Trip
    failed: bool

    def __init__(self, state: str, verdict: Violation | None, probe: ProbeSlot, trip: Trip,
                 failed: bool = False) -> None:
        _set(self, "state", state)
        _set(self, "verdict", verdict)
        _set(self, "probe", probe)
        _set(self, "trip", trip)
        _set(self, "failed", failed)


class Transition(FrozenRecord):
    """A move the decision makes: to OPEN with its trip as the cause, or to CLOSED."""

    __slots__ = ("event", "to_state", "cause")
    event: str
    to_state: str
    cause: Trip

    def __init__(self, event: str, to_state: str, cause: Trip) -> None:
        _set(self, "event", event)
        _set(self, "to_state", to_state)
        _set(self, "cause", cause)


class Decision(FrozenRecord):
    """The monitor's answer: the outcome, the transition to make, the limit to alert on, and whether the
    call must still be counted (a violated limit that only alerts: the store did not count it)."""

    __slots__ = ("outcome", "blocked_by", "transition", "alert", "count")
    outcome: Outcome
    blocked_by: Trip | None
    transition: Transition | None
    alert: Violation | None
    count: bool

    def __init__(self, outcome: Outcome, blocked_by: Trip | None = None, transition: Transition | None = None,
                 alert: Violation | None = None, count: bool = False) -> None:
        _set(self, "outcome", outcome)
        _set(self, "blocked_by", blocked_by)
        _set(self, "transition", transition)
        _set(self, "alert", alert)
        _set(self, "count", count)


_ADMITTED: Final = Decision(Outcome.ADMIT)
_PROBE: Final = Decision(Outcome.PROBE)
_RECOVERED: Final = Transition("recovered", CLOSED, ("probe_succeeded", None, None))


def _blocks(violation: Violation, block_on_threshold: bool, hard_budget: bool) -> bool:
    """Whether a violated limit blocks calls (and trips) or only alerts."""
    return block_on_threshold or (hard_budget and violation[0] in BUDGET_REASONS)


def decide(step: Step, seen: Observation, block_on_threshold: bool, hard_budget: bool) -> Decision:
    """What a monitor does with ``step``, given what it has ``seen``: the state machine, state by state."""
    verdict = seen.verdict
    if verdict is not None and verdict[0] is LIMITS_BACKEND_UNREACHABLE:
        # limits_fallback="block": blocked while the shared store is unreachable, whatever the state, without
        # tripping, so the monitor is as it was once the store answers again. Alerted (with its cool-down).
        return Decision(Outcome.BLOCK, blocked_by=verdict, alert=verdict)
    state = seen.state
    if state is CLOSED:
        return _closed(step, verdict, block_on_threshold, hard_budget)
    if state is HALF_OPEN:
        return _half_open(step, seen, block_on_threshold, hard_budget)
    return Decision(Outcome.BLOCK, blocked_by=seen.trip)  # OPEN, or PAUSED (the pause has not ended)


def _closed(step: Step, verdict: Violation | None, block_on_threshold: bool, hard_budget: bool) -> Decision:
    if verdict is None:
        return _ADMITTED  # (an admission was counted by the store as it checked)
    if _blocks(verdict, block_on_threshold, hard_budget):
        return Decision(Outcome.BLOCK, blocked_by=verdict, transition=Transition("triggered", OPEN, verdict),
                        alert=verdict)
    return Decision(Outcome.ADMIT, alert=verdict, count=step is Step.ADMIT)  # alert-only: the call counts


def _half_open(step: Step, seen: Observation, block_on_threshold: bool, hard_budget: bool) -> Decision:
    verdict = seen.verdict
    # The errors or calls that tripped the breaker stay in their window (300 s, 60 s), and they are what the probe
    # tests: a rate's verdict is alerted, but neither blocks the probe nor retrips after it succeeded (the recovery
    # then forgets them, see the monitor). Else a pause shorter than the window could never recover from it.
    blocking = verdict is not None and verdict[0] not in _RATES and \
        _blocks(verdict, block_on_threshold, hard_budget)
    if step is Step.PROBE_SETTLED:
        if seen.failed:
            return Decision(Outcome.SETTLED, transition=Transition("retrip", OPEN, (PROBE_FAILED, None, None)))
        if blocking and verdict is not None:
            return Decision(Outcome.SETTLED, transition=Transition("retrip", OPEN, verdict), alert=verdict)
        return Decision(Outcome.SETTLED, transition=_RECOVERED, alert=verdict)
    if step is Step.CHECK:
        return _ADMITTED if seen.probe is not ProbeSlot.HELD else Decision(Outcome.BLOCK, blocked_by=seen.trip)
    # An admission: only the one holding the probe slot goes ahead, every other is blocked.
    if seen.probe is not ProbeSlot.GRANTED:
        return Decision(Outcome.BLOCK, blocked_by=seen.trip)
    if verdict is None:
        return _PROBE
    if blocking and verdict is not None:
        return Decision(Outcome.BLOCK, blocked_by=verdict, transition=Transition("retrip", OPEN, verdict),
                        alert=verdict)
    return Decision(Outcome.PROBE, alert=verdict, count=True)
