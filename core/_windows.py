"""Rolling windows for the circuit breaker: running sums with eviction, O(1) amortised per call.

The breaker talks to its windows only through the ``WindowStore`` protocol, so a shared store (e.g. Redis,
for fleet-wide limits) can replace ``LocalWindowStore``: ``evaluate(now, count_call=True)`` is the one
operation that must be atomic (check every limit and count the call in one step). A store that also
shares the breaker's state machine between processes implements ``SharedBreakerStore`` on top.
"""

from __future__ import annotations

import math
from collections import deque
from enum import IntEnum
from typing import Any, Final, Protocol, runtime_checkable

from ._records import FrozenRecord, set_field

__all__ = [
    "WindowStore",
    "SharedBreakerStore",
    "ReservingStore",
    "SharedState",
    "NO_RECORD",
    "SHARED_RECORD_TTL_S",
    "LocalWindowStore",
    "Violation",
    "SPEND_WINDOW_S",
    "ERROR_WINDOW_S",
    "CALLS_WINDOW_S",
    "ERROR_RATE_MIN_CALLS",
    "BUCKETS_PER_WINDOW",
    "BUDGET_PER_HOUR",
    "MAX_ERROR_RATE",
    "MAX_CALLS_PER_MINUTE",
    "LIMITS_BACKEND_UNREACHABLE",
    "HARD_BUDGET",
    "TRACE_BUDGET",
    "reservation_violation",
    "UNREACHABLE_VERDICT",
    "ProbeSlot",
    "usd_to_units",
    "units_to_usd",
]

SPEND_WINDOW_S: Final = 3600.0
ERROR_WINDOW_S: Final = 300.0
CALLS_WINDOW_S: Final = 60.0
#: The error rate is judged only once the window holds this many completed calls.
ERROR_RATE_MIN_CALLS: Final = 10

BUDGET_PER_HOUR: Final = "budget_per_hour"
MAX_ERROR_RATE: Final = "max_error_rate"
MAX_CALLS_PER_MINUTE: Final = "max_calls_per_minute"
#: Reason of calls blocked because a shared store cannot be reached and ``limits_fallback="block"``.
LIMITS_BACKEND_UNREACHABLE: Final = "limits_backend_unreachable"
#: Reason of a call blocked by a hard budget: its worst-case cost (reserved before sending) does not fit what
#: is left of the budget once recorded spend and the reservations of calls in flight are counted.
HARD_BUDGET: Final = "hard_budget"
#: Reason of a call blocked by a per-run budget (``trace(budget=...)``, ``thread_budget``): not time-windowed.
TRACE_BUDGET: Final = "trace_budget"
#: (reason, threshold, current) of a violated limit.
Violation = tuple[str, float, float]
#: The verdict that is not a violated limit (no threshold, no current value).
UNREACHABLE_VERDICT: Final[Violation] = (LIMITS_BACKEND_UNREACHABLE, None, None)  # type: ignore[assignment]



class ProbeSlot(IntEnum):
    """A HALF_OPEN monitor's probe slot as one admission finds it: free, held by another admission, or taken
    by this one (the values are what the fleet's admission script returns)."""

    FREE = 0
    HELD = 1
    GRANTED = 2


# Spend is summed in integer pico-dollars: a float running sum drifts when values are added and later
# subtracted again, integers do not, so the recorded spend is the exact sum of the (rounded) costs.
# 1e-12 USD is far below the price of a single token.
_UNITS_PER_USD: Final = 10**12
_UNITS_PER_USD_F: Final = 1e12

#: Entries closer together than window / BUCKETS_PER_WINDOW share one bucket. That bounds memory to about
#: this many buckets per window whatever the call rate; a bucket expires with its first entry, so a
#: merged entry leaves the window at most one bucket width early (1 s of an hour, 17 ms of a minute).
BUCKETS_PER_WINDOW: Final = 3600
_SPEND_BUCKET_S: Final = SPEND_WINDOW_S / BUCKETS_PER_WINDOW
_ERROR_BUCKET_S: Final = ERROR_WINDOW_S / BUCKETS_PER_WINDOW
_CALLS_BUCKET_S: Final = CALLS_WINDOW_S / BUCKETS_PER_WINDOW
_NEVER: Final = math.inf


