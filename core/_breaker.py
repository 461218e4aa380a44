"""The in-process circuit breaker: per-scope monitors, their state machine, admission and settlement.

A call is checked against every enclosing monitor before it is sent (``admit``) and its cost and outcome
recorded afterwards (``settle``). Each monitor has one short lock; no lock is held while user hooks or the
sink run, and no two monitor locks are ever held at once, so admitting across scopes cannot deadlock.

With a ``SharedBreakerStore`` (Redis, ``limits_backend``) the state machine is fleet-wide: the monitor's
state mirrors a shared record that its store reads in the same round trip as the windows, it publishes its
own transitions there, and follows everyone else's (see ``_redis_windows``). The common path is the same
code either way: only a store's verdict sends a call down the slow path, where the fleet is handled.

Hard budgets (``hard_budget=True``): once a monitor admits a call, it also reserves the call's worst-case cost
in its store (``ReservingStore.reserve``: checked against spend plus every reservation, atomic in Redis),
under the same lock; ``settle`` records the cost and releases the reservation in one step, ``top_up`` adds
to it when a lower layer learns the request. A reservation that does not fit blocks the call without
tripping: it depends on the calls in flight, not on a limit being spent.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from ._breaker_contract import (
    OPERATOR_KILL,
    PAUSED_BY_OPERATOR,
    PROBE_FAILED,
    BlockEvent,
    BreakerSink,
    CircuitBreakerException,
    _hook,
    _number,
    _run_hook,
    _sink,
    _sink_alert,
    _sink_blocked,
    _sink_transition,
)
from ._safe import logger
from ._windows import (
    BUDGET_PER_HOUR,
    FLEET_STATE,
    HARD_BUDGET,
    LIMITS_BACKEND_UNREACHABLE,
    MAX_CALLS_PER_MINUTE,
    MAX_ERROR_RATE,
    PROBE_GRANTED,
    PROBE_HELD,
    TRACE_BUDGET,
    LocalWindowStore,
    ReservingStore,
    SharedBreakerStore,
    SharedState,
    Violation,
    WindowStore,
    units_to_usd,
    usd_to_units,
)

__all__ = [
    "CLOSED",
    "OPEN",
    "PAUSED",
    "HALF_OPEN",
    "STATES",
    "EVENTS",
    "ALERT_COOLDOWN_S",
    "PROBE_FAILED",
    "PAUSED_BY_OPERATOR",
    "OPERATOR_KILL",
    "LIMITS_BACKEND_UNREACHABLE",
    "BUDGET_PER_HOUR",
    "MAX_ERROR_RATE",
    "MAX_CALLS_PER_MINUTE",
    "HARD_BUDGET",
    "TRACE_BUDGET",
    "BreakerSink",
    "BlockEvent",
    "CircuitBreakerException",
    "Monitor",
    "Admission",
    "admit",
    "check",
    "settle",
    "top_up",
]

CLOSED: Final = "CLOSED"
OPEN: Final = "OPEN"
PAUSED: Final = "PAUSED"
HALF_OPEN: Final = "HALF_OPEN"
STATES: Final = (CLOSED, OPEN, PAUSED, HALF_OPEN)
EVENTS: Final = ("triggered", "paused", "half_open", "recovered", "retrip", "budget_increased", "reset", "killed",
                  "resumed")

ALERT_COOLDOWN_S: Final = 60.0


_TRANSITION: Final = 0
_ALERT: Final = 1

#: The shared record's states as this module's constants (the monitor compares states by identity).
_STATE_OF: Final = {CLOSED: CLOSED, OPEN: OPEN, PAUSED: PAUSED, HALF_OPEN: HALF_OPEN}
#: Transitions that are published only if the fleet's record is still what the monitor acted on: decisions
#: from a verdict that a newer transition elsewhere (a pause, a recovery) makes stale.
_CONDITIONAL: Final = frozenset({"triggered", "retrip", "recovered"})
#: ... and, made by the fleet's probe, only while this process still holds the probe slot.
_AFTER_PROBE: Final = frozenset({"retrip", "recovered"})


class _Local:
    """Returned by the fleet's slow path when the shared record cannot decide: the per-process machine does."""

    __slots__ = ()


_LOCAL: Final = _Local()


_UPDATABLE: Final = frozenset(
    {"budget_per_hour", "max_error_rate", "max_calls_per_minute", "block_on_threshold", "hard_budget", "on_alert",
     "on_block", "sink", "name"}
)
#: Violations that a hard budget blocks even without ``block_on_threshold``.
_BUDGET_REASONS: Final = frozenset({BUDGET_PER_HOUR, TRACE_BUDGET, HARD_BUDGET})


#: Reservation ids: unique per admission in this process (a shared store prefixes its own random token).
_rids = itertools.count(1)


class _Probe:
    """The HALF_OPEN probe slot of one monitor, held by exactly one admission."""

    __slots__ = ()


# ---- monitor ----------------------------------------------------------------------------------------


