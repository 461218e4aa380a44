"""The run a block leaves: ``e.resume`` is that of the outermost ``Runner.run`` the block passes out of.

A run can hold other runs: a guardrail that runs a checker agent. A block met in the inner run gets that run's resume
(``_turns.note_block``), but what the caller can continue is the run it started: each run the block passes out of
puts its own resume on it, so the caller gets the one of its run. A block inside a function tool (an agent used as a
tool included) passes out of the run as the SDK's ``UserError`` around it (``_tool_blocks``): the run raises the
block in its place, with the resume of the turn whose model call asked for the tool (that call is sent again).

A run's resume is that of its turn in flight once the turn's input is known (``note_turn``): the turn is sent again,
its model call and guardrails included. Before its first turn, the run as it was started.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from agentwatch.instrumentation import CircuitBreakerException, get_client, stop_on_exception

from ._tool_blocks import tool_block
from ._tracing import STREAMED_RESULT
from ._turns import Turn, resume_of

__all__ = ["note_turn", "run_scope", "streamed_run_scope", "streamed_guardrails"]


@dataclass(slots=True)
class _Run:
    """A run as it was started (its agent, input and options), and its turn in flight (or its last one) once that
    turn's input was known."""

    agent: Any
    given: Any
    options: dict[str, Any]
    turn: Turn | None = None


_RUN: ContextVar[_Run | None] = ContextVar("agentwatch_openai_agents_run", default=None)


def note_turn(turn: Turn) -> None:
    """``turn`` of the run in this context has its input: a block leaving the run resumes it."""
    run = _RUN.get()
    if run is not None:
        run.turn = turn


@stop_on_exception
def _leaving(run: _Run, blocked: CircuitBreakerException) -> None:
    turn = run.turn or _as_started(run)
    if turn is not None:
        blocked.resume = resume_of(turn)  # type: ignore[attr-defined]


def _as_started(run: _Run) -> Turn | None:
    """The run before its first turn, as a turn; None for a run resumed from a ``RunState`` (not the run's input)."""
    if not isinstance(run.given, str | list):
        return None
    from agents.items import ItemHelpers

    options = run.options
    previous = options.get("previous_response_id")
    conversation = options.get("conversation_id")
    return Turn(run.agent, session=options.get("session"),
                auto_previous_response_id=options.get("auto_previous_response_id") is True,
                input=ItemHelpers.input_to_new_input_list(run.given),
                previous_response_id=previous if isinstance(previous, str) else None,
                conversation_id=conversation if isinstance(conversation, str) else None)


async def _as_run(record: _Run, original: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``original(*args, **kwargs)`` awaited as the run ``record``: a block leaving it gets the run's resume."""
    token = _RUN.set(record)
    try:
        return await original(*args, **kwargs)
    except CircuitBreakerException as blocked:
        _leaving(record, blocked)
        raise
    except Exception as error:
        from_tool = tool_block(error)
        if from_tool is None:
            raise
        _leaving(record, from_tool)
    finally:
        _RUN.reset(token)
    # Raised outside the handler: the block's context stays what it was (not the SDK's UserError around it).
    raise from_tool


def run_scope(original: Callable[..., Any]) -> Callable[..., Any]:
    """``AgentRunner.run``, behind ``Runner.run`` and ``run_sync``."""

    @functools.wraps(original)
    async def run(self: Any, starting_agent: Any, input: Any, **kwargs: Any) -> Any:
        if get_client() is None:
            return await original(self, starting_agent, input, **kwargs)
        return await _as_run(_Run(starting_agent, input, kwargs), original, self, starting_agent, input, **kwargs)

    return run


def streamed_run_scope(original: Callable[..., Any]) -> Callable[..., Any]:
    """The task ``run_streamed`` starts (``start_streaming``, given keywords only): what it raises,
    ``stream_events()`` raises."""

    @functools.wraps(original)
    async def start_streaming(*args: Any, **kwargs: Any) -> Any:
        if get_client() is None:
            return await original(*args, **kwargs)
        # A run resumed from a RunState starts from the state, not from an input of its own.
        given = None if kwargs.get("is_resumed_state") else kwargs.get("starting_input")
        streamed = STREAMED_RESULT.set(kwargs.get("streamed_result"))
        try:
            return await _as_run(_Run(kwargs.get("starting_agent"), given, kwargs), original, *args, **kwargs)
        finally:
            STREAMED_RESULT.reset(streamed)

    return start_streaming


def streamed_guardrails(original: Callable[..., Any]) -> Callable[..., Any]:
    """A streamed run's input guardrails (``run_input_guardrails_with_queue``): run in a task of their own beside the
    run's turn, whose error ``stream_events()`` raises without it passing out of ``start_streaming``."""

    @functools.wraps(original)
    async def run_input_guardrails_with_queue(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original(*args, **kwargs)
        except CircuitBreakerException as blocked:
            run = _RUN.get()
            if run is not None:
                _leaving(run, blocked)
            raise

    return run_input_guardrails_with_queue
