"""Give a team's caller the ``CircuitBreakerException`` that AgentChat turned into a ``RuntimeError``.

A team runs its agents in an agent runtime; an error there is serialised (``SerializableException``)
and re-raised by ``run_stream`` as ``RuntimeError("CircuitBreakerException: ...")`` (a subclass under its own
name: another framework's block raised in a tool): the type, the ``.monitor`` and the fields are lost. The original
is kept on the team run (a context variable that the runtime's tasks inherit) and, for runtimes started elsewhere,
among the few most recent blocks, matched by its serialised text.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from contextvars import ContextVar
from typing import NoReturn

from agentwatch import CircuitBreakerException

__all__ = ["TeamRun", "TEAM_RUN", "note_blocked", "raise_blocked", "unwrap_blocked"]

_RECENT: deque[CircuitBreakerException] = deque(maxlen=32)
_RECENT_LOCK = threading.Lock()


class TeamRun:
    """One ``run_stream`` of a team; ``parent`` is the team it runs inside, if any."""

    __slots__ = ("parent", "blocked")

    def __init__(self, parent: TeamRun | None) -> None:
        self.parent = parent
        self.blocked: CircuitBreakerException | None = None


TEAM_RUN: ContextVar[TeamRun | None] = ContextVar("agentwatch_autogen_team_run", default=None)


def note_blocked(error: CircuitBreakerException) -> None:
    """Remember a block on every enclosing team run, and among the recent ones."""
    run = TEAM_RUN.get()
    while run is not None:
        run.blocked = error
        run = run.parent
    with _RECENT_LOCK:
        _RECENT.append(error)


async def raise_blocked(blocked: CircuitBreakerException) -> NoReturn:
    """Raise a block inside an agent's run the way a provider error arrives: noted, after a turn of the event loop.

    AgentChat's runtime is not safe against an agent that fails before its next ``await`` (a ``SelectorGroupChat``
    could be left stuck; a team whose agent failed right after publishing its tool events hangs when continued); a
    real client always awaits its HTTP request first. Nothing is sent either way: the yield is only a turn of the
    event loop."""
    note_blocked(blocked)
    await asyncio.sleep(0)
    raise blocked


def _is_serialised(text: str, blocked: CircuitBreakerException) -> bool:
    """Whether ``text`` is ``blocked`` as AgentChat's ``SerializableException`` writes it: "<type>: <message>", then
    "\nTraceback:\n<traceback>". The type is the block's own class: a framework's subclass raised in a tool (a LangGraph
    graph's ``GraphCircuitBreakerException``, CrewAI's ``CrewAICircuitBreakerException``) is named so, not as
    ``CircuitBreakerException``."""
    head = f"{type(blocked).__name__}: {blocked}"
    return text == head or text.startswith(head + "\nTraceback:\n")


def unwrap_blocked(error: BaseException, run: TeamRun | None = None) -> CircuitBreakerException | None:
    """The ``CircuitBreakerException`` behind ``error`` (itself, a cause, or AgentChat's ``RuntimeError``
    wrapping one), or None if ``error`` is not a block."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, CircuitBreakerException):
            return current
        current = current.__cause__ or current.__context__
    text = str(error)
    if run is not None and run.blocked is not None and _is_serialised(text, run.blocked):
        return run.blocked
    with _RECENT_LOCK:
        for candidate in reversed(_RECENT):
            if _is_serialised(text, candidate):
                return candidate
    return None