class Monitor:
    """Limits and breaker state of one scope ("global" or an agent).

    States: CLOSED (calls checked) → OPEN (all blocked) → PAUSED (blocked until the pause ends) →
    HALF_OPEN (one probe call; success → CLOSED, failure or violation → OPEN). Every transition is sent
    to ``sink.transition`` exactly once, in order.
    """

    __slots__ = (
        "_scope", "_scope_id", "_name", "_budget", "_max_error_rate", "_max_calls", "_block", "_on_alert",
        "_on_block", "_sink", "_clock", "_store", "_lock", "_state", "_probe", "_paused_until", "_trip",
        "_blocked_calls", "_alert_last", "_pending", "_draining", "_evaluate", "_submit", "_fleet", "_hard",
        "__weakref__",
    )

    def __init__(
        self,
        scope: str,
        scope_id: str,
        *,
        budget_per_hour: float | None = None,
        max_error_rate: float | None = None,
        max_calls_per_minute: int | None = None,
        block_on_threshold: bool = False,
        hard_budget: bool = False,
        on_alert: Callable[[dict[str, Any]], Any] | None = None,
        on_block: Callable[[BlockEvent], Any] | None = None,
        sink: BreakerSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
        store: WindowStore | None = None,
    ) -> None:
        if not isinstance(scope, str) or not isinstance(scope_id, str):
            raise TypeError("scope and scope_id must be strings")
        if not callable(clock):
            raise TypeError("clock must be callable")
        self._scope = scope
        self._scope_id = scope_id
        self._name = scope_id
        self._budget: float | None = None
        self._max_error_rate: float | None = None
        self._max_calls: int | None = None
        self._block = False
        # Hard budget: each call reserves its worst-case cost before it is sent (see ``admit``), and the
        # budget blocks whatever ``block_on_threshold`` says.
        self._hard = False
        self._on_alert: Callable[[dict[str, Any]], Any] | None = None
        self._on_block: Callable[[BlockEvent], Any] | None = None
        self._sink: BreakerSink | None = None
        self._clock = clock
        self._store: WindowStore = store if store is not None else LocalWindowStore()
        # Set when the store shares the breaker state (fleet-wide limits): only the slow paths look at it.
        self._fleet: SharedBreakerStore | None = (
            store if store is not None and isinstance(store, SharedBreakerStore) else None)
        # Bound once: these two run on every call. ``_submit((now, cost_usd, error))`` records a result.
        self._evaluate = self._store.evaluate
        self._submit: Callable[[tuple[float, float, bool]], None] = getattr(
            self._store, "record_item", None) or (lambda item: self._store.record(*item))
        self._lock = threading.Lock()
        self._state: str = CLOSED
        self._probe: _Probe | None = None
        self._paused_until: float | None = None
        self._trip: tuple[str, float | None, float | None] | None = None  # (reason, threshold, current)
        self._blocked_calls = 0
        self._alert_last: dict[str, float] = {}
        # Reports queued under the lock and sent after it is released, by one thread at a time (in order).
        self._pending: deque[tuple[int, dict[str, Any]]] = deque()
        self._draining = False
        self.update(
            budget_per_hour=budget_per_hour, max_error_rate=max_error_rate,
            max_calls_per_minute=max_calls_per_minute, block_on_threshold=block_on_threshold,
            hard_budget=hard_budget, on_alert=on_alert, on_block=on_block, sink=sink,
            name=name if name is not None else scope_id,
        )

    # ---- configuration ----------------------------------------------------------------------------

    def update(self, **limits: Any) -> None:
        """Change limits, hooks, sink or name; a limit set to None is removed. Takes effect on the next call.

        The breaker state is left as it is: a monitor that is OPEN stays OPEN until recovered.
        """
        unknown = set(limits) - _UPDATABLE
        if unknown:
            raise TypeError(f"update() got unexpected argument(s): {', '.join(sorted(unknown))}")
        checked: dict[str, Any] = {}
        for key, value in limits.items():
            if key == "budget_per_hour":
                checked["_budget"] = _number(key, value)
            elif key == "max_error_rate":
                checked["_max_error_rate"] = _number(key, value, upper=1.0)
            elif key == "max_calls_per_minute":
                checked["_max_calls"] = _number(key, value, integer=True)
            elif key in ("block_on_threshold", "hard_budget"):
                if not isinstance(value, bool):
                    raise TypeError(f"{key} must be a bool, not {type(value).__name__}")
                checked["_block" if key == "block_on_threshold" else "_hard"] = value
            elif key in ("on_alert", "on_block"):
                checked["_" + key] = _hook(key, value)
            elif key == "sink":
                checked["_sink"] = _sink(value)
            else:
                if not isinstance(value, str):
                    raise TypeError(f"name must be a string, not {type(value).__name__}")
                checked["_name"] = value
        if checked.get("_hard") and not isinstance(self._store, ReservingStore):
            raise TypeError("hard_budget needs a window store that can reserve (reserve/release/settle_reserved)")
        # Validated first, then applied together: a bad argument changes nothing.
        with self._lock:
            for attribute, value in checked.items():
                setattr(self, attribute, value)
            self._store.set_limits(self._budget, self._max_error_rate, self._max_calls)

    @property
    def scope(self) -> str:
        return self._scope

    @property
    def scope_id(self) -> str:
        return self._scope_id

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self.update(name=value)

    @property
    def budget_per_hour(self) -> float | None:
        return self._budget

    @budget_per_hour.setter
    def budget_per_hour(self, value: float | None) -> None:
        self.update(budget_per_hour=value)

    @property
    def max_error_rate(self) -> float | None:
        return self._max_error_rate

    @max_error_rate.setter
    def max_error_rate(self, value: float | None) -> None:
        self.update(max_error_rate=value)

    @property
    def max_calls_per_minute(self) -> int | None:
        return self._max_calls

    @max_calls_per_minute.setter
    def max_calls_per_minute(self, value: int | None) -> None:
        self.update(max_calls_per_minute=value)

    @property
    def block_on_threshold(self) -> bool:
        return self._block

    @block_on_threshold.setter
    def block_on_threshold(self, value: bool) -> None:
        self.update(block_on_threshold=value)

    @property
    def hard_budget(self) -> bool:
        return self._hard

    @hard_budget.setter
    def hard_budget(self, value: bool) -> None:
        self.update(hard_budget=value)

    @property
    def on_alert(self) -> Callable[[dict[str, Any]], Any] | None:
        return self._on_alert

    @on_alert.setter
    def on_alert(self, value: Callable[[dict[str, Any]], Any] | None) -> None:
        self.update(on_alert=value)

    @property
    def on_block(self) -> Callable[[BlockEvent], Any] | None:
        return self._on_block

    @on_block.setter
    def on_block(self, value: Callable[[BlockEvent], Any] | None) -> None:
        self.update(on_block=value)

    @property
    def sink(self) -> BreakerSink | None:
        return self._sink

    @sink.setter
    def sink(self, value: BreakerSink | None) -> None:
        self.update(sink=value)

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    @property
    def store(self) -> WindowStore:
        return self._store

    @property
    def state(self) -> str:
        """One of CLOSED, OPEN, PAUSED, HALF_OPEN (a pause that has ended reads as HALF_OPEN)."""
        if self._state is PAUSED:
            with self._lock:
                self._maybe_half_open_locked(self._clock())
            self._drain()
        return self._state

    def __repr__(self) -> str:
        return f"<Monitor {self._scope}:{self._scope_id} {self._state}>"

    # ---- recovery ---------------------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Block calls for ``seconds``, then let one probe call through (HALF_OPEN).

        Meant for an OPEN monitor; pausing a CLOSED one blocks its calls the same way (reason "paused").
        """
        seconds = _number("seconds", seconds)
        with self._lock:
            now = self._clock()
            if self._trip is None:
                self._trip = (PAUSED_BY_OPERATOR, None, None)
            self._paused_until = now + seconds
            self._transition_locked("paused", PAUSED, "pause", None, seconds)
        self._drain()

    def increase_budget(self, usd: float) -> None:
        """Raise the hourly budget by ``usd`` (no budget: current spend + ``usd``) and close at once."""
        usd = _number("usd", usd)
        with self._lock:
            spent = self._store.spend(self._clock())
            self._budget = (spent if self._budget is None else self._budget) + usd
            self._store.set_limits(self._budget, self._max_error_rate, self._max_calls)
            self._transition_locked("budget_increased", CLOSED, "increase_budget", self._budget, spent)
        self._drain()

    def kill(self, reason: str = OPERATOR_KILL) -> None:
        """Block every call (OPEN, with ``reason``) until ``resume()``: an operator's stop switch."""
        with self._lock:
            self._trip_locked("killed", (reason, None, None))
        self._drain()

    def resume(self) -> None:
        """Close at once, ending a pause, a kill or a trip; recorded calls and limits stay as they are."""
        with self._lock:
            if self._state is not CLOSED:
                self._transition_locked("resumed", CLOSED, "resume", None, None)
        self._drain()

    def reset_windows(self) -> None:
        """Forget all recorded calls, costs and errors and close at once (emergency reset)."""
        with self._lock:
            self._store.clear()
            self._transition_locked("reset", CLOSED, "reset_windows", None, None)
        self._drain()

    # ---- introspection ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            self._maybe_half_open_locked(now)
            store = self._store
            done, errors = store.outcomes(now)
            trip = self._trip
            paused_until = self._paused_until if self._state is PAUSED else None
            snap: dict[str, Any] = {
                "state": self._state,
                "scope": self._scope,
                "scope_id": self._scope_id,
                "name": self._name,
                "limits": {
                    "budget_per_hour": self._budget,
                    "max_error_rate": self._max_error_rate,
                    "max_calls_per_minute": self._max_calls,
                    "block_on_threshold": self._block,
                    "hard_budget": self._hard,
                },
                "spend_last_hour": store.spend(now),
                "reserved": _reserved_of(store),
                "calls_last_minute": store.calls(now),
                "error_rate": errors / done if done else 0.0,
                "calls_in_error_window": done,
                "errors_in_error_window": errors,
                "blocked_calls": self._blocked_calls,
                "tripped_reason": trip[0] if trip else None,
                "tripped_threshold": trip[1] if trip else None,
                "tripped_current": trip[2] if trip else None,
                "paused_until": max(0.0, paused_until - now) if paused_until is not None else None,
                "probe_in_flight": self._probe is not None,
            }
        self._drain()
        return snap

    # ---- internals: all *_locked methods run with self._lock held ---------------------------------

    def _transition_locked(self, event: str, to_state: str, reason: str, threshold: float | None,
                           current: float | None, *, follow: bool = False) -> None:
        fleet = self._fleet
        if fleet is not None and not follow and event != "half_open":  # half_open: the clock's, not ours
            published = fleet.publish(
                event, to_state, reason, threshold, current, None if to_state is CLOSED else self._trip,
                pause_s=current if to_state is PAUSED and current is not None else 0.0,
                if_generation=event in _CONDITIONAL,
                if_probe=event in _AFTER_PROBE and self._probe is not None)
            if isinstance(published, SharedState):
                # Another process's newer transition made this one stale: do what the fleet did instead.
                self._follow_locked(self._clock(), published)
                return
            # True: the fleet's now; False: Redis unreachable, so it is this process's alone for now.
        record = {
            "event": event,
            "from_state": self._state,
            "to_state": to_state,
            "scope": self._scope,
            "scope_id": self._scope_id,
            "reason": reason,
            "threshold": threshold,
            "current": current,
            "eu_ai_act_art12_relevant": True,
        }
        if follow:
            record["fleet_sync"] = True  # made by another process: dashboards can count each trip once
        self._state = to_state
        self._probe = None  # any transition ends a probe in flight: its settle must not decide anything
        if to_state is CLOSED:
            self._trip = None
            self._paused_until = None
        elif to_state is OPEN:
            self._paused_until = None
        self._pending.append((_TRANSITION, record))

    def _trip_locked(self, event: str, violation: Violation | tuple[str, None, None]) -> None:
        reason, threshold, current = violation
        self._trip = (reason, threshold, current)
        self._transition_locked(event, OPEN, reason, threshold, current)

    def _alert_locked(self, now: float, violation: Violation) -> None:
        reason, threshold, current = violation
        last = self._alert_last.get(reason)
        if last is not None and now - last < ALERT_COOLDOWN_S:
            return
        self._alert_last[reason] = now
        alert = {
            "reason": reason,
            "scope": self._scope,
            "scope_id": self._scope_id,
            "threshold": threshold,
            "current": current,
            "state": self._state,
        }
        self._pending.append((_ALERT, alert))

    def _maybe_half_open_locked(self, now: float) -> None:
        # Lazy: nothing runs when a pause ends; the first look afterwards makes (and reports) the move.
        if self._state is PAUSED and self._paused_until is not None and now >= self._paused_until:
            self._transition_locked("half_open", HALF_OPEN, "pause_elapsed", None, None)

    def _blocks(self, violation: Violation | tuple[str, Any, Any]) -> bool:
        """Whether a violated limit blocks calls (and trips) or only alerts."""
        return self._block or (self._hard and violation[0] in _BUDGET_REASONS)

    def _reserve_locked(self, now: float, units: int, rid: int) -> Violation | None:
        """Hard budget: reserve ``units`` for an admitted call, or the ``HARD_BUDGET`` verdict (alerted)."""
        held = self._store.reserve(now, units, rid)  # type: ignore[attr-defined]  # hard: a ReservingStore
        if held is not None:
            self._alert_locked(now, held)
        return held

    def _blocked_locked(self) -> tuple[str, float | None, float | None]:
        return self._trip if self._trip is not None else (PAUSED_BY_OPERATOR, None, None)

    def _enter_slow_locked(
        self, now: float, violation: Violation | None
    ) -> _Probe | tuple[str, float | None, float | None] | None:
        """Admission by this monitor off the common path: None (admitted), a probe slot (admitted as the
        probe) or the (reason, threshold, current) that blocks the call. An admitted call is counted."""
        if self._fleet is not None:
            decided = self._enter_fleet_locked(now, violation)
            if decided is not _LOCAL:
                return decided
            # Redis unreachable and limits_fallback="local": the per-process machine below decides.
        state = self._state
        if state is CLOSED:
            assert violation is not None
            if self._blocks(violation):
                self._trip_locked("triggered", violation)
                self._alert_locked(now, violation)
                return violation
            self._alert_locked(now, violation)
            self._store.count_call(now)  # alert-only: the call goes ahead, so it counts
            return None
        if state is PAUSED:
            self._maybe_half_open_locked(now)
            if self._state is PAUSED:
                return self._blocked_locked()
        if self._state is HALF_OPEN:
            if self._probe is not None:
                return self._blocked_locked()
            violation = self._evaluate(now, True)
            if violation is not None:
                if self._blocks(violation):
                    self._trip_locked("retrip", violation)
                    self._alert_locked(now, violation)
                    return violation
                self._alert_locked(now, violation)
                self._store.count_call(now)
            probe = self._probe = _Probe()
            return probe
        return self._blocked_locked()  # OPEN

    def _check_locked(self, now: float) -> tuple[str, float | None, float | None] | None:
        """``check()`` by this monitor: like an admission, but nothing is counted and no probe is taken."""
        if self._fleet is not None:
            decided = self._check_fleet_locked(now)
            if decided is not _LOCAL:
                return decided
        if self._state is CLOSED:
            violation = self._evaluate(now, False)
            if violation is None:
                return None
            if self._blocks(violation):
                self._trip_locked("triggered", violation)
                self._alert_locked(now, violation)
                return violation
            self._alert_locked(now, violation)
            return None
        if self._state is PAUSED:
            self._maybe_half_open_locked(now)
            if self._state is PAUSED:
                return self._blocked_locked()
        if self._state is HALF_OPEN:
            return self._blocked_locked() if self._probe is not None else None
        return self._blocked_locked()  # OPEN

    def _settle_probe(self, now: float, cost_usd: float, error: bool, probe: _Probe,
                      held: tuple[int, int] | None = None) -> None:
        """Settlement of this monitor's probe call: record it, then close or open again."""
        if held is None:
            self._store.record(now, cost_usd, error)
        with self._lock:
            if held is not None:
                self._store.settle_reserved(now, cost_usd, error, held[0], held[1])  # type: ignore[attr-defined]  # hard: a ReservingStore
            if probe is not self._probe:
                return  # the state moved on meanwhile (pause, reset, ...): this probe decides nothing
            if error:
                self._trip_locked("retrip", (PROBE_FAILED, None, None))
            else:
                fleet = self._fleet
                # The fleet's record is HALF_OPEN with our probe: only the windows can say whether to close.
                violation = fleet.windows(now) if fleet is not None else self._evaluate(now, False)
                if violation is not None and self._blocks(violation):
                    self._trip_locked("retrip", violation)
                    self._alert_locked(now, violation)
                else:
                    if violation is not None:
                        self._alert_locked(now, violation)
                    self._transition_locked("recovered", CLOSED, "probe_succeeded", None, None)
        self._drain()

    def _settle_reserved(self, now: float, cost_usd: float, error: bool, units: int, rid: int,
                         probe: _Probe | None) -> None:
        """Settlement of a call that holds a reservation here: cost recorded and reservation released at once."""
        if probe is not None:
            self._settle_probe(now, cost_usd, error, probe, (units, rid))
            return
        with self._lock:
            self._store.settle_reserved(now, cost_usd, error, units, rid)  # type: ignore[attr-defined]  # hard: a ReservingStore

    def _rollback(self, probe: _Probe | None, held: tuple[int, int] | None = None) -> None:
        """Undo an admission: another scope blocked the call, so it never happened here."""
        with self._lock:
            if held is not None:
                self._store.release(held[0], held[1])  # type: ignore[attr-defined]  # hard: a ReservingStore
            self._store.uncount_call(self._clock())
            if probe is not None and probe is self._probe:
                self._probe = None  # free the slot for the next caller
                if self._fleet is not None:
                    self._fleet.release_probe()  # ... in every process

    # ---- internals: the fleet (a SharedBreakerStore), all with self._lock held -------------------------

    def _enter_fleet_locked(self, now: float, violation: Violation | None) -> Any:
        """Admission with a shared state: decided by the fleet's record, or ``_LOCAL``."""
        if self._state is CLOSED:
            assert violation is not None  # the common path's round trip made the verdict
        return self._fleet_verdict_locked(now, True, violation)

    def _check_fleet_locked(self, now: float) -> Any:
        """``check()`` with a shared state: decided by the fleet's record, or ``_LOCAL``."""
        closed = self._state is CLOSED
        return self._fleet_verdict_locked(now, False, self._evaluate(now, False) if closed else None)

    def _fleet_verdict_locked(self, now: float, admission: bool, violation: Violation | None) -> Any:
        """CLOSED: the windows' verdict (``violation``; None admits) decides. Otherwise only the fleet's
        record says whether the state still holds: one more round trip."""
        fleet = self._fleet
        assert fleet is not None
        shared: SharedState | Violation | None
        if self._state is CLOSED:
            if violation is None:
                return None
            if violation[0] is FLEET_STATE:
                return self._fleet_decide_locked(now, admission, fleet.reply)
            if violation[0] is not LIMITS_BACKEND_UNREACHABLE:
                return self._closed_verdict_locked(now, violation, admission)  # a window's (Redis's or the fallback's)
            shared = violation
        else:
            shared = fleet.consult(now, admission)
            if shared is None:
                return _LOCAL
        if isinstance(shared, SharedState):
            return self._fleet_decide_locked(now, admission, shared)
        return self._unreachable_locked(now, shared)

    def _fleet_decide_locked(self, now: float, admission: bool, shared: SharedState | None) -> Any:
        """Follow the fleet's record, then decide the call by it: like ``_enter_slow_locked`` (admission)
        or ``_check_locked``, with the record's state, probe slot and windows' verdict."""
        if shared is None:  # cannot happen (evaluate sets the reply with FLEET_VERDICT); never block on it
            return None
        fleet = self._fleet
        assert fleet is not None
        state = shared.state
        if shared.generation != fleet.generation:
            self._follow_locked(now, shared)
        elif self._state is PAUSED and (state == PAUSED or state == HALF_OPEN):
            # Same pause: the shared clock says how long is left (HALF_OPEN: nothing, the move is made now).
            self._paused_until = now + shared.remaining
            self._maybe_half_open_locked(now)
        if state == CLOSED:
            if self._state is not CLOSED:  # not expected (transitions renew the generation): the record rules
                self._transition_locked("recovered", CLOSED, "fleet_state", None, None, follow=True)
            violation = shared.verdict
            if violation is None:
                return None  # admitted (and counted) by the script
            return self._closed_verdict_locked(now, violation, admission)
        if state == HALF_OPEN:
            if shared.probe == PROBE_HELD:
                return self._blocked_locked()
            if not admission:
                return None  # no probe in flight: the next real call may be it
            if shared.probe != PROBE_GRANTED:  # not expected: an admission either takes the slot or not
                return self._blocked_locked()
            if self._state is not HALF_OPEN:  # e.g. this process's clock is behind: the shared clock rules
                self._paused_until = now
                self._maybe_half_open_locked(now)
                if self._state is not HALF_OPEN:
                    self._transition_locked("half_open", HALF_OPEN, "pause_elapsed", None, None)
            # This admission holds the fleet's probe slot (granted by the script).
            probe = self._probe = _Probe()
            violation = shared.verdict
            if violation is not None:
                if self._blocks(violation):
                    self._trip_locked("retrip", violation)  # published while the slot is ours, which frees it
                    self._alert_locked(now, violation)
                    return violation
                self._alert_locked(now, violation)
                self._store.count_call(now)
            return probe
        return self._blocked_locked()  # OPEN or PAUSED

    def _closed_verdict_locked(self, now: float, violation: Violation, admission: bool) -> Violation | None:
        """A CLOSED monitor's violated limit: trip (published) and block, or alert and let the call go."""
        if self._blocks(violation):
            self._trip_locked("triggered", violation)
            self._alert_locked(now, violation)
            return violation
        self._alert_locked(now, violation)
        if admission:
            self._store.count_call(now)  # alert-only: the call goes ahead, so it counts
        return None

    def _follow_locked(self, now: float, shared: SharedState) -> None:
        """Make this monitor's state the fleet's (another generation of the record), reporting the move."""
        fleet = self._fleet
        assert fleet is not None
        fleet.generation = shared.generation
        target = _STATE_OF.get(shared.state, CLOSED)
        event = shared.event or "fleet"
        reason = shared.reason or "fleet_state"
        if target is CLOSED:
            if self._state is not CLOSED:
                self._transition_locked(event, CLOSED, reason, shared.threshold, shared.current, follow=True)
            return
        if shared.trip is not None:
            self._trip = shared.trip
        elif self._trip is None:
            self._trip = (PAUSED_BY_OPERATOR, None, None)
        if target is OPEN:
            if self._state is not OPEN:
                self._transition_locked(event, OPEN, reason, shared.threshold, shared.current, follow=True)
            return
        # A (new) pause, possibly already over on the shared clock (HALF_OPEN): pause, then the lazy move.
        self._transition_locked(event, PAUSED, reason, shared.threshold, shared.current, follow=True)
        self._paused_until = now + shared.remaining
        self._maybe_half_open_locked(now)

    def _unreachable_locked(self, now: float, verdict: Violation) -> Violation:
        # limits_fallback="block": blocked while the backend is unreachable, without tripping, so the
        # monitor is as it was once the backend answers again. Alerted (with its cool-down).
        self._alert_locked(now, verdict)
        return verdict

    def _note_blocked(self) -> None:
        with self._lock:
            self._blocked_calls += 1

    def _drain(self) -> None:
        """Send queued reports in order, outside the lock.

        One thread drains at a time; another thread's reports queued meanwhile are sent by the drainer
        before it stops, so nothing is lost or reordered, and a sink calling back into this monitor
        (e.g. pause()) cannot deadlock: its report is queued and sent right after.
        """
        while True:
            if not self._pending:
                # Unlocked peek: a report queued after it is sent by the thread that queued it, or by
                # the drainer it saw (which looks again after clearing its flag).
                return
            with self._lock:
                if self._draining or not self._pending:
                    return
                self._draining = True
                batch = list(self._pending)
                self._pending.clear()
            sent = 0
            try:
                for kind, payload in batch:
                    sent += 1
                    self._send(kind, payload)
            finally:
                with self._lock:
                    if sent < len(batch):  # only a pass-through exception gets here: keep the rest
                        self._pending.extendleft(reversed(batch[sent:]))
                    self._draining = False

    def _send(self, kind: int, payload: dict[str, Any]) -> None:
        sink = self._sink
        if kind == _TRANSITION:
            if sink is not None:
                _sink_transition(sink, self, payload)
            return
        if sink is not None:
            _sink_alert(sink, self, payload)
        hook = self._on_alert
        if hook is not None:
            _run_hook(hook, dict(payload))


