"""A scope decorating a generator function (sync or async): the scope is that of the generator's run.

Called, a generator function only makes a generator: its body runs at each ``next()`` / ``async for`` step, after
the call returned. Wrapped like a plain function, the scope opened and closed around the call and the body ran
outside it: a streaming endpoint's ``@agentwatch.trace("answer", budget=0.5) async def answer(): ... yield`` was not
limited at all. The scope now opens at the first step and closes when the generator ends (exhausted, raised, closed).

Its body runs in a context of its own, a copy of the consumer's at the first step, with the scope in it: between
steps the consumer's code runs in its own context, outside the scope (a ``with`` around a ``yield`` would leave
the scope current in the consumer's code, and could not be reset from the task that finalises the generator).
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._api import SpanScope

__all__ = ["scoped_async_generator", "scoped_generator"]


def scoped_generator(scope: SpanScope, generator: Callable[[], Generator[Any, Any, Any]]
                     ) -> Generator[Any, Any, Any]:
    """``yield from generator()`` with the body, and ``scope``, in a context of their own."""
    context = contextvars.copy_context()
    context.run(scope.__enter__)
    ended_by: BaseException | None = None
    try:
        return (yield from _steps_in(context, context.run(generator)))
    except BaseException as error:
        ended_by = error
        raise
    finally:
        context.run(scope._close, ended_by)


async def scoped_async_generator(scope: SpanScope, generator: Callable[[], AsyncGenerator[Any, Any]]
                                 ) -> AsyncGenerator[Any, Any]:
    """``async for item in generator(): yield item`` (``asend``/``athrow``/``aclose`` passed on) with the body, and
    ``scope``, in a context of their own."""
    context = contextvars.copy_context()
    context.run(scope.__enter__)
    ended_by: BaseException | None = None
    try:
        inner = context.run(generator)
        step: Callable[[Any], Awaitable[Any]] = inner.asend
        value: Any = None
        while True:
            try:
                item = await _InContext(context, step(value))
            except StopAsyncIteration:
                return
            try:
                value, step = (yield item), inner.asend
            except GeneratorExit:
                await _InContext(context, inner.aclose())
                raise
            except BaseException as thrown:
                value, step = thrown, inner.athrow
    except BaseException as error:
        ended_by = error
        raise
    finally:
        context.run(scope._close, ended_by)


class _InContext:
    """An awaitable running ``awaitable`` with each of its steps in ``context``; what it waits on (futures, whatever
    the event loop uses: asyncio, trio) passes through unchanged."""

    __slots__ = ("_context", "_awaitable")

    def __init__(self, context: contextvars.Context, awaitable: Awaitable[Any]) -> None:
        self._context = context
        self._awaitable = awaitable

    def __await__(self) -> Generator[Any, Any, Any]:
        context = self._context
        return (yield from _steps_in(context, context.run(self._awaitable.__await__)))


def _steps_in(context: contextvars.Context, steps: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """``yield from steps`` with each of its steps run in ``context``: a generator's body, or the iterator of an
    awaitable (what it yields, a future, passes through). ``send``, ``throw`` (a consumer's ``gen.throw``, a
    cancellation) and ``close`` reach ``steps`` as they would through ``yield from``."""
    step: Callable[[Any], Any] = steps.send
    value: Any = None
    while True:
        try:
            item = context.run(step, value)
        except StopIteration as stop:
            return stop.value
        try:
            value, step = (yield item), steps.send
        except GeneratorExit:
            context.run(steps.close)
            raise
        except BaseException as thrown:
            value, step = thrown, steps.throw
