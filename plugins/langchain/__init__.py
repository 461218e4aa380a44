"""LangChain and LangGraph: native spans, limit checks at node starts and model calls, checkpoint resume.

Zero-config after ``agentwatch.init()``; or explicitly ``config={"callbacks": [AgentWatchHandler()]}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._handler import AgentWatchHandler

__all__ = ["AgentWatchHandler"]


def __getattr__(name: str) -> Any:
    # Lazy: the entry point ``_plugin`` imports this package first, and must not import langchain_core
    # in programs that never use LangChain.
    if name == "AgentWatchHandler":
        from ._handler import AgentWatchHandler

        return AgentWatchHandler
    if name == "GraphCircuitBreakerException":  # a block inside a graph, as pickle names it (_graph)
        from ._graph import _graph_block_class

        block_class = _graph_block_class()
        if block_class is not None:
            return block_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
