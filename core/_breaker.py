"""The in-process circuit breaker: a call is checked against every enclosing scope's monitor before it is
sent (``admit``) and its cost and outcome recorded afterwards (``settle``).

Admission walks the scopes innermost first; a monitor whose store admits the call (the common path: CLOSED,
nothing violated) costs one locked ``evaluate``. Anything else is the monitor's state machine
(``_breaker_states.decide``, applied by ``_monitor.Monitor``). When a scope blocks, the scopes inside it that
counted the call undo that, the blocking monitor's ``on_block`` may recover it, and otherwise
``CircuitBreakerException`` is raised.

Hard budgets (``hard_budget=True``): once a monitor admits a call, it also reserves the call's worst-case cost
in its store (``ReservingStore.reserve``: checked against spend plus every reservation, atomic in Redis),
under the same lock; ``settle`` records the cost and releases the reservation in one step, ``top_up`` adds
to it when a lower layer learns the request. A reservation that does not fit blocks the call without
tripping: it depends on the calls in flight, not on a limit being spent.

This module is also the breaker's public face inside the package: it re-exports the states, reasons and
types that callers import from ``agentwatch._breaker``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, Final

from ._blocks_met import note_block_met
from ._breaker_contract import (
    OPERATOR_KILL,
    PAUSED_BY_OPERATOR,
    PROBE_FAILED,
    BlockEvent,
    BreakerSink,
    CircuitBreakerException,
    _run_hook,
    _sink_blocked,
    _sink_recover,
)
from ._breaker_states import (
    BUDGET_REASONS,
    CLOSED,
    EVENTS,
    HALF_OPEN,
    OPEN,
    PAUSED,
    STATES,
    Step,
    Trip,
)
from ._monitor import ALERT_COOLDOWN_S, Monitor, _Probe
from ._safe import logger
from ._windows import (
    BUDGET_PER_HOUR,
    HARD_BUDGET,
    LIMITS_BACKEND_UNREACHABLE,
    MAX_CALLS_PER_MINUTE,
    MAX_ERROR_RATE,
    TRACE_BUDGET,
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
    "admit_call",
    "check",
    "settle",
    "settle_call",
    "top_up",
]

#: Reservation ids: unique per admission in this process (a shared store prefixes its own random token).
_rids: Final = itertools.count(1)
#: Admissions a monitor without limits takes lock-free before it counts them (with the results recorded
#: meanwhile) under its lock: bounds that backlog, and the pause counting it makes (a few µs).
CATCH_UP_EVERY: Final = 64
_INF: Final = math.inf


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


_Blocked = tuple[Monitor, Trip]


def _try_admit(monitors: tuple[Monitor, ...], trace_id: str | None, units: int = 0) -> Admission | _Blocked | None:
    """One pass over the scopes: the Admission, or the first monitor that blocks (and why). None: admitted,
    and no monitor holds anything for the call (no probe, no reservation), so ``monitors`` is all a settlement
    needs (the common call, which then allocates nothing here)."""
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
        pending = monitor._pending_calls
        if pending is not None and monitor._state is CLOSED:  # no limit: admitted, counted later
            pending.append(now)
            if len(pending) >= CATCH_UP_EVERY:
                monitor._catch_up()
            index += 1
            continue
        with monitor._lock:
            if monitor._state is CLOSED:
                verdict = monitor._evaluate(now, True)
                if verdict is None:  # the common path: admitted and counted, nothing to report
                    if not monitor._hard:
                        index += 1
                        continue
                    blocked = probe = None
                else:
                    blocked, probe = monitor._admit_locked(now, verdict)
            else:
                blocked, probe = monitor._admit_locked(now, None)
            if blocked is None and monitor._hard:
                # Hard budget: the admitted call also needs its worst case to fit, checked and reserved in the
                # same step (atomic in a shared store), so concurrent calls cannot all take the last dollar.
                if not rid:
                    rid = next(_rids)
                blocked = monitor._store.reserve(now, units, rid)  # type: ignore[attr-defined]  # hard: reserving
                if blocked is None:
                    if held is None:
                        held = [False] * len(monitors)
                    held[index] = True
                else:
                    monitor._refused_locked(now, blocked, probe)
                    probe = None
        monitor._drain()
        if blocked is not None:
            # Blocked here: the call never happens, so the scopes inside that counted it undo that.
            for k in range(index):
                monitors[k]._rollback(probes[k] if probes is not None else None,
                                      (units, rid) if held is not None and held[k] else None)
            return monitor, blocked
        if probe is not None:
            if probes is None:
                probes = [None] * len(monitors)
            probes[index] = probe
        index += 1
    if probes is None and held is None:
        return None
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
    admission = admit_call(ms, trace_id, reserve)
    return admission if admission.__class__ is Admission else Admission(ms, None, trace_id)  # type: ignore[return-value]


def admit_call(monitors: tuple[Monitor, ...], trace_id: str | None = None,
               reserve: float | Callable[[], float] | None = None,
               kind: str = "llm") -> Admission | tuple[Monitor, ...]:
    """``admit`` for the LLM-call path: the common admission (no monitor holds a probe slot or a reservation
    for the call) is answered with ``monitors`` itself rather than an ``Admission``; ``settle_call`` takes
    either. Saves an object per call. ``kind``: the span's kind ("llm", "embedding"), named in a block's message."""
    if len(monitors) == 1:
        # The global monitor alone (no agent scope, no run budget): the common call, without the loop's
        # bookkeeping. A CLOSED monitor whose windows admit it, as in ``_try_admit``; anything else there.
        monitor = monitors[0]
        now = monitor._clock()
        pending = monitor._pending_calls
        if pending is not None and monitor._state is CLOSED:
            # No limit set (plain ``init()``): nothing can block, so the admission is only noted, lock-free;
            # it is counted with the others before anything reads the windows. A monitor paused or killed
            # meanwhile is seen by the next call, as if this one had been admitted just before.
            pending.append(now)
            if len(pending) >= CATCH_UP_EVERY:
                monitor._catch_up()
            return monitors
        with monitor._lock:
            if monitor._state is CLOSED and not monitor._hard:
                verdict = monitor._evaluate(now, True)
                if verdict is None:
                    return monitors
                blocked, probe = monitor._admit_locked(now, verdict)
            else:
                verdict = None
        if verdict is not None:  # a violated limit (or the fleet's record) was decided on: report it
            monitor._drain()
            if blocked is not None:
                return _admitted_after_block(monitors, trace_id, (monitor, blocked), 0, kind)
            if probe is not None:  # the fleet's record was HALF_OPEN and this call took its probe slot
                return Admission(monitors, [probe], trace_id)
            return monitors
    units = 0
    if reserve is not None:
        for monitor in monitors:
            if monitor._hard:
                units = _units(reserve() if callable(reserve) else reserve)
                break
    result = _try_admit(monitors, trace_id, units)
    if result is None:
        return monitors
    if result.__class__ is Admission:
        return result  # type: ignore[return-value]
    return _admitted_after_block(monitors, trace_id, result, units, kind)  # type: ignore[arg-type]


def _admitted_after_block(monitors: tuple[Monitor, ...], trace_id: str | None, blocked: _Blocked,
                          units: int, kind: str) -> Admission | tuple[Monitor, ...]:
    """A monitor blocked the call: its ``on_block`` hook may recover it and the call go ahead after all,
    else ``CircuitBreakerException`` is raised."""
    admission = _resolve_block(monitors, trace_id, blocked, lambda: _try_admit(monitors, trace_id, units), units,
                               kind)
    return monitors if admission is None else admission


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


def check(monitors: Sequence[Monitor], *, trace_id: str | None = None, next_call: bool = False) -> None:
    """Raise ``CircuitBreakerException`` if a limit is over now; count and record nothing.

    For boundaries where no call is sent yet but one should not start if it cannot finish, such as a
    LangGraph node: a limit exhausted during the previous node stops the next one before it runs. A
    HALF_OPEN monitor lets the check through (the next real call is its probe) unless a probe is in flight.
    A calls-per-minute limit reached but not passed lets a boundary through: the work it starts may make no call.

    ``next_call``: the program asks about the call it is about to make (``agentwatch.check_limits()``), so N calls
    of a limit N in the minute raise too, as call N+1 would be blocked; that refusal trips nothing, asks no
    ``on_block`` and alerts no one (nothing was attempted).
    """
    ms = monitors if isinstance(monitors, tuple) else tuple(monitors)
    result = _try_check(ms)
    if result is not None:
        _resolve_block(ms, trace_id, result, lambda: _try_check(ms))
    if next_call:
        over = _next_call_over_rate(ms)
        if over is not None:
            monitor, (reason, threshold, current) = over
            raise CircuitBreakerException(reason, threshold, current, scope=monitor.scope, scope_id=monitor.scope_id,
                                          trace_id=trace_id, state=monitor.snapshot(), monitor=monitor)


def _try_check(monitors: tuple[Monitor, ...]) -> _Blocked | None:
    clock: Callable[[], float] | None = None
    now = 0.0
    for monitor in monitors:
        if monitor._pending_calls is not None and monitor._state is CLOSED:
            continue  # no limit (as in admit_call): nothing can block, nothing to read
        if monitor._clock is not clock:
            clock = monitor._clock
            now = clock()
        with monitor._lock:
            if monitor._state is CLOSED:
                verdict = monitor._evaluate(now, False)
                blocked = None if verdict is None else monitor._decide_locked(now, Step.CHECK, verdict).blocked_by
            else:
                blocked = monitor._decide_locked(now, Step.CHECK, None).blocked_by
        monitor._drain()
        if blocked is not None:
            return monitor, blocked
    return None


def _next_call_over_rate(monitors: tuple[Monitor, ...]) -> _Blocked | None:
    """The first blocking monitor whose calls-per-minute limit the next call would pass (N calls of a limit N in the
    minute: it would be call N+1). The windows' plain look, as a boundary has it, lets N recorded calls through."""
    for monitor in monitors:
        limit = monitor._max_calls
        if limit is None or not monitor._block or monitor._state is not CLOSED:
            continue
        with monitor._lock:
            calls = monitor._store.calls(monitor._clock())
        if calls >= limit:
            return monitor, (MAX_CALLS_PER_MINUTE, limit, calls + 1)
    return None


