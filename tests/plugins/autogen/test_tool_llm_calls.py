"""An LLM call an AgentChat tool makes itself (the openai SDK used directly) is recorded under the tool and counts
against the agent. Found 2026-12-05 for plain ``def`` tools: AutoGen runs them in the loop's default executor, which
does not carry the context over, so the call was a trace of its own with no agent and ``agents={"Writer": ...}``
never saw it ($0.12 past a $0.05 budget, the agent's next call sent). ``async def`` tools were right already."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import openai
import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.plugins.tool_calls import call_in_tool
from tests.stubs.provider_server import Reply

MODEL = "gpt-4o-mini"
LIMITED = {"budget_per_hour": 0.05, "block_on_threshold": True}
EXPENSIVE = Reply(content="a long summary", input_tokens=400_000, output_tokens=100_000)  # ~$0.12 for gpt-4o-mini


def _writer(base_url: str, flavour: str) -> tuple[Any, Any]:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    def summarize(text: str) -> str:
        """Summarize a text."""
        client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
        answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])
        return answer.choices[0].message.content or ""

    async def asummarize(text: str) -> str:
        """Summarize a text."""
        client = openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0)
        answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])
        return answer.choices[0].message.content or ""

    asummarize.__name__ = "summarize"
    model_client = OpenAIChatCompletionClient(model=MODEL, base_url=base_url, api_key="k", max_retries=0)
    agent = AssistantAgent("Writer", model_client=model_client, reflect_on_tool_use=True,
                           tools=[summarize if flavour == "def" else asummarize])
    return agent, model_client


@pytest.mark.parametrize("flavour", ["def", "async def"])
def test_a_tools_own_call_counts_against_its_agent(stub_provider: Any, memory: Any, flavour: str) -> None:
    agentwatch.init(exporters=[memory], agents={"Writer": LIMITED})
    stub_provider.queue(Reply(content="", tool_calls=[{"name": "summarize", "arguments": {"text": "abc"}}]),
                        EXPENSIVE, Reply(content="done"))

    async def run() -> None:
        agent, model_client = _writer(stub_provider.openai_base_url, flavour)
        try:
            await agent.run(task="summarize abc")
        finally:
            await model_client.close()

    with pytest.raises(CircuitBreakerException) as caught:
        asyncio.run(run())
    assert (caught.value.reason, caught.value.scope_id) == ("budget_per_hour", "writer")
    assert stub_provider.count() == 2  # the reflection after the tool was not sent
    agentwatch.flush()
    assert call_in_tool(memory, "summarize", "Writer")["input_tokens"] == 400_000


HOST_VALUE: contextvars.ContextVar[str] = contextvars.ContextVar("host_value", default="unset")


def test_a_def_tool_sees_what_it_sees_without_agentwatch(memory: Any) -> None:
    """Only AgentWatch's own values go with the tool to the executor thread (none of the host program's), and a
    ``FunctionTool`` subclass's own ``run`` gets the tool itself."""
    from autogen_core import CancellationToken
    from autogen_core.tools import FunctionTool

    def probe(text: str) -> str:
        return HOST_VALUE.get()

    class Counting(FunctionTool):
        runs = 0

        async def run(self, args: Any, cancellation_token: CancellationToken) -> Any:
            self.runs += 1
            return await super().run(args, cancellation_token)

    async def run(tool: Any) -> Any:
        HOST_VALUE.set("the caller's")
        return await tool.run_json({"text": "x"}, CancellationToken())

    agentwatch.init(exporters=[memory])
    counting = Counting(probe, description="probe")
    assert [asyncio.run(run(counting)) for _ in range(2)] == ["unset", "unset"]
    assert counting.runs == 2
