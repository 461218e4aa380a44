"""The block exception as CrewAI needs it: a ``HookAborted`` that is also AgentWatch's exception."""

from __future__ import annotations

from crewai.hooks import HookAborted

from agentwatch import CircuitBreakerException

__all__ = ["CrewAICircuitBreakerException"]


class CrewAICircuitBreakerException(CircuitBreakerException, HookAborted):
    """Raised from CrewAI's before-LLM-call hook.

    CrewAI swallows every hook exception except ``HookAborted`` (and turns ``return False`` into retries
    and a ``ValueError``), so only a ``HookAborted`` reaches ``kickoff()``'s caller intact; being a
    ``CircuitBreakerException`` too keeps ``except CircuitBreakerException`` and ``e.monitor`` working
    without the core knowing about CrewAI.
    """

    def __init__(self, blocked: CircuitBreakerException) -> None:
        CircuitBreakerException.__init__(
            self, blocked.reason, blocked.threshold, blocked.current, scope=blocked.scope,
            scope_id=blocked.scope_id, trace_id=blocked.trace_id, state=blocked.state, monitor=blocked.monitor,
            reserved=blocked.reserved, remaining=blocked.remaining,  # a hard budget's refusal says what it asked
            what=blocked.what)
        # HookAborted.__init__ (reached through super() in the MRO) overwrote these with the message.
        self.reason = blocked.reason
        self.source = "agentwatch"