# ---- admission --------------------------------------------------------------------------------------


class Admission:
    """One admitted call: the monitors that counted it and, where it is their HALF_OPEN probe, the slot.

    With hard budgets, ``_held`` marks the monitors holding this call's reservation (``_units``, id ``_rid``).
    """

    __slots__ = ("monitors", "trace_id", "_probes", "_settled", "_held", "_units", "_rid")

    def __init__(self, monitors: tuple[Monitor, ...], probes: list[_Probe | None] | None,
                 trace_id: str | None, held: list[bool] | None = None, units: int = 0, rid: int = 0) -> None:
        self.monitors = monitors
        self.trace_id = trace_id
        self._probes = probes
        self._settled = False
        self._held = held
        self._units = units
        self._rid = rid

    @property
    def probe_monitors(self) -> tuple[Monitor, ...]:
        """The monitors for which this call is the HALF_OPEN probe."""
        if self._probes is None:
            return ()
        return tuple(m for m, p in zip(self.monitors, self._probes, strict=True) if p is not None)

    @property
    def reserved(self) -> float:
        """USD reserved for this call in its hard-budget scopes (0.0 if none is hard)."""
        return units_to_usd(self._units) if self._held is not None else 0.0

    @property
    def hard(self) -> bool:
        """Whether any of its scopes has a hard budget (a later ``top_up`` reserves there)."""
        return self._held is not None

    @property
    def settled(self) -> bool:
        return self._settled

    def __repr__(self) -> str:
        return f"<Admission monitors={len(self.monitors)} probes={len(self.probe_monitors)}>"


