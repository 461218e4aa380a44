"""Structure for traces: trace/span/agent/session/cron/task scopes, events, metrics, alerts, metadata.

Every scope works as a sync or async context manager and as a decorator of sync or async functions, generator
functions included (the scope is the generator's run: ``_scoped_generators``).
Without ``init()`` they still nest correctly but nothing is exported or checked.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, Final, Self, TypeVar, overload

from ._breaker import CircuitBreakerException, Monitor

# isort: off
# _client before _capture: _capture imports _client, which imports names from _capture (a cycle that holds only
# when _client starts it).
from ._client import get_client
from ._capture import bounded
# isort: on
from ._context import AGENT_SCOPES, CURRENT_SPAN, METADATA, SESSION_ID, SESSION_KEY, AgentScope, note_scoped
from ._llm import mark_blocked
from ._otel_current import make_current, restore
from ._run_budget import RUN_MONITORS, run_monitor
from ._safe import stop_on_exception
from ._scoped_generators import scoped_async_generator, scoped_generator
from ._span import Span, new_trace_id

__all__ = ["SpanScope", "AgentContext", "TraceContext", "trace", "span", "agent", "agent_fn", "session", "task", "cron",
           "event", "metric", "alert", "set_metadata"]

F = TypeVar("F", bound=Callable[..., Any])

#: The decorator and span of the innermost call of a decorated class's method (``SpanScope._decorate_class``): a method
#: of that class called while that span is still the current one (``run()`` calling ``self._format()``) runs straight
#: in it, with no span of its own.
_METHOD_CALL: ContextVar[tuple[SpanScope, Span] | None] = ContextVar("agentwatch_method_call", default=None)

#: The longest span name and kind the collector stores (``server/_model.py``): a span over either is refused there, so
#: a trace named after a long question, or ``session.log(message)`` of a long message, was lost (and the spans under a
#: refused trace left without their root), while ``flush()`` said True.
NAME_MAX: Final = 2000
KIND_MAX: Final = 64


def _fit(text: Any, limit: int) -> str:
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= limit else text[:limit]


#: Guards which entry of a scope object is which (``SpanScope._begin`` / ``_end``); held for a few list operations.
_ENTRIES_LOCK = threading.Lock()


class SpanScope:
    """A span that is the current span while the block (or decorated call) runs; with an exporter to the program's
    OpenTelemetry backend, its current OpenTelemetry span too (``_otel_current``)."""

    #: Whether the span is made current in OpenTelemetry's context: not a session's, which groups traces of their own.
    _otel_current = True
    #: For a call of a decorated class's method: the decorator the scope is a copy of (``_METHOD_CALL``).
    _method_of: SpanScope | None = None
    #: The entries of this object in force (itself first, then copies), while it is entered: see ``_begin``.
    _entries: list[SpanScope] | None = None

    def __init__(self, name: str, kind: str = "span", *, attributes: dict[str, Any] | None = None) -> None:
        self.name = _fit(name, NAME_MAX)
        self.kind = _fit(kind, KIND_MAX)
        self._attributes = dict(attributes or {})
        self.span: Span | None = None
        self._tokens: list[Token[Any]] = []
        self._otel: tuple[Any, Any] | None = None

    def _fresh(self) -> Self:
        """A copy for one decorated call, so concurrent calls do not share span state."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.span, clone._tokens, clone._otel, clone._entries = None, [], None, None
        return clone

    def _begin(self) -> Self:
        """The scope one entry opens: this object, or a copy of it while this object is already entered. One object
        entered by concurrent tasks or threads (a module-level ``bot = agentwatch.agent("Bot")``, ``async with bot:``
        per request) or nested in itself held one span and one list of context tokens for all of them: every
        entry but the last was never ended (its span lost, the calls under it left with a parent that never
        arrived) and the contexts were reset out of order."""
        with _ENTRIES_LOCK:
            entries = self._entries
            if entries is None:
                self._entries = [self]
                return self
            entry = self._fresh()
            entries.append(entry)
            return entry

    def _end(self) -> SpanScope:
        """The entry an exit closes: the one whose span is current here (each task or thread sees its own), else
        the latest."""
        with _ENTRIES_LOCK:
            entries = self._entries
            if not entries:
                return self
            current = CURRENT_SPAN.get()
            index = len(entries) - 1
            for position in range(index, -1, -1):
                if entries[position].span is current:
                    index = position
                    break
            entry = entries.pop(index)
            if not entries:
                self._entries = None
            return entry

    # ---- span life ----------------------------------------------------------------------------

    @stop_on_exception
    def _open(self) -> None:
        client = get_client()
        attributes = bounded(self._attributes)  # the program's values: copied, and bounded as captured text is
        if client is not None:
            self.span = client.start_span(self.name, self.kind, attributes=attributes)
            if client.otel_scopes and self._otel_current:
                self._otel = make_current(self.span)
        else:
            parent = CURRENT_SPAN.get()
            self.span = Span(self.name, self.kind, trace_id=parent.trace_id if parent else None,
                             parent_span_id=parent.span_id if parent else None, attributes=attributes)
        # Metadata set inside the scope (set_metadata) ends with it: else a request's user stayed on every later
        # span of the thread, the next request's too.
        self._tokens.append(METADATA.set(METADATA.get()))
        self._tokens.append(CURRENT_SPAN.set(self.span))
        if self._method_of is not None:
            self._tokens.append(_METHOD_CALL.set((self._method_of, self.span)))

    def _close_span(self, error: BaseException | None) -> None:
        span = self.span
        if span is None:
            return
        if isinstance(error, CircuitBreakerException):
            mark_blocked(span, error)
        elif error is not None and not isinstance(error, GeneratorExit):
            span.record_error(error)
        self._before_end(span, error)
        client = get_client()
        if client is not None:
            client.end_span(span)
        else:
            span.finish()

    def _before_end(self, span: Span, error: BaseException | None) -> None:
        """Subclasses add what they know at the end (cron duration, session result)."""

    @stop_on_exception
    def _close(self, error: BaseException | None) -> None:
        if self._otel is not None:
            made, self._otel = self._otel, None
            restore(made)
        while self._tokens:
            token = self._tokens.pop()
            try:
                token.var.reset(token)
            except ValueError:  # exited in another context than it was entered in
                pass
        self._close_span(error)

    def set_attribute(self, key: str, value: Any) -> None:
        if self.span is not None:
            self.span.attributes[key] = bounded(value)

    # ---- protocols ----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        entry = self._begin()
        entry._open()
        return entry

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._end()._close(error)

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._end()._close(error)

    def __call__(self, func: F) -> F:
        if inspect.isclass(func):
            return self._decorate_class(func)  # type: ignore[return-value]
        return self._wrap(func, self._fresh)

    def _method_scope(self) -> SpanScope:
        clone = self._fresh()
        clone._method_of = self
        return clone

    def _wrap_method(self, func: F, hooked_for: type | None = None) -> F:
        """A method of a decorated class: its call runs in a scope of its own unless it is called from a method of the
        class in that scope (a helper of ``run()``), where it runs straight in it: one span, not one per helper.
        ``hooked_for``: the decorated class whose subclass hook wraps a subclass's method (``_unwrap_method``)."""
        mark = getattr(func, "_agentwatch_method", None)
        # Decorators stacked on the class (``@agent(...) @task(...) class C``): a helper called in the innermost one's
        # scope runs straight through all of them.
        stacked = mark[2] if isinstance(mark, tuple) and mark[0] is func else ()
        decorators = (*stacked, self)

        def in_a_method_of_the_class() -> bool:
            call = _METHOD_CALL.get()
            return call is not None and call[0] in decorators and call[1] is CURRENT_SPAN.get()

        wrapped = self._wrap(func, self._method_scope, straight=in_a_method_of_the_class)
        wrapped._agentwatch_method = (wrapped, hooked_for, decorators)  # type: ignore[attr-defined]
        return wrapped

    def _wrap(self, func: F, fresh: Callable[[], SpanScope], straight: Callable[[], bool] | None = None) -> F:
        if inspect.isasyncgenfunction(func):

            @functools.wraps(func)
            def async_generator_wrapper(*args: Any, **kwargs: Any) -> Any:
                if straight is not None and straight():
                    return func(*args, **kwargs)
                return scoped_async_generator(fresh(), functools.partial(func, *args, **kwargs))

            return async_generator_wrapper  # type: ignore[return-value]

        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
                if straight is not None and straight():
                    return func(*args, **kwargs)
                return scoped_generator(fresh(), functools.partial(func, *args, **kwargs))

            return generator_wrapper  # type: ignore[return-value]

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if straight is not None and straight():
                    return await func(*args, **kwargs)
                async with fresh():
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if straight is not None and straight():
                return func(*args, **kwargs)
            with fresh():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def _decorate_class(self, cls: type) -> type:
        """``@agentwatch.agent(...) class Bot: ...``: the class stays the class (``isinstance``, subclasses, class
        attributes), and each call of its methods runs in the scope, so the LLM calls they make are the agent's:
        recorded under it, checked against its limits. Its methods are the ones it defines, the public ones it
        inherits (given wrappers on the class itself; not ``object``'s) and those its subclasses define (an
        ``__init_subclass__`` hook; a subclass decorated in turn is its own decorator's). Dunder methods other than
        ``__call__`` are left alone (construction, comparison, ``repr`` make no calls worth a span)."""
        seen: set[str] = set()
        for owner in cls.__mro__:
            if owner is object:
                break
            for name, member in list(vars(owner).items()):
                if name in seen:
                    continue
                seen.add(name)
                if owner is cls:
                    self._wrap_member(cls, name, member, keep_for=cls)
                elif not name.startswith("_") or name == "__call__":
                    self._wrap_member(cls, name, member)
        self._hook_subclasses(cls)
        return cls

    def _wrap_member(self, cls: type, name: str, member: Any, keep_for: type | None = None,
                     hooked_for: type | None = None) -> None:
        if name.startswith("__") and name != "__call__":
            return
        if isinstance(member, (staticmethod, classmethod)):
            if inspect.isfunction(member.__func__):
                method = self._wrap_method(_unwrap_method(member.__func__, keep_for), hooked_for)
                setattr(cls, name, type(member)(method))
        elif inspect.isfunction(member):
            setattr(cls, name, self._wrap_method(_unwrap_method(member, keep_for), hooked_for))

    def _hook_subclasses(self, cls: type) -> None:
        """The methods a subclass defines run in the scope too; an ``__init_subclass__`` the class has still runs."""
        own = vars(cls).get("__init_subclass__")
        scope = self

        def __init_subclass__(subclass: type, **kwargs: Any) -> None:
            if isinstance(own, classmethod):
                own.__func__(subclass, **kwargs)
            else:
                super(cls, subclass).__init_subclass__(**kwargs)  # type: ignore[arg-type, misc]
            for name, member in list(vars(subclass).items()):
                scope._wrap_member(subclass, name, member, keep_for=cls, hooked_for=cls)

        cls.__init_subclass__ = classmethod(__init_subclass__)  # type: ignore[assignment]