def usd_to_units(usd: float) -> int:
    return int(usd * _UNITS_PER_USD_F + 0.5)  # round half up: costs and budgets are never negative


def units_to_usd(units: int) -> float:
    # int / int is correctly rounded, so a sum of binary-exact costs comes back exactly.
    return units / _UNITS_PER_USD


def reservation_violation(committed: int, units: int, budget_units: float,
                          budget: float | None) -> Violation | None:
    """A hard budget's refusal of ``units`` more when ``committed`` (spent + reserved) is already counted."""
    if committed + units > budget_units or committed >= budget_units:
        return HARD_BUDGET, budget, units_to_usd(committed)  # type: ignore[return-value]
    return None


@runtime_checkable
class WindowStore(Protocol):
    """The three rolling windows of one monitor: spend (1 h), outcomes (5 min), calls (1 min).

    Times are the monitor's clock, in seconds; an entry made at ``t`` counts while ``now - t < window``.
    ``record`` is called without the monitor's lock (from any thread) and must be thread-safe by itself;
    every other method is called with the monitor's lock held. A store shared between processes must make
    ``evaluate`` with ``count_call=True`` atomic on its side (check-and-record).
    """

    def set_limits(self, budget_per_hour: float | None, max_error_rate: float | None,
                   max_calls_per_minute: int | None) -> None:
        """The limits ``evaluate`` checks (None: not checked)."""
        ...

    def evaluate(self, now: float, count_call: bool) -> Violation | SharedState | None:
        """The first violated limit (budget, then error rate, then call rate), or None.

        ``count_call=True`` is an admission: the incoming call counts toward the call rate (call N+1 of a
        limit N violates) and, if nothing is violated, is recorded. ``count_call=False`` only checks the
        windows as they are (a call rate is violated when more than N calls are recorded). Only a
        ``SharedBreakerStore`` returns a ``SharedState``: the fleet's record, which the monitor follows.
        """
        ...

    def count_call(self, now: float) -> None:
        """Record a call in the calls window without checking (an alert-only admission)."""
        ...

    def uncount_call(self, now: float) -> None:
        """Undo the latest counted call (another scope blocked it, so it never happened)."""
        ...

    def record(self, now: float, cost_usd: float, error: bool) -> None:
        """Record a finished call: its cost (spend window) and outcome (error-rate window)."""
        ...

    def spend(self, now: float) -> float: ...

    def calls(self, now: float) -> int: ...

    def outcomes(self, now: float) -> tuple[int, int]:
        """(completed calls, errors) in the error-rate window."""
        ...

    def clear(self) -> None: ...


@runtime_checkable
class ReservingStore(WindowStore, Protocol):
    """A ``WindowStore`` that can hold hard-budget reservations (``hard_budget=True`` needs one).

    A call's worst-case cost is reserved before it is sent and released when it settles. Called with the
    monitor's lock held. ``rid`` numbers the reservation in this process (a shared store keeps one entry per
    call, so a crashed process's reservations expire); amounts are in units (``usd_to_units``).
    """

    def reserve(self, now: float, units: int, rid: int) -> Violation | None:
        """Reserve ``units`` if recorded spend + every reservation + ``units`` stays within the budget (and,
        for ``units == 0``, if anything is left at all); else ``HARD_BUDGET`` and nothing is reserved."""
        ...

    def release(self, units: int, rid: int) -> None:
        """Give (up to) ``units`` of a reservation back (the call never happened, or a top-up was refused)."""
        ...

    def settle_reserved(self, now: float, cost_usd: float, error: bool, units: int, rid: int) -> None:
        """``record`` and ``release`` in one step, so no admission sees the reservation gone but not the cost."""
        ...


