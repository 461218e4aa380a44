"""Stream tools (``AgentTool``, ``TeamTool``): an agent calls their ``run_json_stream``, not ``run_json``. Found by a
probe: they got no tool span, so the inner agent's span and calls hung straight under the calling agent."""

from __future__ import annotations

from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.tools import AgentTool

import agentwatch
from tests.stubs.provider_server import Reply

from .conftest import by_id, chat_requests, spans


def _queue(stub: Any) -> None:
    stub.queue(Reply(content="", tool_calls=[{"name": "researcher", "arguments": {"task": "find"}}],
                     input_tokens=100, output_tokens=10),
               Reply(content="research result", input_tokens=1000, output_tokens=200))


async def _run(model_client: Any) -> list[tuple[str, str, Any]]:
    researcher = AssistantAgent("researcher", model_client=model_client, description="researches")
    writer = AssistantAgent("writer", model_client=model_client, tools=[AgentTool(researcher)])
    result = await writer.run(task="go")
    return [(type(m).__name__, m.source, getattr(m, "content", None) if type(m).__name__ == "TextMessage" else None)
            for m in result.messages]


async def test_an_agent_tool_has_its_span_with_the_inner_agent_under_it(memory, stub_provider, model_client):
    _queue(stub_provider)
    plain = await _run(model_client)

    agentwatch.init(exporters=[memory], capture_messages=True)
    _queue(stub_provider)
    watched = await _run(model_client)

    assert watched == plain  # the same messages as without AgentWatch
    assert chat_requests(stub_provider) == 4
    tree = by_id(memory)
    [tool] = spans(memory, "tool")
    # The output is the tool's result as the model is told it.
    assert (tool["name"], tool["status"], tool["output"]) == ("researcher", "ok", "researcher: research result")
    assert (tree[tool["parent_span_id"]]["name"], tool["agent_name"]) == ("writer", "writer")
    [inner] = [span for span in spans(memory, "agent") if span["name"] == "researcher"]
    assert inner["parent_span_id"] == tool["span_id"]
    assert [(span["agent_name"], tree[span["parent_span_id"]]["name"]) for span in spans(memory, "llm")] == [
        ("writer", "writer"), ("researcher", "researcher")]