def _resolve_block(monitors: tuple[Monitor, ...], trace_id: str | None, blocked: _Blocked,
                   retry: Callable[[], Admission | _Blocked | None], units: int = 0,
                   kind: str = "llm") -> Admission | None:
    asked: set[tuple[int, bool]] = set()
    while True:
        monitor, (reason, threshold, current) = blocked
        if _ask_to_recover(monitor, asked, BlockEvent(monitor, monitor.scope, monitor.scope_id, reason, current,
                                                      threshold, trace_id)):
            result = retry()
            if result is None or isinstance(result, Admission):
                return result
            blocked = result
            continue
        monitor._note_blocked()
        reserved = remaining = None
        if monitor._hard and reason in BUDGET_REASONS:
            reserved = units_to_usd(units)
            if threshold is not None and current is not None:
                remaining = max(0.0, units_to_usd(usd_to_units(threshold) - usd_to_units(current)))
        error = CircuitBreakerException(
            reason, threshold, current, scope=monitor.scope, scope_id=monitor.scope_id, trace_id=trace_id,
            state=monitor.snapshot(), monitor=monitor, reserved=reserved, remaining=remaining,
            what="embedding call" if kind == "embedding" else "LLM call",
        )
        sink = monitor._sink
        if sink is not None:
            _sink_blocked(sink, error)
        note_block_met(error)
        raise error