#: ``SharedState.generation`` of a scope the shared store holds no record for: none was ever published, or it was
#: lost (Redis restarted without persistence, a failover, the record's expiry after a day without calls).
NO_RECORD: Final = "0"
#: How long a shared store keeps the breaker record after the last call on its scope anywhere in the fleet (every
#: admission renews it). A monitor that saw its state in the record (or put it there) more recently than this knows
#: the record cannot have expired since: if it is gone, it was lost (a restart without persistence, a failover).
SHARED_RECORD_TTL_S: Final = 24 * 3600.0


class SharedState(FrozenRecord):
    """The fleet's breaker state for one scope, as one round trip to a shared store found it.

    ``state`` is CLOSED, OPEN, PAUSED or HALF_OPEN (a pause that has ended on the store's clock). ``event``
    and ``reason``/``threshold``/``current`` describe the transition that made it (a follower reports the
    same); ``trip`` is what blocks calls while not CLOSED. ``verdict`` is the windows' verdict when they were
    evaluated (CLOSED, or this admission took the probe slot): None there means admitted (and counted).
    """

    __slots__ = ("generation", "state", "remaining", "probe", "verdict", "event", "reason", "threshold", "current",
                 "trip")
    generation: str
    state: str
    remaining: float
    probe: ProbeSlot
    verdict: Violation | None
    event: str | None
    reason: str | None
    threshold: float | None
    current: float | None
    trip: tuple[str, float | None, float | None] | None

    def __init__(self, generation: str, state: str, remaining: float, probe: ProbeSlot, verdict: Violation | None,
                 event: str | None, reason: str | None, threshold: float | None, current: float | None,
                 trip: tuple[str, float | None, float | None] | None) -> None:
        values = (generation, state, remaining, probe, verdict, event, reason, threshold, current, trip)
        for name, value in zip(self.__slots__, values, strict=True):
            set_field(self, name, value)


@runtime_checkable
class SharedBreakerStore(WindowStore, Protocol):
    """A ``WindowStore`` that also shares the breaker state machine (one record per scope, fleet-wide).

    The monitor keeps its local state machine as a mirror of the shared record and tells the store which
    ``generation`` of the record it mirrors; ``evaluate`` returns the record (a ``SharedState``) instead of
    a verdict when it has another generation or is not CLOSED, in the same round trip as the windows.
    Every method is called with the monitor's lock held.
    """

    #: The generation of the shared record the monitor mirrors ("" = unknown: the next reply is followed).
    generation: str

    def consult(self, now: float, count_call: bool) -> SharedState | Violation | None:
        """The shared record (taking the probe slot if HALF_OPEN and ``count_call``, then evaluating the
        windows), ``UNREACHABLE_VERDICT``, or None: unreachable, the monitor decides per process."""
        ...

    def windows(self, now: float) -> Violation | None:
        """The windows' verdict alone (no state, nothing counted): settling a probe."""
        ...

    def publish(self, event: str, to_state: str, reason: str, threshold: float | None, current: float | None,
                trip: tuple[str, float | None, float | None] | None, *, pause_s: float = 0.0,
                if_generation: bool = False, if_probe: bool = False) -> SharedState | bool:
        """Make this monitor's transition the fleet's. True: published (``generation`` is the new one);
        False: unreachable (the transition stays local); a ``SharedState``: a condition failed, the fleet
        moved on meanwhile, and this is what it is now (to be followed instead)."""
        ...

    def release_probe(self) -> None:
        """Give back the probe slot this store took (the admission was rolled back)."""
        ...