def _unwrap_method(func: Callable[..., Any], keep_for: type | None = None) -> Callable[..., Any]:
    """What a decorated class runs its method in. Inherited (``keep_for`` None): the method itself, not the base's
    wrapper, so it runs in the scope of the class it is called on, not in both. Its own (``keep_for``: the class):
    without the wrappers a base's subclass hook gave it, and with those of decorators stacked on the class itself
    (``@agent(...) @task(...) class C``: each of C's calls is a task inside the agent)."""
    while True:
        mark = getattr(func, "_agentwatch_method", None)
        if not (isinstance(mark, tuple) and mark[0] is func):
            return func
        hooked_for = mark[1]
        if keep_for is not None and (hooked_for is None or hooked_for is keep_for):
            return func
        func = func.__wrapped__  # type: ignore[attr-defined]


class AgentContext(SpanScope):
    """An agent scope: its span, and its monitor checked (with every enclosing one) before each call."""

    def __init__(self, name: str, role: str | None = None, agent_id: str | None = None,
                 **limits: Any) -> None:
        super().__init__(name, "agent")
        from ._config import validate_agent_limits

        self._limits = validate_agent_limits(f"agent({name!r})", limits)
        self._role = role
        self._agent_id = agent_id
        self.scope: AgentScope | None = None

    @property
    def monitor(self) -> Monitor | None:
        return self.scope.monitor if self.scope is not None else None

    def _open(self) -> None:
        client = get_client()
        if client is not None:
            self.scope = stop_on_exception(client.agent_scope)(
                self.name, role=self._role, agent_id=self._agent_id, **self._limits)
            if self.scope is not None:
                note_scoped()
                self._tokens.append(AGENT_SCOPES.set((*AGENT_SCOPES.get(), self.scope)))
        super()._open()


