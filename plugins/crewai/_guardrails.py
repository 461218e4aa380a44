"""A task's guardrails run in the scope of the task's agent.

A guardrail written as text (``Task(guardrail="...")``) is CrewAI's ``LLMGuardrail``: a lone "Guardrail Agent" on the
task agent's own LLM, kicked off after that agent finished (its scope closed). Its calls counted against "Guardrail
Agent" alone, so a per-agent limit never saw the requests its agent's tasks cause. Pushed around the guardrail, the
task's agent scope takes them as it takes a delegated coworker's: the calls count against both. A guardrail written
as a function that calls a model itself counts the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from crewai.task import Task

from agentwatch.instrumentation import AgentScope, attach, detach, get_current_agent_scopes
from agentwatch.plugins.http._patching import Patcher

__all__ = ["patch", "unpatch"]

_PATCHER = Patcher()
ScopeOf = Callable[[Any], "AgentScope | None"]


def patch(scope_of: ScopeOf) -> None:
    """``scope_of(agent)``: the agent scope of a CrewAI agent, or None (no client, no role)."""
    if hasattr(Task, "_invoke_guardrail_function"):  # another CrewAI layout: guardrails stay in their own scope
        _PATCHER.replace(Task, "_invoke_guardrail_function", lambda original: _sync(original, scope_of))
    if hasattr(Task, "_ainvoke_guardrail_function"):
        _PATCHER.replace(Task, "_ainvoke_guardrail_function", lambda original: _async(original, scope_of))


def unpatch() -> None:
    _PATCHER.restore()


def _scope(scope_of: ScopeOf, args: tuple[Any, ...], kwargs: dict[str, Any]) -> AgentScope | None:
    agent = args[1] if len(args) > 1 else kwargs.get("agent")  # (task_output, agent, tools, guardrail, ...)
    scope = scope_of(agent) if agent is not None else None
    if scope is not None and any(pushed.monitor is scope.monitor for pushed in get_current_agent_scopes()):
        return None  # the agent's scope is pushed already (its task run inside its own tool, a scope of yours)
    return scope


def _sync(original: Callable[..., Any], scope_of: ScopeOf) -> Callable[..., Any]:
    @functools.wraps(original)
    def invoke_guardrail(self: Any, *args: Any, **kwargs: Any) -> Any:
        scope = _scope(scope_of, args, kwargs)
        if scope is None:
            return original(self, *args, **kwargs)
        token = attach(agent=scope)
        try:
            return original(self, *args, **kwargs)
        finally:
            detach(token)

    return invoke_guardrail


def _async(original: Callable[..., Coroutine[Any, Any, Any]], scope_of: ScopeOf) -> Callable[..., Any]:
    @functools.wraps(original)
    async def ainvoke_guardrail(self: Any, *args: Any, **kwargs: Any) -> Any:
        scope = _scope(scope_of, args, kwargs)
        if scope is None:
            return await original(self, *args, **kwargs)
        token = attach(agent=scope)
        try:
            return await original(self, *args, **kwargs)
        finally:
            detach(token)

    return ainvoke_guardrail
