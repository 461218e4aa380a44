"""One scope's monitor: its limits, its breaker state, and how it applies the state machine's decisions.

``_breaker_states.decide`` says what a monitor in a state does with a call; the monitor observes (its own
state and windows, or the fleet's shared record), applies the decision (transitions, alerts, the probe slot)
and reports it. Each monitor has one short lock; no lock is held while user hooks or the sink run (reports
are queued under the lock and sent after it, in order), and no two monitor locks are ever held at once.

With a ``SharedBreakerStore`` (Redis, ``limits_backend``) the state machine is fleet-wide: the monitor's state
mirrors a shared record that its store reads in the same round trip as the windows, it publishes its own
transitions there, and follows everyone else's (see ``_redis_windows``). Only a store's verdict sends a call
off the common path, where the fleet is handled; the decision itself is the same function either way.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar, cast, overload

from ._breaker_contract import (
    OPERATOR_KILL,
    PAUSED_BY_OPERATOR,
    BlockEvent,
    BreakerSink,
    _hook,
    _number,
    _run_hook,
    _sink,
    _sink_alert,
    _sink_transition,
)
from ._breaker_states import (
    BUDGET_REASONS,
    CLOSED,
    HALF_OPEN,
    OPEN,
    PAUSED,
    Decision,
    Observation,
    Outcome,
    Step,
    Trip,
    decide,
)
from ._forking import fork_safe_lock
from ._windows import (
    BUDGET_PER_HOUR,
    LIMITS_BACKEND_UNREACHABLE,
    MAX_CALLS_PER_MINUTE,
    MAX_ERROR_RATE,
    NO_RECORD,
    SHARED_RECORD_TTL_S,
    LocalWindowStore,
    ProbeSlot,
    ReservingStore,
    SharedBreakerStore,
    SharedState,
    Violation,
    WindowStore,
)

__all__ = ["Monitor", "ALERT_COOLDOWN_S"]

ALERT_COOLDOWN_S: Final = 60.0

_TRANSITION: Final = 0
_ALERT: Final = 1

#: Transitions that are published only if the fleet's record is still what the monitor acted on: decisions
#: from a verdict that a newer transition elsewhere (a pause, a recovery) makes stale.
_CONDITIONAL: Final = frozenset({"triggered", "retrip", "recovered"})
#: ... and, made by the fleet's probe, only while this process still holds the probe slot.
_AFTER_PROBE: Final = frozenset({"retrip", "recovered"})

_T = TypeVar("_T")

#: A shared record's state as this module's constant: states are compared by identity (the hot path's test).
_STATE_OF: Final = {CLOSED: CLOSED, OPEN: OPEN, PAUSED: PAUSED, HALF_OPEN: HALF_OPEN}

#: Trips made by a limit of the monitor's own settings (not a kill, a failed probe, a trace's budget).
_LIMIT_TRIPS: Final = frozenset({BUDGET_PER_HOUR, MAX_ERROR_RATE, MAX_CALLS_PER_MINUTE})

_UPDATABLE: Final = frozenset(
    {"budget_per_hour", "max_error_rate", "max_calls_per_minute", "block_on_threshold", "hard_budget", "on_alert",
     "on_block", "sink", "name"}
)


class _Setting(Generic[_T]):
    """A monitor setting: read from its slot, assigned through ``Monitor.update`` (validated, under the lock)."""

    __slots__ = ("_slot", "_name")

    def __init__(self, slot: str) -> None:
        self._slot = slot
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, monitor: None, owner: type) -> _Setting[_T]: ...

    @overload
    def __get__(self, monitor: Monitor, owner: type) -> _T: ...

    def __get__(self, monitor: Monitor | None, owner: type) -> _Setting[_T] | _T:
        if monitor is None:
            return self
        return cast(_T, getattr(monitor, self._slot))

    def __set__(self, monitor: Monitor, value: _T) -> None:
        monitor.update(**{self._name: value})


class _Probe:
    """The HALF_OPEN probe slot of one monitor, held by exactly one admission."""

    __slots__ = ()


class Monitor:
    """Limits and breaker state of one scope ("global" or an agent).

    States: CLOSED (calls checked) → OPEN (all blocked) → PAUSED (blocked until the pause ends) →
    HALF_OPEN (one probe call; success → CLOSED, failure or violation → OPEN); what each state does with a
    call is ``_breaker_states.decide``. Every transition is sent to ``sink.transition`` exactly once, in order.
    """

    __slots__ = (
        "_scope", "_scope_id", "_name", "_budget", "_max_error_rate", "_max_calls", "_block", "_on_alert",
        "_on_block", "_sink", "_clock", "_store", "_lock", "_state", "_probe", "_fleet_probe", "_paused_until", "_trip",
        "_made_by", "_unpublished", "_confirmed_at", "_last_generation",
        "_blocked_calls", "_alert_last", "_pending", "_draining", "_evaluate", "_submit", "_fleet", "_hard",
        "_windows", "_pending_calls",
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
        # The windows' verdict alone (nothing counted, no state consulted), read when a probe settles: with a
        # shared store, its record is HALF_OPEN with this probe, so only the windows can say whether to close.
        self._windows: Callable[[float], Violation | None] = (
            self._fleet.windows if self._fleet is not None
            # Only a SharedBreakerStore's evaluate returns a record, and this store is not one.
            else cast(Callable[[float], Violation | None], lambda now: self._store.evaluate(now, False)))
        self._lock = fork_safe_lock(self)
        # Set while no limit applies (see ``_limits_changed_locked``): then an admission is only an append here.
        self._pending_calls: deque[float] | None = None
        self._state: str = CLOSED
        self._probe: _Probe | None = None
        #: The fleet's probe slot is held by another process (its record said so at this monitor's last look):
        #: reported as ``probe_in_flight`` as this process's own probe is.
        self._fleet_probe = False
        self._paused_until: float | None = None
        self._trip: Trip | None = None
        #: The transition that made the state OPEN or PAUSED (event, reason, threshold, current): put back into the
        #: fleet's record if that is lost while this monitor still holds the state.
        self._made_by: tuple[str, str, float | None, float | None] | None = None
        #: An operator's transition (a kill, a pause) made while the fleet's store did not answer: the generation of the
        #: fleet's record it came after. The record gets it once the store answers again if it is still that one (or
        #: is gone); a newer one (a resume made elsewhere meanwhile) is followed instead.
        self._unpublished: str | None = None
        #: When the fleet's record last showed this monitor's OPEN or PAUSED state (or took it from this monitor);
        #: None: the state is not the record's (a trip from the per-process fallback windows during an outage).
        #: Only such a state, seen within ``SHARED_RECORD_TTL_S``, is put back into a record that is gone: the
        #: record cannot have expired since, so it was lost, not lifted and then expired.
        self._confirmed_at: float | None = None
        #: The generation of the fleet's record this monitor last knew (kept when the store forgets it in an outage).
        self._last_generation = ""
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
            self._limits_changed_locked()

    def _limits_changed_locked(self) -> None:
        store = self._store
        store.set_limits(self._budget, self._max_error_rate, self._max_calls)
        # No limit to check and a store that can take admissions lock-free (a local one): a CLOSED monitor
        # admits every call, so ``admit`` only notes its time there (``LocalWindowStore.pending_calls``).
        lazy = getattr(store, "unlimited", False) and not self._hard and self._fleet is None
        self._pending_calls = getattr(store, "pending_calls", None) if lazy else None

    def _catch_up(self) -> None:
        """Count what lock-free admissions and results left pending (called every ``CATCH_UP_EVERY`` of them)."""
        with self._lock:
            self._store.catch_up()  # type: ignore[attr-defined]  # only a store with pending_calls gets here

    @property
    def scope(self) -> str:
        return self._scope

    @property
    def scope_id(self) -> str:
        return self._scope_id

    # Settings: read from their slot, changed through ``update`` (validated, applied under the lock).
    name: _Setting[str] = _Setting("_name")
    budget_per_hour: _Setting[float | None] = _Setting("_budget")
    max_error_rate: _Setting[float | None] = _Setting("_max_error_rate")
    max_calls_per_minute: _Setting[int | None] = _Setting("_max_calls")
    block_on_threshold: _Setting[bool] = _Setting("_block")
    hard_budget: _Setting[bool] = _Setting("_hard")
    on_alert: _Setting[Callable[[dict[str, Any]], Any] | None] = _Setting("_on_alert")
    on_block: _Setting[Callable[[BlockEvent], Any] | None] = _Setting("_on_block")
    sink: _Setting[BreakerSink | None] = _Setting("_sink")

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
        self._increase_budget(_number("usd", usd), None)

    def _increase_budget(self, usd: float, grant: str | None) -> None:
        """``increase_budget``; ``grant`` names an operator's grant that every process of a fleet applies (remote
        control): a store shared by the fleet raises its budget for it once, not once per process."""
        with self._lock:
            spent = self._store.spend(self._clock())
            once = getattr(self._store, "grant_once", None) if grant is not None else None
            if once is not None:
                once(grant)
            self._budget = (spent if self._budget is None else self._budget) + usd
            self._limits_changed_locked()
            self._transition_locked("budget_increased", CLOSED, "increase_budget", self._budget, spent)
        self._drain()

    def kill(self, reason: str = OPERATOR_KILL) -> None:
        """Block every call (OPEN, with ``reason``) until ``resume()``: an operator's stop switch."""
        with self._lock:
            self._trip = (reason, None, None)
            self._transition_locked("killed", OPEN, reason, None, None)
        self._drain()

    def resume(self) -> None:
        """Close at once, ending a pause, a kill or a trip; recorded calls and limits stay as they are."""
        with self._lock:
            if self._state is not CLOSED:
                self._transition_locked("resumed", CLOSED, "resume", None, None)
        self._drain()

    def close_if_within_limits(self, reason: str) -> bool:
        """Close (``resumed``, with ``reason``) a monitor that a limit tripped, if that limit was lifted (raised
        above the threshold it tripped at, removed, or no longer blocking) and no limit would block a call now.
        For an operator's limit change (``update`` itself leaves the state alone): raising a limit means "let it
        run", as a budget increase does. A kill, a pause, a failed probe keep their state, and so does a trip whose
        limit is as it was (a process applying the operator's limits that tripped its fleet, whose windows have
        cleared since: that OPEN moves on by a pause and its probe, as any other). Returns whether it closed."""
        with self._lock:
            trip = self._trip
            if (self._state is not OPEN or trip is None or trip[0] not in _LIMIT_TRIPS
                    or not self._trip_limit_lifted_locked(trip)):
                return False
            verdict = self._windows(self._clock())
            if verdict is not None and (verdict[0] == LIMITS_BACKEND_UNREACHABLE or self._block
                                        or (self._hard and verdict[0] in BUDGET_REASONS)):
                return False
            self._transition_locked("resumed", CLOSED, reason, None, None)
        self._drain()
        return True

    def _trip_limit_lifted_locked(self, trip: Trip) -> bool:
        """Whether the limit that made ``trip`` was raised above the threshold it tripped at, removed, or no longer
        blocks."""
        reason, threshold, _ = trip
        limit = (self._budget if reason == BUDGET_PER_HOUR else
                 self._max_error_rate if reason == MAX_ERROR_RATE else self._max_calls)
        blocks = self._block or (self._hard and reason in BUDGET_REASONS)
        return limit is None or threshold is None or limit > threshold or not blocks

    def reset_windows(self) -> None:
        """Forget all recorded calls, costs and errors and close at once (emergency reset)."""
        with self._lock:
            self._store.clear()
            self._transition_locked("reset", CLOSED, "reset_windows", None, None)
        self._drain()

    def reset(self) -> None:
        """``reset_windows()``, by the name the product docs give it ("Recovery: pause() / increase_budget() /
        reset()")."""
        self.reset_windows()

    # ---- introspection ----------------------------------------------------------------------------

    def idle(self) -> bool:
        """CLOSED, with nothing in its windows and nothing reserved: a monitor made anew with the same limits would
        decide the same. A store shared by a fleet keeps its windows itself, so only the state is looked at."""
        if self._state is not CLOSED:  # not ``state``: that may run hooks, and the caller holds its own lock
            return False
        store = self._store
        if not isinstance(store, LocalWindowStore):
            return True
        with self._lock:
            now = self._clock()
            return (store.spend(now) <= 0 and store.calls(now) == 0 and store.outcomes(now) == (0, 0)
                    and _reserved_of(store) <= 0)

    def report(self) -> tuple[str, str | None, float | None, float | None]:
        """State, what tripped it, budget and the hour's spend, for the control poll, which reports many monitors
        every second: the spend only from an in-process store (a store shared by a fleet costs a round trip per
        monitor, and holds the fleet's spend, not this process's)."""
        state = self.state
        trip = self._trip
        spent = None
        if isinstance(self._store, LocalWindowStore):
            with self._lock:
                spent = self._store.spend(self._clock())
        return state, trip[0] if trip else None, self._budget, spent

    def limits(self) -> tuple[Any, ...]:
        """The settings that decide its admissions, to tell whether anything (a grant, an operator) changed them."""
        return (self._budget, self._max_error_rate, self._max_calls, self._block, self._hard)

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
                "probe_in_flight": self._probe is not None or self._fleet_probe,
            }
        self._drain()
        return snap

    # ---- deciding: all *_locked methods run with self._lock held -----------------------------------

    def _decide_locked(self, now: float, step: Step, verdict: Violation | SharedState | None) -> Decision:
        """A call off the common path (ADMIT or CHECK), decided and applied: an admitted call is counted, and
        the probe holds ``_probe``. ``verdict`` is the store's, read for a CLOSED monitor (else None)."""
        seen = self._observe_locked(now, step, verdict)
        decision = decide(step, seen, self._block, self._hard)
        if seen.probe is ProbeSlot.GRANTED:
            self._probe = _Probe()  # this admission holds the slot (a retrip below gives it back)
        self._apply_locked(now, decision)
        return decision

    def _admit_locked(self, now: float, verdict: Violation | SharedState | None) -> tuple[Trip | None, _Probe | None]:
        """An admission off the common path: what blocks it, or (admitted) the probe slot if it is the probe."""
        decision = self._decide_locked(now, Step.ADMIT, verdict)
        return decision.blocked_by, self._probe if decision.outcome is Outcome.PROBE else None

    def _observe_locked(self, now: float, step: Step, verdict: Violation | SharedState | None) -> Observation:
        """What this monitor sees for the call: the fleet's record where the store shares one and answers,
        else its own state, probe slot and windows."""
        fleet = self._fleet
        self._fleet_probe = False
        if fleet is not None and self._state is not CLOSED:
            # Only the fleet's record says whether the state still holds: one more round trip. None: Redis is
            # unreachable and limits_fallback="local", so this process's own state decides.
            verdict = fleet.consult(now, step is Step.ADMIT)
        if isinstance(verdict, SharedState):
            assert fleet is not None  # (only a shared store returns its record)
            return self._mirror_locked(now, fleet, verdict, counted=step is Step.ADMIT)
        self._maybe_half_open_locked(now)
        state = self._state
        if state is HALF_OPEN and step is Step.ADMIT and self._probe is None and verdict is None:
            # The probe slot is free: this admission takes it; its windows are checked and it is counted.
            verdict = self._evaluate(now, True)
            if isinstance(verdict, SharedState):  # a shared store that answers again: its record rules
                assert fleet is not None
                return self._mirror_locked(now, fleet, verdict, counted=True)
            return Observation(state, verdict, ProbeSlot.GRANTED, self._blocked_by())
        return Observation(state, verdict, ProbeSlot.HELD if self._probe is not None else ProbeSlot.FREE,
                           self._blocked_by())

    def _mirror_locked(self, now: float, fleet: SharedBreakerStore, shared: SharedState, *,
                       counted: bool = False) -> Observation:
        """Make this monitor's state the fleet's record (each move reported, marked ``fleet_sync``), and see
        the call as the record does: its state, probe slot and windows' verdict. ``counted``: the round trip that
        read the record was an admission, which counted the call if the record let it through."""
        new = shared.generation != fleet.generation
        fleet.generation = self._last_generation = shared.generation
        unpublished, self._unpublished = self._unpublished, None
        if (self._state is OPEN or self._state is PAUSED) and self._puts_back_locked(now, shared, unpublished):
            # The record is older than this state (a kill or a pause made while the store did not answer), or lost
            # (not recovered: no resume, pause or probe made it CLOSED). Following it would end a kill or a trip
            # without anyone lifting it; this monitor puts its state in the fleet's record instead.
            restored = self._restore_record_locked(now, fleet)
            # The admission that read the record is undone first, whoever wins the race to put it back.
            if counted and shared.verdict is None and (shared.state is CLOSED or shared.probe is ProbeSlot.GRANTED):
                self._store.uncount_call(now)  # the admission counted a call that this state blocks
            if shared.probe is ProbeSlot.GRANTED and restored is not True:
                fleet.release_probe()  # taken by the admission; a publish that ran freed it
            if isinstance(restored, SharedState) and restored.generation != NO_RECORD:
                return self._mirror_locked(now, fleet, restored)  # another process put it back first
            if restored is False and unpublished is not None:
                self._unpublished = unpublished  # still unreachable: tried again next time
            return Observation(self._state, None, ProbeSlot.FREE, self._blocked_by())
        target = _STATE_OF.get(shared.state, CLOSED)
        event, reason = shared.event or "fleet", shared.reason or "fleet_state"
        if target is not CLOSED:
            self._trip = shared.trip or self._trip or (PAUSED_BY_OPERATOR, None, None)
        if target is CLOSED or target is OPEN:
            if self._state is not target:
                self._transition_locked(event, target, reason, shared.threshold, shared.current, follow=True)
        else:  # PAUSED, or HALF_OPEN: a pause that has ended on the shared clock
            if new or (self._state is not PAUSED and self._state is not HALF_OPEN):
                self._transition_locked(event, PAUSED, reason, shared.threshold, shared.current, follow=True)
            if self._state is PAUSED:  # the shared clock says how long is left; HALF_OPEN: the move is now
                self._paused_until = now + shared.remaining
                self._maybe_half_open_locked(now)
        if target is not CLOSED:
            self._confirmed_at = now
        self._fleet_probe = shared.probe is ProbeSlot.HELD and self._probe is None
        return Observation(target, shared.verdict, shared.probe, self._blocked_by())

    def _puts_back_locked(self, now: float, shared: SharedState, unpublished: str | None) -> bool:
        """Whether this monitor's OPEN or PAUSED state goes into the fleet's record rather than following ``shared``."""
        if unpublished is not None:  # an operator's transition newer than the record it came after, or than none
            return shared.generation == unpublished or shared.generation == NO_RECORD
        confirmed = self._confirmed_at
        return (shared.generation == NO_RECORD and confirmed is not None
                and now - confirmed <= SHARED_RECORD_TTL_S)

    def _restore_record_locked(self, now: float, fleet: SharedBreakerStore) -> SharedState | bool:
        """Publish this monitor's OPEN or PAUSED state (what is left of a pause) as the fleet's record, only if the
        record is still the generation the monitor just read (the first process to do it wins, the others follow)."""
        event, reason, threshold, current = self._made_by or ("restored", self._blocked_by()[0], None, None)
        left = 0.0
        if self._state is PAUSED and self._paused_until is not None:
            left = max(0.0, self._paused_until - now)
        published = self._publish_locked(fleet, event, self._state, reason, threshold, current, pause_s=left,
                                         if_generation=True)
        if published is True:
            self._confirmed_at = now
            self._last_generation = fleet.generation
        return published

    def _apply_locked(self, now: float, decision: Decision) -> None:
        transition = decision.transition
        if transition is not None:
            if transition.to_state is OPEN:
                self._trip = transition.cause
            elif transition.event == "recovered":  # a probe succeeded: the rates before it are no evidence any more
                forget = getattr(self._store, "forget_rates", None)  # optional: a replacement store may lack it
                if forget is not None:
                    forget()
            self._transition_locked(transition.event, transition.to_state, *transition.cause)
        if decision.alert is not None:
            self._alert_locked(now, decision.alert)  # after the transition: an alert reports the new state
        if decision.count:
            self._store.count_call(now)  # a violated limit that only alerts: the call goes ahead, so it counts
            if decision.alert is not None:
                self._alert_other_limits_locked(now, decision.alert[0])

    def _alert_other_limits_locked(self, now: float, alerted: str) -> None:
        """Alert-only: the store's verdict names the first limit a call is over; every other one it is over is
        alerted too (each with its own cool-down), else a loop went unreported while the budget was over. In-process
        windows only: a fleet's store answers with its first verdict, and more would cost round trips per call."""
        store = self._store
        if isinstance(store, LocalWindowStore):
            for violation in store.violations(now):
                if violation[0] != alerted:
                    self._alert_locked(now, violation)

    def _blocked_by(self) -> Trip:
        return self._trip if self._trip is not None else (PAUSED_BY_OPERATOR, None, None)

    def _maybe_half_open_locked(self, now: float) -> None:
        # Lazy: nothing runs when a pause ends; the first look afterwards makes (and reports) the move.
        if self._state is PAUSED and self._paused_until is not None and now >= self._paused_until:
            self._transition_locked("half_open", HALF_OPEN, "pause_elapsed", None, None)

    # ---- hard budgets -------------------------------------------------------------------------------

    def _refused_locked(self, now: float, refused: Violation, probe: _Probe | None) -> None:
        """A hard budget's reservation did not fit an admitted call: it is blocked after all, without tripping
        (that depends on the calls in flight, not on a limit being spent). Alerted; the admission is undone."""
        self._alert_locked(now, refused)
        self._store.uncount_call(now)
        if probe is not None:
            self._free_probe_locked()

    def _reserve_locked(self, now: float, units: int, rid: int) -> Violation | None:
        """Hard budget: reserve ``units`` for an admitted call, or the ``HARD_BUDGET`` verdict (alerted)."""
        held = self._store.reserve(now, units, rid)  # type: ignore[attr-defined]  # hard: a ReservingStore
        if held is not None:
            self._alert_locked(now, held)
        return held

    # ---- settlement and rollback --------------------------------------------------------------------

    def _settle_probe(self, now: float, cost_usd: float, error: bool, probe: _Probe,
                      held: tuple[int, int] | None = None) -> None:
        """Settlement of this monitor's probe call: record it, then close or open again."""
        if held is None:
            self._store.record(now, cost_usd, error)
        with self._lock:
            if held is not None:
                self._store.settle_reserved(now, cost_usd, error, held[0], held[1])  # type: ignore[attr-defined]  # hard: a ReservingStore
            if probe is self._probe:  # else the state moved on meanwhile (pause, reset, ...): it decides nothing
                seen = Observation(self._state, None if error else self._windows(now), ProbeSlot.GRANTED,
                                   self._blocked_by(), failed=error)
                self._apply_locked(now, decide(Step.PROBE_SETTLED, seen, self._block, self._hard))
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
                self._free_probe_locked()

    def _free_probe_locked(self) -> None:
        self._probe = None  # free the slot for the next caller
        if self._fleet is not None:
            self._fleet.release_probe()  # ... in every process

    # ---- transitions and reports --------------------------------------------------------------------

    def _transition_locked(self, event: str, to_state: str, reason: str, threshold: float | None,
                           current: float | None, *, follow: bool = False) -> None:
        fleet = self._fleet
        published: SharedState | bool = False
        if fleet is not None and not follow and event != "half_open":  # half_open: the clock's, not ours
            if fleet.generation:
                self._last_generation = fleet.generation
            published = self._publish_locked(
                fleet, event, to_state, reason, threshold, current,
                pause_s=current if to_state is PAUSED and current is not None else 0.0,
                if_generation=event in _CONDITIONAL, if_probe=event in _AFTER_PROBE and self._probe is not None)
            if isinstance(published, SharedState):
                # Another process's newer transition made this one stale: do what the fleet did instead.
                self._mirror_locked(self._clock(), fleet, published)
                return
            # True: the fleet's now; False: Redis unreachable, so it is this process's alone for now (an operator's
            # kill or pause is published once Redis answers again, if no one changed the record meanwhile: see
            # ``_mirror_locked``).
            if published is True:
                self._unpublished = None
                self._last_generation = fleet.generation
            elif event not in _CONDITIONAL and self._unpublished is None:
                self._unpublished = self._last_generation
        if fleet is not None:
            # A state published or followed is the record's; one made here alone is not (see ``_confirmed_at``).
            self._confirmed_at = self._clock() if follow or published is True else None
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
        if to_state is OPEN or to_state is PAUSED:
            self._made_by = (event, reason, threshold, current)
        self._probe = None  # any transition ends a probe in flight: its settle must not decide anything
        self._fleet_probe = False
        if to_state is CLOSED:
            self._trip = None
            self._paused_until = None
        elif to_state is OPEN:
            self._paused_until = None
        self._pending.append((_TRANSITION, record))

    def _publish_locked(self, fleet: SharedBreakerStore, event: str, to_state: str, reason: str,
                        threshold: float | None, current: float | None, *, pause_s: float, if_generation: bool,
                        if_probe: bool = False) -> SharedState | bool:
        """Put a transition of this monitor (and, unless it closes, what blocks its calls) into the fleet's record."""
        return fleet.publish(event, to_state, reason, threshold, current,
                             None if to_state is CLOSED else self._blocked_by(), pause_s=pause_s,
                             if_generation=if_generation, if_probe=if_probe)

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
            _run_hook(hook, dict(payload), "on_alert")


def _reserved_of(store: WindowStore) -> float:
    reserved = getattr(store, "reserved", None)
    return float(reserved()) if callable(reserved) else 0.0
