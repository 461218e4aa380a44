"""LangChain and LangGraph: native spans, limit checks at node starts and model calls, checkpoint resume.

Zero-config after ``agentwatch.init()``; or explicitly ``config={"callbacks": [AgentWatchHandler()]}``.
"""

from __future__ import annotations

from ._handler import AgentWatchHandler

__all__ = ["AgentWatchHandler"]
