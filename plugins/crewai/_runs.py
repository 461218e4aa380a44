"""A kickoff is a run: a block anywhere inside it stops the whole run and reaches kickoff()'s caller.

CrewAI turns every exception raised while a tool runs into text for the model: the delegation tools of
hierarchical crews and ``allow_delegation=True`` (``BaseAgentTool._execute``) and tool execution in
general (``ToolUsage``). A block raised in a delegated agent (or in an LLM call a tool makes) therefore
becomes a tool result, and the calling agent carries on; with a per-agent limit its own scope is not
blocked, so its next request would go out and ``kickoff()`` would return normally.

So a block is recorded on the run (``Crew.kickoff*``, ``Flow.kickoff*``, a lone ``Agent.kickoff*``) it
happens in, and:

- every later LLM call of that run is refused before its request while the scope that blocked still
  blocks, so the calling agent, which CrewAI does not shield, raises in turn;
- the run's ``kickoff*`` raises the block if it would otherwise return, or fail with another error.

A recovery (``e.monitor.increase_budget(...)``, ``reset_windows()``, a pause that ended) lifts the
refusal at once: the limits are checked again, nothing is remembered beyond the run. A block that
leaves a run started inside a crew's or agent's run (a tool that kicks off a crew, an LLM guardrail) is
recorded on the outer run too, since CrewAI hides it there; one that leaves a crew a Flow step started,
or that a step's own ``LLM.call`` raises, has reached user code, which may catch it.

A Flow's run is also its span (``graph``, "flow:<name>"): current while the Flow runs, so the crews its steps kick
off and the LLM calls they make themselves hang under it, one trace per ``kickoff*``. A Flow's ``kickoff`` runs its
``kickoff_async`` (and a streamed Flow its ``kickoff`` later, not streaming): the outermost non-streaming boundary
of a Flow opens its span.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Coroutine
from contextvars import ContextVar, Token
from typing import Any

from crewai.agent.core import Agent
from crewai.agents.agent_builder.base_agent_executor import BaseAgentExecutor
from crewai.crew import Crew
from crewai.flow.runtime import Flow

import agentwatch
from agentwatch import CircuitBreakerException, Span
from agentwatch.instrumentation import AgentScope, attach, detach, end_span
from agentwatch.plugins.http._patching import Patcher

from ._errors import CrewAICircuitBreakerException
from ._hook_registration import put_back
from ._roles import note_roles

__all__ = ["Run", "blocked_in", "current_run", "is_run", "patch", "unpatch"]

#: ``CircuitBreakerException.reason`` of a hard budget's refusal.
_HARD_BUDGET = "hard_budget"


class Run:
    """One ``kickoff*`` in flight; shared (not copied) by every thread and task CrewAI starts for it."""

    __slots__ = ("parent", "owner", "is_flow", "blocks", "scopes", "span", "stopped", "_attached", "_lock")

    def __init__(self, parent: Run | None, owner: Any) -> None:
        self.parent = parent
        self.owner = owner
        self.is_flow = isinstance(owner, Flow)
        #: A Flow's span, and what made it current (``_open_flow_span``).
        self.span: Span | None = None
        self._attached: tuple[Any, ...] = ()
        #: The blocks of this run not yet seen by kickoff()'s caller (the first first), and the agent scopes of
        #: the calls they blocked: checked again before each later call, with the monitors that blocked (a scope
        #: the call's code opened itself, ``with agentwatch.agent(...)`` in a tool, is known by its monitor only).
        self.blocks: tuple[CircuitBreakerException, ...] = ()
        self.scopes: tuple[AgentScope, ...] = ()
        #: A Flow's run: a block left one of its steps uncaught (``_steps``); no later step starts while it holds.
        self.stopped = False
        self._lock = threading.Lock()

    def record(self, blocked: CircuitBreakerException, scopes: tuple[AgentScope, ...]) -> None:
        """Remember a block CrewAI may hide from this run's caller; a Flow's own run remembers none.

        A call made in a Flow's own run came straight from a step (the crews and agents a step kicks off are
        runs of their own), and CrewAI hides no block there: it reaches the step's code, which may catch it
        and carry on (a fallback), and ``kickoff()`` then returns. Uncaught, it fails the Flow by itself."""
        if self.is_flow:
            return
        with self._lock:
            if blocked not in self.blocks:
                self.blocks = (*self.blocks, blocked)
            self.scopes = (*self.scopes, *(scope for scope in scopes if scope not in self.scopes))

    def stop(self, blocked: CircuitBreakerException) -> None:
        """A block left a step of this Flow's run uncaught: the run has failed by it, whatever CrewAI makes of the
        step's failure (racing listeners tolerate one; parallel branches run on)."""
        with self._lock:
            self.stopped = True
            if blocked not in self.blocks:
                self.blocks = (*self.blocks, blocked)

    def stopped_by(self) -> CircuitBreakerException | None:
        """The block that stops this Flow's run from starting another step, while it holds."""
        return self.still_blocked() if self.stopped else None

    def still_blocked(self) -> CircuitBreakerException | None:
        """The block that still holds for this run (a fresh one, current state), or None if it lifted."""
        blocks = self.blocks
        if not blocks:
            return None
        monitors = tuple(blocked.monitor for blocked in blocks if blocked.monitor is not None)
        try:
            agentwatch.check_limits(scopes=self.scopes, budgets=monitors)
        except CircuitBreakerException as blocked:
            return blocked
        for refused in blocks:
            if _refusal_holds(refused):
                return refused
        with self._lock:
            if self.blocks is blocks:
                self.blocks, self.scopes = (), ()
        return None