class TraceContext(SpanScope):
    """A trace scope; with a ``budget``, every LLM call inside shares that many USD (not time-windowed)."""

    def __init__(self, name: str, budget: float | None = None, hard_budget: bool | None = None,
                 attributes: dict[str, Any] | None = None) -> None:
        super().__init__(name, "trace", attributes=attributes)
        from ._breaker_contract import _number

        self._budget = _number("budget", budget)
        if hard_budget is not None and not isinstance(hard_budget, bool):
            raise TypeError(f"hard_budget must be a bool or None, not {type(hard_budget).__name__}")
        self._hard = hard_budget
        self.monitor: Monitor | None = None

    def _open(self) -> None:
        client = get_client()
        if client is not None and self._budget is not None:
            # A new monitor per run: each entry (and each decorated call) has the whole budget.
            self.monitor = stop_on_exception(run_monitor)(client, self.name, self._budget, self._hard)
            if self.monitor is not None:
                note_scoped()
                self._tokens.append(RUN_MONITORS.set((*RUN_MONITORS.get(), self.monitor)))
        super()._open()

    def _before_end(self, span: Span, error: BaseException | None) -> None:
        monitor = self.monitor
        if monitor is not None:
            span.attributes["trace.budget"] = monitor.budget_per_hour
            span.attributes["trace.spent"] = monitor.snapshot()["spend_last_hour"]


