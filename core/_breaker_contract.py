"""What the breaker hands to and takes from the outside: the exception a blocked call raises, the event
``on_block`` receives, the sink protocol the client implements, running user hooks (sync or async) so that
they cannot break the caller, and validation of limit arguments."""

from __future__ import annotations

import contextvars
import inspect
import math
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from ._safe import PASS_THROUGH, stop_on_exception, swallow_internal_error, swallow_user_error
from ._windows import (
    BUDGET_PER_HOUR,
    HARD_BUDGET,
    LIMITS_BACKEND_UNREACHABLE,
    MAX_CALLS_PER_MINUTE,
    MAX_ERROR_RATE,
    TRACE_BUDGET,
)

if TYPE_CHECKING:
    from ._breaker import Monitor

__all__ = ["PROBE_FAILED", "PAUSED_BY_OPERATOR", "OPERATOR_KILL", "BreakerSink", "BlockEvent",
           "CircuitBreakerException"]

#: Reason of a retrip caused by the probe call itself failing (no limit involved).
PROBE_FAILED: Final = "probe_failed"
#: Reason of blocks while a monitor that was CLOSED has been paused by hand.
PAUSED_BY_OPERATOR: Final = "paused"
#: Reason of blocks while an operator's kill is in force (``Monitor.kill``, until ``resume``).
OPERATOR_KILL: Final = "operator_kill"


@runtime_checkable
class BreakerSink(Protocol):
    """Where a monitor reports (the client turns these into spans). Called outside the monitor's lock."""

    def transition(self, monitor: Monitor, record: dict[str, Any]) -> None: ...

    def alert(self, monitor: Monitor, alert: dict[str, Any]) -> None: ...

    def blocked(self, error: CircuitBreakerException) -> None: ...


@dataclass(eq=False)
class BlockEvent:
    """Handed to ``on_block`` before the exception is raised; ``monitor`` allows recovery."""

    monitor: Monitor = field(repr=False)
    scope: str
    scope_id: str
    reason: str
    current: float | None
    threshold: float | None
    trace_id: str | None = None


def _describe(reason: str, threshold: float | None, current: float | None, reserved: float | None = None,
              remaining: float | None = None) -> str:
    if reason == HARD_BUDGET and threshold is not None and current is not None:
        return (f"hard budget: this call may cost up to ${reserved or 0.0:.6g} (reserved before sending), "
                f"${remaining if remaining is not None else 0.0:.6g} of the ${threshold:.6g} budget is left "
                f"(${current:.6g} spent or reserved by calls in flight)")
    if reason == TRACE_BUDGET:
        return f"trace budget reached: ${current:.6g} spent in this run, limit ${threshold:.6g}"
    if reason == BUDGET_PER_HOUR:
        return f"hourly budget reached: ${current:.6g} spent in the last hour, limit ${threshold:.6g}"
    if reason == MAX_ERROR_RATE and current is not None and threshold is not None:
        return f"error rate {current:.1%} over the last 5 minutes exceeds the limit of {threshold:.1%}"
    if reason == MAX_CALLS_PER_MINUTE:
        return f"call rate exceeded: this would be call {current} in the last minute, limit {threshold}"
    if reason == PROBE_FAILED:
        return "the probe call after a pause failed"
    if reason == PAUSED_BY_OPERATOR:
        return "the monitor was paused"
    if reason == OPERATOR_KILL:
        return "an operator stopped this scope (kill); it stays blocked until resumed"
    if reason == LIMITS_BACKEND_UNREACHABLE:
        return "limits backend unreachable: LLM calls are blocked until it is back (limits_fallback='block')"
    return f"{reason} (current {current}, threshold {threshold})"


