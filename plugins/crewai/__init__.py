"""CrewAI: crew/task/agent/tool/LLM spans, per-agent limits and blocking before every LLM call.

Zero-config after ``agentwatch.init()``; or, CrewAI's own way, ``listener = AgentWatchListener()`` at
module level (both together record everything once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._errors import CrewAICircuitBreakerException
    from ._listener import AgentWatchListener

__all__ = ["AgentWatchListener", "CrewAICircuitBreakerException"]


def __getattr__(name: str) -> Any:
    # Lazy: the entry point ``_plugin`` imports this package first, and must not import CrewAI (seconds)
    # in programs that never use it.
    if name == "AgentWatchListener":
        from ._listener import AgentWatchListener

        return AgentWatchListener
    if name == "CrewAICircuitBreakerException":
        from ._errors import CrewAICircuitBreakerException

        return CrewAICircuitBreakerException
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