class SessionContext(SpanScope):
    """A session: every span started inside carries its id (``session.id``), so the collector groups the traces
    of every entry with the same id (a conversation, a job's runs, a blocked run and its resume) into one."""

    _otel_current = False

    def __init__(self, name: str | None = None, session_id: str | None = None) -> None:
        if session_id is not None and not isinstance(session_id, str):
            raise TypeError(f"session_id must be a str, not {type(session_id).__name__}")
        self.id = session_id or name or new_trace_id()
        self._generated = not (session_id or name)
        name = name or "session"
        super().__init__(name, "session", attributes={"session.name": name, SESSION_KEY: self.id})
        self._result: Any = None

    def _fresh(self) -> Self:
        clone = super()._fresh()
        assert isinstance(clone, SessionContext)
        if self._generated:  # a decorated function without a session name: each call is a session of its own
            clone.id = new_trace_id()
            clone._attributes = {**self._attributes, SESSION_KEY: clone.id}
        return clone

    def _open(self) -> None:
        note_scoped()
        self._tokens.append(SESSION_ID.set(self.id))
        super()._open()

    def log(self, message: str, **data: Any) -> None:
        event(message, data or None)

    def set_result(self, result: Any) -> None:
        self._result = result

    def _before_end(self, span: Span, error: BaseException | None) -> None:
        if self._result is not None:
            span.attributes["session.result"] = self._result


