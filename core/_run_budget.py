"""Per-run budgets: one USD budget shared by every LLM call of a run, not time-windowed.

``agentwatch.trace(name, budget=USD)`` opens one for the block (or decorated call); a LangGraph thread keeps
one across invocations (``AgentWatchHandler(thread_budget=USD)``, keyed by ``thread_id``). Each is a
``Monitor`` with scope ``"trace"`` whose store sums spend for as long as the run lives, so it plugs into
admission, settlement, ``on_block`` and recovery (``e.monitor.increase_budget(usd)``) like any other scope.
The monitors of the enclosing runs are carried in ``RUN_MONITORS`` and checked after the agent scopes.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Final

from ._context import CARRIED, note_scoped
from ._forking import fork_safe_lock
from ._windows import TRACE_BUDGET, Violation, reservation_violation, units_to_usd, usd_to_units

if TYPE_CHECKING:
    from ._breaker import Monitor
    from ._client import Client

__all__ = ["RUN_MONITORS", "get_run_monitors", "attach_run_budget", "RunBudgetStore", "run_monitor",
           "keyed_run_monitor"]

#: Monitors of the per-run budgets enclosing this context, outermost first.
RUN_MONITORS: ContextVar[tuple[Monitor, ...]] = ContextVar("agentwatch_run_monitors", default=())
#: Bound, as ``_context``'s hot variables are: read by every LLM call.
get_run_monitors: Final = RUN_MONITORS.get
CARRIED.append(RUN_MONITORS)


def attach_run_budget(monitor: Monitor) -> tuple[Token[Any], ...]:
    """Make ``monitor`` (a per-run budget: ``run_budget``) enclose this context until ``detach`` of the returned
    token, as ``trace(budget=...)`` does: every LLM call made here, whichever layer makes it (a framework, the SDKs
    used directly), is checked against it and charged to it. Nothing to undo if it encloses the context already."""
    current = RUN_MONITORS.get()
    if any(enclosing is monitor for enclosing in current):
        return ()
    note_scoped()
    return (RUN_MONITORS.set((*current, monitor)),)

_NEVER: Final = float("inf")
#: Keyed runs (LangGraph threads) remembered at most: the least recently used one is forgotten first.
KEYED_RUNS_MAX: Final = 10_000


class RunBudgetStore:
    """A ``WindowStore`` for one run: spend since the run started (nothing expires), reservations in flight.

    Error-rate and call-rate limits do not apply to runs; only the budget (``budget_per_hour`` of the
    monitor, read as the run's total) is checked. Methods other than ``record`` run under the monitor lock;
    ``record`` appends to a list, which is atomic, and is folded in on the next read.
    """

    __slots__ = ("_budget", "_budget_cmp", "_spent", "_reserved", "_calls", "_done", "_errors", "_inbox",
                 "_elsewhere")

    def __init__(self) -> None:
        self._budget: float | None = None
        self._budget_cmp: float = _NEVER
        self._inbox: list[tuple[float, float, bool]] = []
        self._spent = self._reserved = self._calls = self._done = self._errors = 0
        self._elsewhere = 0

    @property
    def spent_elsewhere(self) -> float:
        """USD the same run spent in other processes (``set_spent_elsewhere``)."""
        return units_to_usd(self._elsewhere)

    def set_spent_elsewhere(self, usd: float) -> None:
        """What other processes of the same run spent (pytest-xdist's other workers): it counts against the budget and
        is part of ``spend`` and of a block's figures, so a block names the run's spend and budget. One attribute
        store, so another thread may set it without the monitor's lock."""
        self._elsewhere = usd_to_units(usd)

    def set_limits(self, budget_per_hour: float | None, max_error_rate: float | None,
                   max_calls_per_minute: int | None) -> None:
        self._budget = budget_per_hour
        self._budget_cmp = usd_to_units(budget_per_hour) if budget_per_hour is not None else _NEVER

    def _fold(self) -> None:
        inbox = self._inbox
        while inbox:
            _, cost, error = inbox.pop()
            self._spent += usd_to_units(cost)
            self._done += 1
            self._errors += 1 if error else 0

    def evaluate(self, now: float, count_call: bool) -> Violation | None:
        if self._inbox:
            self._fold()
        spent = self._spent + self._elsewhere
        if spent >= self._budget_cmp:
            return TRACE_BUDGET, self._budget, units_to_usd(spent)  # type: ignore[return-value]
        if count_call:
            self._calls += 1
        return None

    def count_call(self, now: float) -> None:
        self._calls += 1

    def uncount_call(self, now: float) -> None:
        self._calls = max(0, self._calls - 1)

    def record(self, now: float, cost_usd: float, error: bool) -> None:
        self._inbox.append((now, cost_usd, error))

    def reserve(self, now: float, units: int, rid: int = 0) -> Violation | None:
        if self._inbox:
            self._fold()
        refused = reservation_violation(self._spent + self._elsewhere + self._reserved, units, self._budget_cmp,
                                        self._budget)
        if refused is None:
            self._reserved += units
        return refused

    def release(self, units: int, rid: int = 0) -> None:
        self._reserved = max(0, self._reserved - units)

    def settle_reserved(self, now: float, cost_usd: float, error: bool, units: int, rid: int = 0) -> None:
        self._inbox.append((now, cost_usd, error))
        self._reserved = max(0, self._reserved - units)

    def reserved(self) -> float:
        return units_to_usd(self._reserved)

    def spend(self, now: float) -> float:
        if self._inbox:
            self._fold()
        return units_to_usd(self._spent + self._elsewhere)

    def calls(self, now: float) -> int:
        return self._calls

    def outcomes(self, now: float) -> tuple[int, int]:
        if self._inbox:
            self._fold()
        return self._done, self._errors

    def forget_rates(self) -> None:
        if self._inbox:
            self._fold()
        self._done = 0
        self._errors = 0

    def clear(self) -> None:
        self._inbox.clear()
        self._spent = 0
        self._reserved = 0
        self._calls = 0
        self._done = 0
        self._errors = 0


def run_monitor(client: Client, name: str, budget: float, hard_budget: bool | None) -> Monitor:
    """A new monitor for one run (scope ``"trace"``), blocking when ``budget`` is spent."""
    from ._breaker import Monitor  # _breaker imports the windows, which this module's importers need first

    hard = client.config.hard_budget if hard_budget is None else hard_budget
    return Monitor("trace", name, store=RunBudgetStore(), budget_per_hour=budget, block_on_threshold=True,
                   hard_budget=hard, on_block=client.config.on_block, sink=client._sink)


_keyed: OrderedDict[str, tuple[Any, Monitor]] = OrderedDict()
_keyed_lock = fork_safe_lock(sys.modules[__name__], "_keyed_lock")


def keyed_run_monitor(client: Client, key: str, budget: float, hard_budget: bool | None = None) -> Monitor:
    """The one run monitor for ``key`` (e.g. ``"thread:<thread_id>"``) in this client: every invocation
    of the same key shares its spend (the budget given first stays; ``increase_budget`` raises it)."""
    with _keyed_lock:
        known = _keyed.get(key)
        if known is not None and known[0] is client:
            _keyed.move_to_end(key)
            return known[1]
        monitor = run_monitor(client, key, budget, hard_budget)
        _keyed[key] = (client, monitor)
        while len(_keyed) > KEYED_RUNS_MAX:
            _keyed.popitem(last=False)
        return monitor