class LocalWindowStore:
    """In-process windows. Per window: a deque of closed ``[start, value...]`` buckets, the open (newest)
    bucket in plain attributes, a running total, and the time at which the oldest bucket expires.

    Each entry is added once and evicted once, when the window is next touched: O(1) amortised. The code
    is flat on purpose (no helper object per window, no deque access on the common path): it runs on every
    LLM call, at every enclosing scope.
    """

    __slots__ = (
        "_budget", "_max_error_rate", "_max_calls", "_budget_cmp", "_rate_cmp", "_calls_cmp", "_inbox",
        "record_item", "_expires", "_reserved", "pending_calls", "unlimited",
        # spend: closed buckets [start, units], open bucket, total (units), expiry of the oldest bucket
        "_spend", "_spend_start", "_spend_until", "_spend_open", "_spend_total", "_spend_expires",
        # outcomes: closed buckets [start, calls, errors]
        "_done", "_done_start", "_done_until", "_done_open", "_done_open_errors", "_done_total",
        "_done_errors", "_done_expires",
        # admitted calls: closed buckets [start, calls]
        "_calls", "_calls_start", "_calls_until", "_calls_open", "_calls_total", "_calls_expires",
    )
    # Set by ``_empty_spend`` / ``_empty_done`` / ``_empty_calls`` (``clear``), then by the bucket code.
    _spend_start: float
    _spend_until: float
    _spend_open: int
    _spend_total: int
    _spend_expires: float
    _done_start: float
    _done_until: float
    _done_open: int
    _done_open_errors: int
    _done_total: int
    _done_errors: int
    _done_expires: float
    _calls_start: float
    _calls_until: float
    _calls_open: int
    _calls_total: int
    _calls_expires: float

    def __init__(self) -> None:
        self._budget: float | None = None
        self._max_error_rate: float | None = None
        self._max_calls: int | None = None
        # The limits as compared on the hot path: an unset limit is +inf, so it needs no test of its own.
        self._budget_cmp: float = _NEVER
        self._rate_cmp: float = _NEVER
        self._calls_cmp: float = _NEVER
        # Finished calls wait here until the next read folds them in under the monitor's lock:
        # deque.append is atomic, so recording a result needs no lock at all.
        self._inbox: deque[tuple[float, float, bool]] = deque()
        #: ``record_item((now, cost_usd, error))``: ``record`` without a Python call frame (the breaker's
        #: settle path uses it when present).
        self.record_item = self._inbox.append
        #: Admissions not counted yet, as their times. While no limit is set (``unlimited``) nothing on the
        #: hot path reads the windows, so a monitor admits with ``pending_calls.append(now)``, lock-free, and
        #: they are counted, like the results in the inbox, by the next read (``catch_up``).
        self.pending_calls: deque[float] = deque()
        self.unlimited = True
        self._reserved = 0  # units held by calls in flight (hard budgets)
        self._spend: deque[list[Any]] = deque()
        self._done: deque[list[Any]] = deque()
        self._calls: deque[list[Any]] = deque()
        self.clear()

    def set_limits(self, budget_per_hour: float | None, max_error_rate: float | None,
                   max_calls_per_minute: int | None) -> None:
        self._budget = budget_per_hour
        self._max_error_rate = max_error_rate
        self._max_calls = max_calls_per_minute
        # Compared in units, so a budget of 0.3 is reached by 0.1 + 0.2, as a person would expect.
        self._budget_cmp = usd_to_units(budget_per_hour) if budget_per_hour is not None else _NEVER
        self._rate_cmp = max_error_rate if max_error_rate is not None else _NEVER
        self._calls_cmp = max_calls_per_minute if max_calls_per_minute is not None else _NEVER
        self.unlimited = budget_per_hour is None and max_error_rate is None and max_calls_per_minute is None

    # ---- the hot path ---------------------------------------------------------------------------

    def evaluate(self, now: float, count_call: bool) -> Violation | None:
        if self.pending_calls:
            self._count_pending()
        inbox = self._inbox
        if inbox:
            if len(inbox) == 1:  # the usual: the previous call's result, folded here without another frame
                t, cost, error = inbox.popleft()
                if cost:
                    units = int(cost * _UNITS_PER_USD_F + 0.5)  # round() for cost >= 0, at half the price
                    if t < self._spend_until:
                        self._spend_open += units
                        self._spend_total += units
                    else:
                        self._new_spend_bucket(t, units)
                if t < self._done_until:
                    self._done_open += 1
                    self._done_total += 1
                    if error:
                        self._done_open_errors += 1
                        self._done_errors += 1
                else:
                    self._new_done_bucket(t, error)
            if inbox:  # more than one, or one more appended meanwhile
                self._fold()
        if now >= self._expires:  # the earliest expiry of the three windows
            self._evict(now)
        # An unset limit compares as +inf and never matches, so a reported threshold is never None.
        if self._spend_total >= self._budget_cmp:
            return BUDGET_PER_HOUR, self._budget, units_to_usd(self._spend_total)  # type: ignore[return-value]
        completed = self._done_total
        if completed >= ERROR_RATE_MIN_CALLS and self._done_errors > self._rate_cmp * completed:
            return MAX_ERROR_RATE, self._max_error_rate, self._done_errors / completed  # type: ignore[return-value]
        if count_call:
            if self._calls_total >= self._calls_cmp:  # this call would be number N+1
                return MAX_CALLS_PER_MINUTE, self._max_calls, self._calls_total + 1  # type: ignore[return-value]
            if now < self._calls_until:
                self._calls_open += 1
                self._calls_total += 1
            else:
                self._new_calls_bucket(now)
        elif self._calls_total > self._calls_cmp:
            return MAX_CALLS_PER_MINUTE, self._max_calls, self._calls_total  # type: ignore[return-value]
        return None

    def record(self, now: float, cost_usd: float, error: bool) -> None:
        self._inbox.append((now, cost_usd, error))

    def violations(self, now: float) -> list[Violation]:
        """Every limit the windows are over now, the calls counted so far included (``evaluate`` stops at the
        first): an alert-only monitor alerts each of them, so a loop is reported while the budget is over too."""
        if self.pending_calls:
            self._count_pending()
        if self._inbox:
            self._fold()
        if now >= self._expires:
            self._evict(now)
        found: list[Violation] = []
        if self._spend_total >= self._budget_cmp:
            found.append((BUDGET_PER_HOUR, self._budget, units_to_usd(self._spend_total)))  # type: ignore[arg-type]
        completed = self._done_total
        if completed >= ERROR_RATE_MIN_CALLS and self._done_errors > self._rate_cmp * completed:
            found.append((MAX_ERROR_RATE, self._max_error_rate, self._done_errors / completed))  # type: ignore[arg-type]
        if self._calls_total > self._calls_cmp:
            found.append((MAX_CALLS_PER_MINUTE, self._max_calls, self._calls_total))  # type: ignore[arg-type]
        return found

    # ---- hard budgets ---------------------------------------------------------------------------

    def reserve(self, now: float, units: int, rid: int = 0) -> Violation | None:
        if self._inbox:
            self._fold()
        if now >= self._spend_expires:
            self._evict_spend(now)
        refused = reservation_violation(self._spend_total + self._reserved, units, self._budget_cmp, self._budget)
        if refused is None:
            self._reserved += units
        return refused

    def release(self, units: int, rid: int = 0) -> None:
        # Never below zero: reset_windows() forgets reservations of calls still in flight.
        self._reserved = max(0, self._reserved - units)

    def settle_reserved(self, now: float, cost_usd: float, error: bool, units: int, rid: int = 0) -> None:
        self._inbox.append((now, cost_usd, error))  # folded before any later admission reads the spend
        self._reserved = max(0, self._reserved - units)

    def reserved(self) -> float:
        """USD reserved by calls in flight (hard budgets)."""
        return units_to_usd(self._reserved)

    # ---- the rest of the protocol ---------------------------------------------------------------

    def count_call(self, now: float) -> None:
        if self.pending_calls:
            self._count_pending()
        if now < self._calls_until:
            self._calls_open += 1
            self._calls_total += 1
        else:
            self._new_calls_bucket(now)

    def uncount_call(self, now: float) -> None:
        # Taken from the newest bucket: the count is exact; which entry goes differs from the one counted
        # by at most the microseconds between concurrent admissions.
        if self.pending_calls:
            self._count_pending()
        if self._calls_open > 0:
            self._calls_open -= 1
            self._calls_total -= 1
        elif self._calls:
            last = self._calls[-1]
            last[1] -= 1
            self._calls_total -= 1
            if last[1] <= 0:
                self._calls.pop()
        # else: already expired, nothing left to undo

    def spend(self, now: float) -> float:
        if self._inbox:
            self._fold()
        if now >= self._spend_expires:
            self._evict_spend(now)
        return units_to_usd(self._spend_total)

    def calls(self, now: float) -> int:
        if self.pending_calls:
            self._count_pending()
        if now >= self._calls_expires:
            self._evict_calls(now)
        return self._calls_total

    def outcomes(self, now: float) -> tuple[int, int]:
        if self._inbox:
            self._fold()
        if now >= self._done_expires:
            self._evict_done(now)
        return self._done_total, self._done_errors

    def catch_up(self) -> None:
        """Count the pending admissions and fold the recorded results (bounds both while nothing reads)."""
        if self.pending_calls:
            self._count_pending()
        if self._inbox:
            self._fold()

    def forget_rates(self) -> None:
        """Forget the outcome and call windows (a successful probe: the rates are judged afresh)."""
        if self._inbox:
            self._fold()  # the probe's own result too: recorded before it settles
        self._empty_done()
        self.pending_calls.clear()
        self._empty_calls()

    def clear(self) -> None:
        self._reserved = 0
        self.pending_calls.clear()
        self._inbox.clear()
        self._empty_spend()
        self._empty_done()
        self._empty_calls()
        self._expires = _NEVER

    def bucket_counts(self) -> tuple[int, int, int]:
        """Buckets held per window (spend, outcomes, calls), the open one included: the memory bound."""
        self.catch_up()
        return (
            len(self._spend) + (self._spend_until > -_NEVER),
            len(self._done) + (self._done_until > -_NEVER),
            len(self._calls) + (self._calls_until > -_NEVER),
        )

    # ---- internals ------------------------------------------------------------------------------

    # _count_pending and _fold run every CATCH_UP_EVERY calls over what those calls left: the counts for the open
    # bucket add up in locals and are written once, and before a new bucket is opened (it closes the open one).

    def _count_pending(self) -> None:
        pending = self.pending_calls
        until = self._calls_until
        counted = 0
        while pending:
            t = pending.popleft()  # atomic, as in _fold: an admission racing with this loop is counted later
            if t < until:
                counted += 1
            else:
                self._calls_open += counted
                self._calls_total += counted
                counted = 0
                self._new_calls_bucket(t)
                until = self._calls_until
        self._calls_open += counted
        self._calls_total += counted

    def _fold(self) -> None:
        inbox = self._inbox
        spend_until, done_until = self._spend_until, self._done_until
        spent = done = errors = 0
        while inbox:
            # popleft is atomic: a record() racing with this loop is either taken now or left for later.
            t, cost, error = inbox.popleft()
            if cost:
                units = int(cost * _UNITS_PER_USD_F + 0.5)
                if t < spend_until:
                    spent += units
                else:
                    self._add_spend(spent)
                    spent = 0
                    self._new_spend_bucket(t, units)
                    spend_until = self._spend_until
            if t < done_until:
                done += 1
                if error:
                    errors += 1
            else:
                self._add_done(done, errors)
                done = errors = 0
                self._new_done_bucket(t, error)
                done_until = self._done_until
        self._add_spend(spent)
        self._add_done(done, errors)

    def _add_spend(self, units: int) -> None:
        self._spend_open += units
        self._spend_total += units

    def _add_done(self, done: int, errors: int) -> None:
        self._done_open += done
        self._done_total += done
        self._done_open_errors += errors
        self._done_errors += errors

    # A window's buckets, oldest first: the closed ones in the deque, then the open one (if its
    # ``until`` is not -inf). ``expires`` is when the oldest of them leaves the window, and ``_expires``
    # the earliest of the three (never later; an early value only costs an eviction pass, which sets it
    # right). A new bucket is always the newest:
    # it is opened for a time at or after the open bucket's end, and evicts first so totals stay right.

    def _evict(self, now: float) -> None:
        if now >= self._spend_expires:
            self._evict_spend(now)
        if now >= self._done_expires:
            self._evict_done(now)
        if now >= self._calls_expires:
            self._evict_calls(now)
        self._expires = min(self._spend_expires, self._done_expires, self._calls_expires)

    def _new_spend_bucket(self, t: float, units: int) -> None:
        if t >= self._spend_expires:
            self._evict_spend(t)  # keeps memory bounded even when no budget is ever read
        if self._spend_until > -_NEVER:
            self._spend.append([self._spend_start, self._spend_open])
        self._spend_start, self._spend_until, self._spend_open = t, t + _SPEND_BUCKET_S, units
        self._spend_total += units
        oldest = self._spend[0][0] if self._spend else t
        self._spend_expires = oldest + SPEND_WINDOW_S
        if self._spend_expires < self._expires:
            self._expires = self._spend_expires

    def _evict_spend(self, now: float) -> None:
        cutoff = now - SPEND_WINDOW_S
        spend = self._spend
        while spend and spend[0][0] <= cutoff:
            self._spend_total -= spend.popleft()[1]
        if spend:
            self._spend_expires = spend[0][0] + SPEND_WINDOW_S
        elif self._spend_until > -_NEVER and self._spend_start > cutoff:
            self._spend_expires = self._spend_start + SPEND_WINDOW_S
        else:
            self._empty_spend()

    def _new_done_bucket(self, t: float, error: bool) -> None:
        if t >= self._done_expires:
            self._evict_done(t)
        if self._done_until > -_NEVER:
            self._done.append([self._done_start, self._done_open, self._done_open_errors])
        err = 1 if error else 0
        self._done_total += 1
        self._done_errors += err
        self._done_start, self._done_until = t, t + _ERROR_BUCKET_S
        self._done_open, self._done_open_errors = 1, err
        oldest = self._done[0][0] if self._done else t
        self._done_expires = oldest + ERROR_WINDOW_S
        if self._done_expires < self._expires:
            self._expires = self._done_expires

    def _evict_done(self, now: float) -> None:
        cutoff = now - ERROR_WINDOW_S
        done = self._done
        while done and done[0][0] <= cutoff:
            _, completed, errors = done.popleft()
            self._done_total -= completed
            self._done_errors -= errors
        if done:
            self._done_expires = done[0][0] + ERROR_WINDOW_S
        elif self._done_until > -_NEVER and self._done_start > cutoff:
            self._done_expires = self._done_start + ERROR_WINDOW_S
        else:
            self._empty_done()

    def _new_calls_bucket(self, t: float) -> None:
        if t >= self._calls_expires:
            self._evict_calls(t)
        if self._calls_until > -_NEVER and self._calls_open > 0:  # (uncount may have emptied it)
            self._calls.append([self._calls_start, self._calls_open])
        self._calls_start, self._calls_until, self._calls_open = t, t + _CALLS_BUCKET_S, 1
        self._calls_total += 1
        oldest = self._calls[0][0] if self._calls else t
        self._calls_expires = oldest + CALLS_WINDOW_S
        if self._calls_expires < self._expires:
            self._expires = self._calls_expires

    def _evict_calls(self, now: float) -> None:
        cutoff = now - CALLS_WINDOW_S
        calls = self._calls
        while calls and calls[0][0] <= cutoff:
            self._calls_total -= calls.popleft()[1]
        if calls:
            self._calls_expires = calls[0][0] + CALLS_WINDOW_S
        elif self._calls_until > -_NEVER and self._calls_start > cutoff:
            self._calls_expires = self._calls_start + CALLS_WINDOW_S
        else:
            self._empty_calls()

    # A window emptied: no bucket, closed or open, and nothing to expire.

    def _empty_spend(self) -> None:
        self._spend.clear()
        self._spend_start, self._spend_until, self._spend_open = 0.0, -_NEVER, 0
        self._spend_total, self._spend_expires = 0, _NEVER

    def _empty_done(self) -> None:
        self._done.clear()
        self._done_start, self._done_until, self._done_open, self._done_open_errors = 0.0, -_NEVER, 0, 0
        self._done_total, self._done_errors, self._done_expires = 0, 0, _NEVER

    def _empty_calls(self) -> None:
        self._calls.clear()
        self._calls_start, self._calls_until, self._calls_open = 0.0, -_NEVER, 0
        self._calls_total, self._calls_expires = 0, _NEVER