class CircuitBreakerException(Exception):
    """Raised instead of sending an LLM call that a monitor blocks. Nothing was sent, nothing spent.

    ``state`` is a snapshot of the blocking monitor; recover through ``monitor.pause(seconds)``,
    ``monitor.increase_budget(usd)`` or ``monitor.reset_windows()``. Blocked by a hard budget, ``reserved``
    is the worst-case cost the call asked to reserve and ``remaining`` what was left of the budget
    (both USD; None otherwise).
    """

    __module__ = "agentwatch"  # tracebacks name it as users import it: agentwatch.CircuitBreakerException

    def __init__(
        self,
        reason: str,
        threshold: float | None,
        current: float | None,
        *,
        scope: str,
        scope_id: str,
        trace_id: str | None = None,
        state: dict[str, Any] | None = None,
        monitor: Monitor | None = None,
        reserved: float | None = None,
        remaining: float | None = None,
        what: str = "LLM call",
    ) -> None:
        self.reason = reason
        self.threshold = threshold
        self.current = current
        self.scope = scope
        self.scope_id = scope_id
        self.trace_id = trace_id
        self.state: dict[str, Any] = state if state is not None else {}
        self.monitor = monitor
        self.reserved = reserved
        self.remaining = remaining
        #: What was blocked, as the message names it: "LLM call", "embedding call".
        self.what = what
        breaker_state = self.state.get("state")
        where = f"{scope} {scope_id!r}" + (f", state {breaker_state}" if breaker_state else "")
        why = _describe(reason, threshold, current, reserved, remaining)
        if breaker_state == "HALF_OPEN" and self.state.get("probe_in_flight"):
            # ``reason`` stays what tripped the breaker (it says how to recover); this call met no limit itself.
            why = f"the probe call after the pause is in flight, other calls are blocked until it settles " \
                  f"(the breaker was tripped by: {why})"
        super().__init__(f"AgentWatch blocked the {what} ({where}): {why}")

    #: Set once a span is marked as where this block happened (``_llm.BLOCK_POINT``): the spans it ends blocked on its
    #: way out are not blocks of their own.
    _recorded = False

    # Exceptions are rebuilt from ``args`` (here the message alone, which ``__init__`` does not take) and ``__dict__``
    # (``monitor`` holds locks and modules): a block raised in a worker process (``ProcessPoolExecutor``,
    # ``multiprocessing.Pool``) reached the caller as "TypeError: cannot pickle 'module' object", and ``copy.copy``
    # raised too. A copy keeps every attribute and the message; one pickled for another process leaves ``monitor``
    # (and anything else that cannot cross) behind: the monitor governs the process that blocked, not the receiver.

    def __reduce__(self) -> tuple[Any, ...]:
        import pickle

        state = {}
        for key, value in self.__dict__.items():
            if key == "monitor":
                continue
            try:
                pickle.dumps(value)
            except Exception:  # a plugin's attribute that holds live objects: the block crosses without it
                continue
            state[key] = value
        state["monitor"] = None
        return _rebuild_block, (type(self), self.args), state

    def __copy__(self) -> CircuitBreakerException:
        clone = _rebuild_block(type(self), self.args)
        clone.__dict__.update(self.__dict__)
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> CircuitBreakerException:
        return self.__copy__()  # the monitor is live state, not a value: a deep copy refers to the same one


def _rebuild_block(cls: type[CircuitBreakerException], args: tuple[Any, ...]) -> CircuitBreakerException:
    """A block with ``args`` as its message, its attributes set afterwards (pickle's state, ``__copy__``)."""
    block = cls.__new__(cls)
    Exception.__init__(block, *args)
    return block


PASS_THROUGH.append(CircuitBreakerException)


# ---- hooks ------------------------------------------------------------------------------------------


def _await_blocking(awaitable: Awaitable[Any], name: str) -> None:
    """Await the program's ``name`` callback's ``awaitable`` from synchronous code; its failure is logged as the
    program's (here, where only its own code runs), a failure to run it at all is left to the caller."""
    import asyncio  # ~40 ms to import; only async hooks need it

    async def run() -> None:
        try:
            await awaitable
        except Exception:
            swallow_user_error(name)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run())
        return
    # This thread's loop is busy running our (synchronous) caller: it cannot run the hook, so a helper
    # thread with its own loop does, and we wait for it. The hook sees the caller's context variables.
    context = contextvars.copy_context()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            context.run(asyncio.run, run())
        except BaseException as exc:  # handed back to the caller's thread, logged there
            failure.append(exc)

    helper = threading.Thread(target=target, name="agentwatch-hook", daemon=True)
    helper.start()
    helper.join()
    if failure:
        raise failure[0]


def _run_hook(hook: Callable[[Any], Any], argument: Any, name: str) -> None:
    """Run the program's ``name`` callback (``on_block``, ``on_alert``); its failure is logged as the program's."""
    try:
        result = hook(argument)
    except Exception:
        swallow_user_error(name)
        return
    if inspect.isawaitable(result):
        try:
            _await_blocking(result, name)
        except Exception:
            if inspect.iscoroutine(result):
                result.close()  # never run: no "was never awaited" warning on top of the logged error
            swallow_internal_error(f"awaiting the {name} callback")


@stop_on_exception
def _sink_transition(sink: BreakerSink, monitor: Monitor, record: dict[str, Any]) -> None:
    sink.transition(monitor, record)


@stop_on_exception
def _sink_alert(sink: BreakerSink, monitor: Monitor, alert: dict[str, Any]) -> None:
    sink.alert(monitor, alert)


@stop_on_exception
def _sink_blocked(sink: BreakerSink, error: CircuitBreakerException) -> None:
    sink.blocked(error)


@stop_on_exception(default=False)
def _sink_recover(recover: Callable[[BlockEvent], bool], event: BlockEvent) -> bool:
    return bool(recover(event))


# ---- validation -------------------------------------------------------------------------------------


def _number(name: str, value: Any, *, integer: bool = False, upper: float | None = None) -> Any:
    if value is None:
        return None
    right_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not right_type:  # bool is an int, but True as a limit is a mistake
        kind = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {kind} or None, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    if upper is not None and value > upper:
        raise ValueError(f"{name} must be between 0 and {upper}, got {value!r}")
    return int(value) if integer else float(value)


def _hook(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, not {type(value).__name__}")
    return value


def _sink(value: Any) -> BreakerSink | None:
    if value is not None and not isinstance(value, BreakerSink):
        raise TypeError("sink must have transition(), alert() and blocked() methods")
    return value
