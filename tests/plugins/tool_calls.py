"""What the tests of an LLM call made inside a framework's tool (the openai SDK used directly) look at."""

from __future__ import annotations

from typing import Any

__all__ = ["call_in_tool"]


def call_in_tool(memory: Any, tool: str, agent: str) -> dict[str, Any]:
    """The tool's own ``openai.chat.completions`` span, checked to hang under the tool's span, in its trace, with
    ``agent`` as its agent."""
    spans = {span["span_id"]: span for span in memory.spans}
    spent = next(span for span in spans.values() if span["name"] == "openai.chat.completions")
    used = spans[spent["parent_span_id"]]
    assert (used["name"], used["kind"]) == (tool, "tool")
    assert spent["agent_name"] == agent and spent["trace_id"] == used["trace_id"]
    return spent
