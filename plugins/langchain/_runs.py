"""Runs in flight, keyed by LangChain run id and shared by every handler instance.

Sharing makes an explicit handler and the zero-config one record each run once, and lets a run whose
parent was seen by another handler instance still hang under the right span.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from agentwatch import LLMCall, Span
from agentwatch.instrumentation import AgentScope

__all__ = ["Run", "RUNS"]


@dataclass(slots=True)
class Run:
    span: Span
    scopes: tuple[AgentScope, ...] = ()
    call: LLMCall | None = None
    in_graph: bool = False


#: dict operations are atomic under the GIL; callbacks of one run never race with each other.
RUNS: dict[UUID, Run] = {}