_Blocked = tuple[Monitor, tuple[str, float | None, float | None]]


def _try_admit(monitors: tuple[Monitor, ...], trace_id: str | None, units: int = 0) -> Admission | _Blocked:
    """One pass over the scopes: the Admission, or the first monitor that blocks (and why)."""
    probes: list[_Probe | None] | None = None
    held: list[bool] | None = None
    rid = 0
    clock: Callable[[], float] | None = None
    now = 0.0
    index = 0
    for monitor in monitors:
        if monitor._clock is not clock:  # scopes normally share one clock: read it once per call
            clock = monitor._clock
            now = clock()
        with monitor._lock:
            if monitor._state is CLOSED:
                violation = monitor._evaluate(now, True)
                if violation is None:  # the common path: admitted and counted, nothing to report
                    if not monitor._hard:
                        index += 1
                        continue
                    result: Any = None
                else:
                    result = monitor._enter_slow_locked(now, violation)
            else:
                result = monitor._enter_slow_locked(now, None)
            if monitor._hard and (result is None or isinstance(result, _Probe)):
                # Hard budget: the admitted call also needs its worst case to fit, checked and reserved in
                # the same step (atomic in a shared store), so concurrent calls cannot all take the last dollar.
                if not rid:
                    rid = next(_rids)
                blocked = monitor._store.reserve(now, units, rid)  # type: ignore[attr-defined]  # hard: reserving
                if blocked is None:
                    if held is None:
                        held = [False] * len(monitors)
                    held[index] = True
                else:
                    monitor._alert_locked(now, blocked)
                    monitor._store.uncount_call(now)
                    if result is not None and result is monitor._probe:  # free the probe slot again
                        monitor._probe = None
                        if monitor._fleet is not None:
                            monitor._fleet.release_probe()
                    result = blocked
        monitor._drain()
        if result is not None:
            if isinstance(result, tuple):
                # Blocked here: the call never happens, so the scopes inside that counted it undo that.
                for k in range(index):
                    monitors[k]._rollback(probes[k] if probes is not None else None,
                                          (units, rid) if held is not None and held[k] else None)
                return monitor, result
            if probes is None:
                probes = [None] * len(monitors)
            probes[index] = result
        index += 1
    return Admission(monitors, probes, trace_id, held, units, rid)


