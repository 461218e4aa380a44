"""Runs in flight, keyed by LangChain run id and shared by every handler instance.

Sharing makes an explicit handler and the zero-config one record each run once, and lets a run whose
parent was seen by another handler instance still hang under the right span.
"""

from __future__ import annotations

from contextvars import Token
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from agentwatch import LLMCall, Span
from agentwatch.instrumentation import AgentScope, attach, detach, get_current_agent_scopes

__all__ = ["Run", "RUNS", "enter", "leave"]


@dataclass(slots=True)
class Run:
    span: Span
    scopes: tuple[AgentScope, ...] = ()
    call: LLMCall | None = None
    in_graph: bool = False
    #: What ``enter`` made current for the code the run executes, undone when the run ends.
    entered: tuple[Token[Any], ...] = ()


def enter(run: Run) -> None:
    """Make the run's span current and its agent scopes those of this context while its code runs (a LangGraph
    node's function, a tool's body): an LLM call made there without LangChain (the openai SDK used directly) is
    recorded under it and counted against its agents. LangChain calls a run's start and end callbacks in the
    same context, and runs the code in a copy of it made after the start."""
    pushed = {id(scope.monitor) for scope in get_current_agent_scopes()}
    entered = attach(run.span)
    for scope in run.scopes:
        if id(scope.monitor) not in pushed:  # a scope the context has already (``with agentwatch.agent``)
            pushed.add(id(scope.monitor))
            entered += attach(agent=scope)
    run.entered = entered


def leave(run: Run) -> None:
    if run.entered:
        detach(run.entered)
        run.entered = ()


#: dict operations are atomic under the GIL; callbacks of one run never race with each other.
RUNS: dict[UUID, Run] = {}
