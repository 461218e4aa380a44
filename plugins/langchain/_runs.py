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
from agentwatch.instrumentation import AgentScope, Monitor, attach, attach_run_budget, get_current_agent_scopes

__all__ = ["Run", "RUNS", "entered"]


@dataclass(slots=True)
class Run:
    span: Span
    scopes: tuple[AgentScope, ...] = ()
    call: LLMCall | None = None
    in_graph: bool = False
    #: A model call's messages (or prompts): what it cost, if it is cut off before any usage comes.
    request: Any = None
    #: Opened by a handler with ``on_budget="interrupt"``: a block in a graph pauses for a human instead of raising.
    pauses: bool = False
    #: The per-run budgets (a LangGraph thread's) the run's code spends from, whichever layer makes its calls.
    budgets: tuple[Monitor, ...] = ()


def entered(run: Run) -> tuple[Token[Any], ...]:
    """Make the run's span current and push its agent scopes (those this context lacks) and its run budgets: an LLM
    call made there without LangChain (the openai SDK used directly) is recorded under the run and counted against its
    agents and its thread's budget."""
    pushed = {id(scope.monitor) for scope in get_current_agent_scopes()}
    tokens = attach(run.span)
    for scope in run.scopes:
        if id(scope.monitor) not in pushed:  # a scope the context has already (``with agentwatch.agent``)
            pushed.add(id(scope.monitor))
            tokens += attach(agent=scope)
    for budget in run.budgets:
        tokens += attach_run_budget(budget)
    return tokens


#: dict operations are atomic under the GIL; callbacks of one run never race with each other.
RUNS: dict[UUID, Run] = {}