def admit(monitors: Sequence[Monitor], *, trace_id: str | None = None,
          reserve: float | Callable[[], float] | None = None) -> Admission:
    """Check a call against ``monitors`` (innermost scope first, global last) before it is sent.

    ``reserve`` is the call's worst-case cost in USD (or a function computing it, called only if a monitor
    has a hard budget, since reading a request body is not free): monitors with a hard budget admit it only if it fits
    what is left of their budget (recorded spend and other calls' reservations counted) and hold it until
    ``settle``. Returns the ``Admission`` to ``settle`` once the call is done. If a monitor blocks, the
    innermost blocking one's ``on_block`` runs (once); if it recovered the monitor, the call is checked
    again and may go ahead. Otherwise ``sink.blocked`` is told and ``CircuitBreakerException`` raised.
    """
    ms = monitors if isinstance(monitors, tuple) else tuple(monitors)
    units = 0
    if reserve is not None:
        for monitor in ms:
            if monitor._hard:
                units = _units(reserve() if callable(reserve) else reserve)
                break
    result = _try_admit(ms, trace_id, units)
    if isinstance(result, Admission):
        return result
    admission = _resolve_block(ms, trace_id, result, lambda: _try_admit(ms, trace_id, units), units)
    assert isinstance(admission, Admission)
    return admission