def _refusal_holds(blocked: CircuitBreakerException) -> bool:
    """A hard budget's refusal still holds: the refused call's worst case still does not fit its budget.

    Such a refusal leaves its monitor CLOSED (nothing was spent), so ``check_limits`` passes after it; the run stays
    refused until a recovery makes room for that call (``increase_budget``, ``reset_windows``, spend leaving the
    hour's window, the hard budget switched off)."""
    monitor = blocked.monitor
    if blocked.reason != _HARD_BUDGET or monitor is None or blocked.reserved is None:
        return False
    state = monitor.snapshot()
    limits = state["limits"]
    budget = limits["budget_per_hour"]
    if budget is None or not limits["hard_budget"]:
        return False
    return bool(budget - state["spend_last_hour"] - state["reserved"] < blocked.reserved)


_RUN: ContextVar[Run | None] = ContextVar("agentwatch_crewai_run", default=None)


def current_run() -> Run | None:
    return _RUN.get()


def blocked_in(run: Run | None) -> CircuitBreakerException | None:
    """The block that still holds for ``run`` or a run around it: a call anywhere inside a stopped run (a crew a
    stopped Flow's step kicked off) is one of that run's later calls."""
    while run is not None:
        blocked = run.still_blocked()
        if blocked is not None:
            return blocked
        run = run.parent
    return None


def _enter(owner: Any) -> tuple[Run, Token[Run | None]]:
    put_back()  # first: the executors this kickoff makes copy the registered hooks
    _guard_executors(owner)
    note_roles(owner)
    run = Run(_RUN.get(), owner)
    if run.is_flow:
        _open_flow_span(run)
    return run, _RUN.set(run)


def _open_flow_span(run: Run) -> None:
    """The Flow's span, current for what it runs, unless an enclosing boundary of this Flow opened it or the Flow
    streams (its ``kickoff`` then returns a session at once; the Flow runs when iterated, through ``kickoff``)."""
    flow = run.owner
    client = agentwatch.get_client()
    if client is None or getattr(flow, "stream", False):
        return
    outer = run.parent
    while outer is not None:
        if outer.owner is flow and outer.span is not None:
            return
        outer = outer.parent
    name = getattr(flow, "name", None) or type(flow).__name__
    run.span = client.start_span(f"flow:{name}", "graph", attributes={"framework": "crewai"})
    run._attached = attach(run.span)


def _close_flow_span(run: Run, error: BaseException | None) -> None:
    span = run.span
    if span is None:
        return
    detach(run._attached)
    flow_id = getattr(run.owner, "flow_id", None)  # the state's id, known once kickoff restored or made it
    if flow_id:
        span.attributes["crewai.flow_id"] = str(flow_id)
    end_span(span, error)  # a block: status "blocked" with the breaker's details


