"""Rolling windows for the circuit breaker: running sums with eviction, O(1) amortised per call.

The breaker talks to its windows only through the ``WindowStore`` protocol, so a shared store (e.g. Redis,
for fleet-wide limits) can replace ``LocalWindowStore``: ``evaluate(..., count_call=True)`` is the one
operation that must be atomic (check every limit and count the call in one step).
"""

from __future__ import annotations

from collections import deque
from typing import Final, Protocol, runtime_checkable

__all__ = [
    "WindowStore",
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

#: (reason, threshold, current) of a violated limit.
Violation = tuple[str, float, float]

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


def usd_to_units(usd: float) -> int:
    return int(usd * _UNITS_PER_USD_F + 0.5)  # round half up; costs and budgets are never negative


def units_to_usd(units: int) -> float:
    # int / int is correctly rounded, so a sum of binary-exact costs comes back exactly.
    return units / _UNITS_PER_USD


@runtime_checkable
class WindowStore(Protocol):
    """The three rolling windows of one monitor: spend (1 h), outcomes (5 min), calls (1 min).

    Times are the monitor's clock, in seconds; an entry made at ``t`` counts while ``now - t < window``.
    ``record`` is called without the monitor's lock (from any thread) and must be thread-safe by itself;
    every other method is called with the monitor's lock held. A store shared between processes must make
    ``evaluate`` with ``count_call=True`` atomic on its side (check-and-record).
    """

    def evaluate(
        self,
        now: float,
        budget_per_hour: float | None,
        max_error_rate: float | None,
        max_calls_per_minute: int | None,
        count_call: bool,
    ) -> Violation | None:
        """The first violated limit (budget, then error rate, then call rate), or None.

        ``count_call=True`` is an admission: the incoming call counts toward the call rate (call N+1 of a
        limit N violates) and, if nothing is violated, is recorded. ``count_call=False`` only checks the
        windows as they are (a call rate is violated when more than N calls are recorded).
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


class LocalWindowStore:
    """In-process windows: a deque of ``[timestamp, value...]`` buckets plus running totals per window.

    Each entry is appended once and evicted once, when the window is next touched: O(1) amortised. The
    code is flat on purpose (no helper objects per window): it runs on every LLM call, at several scopes.
    """

    __slots__ = (
        "_spend", "_spend_units", "_done", "_done_calls", "_done_errors", "_calls", "_calls_count",
        "_inbox", "_budget_usd", "_budget_units",
    )

    def __init__(self) -> None:
        self._spend: deque[list[float]] = deque()  # [t, units]
        self._spend_units = 0
        self._done: deque[list[float]] = deque()  # [t, completed calls, errors]
        self._done_calls = 0
        self._done_errors = 0
        self._calls: deque[list[float]] = deque()  # [t, admitted calls]
        self._calls_count = 0
        # Finished calls wait here until the next read folds them in under the monitor's lock:
        # deque.append is atomic, so recording a result needs no lock at all.
        self._inbox: deque[tuple[float, float, bool]] = deque()
        # The budget converted to units, cached: budgets change rarely, checks run on every call.
        self._budget_usd: float | None = None
        self._budget_units = 0

    # ---- the hot path ---------------------------------------------------------------------------

    def evaluate(
        self,
        now: float,
        budget_per_hour: float | None,
        max_error_rate: float | None,
        max_calls_per_minute: int | None,
        count_call: bool,
    ) -> Violation | None:
        if self._inbox:
            self._fold()
        if budget_per_hour is not None:
            if budget_per_hour != self._budget_usd:
                self._budget_units = usd_to_units(budget_per_hour)
                self._budget_usd = budget_per_hour
            spend = self._spend
            if spend and spend[0][0] <= now - SPEND_WINDOW_S:
                self._evict_spend(now)
            # Compared in units, so a budget of 0.3 is reached by 0.1 + 0.2, as a person would expect.
            if self._spend_units >= self._budget_units:
                return BUDGET_PER_HOUR, budget_per_hour, units_to_usd(self._spend_units)
        if max_error_rate is not None:
            done = self._done
            if done and done[0][0] <= now - ERROR_WINDOW_S:
                self._evict_done(now)
            completed = self._done_calls
            if completed >= ERROR_RATE_MIN_CALLS and self._done_errors > max_error_rate * completed:
                return MAX_ERROR_RATE, max_error_rate, self._done_errors / completed
        calls = self._calls
        if calls and calls[0][0] <= now - CALLS_WINDOW_S:
            self._evict_calls(now)
        if max_calls_per_minute is not None:
            current = self._calls_count + 1 if count_call else self._calls_count
            if current > max_calls_per_minute:
                return MAX_CALLS_PER_MINUTE, max_calls_per_minute, current
        if count_call:
            self._calls_count += 1
            if calls:
                last = calls[-1]
                if now - last[0] < _CALLS_BUCKET_S:
                    last[1] += 1
                    return None
            calls.append([now, 1])
        return None

    def record(self, now: float, cost_usd: float, error: bool) -> None:
        self._inbox.append((now, cost_usd, error))

    # ---- the rest of the protocol ---------------------------------------------------------------

    def count_call(self, now: float) -> None:
        calls = self._calls
        if calls and calls[0][0] <= now - CALLS_WINDOW_S:
            self._evict_calls(now)
        self._calls_count += 1
        if calls and now - calls[-1][0] < _CALLS_BUCKET_S:
            calls[-1][1] += 1
        else:
            calls.append([now, 1])

    def uncount_call(self, now: float) -> None:
        # Taken from the newest bucket: the count is exact; which entry goes differs from the one counted
        # by at most the microseconds between concurrent admissions.
        calls = self._calls
        if not calls:
            return  # already expired: nothing left to undo
        last = calls[-1]
        last[1] -= 1
        self._calls_count -= 1
        if last[1] <= 0:
            calls.pop()

    def spend(self, now: float) -> float:
        if self._inbox:
            self._fold()
        self._evict_spend(now)
        return units_to_usd(self._spend_units)

    def calls(self, now: float) -> int:
        self._evict_calls(now)
        return self._calls_count

    def outcomes(self, now: float) -> tuple[int, int]:
        if self._inbox:
            self._fold()
        self._evict_done(now)
        return self._done_calls, self._done_errors

    def clear(self) -> None:
        self._inbox.clear()
        self._spend.clear()
        self._spend_units = 0
        self._done.clear()
        self._done_calls = 0
        self._done_errors = 0
        self._calls.clear()
        self._calls_count = 0

    def bucket_counts(self) -> tuple[int, int, int]:
        """Buckets held per window (spend, outcomes, calls): the memory bound, for tests and debugging."""
        return len(self._spend), len(self._done), len(self._calls)

    # ---- internals ------------------------------------------------------------------------------

    def _fold(self) -> None:
        inbox = self._inbox
        spend, done = self._spend, self._done
        units_total, completed, errors = self._spend_units, self._done_calls, self._done_errors
        while inbox:
            # popleft is atomic: a record() racing with this loop is either taken now or left for later.
            t, cost, error = inbox.popleft()
            if cost:
                units = int(cost * _UNITS_PER_USD_F + 0.5)  # round() for cost >= 0, at half the price
                units_total += units
                if spend and t - spend[-1][0] < _SPEND_BUCKET_S:
                    spend[-1][1] += units
                else:
                    if spend and spend[0][0] <= t - SPEND_WINDOW_S:
                        # Keeps memory bounded even when no budget is ever read.
                        self._spend_units = units_total
                        self._evict_spend(t)
                        units_total = self._spend_units
                    spend.append([t, units])
            err = 1 if error else 0
            completed += 1
            errors += err
            if done and t - done[-1][0] < _ERROR_BUCKET_S:
                bucket = done[-1]
                bucket[1] += 1
                if err:
                    bucket[2] += 1
            else:
                if done and done[0][0] <= t - ERROR_WINDOW_S:
                    self._done_calls, self._done_errors = completed, errors
                    self._evict_done(t)
                    completed, errors = self._done_calls, self._done_errors
                done.append([t, 1, err])
        self._spend_units, self._done_calls, self._done_errors = units_total, completed, errors

    def _evict_spend(self, now: float) -> None:
        spend, cutoff = self._spend, now - SPEND_WINDOW_S
        while spend and spend[0][0] <= cutoff:
            self._spend_units -= spend.popleft()[1]  # type: ignore[assignment]

    def _evict_done(self, now: float) -> None:
        done, cutoff = self._done, now - ERROR_WINDOW_S
        while done and done[0][0] <= cutoff:
            _, completed, errors = done.popleft()
            self._done_calls -= completed  # type: ignore[assignment]
            self._done_errors -= errors  # type: ignore[assignment]

    def _evict_calls(self, now: float) -> None:
        calls, cutoff = self._calls, now - CALLS_WINDOW_S
        while calls and calls[0][0] <= cutoff:
            self._calls_count -= calls.popleft()[1]  # type: ignore[assignment]