def _units(usd: Any) -> int:
    if usd.__class__ is not float and (isinstance(usd, bool) or not isinstance(usd, (int, float))):
        return 0
    return usd_to_units(usd) if 0 < usd < math.inf else 0


def top_up(admission: Admission, usd: float | Callable[[], float]) -> None:
    """Reserve ``usd`` more for an admitted call in its hard-budget scopes (a lower layer that sees the
    request body learns its worst case only now). Raises ``CircuitBreakerException`` if it does not fit;
    then nothing more is held and the call must not be sent. No hard scope: nothing to do."""
    if admission._held is None or admission._settled:
        return
    units = _units(usd() if callable(usd) else usd)
    if not units:
        return
    ms = admission.monitors
    result = _try_top_up(admission, units)
    if result is not None:
        _resolve_block(ms, admission.trace_id, result, lambda: _try_top_up(admission, units), units)
    admission._units += units


def _try_top_up(admission: Admission, units: int) -> _Blocked | None:
    held = admission._held
    assert held is not None
    rid = admission._rid
    done: list[Monitor] = []
    for monitor, holds in zip(admission.monitors, held, strict=True):
        if not holds:
            continue
        with monitor._lock:
            blocked = monitor._reserve_locked(monitor._clock(), units, rid)
        monitor._drain()
        if blocked is not None:
            for inner in done:
                with inner._lock:
                    inner._store.release(units, rid)  # type: ignore[attr-defined]  # hard: a ReservingStore
            return monitor, blocked
        done.append(monitor)
    return None