#: AgentWatch's before-LLM-call hook while installed (``patch``), for the executors made without it.
_hook: Callable[[Any], Any] | None = None


def _guard_executors(owner: Any) -> None:
    """Give AgentWatch's hook to the agents' executors made before it was registered.

    CrewAI copies the registered hooks into an agent's executor when it makes it and reuses the executor for the
    agent's later tasks; the executor dispatches that copy itself and marks the call's hooks as dispatched, so the
    global registration never reaches an agent that ran before ``init()``: its calls went unchecked (per-agent
    limits never blocked) and the HTTP tap recorded each request again as a call of its own. Once per kickoff,
    not per call; an executor made later copies the hook anyway."""
    hook = _hook
    if hook is None:
        return
    if isinstance(owner, Crew):
        agents: tuple[Any, ...] = (*owner.agents, owner.manager_agent)
    elif isinstance(owner, Agent):
        agents = (owner,)
    else:  # a Flow: the crews and agents it kicks off pass here themselves
        return
    for agent in agents:
        hooks = getattr(getattr(agent, "agent_executor", None), "before_llm_call_hooks", None)
        if isinstance(hooks, list) and hook not in hooks:
            hooks.append(hook)  # after the user's hooks copied there, as registered before init()


def _leave(run: Run, token: Token[Run | None], error: BaseException | None) -> None:
    """End the run: raise its block if it would be lost; pass a block on to an enclosing crew run."""
    _RUN.reset(token)
    delivered: CircuitBreakerException | None = None
    if isinstance(error, CircuitBreakerException):
        delivered = error
    elif error is None or isinstance(error, Exception):  # not on cancellation or KeyboardInterrupt
        delivered = run.still_blocked()
    _close_flow_span(run, delivered or error)
    parent = run.parent
    if delivered is not None and parent is not None and not parent.is_flow:
        # Kicked off inside a crew's run (a tool, a callback): CrewAI would hide the block there.
        parent.record(delivered, run.scopes)
    if delivered is not None and delivered is not error:
        raise CrewAICircuitBreakerException(delivered) from error


def is_run(owner: Any) -> bool:
    # An agent's executor is a Flow too, run inside a task (or a delegation tool): not a run of its own.
    return not isinstance(owner, BaseAgentExecutor)


def _sync_boundary(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def kickoff(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_run(self):
            return original(self, *args, **kwargs)
        run, token = _enter(self)
        try:
            result = original(self, *args, **kwargs)
        except BaseException as error:
            _leave(run, token, error)
            raise
        _leave(run, token, None)
        return result

    return kickoff


def _async_boundary(original: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def kickoff(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_run(self):
            return await original(self, *args, **kwargs)
        run, token = _enter(self)
        try:
            result = await original(self, *args, **kwargs)
        except BaseException as error:
            _leave(run, token, error)
            raise
        _leave(run, token, None)
        return result

    return kickoff


_PATCHER = Patcher()
_BOUNDARIES: tuple[tuple[type[Any], str, Callable[[Any], Any]], ...] = (
    (Crew, "kickoff", _sync_boundary),
    (Crew, "kickoff_async", _async_boundary),
    (Crew, "akickoff", _async_boundary),
    (Flow, "kickoff", _sync_boundary),
    (Flow, "kickoff_async", _async_boundary),
    (Flow, "akickoff", _async_boundary),
    (Agent, "kickoff", _sync_boundary),
    (Agent, "kickoff_async", _async_boundary),
    (Agent, "akickoff", _async_boundary),
)


def patch(hook: Callable[[Any], Any]) -> None:
    """Make every crew, Flow and lone agent kickoff a run (once, however often asked), its agents guarded by
    ``hook`` (AgentWatch's before-LLM-call hook)."""
    global _hook
    _hook = hook
    for owner, name, wrap in _BOUNDARIES:
        _PATCHER.replace(owner, name, wrap)


def unpatch() -> None:
    global _hook
    _hook = None
    _PATCHER.restore()