class CronContext(SpanScope):
    def __init__(self, name: str, schedule: str | None = None, grace_seconds: float | None = None) -> None:
        attributes: dict[str, Any] = {"cron.name": name}
        # Sent on every run so the collector learns the schedule from the job itself; the collector validates
        # the expression (the SDK takes no cron-parsing dependency).
        if isinstance(schedule, str) and schedule.strip():
            attributes["cron.schedule"] = schedule.strip()
        if isinstance(grace_seconds, (int, float)) and not isinstance(grace_seconds, bool) and grace_seconds >= 0:
            attributes["cron.grace_seconds"] = grace_seconds
        super().__init__(name, "cron", attributes=attributes)
        self._started = 0.0

    def _open(self) -> None:
        self._started = time.perf_counter()
        super()._open()
        self._announce()

    @stop_on_exception
    def _announce(self) -> None:
        # The cron span is exported when the job ends; this instant marker (inside the cron span) tells the
        # collector at once that the run started: a job with a schedule running longer than its grace is not
        # reported missed, and one without (the SDK spec's ``cron("nightly-cleanup")``) is listed as running.
        _instant(self.name, "cron_start", dict(self._attributes))

    def _before_end(self, span: Span, error: BaseException | None) -> None:
        span.attributes["cron.duration_ms"] = (time.perf_counter() - self._started) * 1000
        span.attributes["cron.success"] = error is None


def _bare(target: object) -> bool:
    """``@agentwatch.trace`` written without parentheses (the SDK spec's ``@pulse.trace``, ``@pulse.agent``,
    ``@pulse.task``): the name argument is then the decorated function or class itself. Taken for a name, it made a
    scope that replaced the function: ``job(21)`` returned a wrapper and never ran the job."""
    return callable(target) and not isinstance(target, str)


def _name_of(target: Any) -> str:
    return str(getattr(target, "__name__", None) or type(target).__name__)


@overload
def trace(name: F, /) -> F: ...
@overload
def trace(name: str, *, budget: float | None = None, hard_budget: bool | None = None,
          **attributes: Any) -> TraceContext: ...
def trace(name: Any, *, budget: float | None = None, hard_budget: bool | None = None,
          **attributes: Any) -> Any:
    """Group everything inside into one trace (a new one, or a child if a trace is already open).

    ``budget`` (USD): every LLM call inside, from any framework, shares it for the whole run (no time
    window); the call that finds it spent is blocked with scope ``"trace"``. ``hard_budget`` (default: the
    ``init`` setting) reserves each call's worst case first, so the run never spends more than ``budget``.
    ``@agentwatch.trace`` without arguments decorates with a trace named after the function or class.
    """
    if _bare(name):
        return TraceContext(_name_of(name), budget, hard_budget, attributes)(name)
    return TraceContext(name, budget, hard_budget, attributes)


@overload
def span(name: F, /) -> F: ...
@overload
def span(name: str, kind: str = "span", **attributes: Any) -> SpanScope: ...
def span(name: Any, kind: str = "span", **attributes: Any) -> Any:
    if _bare(name):
        return SpanScope(_name_of(name), kind, attributes=attributes)(name)
    return SpanScope(name, kind, attributes=attributes)


@overload
def task(name: F, /) -> F: ...
@overload
def task(name: str, **attributes: Any) -> SpanScope: ...
def task(name: Any, **attributes: Any) -> Any:
    if _bare(name):
        return SpanScope(_name_of(name), "task", attributes=attributes)(name)
    return SpanScope(name, "task", attributes=attributes)


@overload
def agent(name: F, /) -> F: ...
@overload
def agent(name: str, role: str | None = None, agent_id: str | None = None, *,
          budget_per_hour: float | None = None, max_error_rate: float | None = None,
          max_calls_per_minute: int | None = None, block_on_threshold: bool | None = None,
          hard_budget: bool | None = None, on_alert: Callable[[dict[str, Any]], Any] | None = None,
          on_block: Callable[[Any], Any] | None = None) -> AgentContext: ...