def check(monitors: Sequence[Monitor], *, trace_id: str | None = None) -> None:
    """Raise ``CircuitBreakerException`` if a call made now would be blocked; count and record nothing.

    For boundaries where no call is sent yet but one should not start if it cannot finish, such as a
    LangGraph node: a limit exhausted during the previous node stops the next one before it runs. A
    HALF_OPEN monitor lets the check through (the next real call is its probe) unless a probe is in flight.
    """
    ms = monitors if isinstance(monitors, tuple) else tuple(monitors)
    result = _try_check(ms)
    if result is not None:
        _resolve_block(ms, trace_id, result, lambda: _try_check(ms))


def _try_check(monitors: tuple[Monitor, ...]) -> _Blocked | None:
    clock: Callable[[], float] | None = None
    now = 0.0
    for monitor in monitors:
        if monitor._clock is not clock:
            clock = monitor._clock
            now = clock()
        with monitor._lock:
            blocked = monitor._check_locked(now)
        monitor._drain()
        if blocked is not None:
            return monitor, blocked
    return None


def _resolve_block(monitors: tuple[Monitor, ...], trace_id: str | None, blocked: _Blocked,
                   retry: Callable[[], Admission | _Blocked | None], units: int = 0) -> Admission | None:
    hooked: set[int] = set()
    while True:
        monitor, (reason, threshold, current) = blocked
        hook = monitor._on_block
        # Each monitor's hook runs at most once per call, so a hook that cannot recover cannot loop.
        if hook is not None and id(monitor) not in hooked:
            hooked.add(id(monitor))
            _run_hook(hook, BlockEvent(monitor, monitor.scope, monitor.scope_id, reason, current, threshold,
                                       trace_id))
            result = retry()
            if result is None or isinstance(result, Admission):
                return result
            blocked = result
            continue
        monitor._note_blocked()
        reserved = remaining = None
        if monitor._hard and reason in _BUDGET_REASONS:
            reserved = units_to_usd(units)
            if threshold is not None and current is not None:
                remaining = max(0.0, units_to_usd(usd_to_units(threshold) - usd_to_units(current)))
        error = CircuitBreakerException(
            reason, threshold, current, scope=monitor.scope, scope_id=monitor.scope_id, trace_id=trace_id,
            state=monitor.snapshot(), monitor=monitor, reserved=reserved, remaining=remaining,
        )
        sink = monitor._sink
        if sink is not None:
            _sink_blocked(sink, error)
        raise error


