"""Spans that are current only while a framework's own code runs, step by step.

Agents, teams and streaming clients are often async generators (AutoGen's AgentChat, AG2, Pydantic AI's
runs). A context variable set when the generator starts would leak into the consumer between items, so a
frame sets its values right before each step of the wrapped generator and resets them right after (same
task, same step: always valid).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextvars import ContextVar, Token
from typing import Any

from ._client import get_client
from ._context import AgentScope, attach, detach
from ._llm import end_span
from ._safe import stop_on_exception
from ._span import Span

__all__ = ["Frame", "open_frame", "stepped", "call_in_frame", "finish_frame"]


class Frame:
    """One span plus the context values the wrapped code runs under."""

    __slots__ = ("span", "scope", "extra", "translate", "on_result")

    def __init__(self, span: Span, scope: AgentScope | None = None,
                 extra: tuple[tuple[ContextVar[Any], Any], ...] = ()) -> None:
        self.span = span
        self.scope = scope
        self.extra = extra
        #: Turns an error leaving the wrapped code into the one the caller should see (teams use it).
        self.translate: Callable[[BaseException], BaseException] | None = None
        #: Sees the wrapped coroutine's result before the span ends (a tool's output).
        self.on_result: Callable[[Span, Any], None] | None = None

    def enter(self) -> tuple[Token[Any], ...]:
        context = attach(self.span, agent=self.scope)
        if not self.extra:
            return context
        tokens = [*context]  # a loop, not a generator expression: a generator's frame made at each step
        for var, value in self.extra:
            tokens.append(var.set(value))
        return tuple(tokens)

    @staticmethod
    def exit(tokens: tuple[Token[Any], ...]) -> None:
        detach(tokens)  # reset from another context: nothing of ours is left in this one

    @stop_on_exception
    def close(self, error: BaseException | None) -> None:
        if error is not None:
            # Imported here, for an error only: ``import agentwatch`` leaves asyncio to the program (test_startup), and
            # a ``from`` import of a package's name runs importlib's Python code (~0.26 µs) at every frame's end.
            from asyncio import CancelledError

            if isinstance(error, GeneratorExit | CancelledError):
                self.span.attributes["cancelled"] = True  # not an error of the work
                error = None
        end_span(self.span, error)

    def outgoing(self, error: BaseException) -> BaseException:
        if self.translate is None:
            return error
        return stop_on_exception(default=error)(self.translate)(error)


@stop_on_exception
def open_frame(name: str, kind: str, *, scope: AgentScope | None = None,
               attributes: dict[str, Any] | None = None,
               extra: tuple[tuple[ContextVar[Any], Any], ...] = ()) -> Frame | None:
    """A frame under the current span, or None when AgentWatch is not running."""
    client = get_client()
    if client is None:
        return None
    span = client.start_span(name, kind, attributes=attributes, agent=scope)
    return Frame(span, scope, extra)


async def stepped(inner: AsyncGenerator[Any, None], frame: Frame) -> AsyncGenerator[Any, None]:
    """Yield what ``inner`` yields, running each of its steps inside ``frame``; close the frame at the end."""
    error: BaseException | None = None
    try:
        while True:
            tokens = frame.enter()
            try:
                item = await inner.__anext__()
            except StopAsyncIteration:
                return
            finally:
                frame.exit(tokens)
            yield item
    except BaseException as raised:
        error = frame.outgoing(raised)
        if error is not raised:
            raise error from raised
        raise
    finally:
        tokens = frame.enter()
        try:
            await inner.aclose()
        finally:
            frame.exit(tokens)
            frame.close(error)


async def call_in_frame(frame: Frame, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Await ``function(*args, **kwargs)`` inside ``frame`` and close the frame with its outcome."""
    tokens = frame.enter()
    try:
        result = await function(*args, **kwargs)
    except BaseException as raised:
        frame.exit(tokens)
        error = frame.outgoing(raised)
        frame.close(error)
        if error is not raised:
            raise error from raised
        raise
    frame.exit(tokens)
    finish_frame(frame, result)
    return result


def finish_frame(frame: Frame, result: Any) -> None:
    """Close ``frame`` after the code it wrapped returned ``result`` (``on_result`` sees it first)."""
    if frame.on_result is not None:
        stop_on_exception(frame.on_result)(frame.span, result)
    frame.close(None)