def agent(name: Any, role: str | None = None, agent_id: str | None = None, *,
          budget_per_hour: float | None = None, max_error_rate: float | None = None,
          max_calls_per_minute: int | None = None, block_on_threshold: bool | None = None,
          hard_budget: bool | None = None, on_alert: Callable[[dict[str, Any]], Any] | None = None,
          on_block: Callable[[Any], Any] | None = None) -> Any:
    """An agent scope. The same name reuses one monitor, so its budget is per agent, not per block.

    ``hard_budget=True``: each call reserves its worst-case cost first and is blocked unless it fits.
    ``@agentwatch.agent`` without arguments: an agent named after the decorated function or class.
    """
    limits = {key: value for key, value in {
        "budget_per_hour": budget_per_hour, "max_error_rate": max_error_rate,
        "max_calls_per_minute": max_calls_per_minute, "block_on_threshold": block_on_threshold,
        "hard_budget": hard_budget,
        "on_alert": on_alert, "on_block": on_block}.items() if value is not None}
    if _bare(name):
        return AgentContext(_name_of(name), role, agent_id, **limits)(name)
    return AgentContext(name, role, agent_id, **limits)


agent_fn = agent


@overload
def session(name: F, /) -> F: ...
@overload
def session(name: str | None = None, *, session_id: str | None = None) -> SessionContext: ...
def session(name: Any = None, *, session_id: str | None = None) -> Any:
    """Group traces into a session: spans started inside carry ``session.id`` = ``session_id``, else ``name``
    (else a new random id, ``s.id``). Enter it again with the same id, in any process, to add traces to it.
    ``@agentwatch.session`` without arguments: a session named after the decorated function."""
    if _bare(name):
        return SessionContext(_name_of(name), session_id)(name)
    return SessionContext(name, session_id)


@overload
def cron(name: F, /) -> F: ...
@overload
def cron(name: str, schedule: str | None = None, grace_seconds: float | None = None) -> CronContext: ...
def cron(name: Any, schedule: str | None = None, grace_seconds: float | None = None) -> Any:
    """Monitor a scheduled job: start, end, duration and success or failure.

    With ``schedule`` (a cron expression, UTC) and ``grace_seconds`` the collector also knows when the job
    should have run, and marks each expected run ok, failed, late or missed. ``@agentwatch.cron`` without arguments:
    a job named after the decorated function.
    """
    if _bare(name):
        return CronContext(_name_of(name), schedule, grace_seconds)(name)
    return CronContext(name, schedule, grace_seconds)


def _instant(name: str, kind: str, attributes: dict[str, Any]) -> None:
    client = get_client()
    if client is None:
        return
    instant = client.start_span(_fit(name, NAME_MAX), kind, attributes=bounded(attributes))
    client.end_span(instant)


@stop_on_exception
def event(name: str, data: Any = None) -> None:
    """Record a point-in-time event under the current span."""
    attributes = dict(data) if isinstance(data, dict) else ({"data": data} if data is not None else {})
    _instant(name, "event", attributes)


@stop_on_exception
def metric(name: str, value: float, **attributes: Any) -> None:
    _instant(name, "metric", {"metric.name": name, "metric.value": value, **attributes})


@stop_on_exception
def alert(message: str, severity: str = "warning", **details: Any) -> None:
    """Raise a manual alert: recorded as a span, passed to ``agentwatch_alert`` hooks and the collector."""
    client = get_client()
    record = {"reason": "manual", "message": message, "severity": severity, "scope": "global",
              "scope_id": client.monitor.scope_id if client else "global", "threshold": None, "current": None,
              "state": client.monitor.state if client else None, **details}
    _instant(f"alert: {message}"[:200], "alert", record)
    if client is not None:
        client.plugin_manager.hook.agentwatch_alert(alert=dict(record))


@stop_on_exception
def set_metadata(**values: Any) -> None:
    """Attach key/values to the current span and to every span started later in this context, until the scope
    (``trace``, ``agent``, ``span``, ``session`` ...) it was set in ends."""
    note_scoped()
    # Copies, bounded as captured text is (32 levels, 4,000 characters a string): the program's own lists and dicts
    # changed later changed spans not exported yet, and one nested deeper than the collector takes lost its spans.
    values = bounded(values)
    METADATA.set({**(METADATA.get() or {}), **values})
    current = CURRENT_SPAN.get()
    if current is not None:
        current.attributes.setdefault("metadata", {}).update(values)