def settle(admission: Admission, *, cost_usd: float, error: bool) -> None:
    """Record a finished call's cost and outcome in every monitor that admitted it (once per admission);
    a hard budget's reservation is released in the same step."""
    if admission._settled:
        logger.debug("agentwatch: admission settled twice (ignored)")
        return
    admission._settled = True
    cost = cost_usd
    if cost.__class__ is not float:
        cost = _clean_cost(cost)
    elif not (0.0 <= cost < math.inf):  # also false for NaN
        cost = _clean_cost(cost)
    error = bool(error)
    probes = admission._probes
    clock: Callable[[], float] | None = None
    item = (0.0, cost, error)
    held = admission._held
    if probes is None and held is None:
        for monitor in admission.monitors:
            if monitor._clock is not clock:  # scopes normally share one clock: read it once
                clock = monitor._clock
                item = (clock(), cost, error)
            # No lock: the store takes results lock-free and folds them in on its next (locked) read.
            monitor._submit(item)
        return
    for index, monitor in enumerate(admission.monitors):
        if monitor._clock is not clock:
            clock = monitor._clock
            item = (clock(), cost, error)
        probe = probes[index] if probes is not None else None
        if held is not None and held[index]:
            monitor._settle_reserved(item[0], cost, error, admission._units, admission._rid, probe)
        elif probe is None:
            monitor._submit(item)
        else:
            monitor._settle_probe(item[0], cost, error, probe)


def _reserved_of(store: WindowStore) -> float:
    reserved = getattr(store, "reserved", None)
    return float(reserved()) if callable(reserved) else 0.0


def _clean_cost(cost: Any) -> float:
    # A bad cost must not break the caller's LLM call; recording 0 keeps the windows consistent.
    if cost is None:
        return 0.0
    if isinstance(cost, bool) or not isinstance(cost, (int, float)):
        logger.warning("agentwatch: cost_usd %r is not a number (recorded as 0)", cost)
        return 0.0
    if not math.isfinite(cost) or cost < 0:
        logger.warning("agentwatch: cost_usd %r is not a finite, non-negative number (recorded as 0)", cost)
        return 0.0
    return float(cost)
