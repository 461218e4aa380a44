"""An LLM call an AG2 tool makes itself (the openai SDK used directly) is recorded under the tool and counts against
the agent that asked for the tool (and the agent running it). Found 2026-12-05: the call was charged to the executing
user proxy only (so ``agents={"assistant": ...}`` never saw it), an ``async def`` tool in a synchronous chat lost the
context altogether (its own trace, no agent), and ``a_initiate_chat`` recorded no tool span."""

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

from .conftest import make_pair

LIMITED = {"budget_per_hour": 0.05, "block_on_threshold": True}
EXPENSIVE = Reply(content="a long summary", input_tokens=400_000, output_tokens=100_000)  # ~$0.12 for gpt-4o-mini


def _pair(llm_config: dict[str, Any], base_url: str, tool: str) -> tuple[Any, Any]:
    def summarize(text: str) -> str:
        """Summarize a text."""
        client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
        return answer.choices[0].message.content or ""

    async def asummarize(text: str) -> str:
        """Summarize a text."""
        client = openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0)
        answer = await client.chat.completions.create(model="gpt-4o-mini",
                                                      messages=[{"role": "user", "content": text}])
        return answer.choices[0].message.content or ""

    asummarize.__name__ = "summarize"
    return make_pair(llm_config, summarize if tool == "def" else asummarize, "summarize")


@pytest.mark.parametrize("tool", ["def", "async def"])
@pytest.mark.parametrize("chat", ["initiate_chat", "a_initiate_chat"])
def test_a_tools_own_call_counts_against_the_asking_agent(stub_provider: Any, memory: Any,
                                                            llm_config: dict[str, Any], chat: str, tool: str) -> None:
    agentwatch.init(exporters=[memory], agents={"assistant": LIMITED})
    assistant, user = _pair(llm_config, stub_provider.openai_base_url, tool)
    stub_provider.queue(Reply(content="", tool_calls=[{"name": "summarize", "arguments": {"text": "abc"}}]),
                        EXPENSIVE, Reply(content="done"))
    with pytest.raises(CircuitBreakerException) as caught:
        if chat == "initiate_chat":
            user.initiate_chat(assistant, message="summarize abc", max_turns=2, silent=True)
        else:
            asyncio.run(user.a_initiate_chat(assistant, message="summarize abc", max_turns=2, silent=True))
    assert (caught.value.reason, caught.value.scope_id) == ("budget_per_hour", "assistant")
    assert stub_provider.count() == 2  # the assistant's answer after the tool was not sent
    agentwatch.flush()
    spent = call_in_tool(memory, "summarize", "assistant")
    client = agentwatch.get_client()
    assert client is not None
    assert client.agents["user"].monitor.snapshot()["spend_last_hour"] == pytest.approx(spent["cost_usd"])


def test_in_a_group_chat_the_speaker_who_asked_is_charged_not_the_manager_alone(
        stub_provider: Any, memory: Any, llm_config: dict[str, Any]) -> None:
    """The manager relays the speaker's message (keeping its ``name``): the tool's call is the speaker's."""
    from autogen import GroupChat, GroupChatManager

    client = agentwatch.init(exporters=[memory], agents={"assistant": LIMITED})
    assistant, user = _pair(llm_config, stub_provider.openai_base_url, "def")
    chat = GroupChat(agents=[assistant, user], messages=[], max_round=4, speaker_selection_method="round_robin")
    manager = GroupChatManager(groupchat=chat, llm_config=False)
    stub_provider.queue(Reply(content="", tool_calls=[{"name": "summarize", "arguments": {"text": "abc"}}]),
                        EXPENSIVE, Reply(content="done"))
    with pytest.raises(CircuitBreakerException) as caught:
        user.initiate_chat(manager, message="summarize abc", silent=True)
    assert caught.value.scope_id == "assistant" and stub_provider.count() == 2
    agentwatch.flush()
    call_in_tool(memory, "summarize", "assistant")
    charged = sum(span["cost_usd"] for span in memory.spans  # its own calls and the tool's
                  if span["kind"] == "llm" and span["agent_name"] == "assistant")
    assert client.agents["assistant"].monitor.snapshot()["spend_last_hour"] == pytest.approx(charged)


HOST_VALUE: contextvars.ContextVar[str] = contextvars.ContextVar("host_value", default="unset")


def test_an_async_tool_in_a_sync_chat_sees_what_it_sees_without_agentwatch(
        stub_provider: Any, memory: Any, llm_config: dict[str, Any]) -> None:
    """AG2 runs it on a thread of its own, which starts with an empty context: only AgentWatch's values go with it."""
    seen: list[str] = []

    async def probe(text: str) -> str:
        """Probe."""
        seen.append(HOST_VALUE.get())
        return "ok"

    agentwatch.init(exporters=[memory])
    assistant, user = make_pair(llm_config, probe, "probe")
    stub_provider.queue(Reply(content="", tool_calls=[{"name": "probe", "arguments": {"text": "abc"}}]),
                        Reply(content="done"))
    token = HOST_VALUE.set("the caller's")
    try:
        user.initiate_chat(assistant, message="go", max_turns=2, silent=True)
    finally:
        HOST_VALUE.reset(token)
    assert seen == ["unset"]
    agentwatch.flush()
    assert [span["name"] for span in memory.spans if span["kind"] == "tool"] == ["probe"]


@pytest.mark.parametrize("chat", ["initiate_chat", "a_initiate_chat"])
def test_a_tool_that_raised_ends_its_span_as_an_error(stub_provider: Any, memory: Any, llm_config: dict[str, Any],
                                                      chat: str) -> None:
    """AG2 catches what a tool raises and returns it to the model as ``(False, {"content": "Error: ..."})``: the tool's
    span says so (it was ``ok`` before, found by a probe); the chat goes on as without AgentWatch."""

    def lookup(text: str) -> str:
        """Look something up."""
        raise ValueError("no such entry")

    agentwatch.init(exporters=[memory])
    assistant, user = make_pair(llm_config, lookup, "look up")
    stub_provider.queue(Reply(content="", tool_calls=[{"name": "lookup", "arguments": {"text": "abc"}}]),
                        Reply(content="sorry"))
    if chat == "initiate_chat":
        result = user.initiate_chat(assistant, message="look up abc", max_turns=2, silent=True)
    else:
        result = asyncio.run(user.a_initiate_chat(assistant, message="look up abc", max_turns=2, silent=True))
    assert "no such entry" in str(result.chat_history[-2]["content"])  # the error went back to the model
    agentwatch.flush()
    (tool,) = [span for span in memory.spans if span["kind"] == "tool"]
    assert tool["status"] == "error" and "no such entry" in tool["attributes"]["error.message"]