def _ask_to_recover(monitor: Monitor, asked: set[tuple[int, bool]], event: BlockEvent) -> bool:
    """Ask the blocking monitor's ``on_block``, then the plugins (its sink's ``recover``: ``agentwatch_before_block``),
    to recover it; each at most once per call, so that a hook that cannot recover cannot loop. True if one was asked
    (the call is then checked again)."""
    hook = monitor._on_block
    if hook is not None and (id(monitor), False) not in asked:
        asked.add((id(monitor), False))
        _run_hook(hook, event, "on_block")
        return True
    recover = getattr(monitor._sink, "recover", None)
    if recover is not None and (id(monitor), True) not in asked:
        asked.add((id(monitor), True))
        return _sink_recover(recover, event)
    return False


def settle_call(admission: Admission | tuple[Monitor, ...], cost_usd: float, error: bool) -> None:
    """``settle`` what ``admit_call`` returned: an ``Admission``, or the monitors of a plain admission (each
    records the cost and outcome lock-free; the caller settles once, as ``LLMCall.end`` does)."""
    if not isinstance(admission, tuple):
        settle(admission, cost_usd=cost_usd, error=error)
        return
    cost = cost_usd
    if cost.__class__ is not float or not 0.0 <= cost < _INF:  # also catches NaN
        cost = _clean_cost(cost)
    if len(admission) == 1:  # the global monitor alone
        monitor = admission[0]
        monitor._submit((monitor._clock(), cost, error))
        return
    clock: Callable[[], float] | None = None
    item = (0.0, cost, error)
    for monitor in admission:
        if monitor._clock is not clock:  # scopes normally share one clock: read it once
            clock = monitor._clock
            item = (clock(), cost, error)
        monitor._submit(item)


def withdraw(admission: Admission | tuple[Monitor, ...]) -> None:
    """Undo an admission whose call was not sent after all (a check after AgentWatch's refused it), instead of
    settling it: each monitor uncounts the call and frees what it held for it (reservation, probe slot)."""
    if not isinstance(admission, Admission):
        for monitor in admission:
            monitor._rollback(None)
        return
    if admission._settled:
        return
    admission._settled = True
    probes, held = admission._probes, admission._held
    for index, monitor in enumerate(admission.monitors):
        monitor._rollback(probes[index] if probes is not None else None,
                          (admission._units, admission._rid) if held is not None and held[index] else None)


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
