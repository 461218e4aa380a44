"""A block raised inside an AG2 tool reaches the caller of the chat, before the tool's response is sent. Found by a
probe: ``execute_function`` catches it like any error and replies ``"Error: <block>"``; the assistant sent that to
its model in two more paid requests, the chat returned normally and the tool's span was ``error``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.plugins.summarizing_tool import summarizer
from tests.stubs.provider_server import Reply

from .conftest import make_pair

LIMITED = {"budget_per_hour": 0.05, "block_on_threshold": True}
EXPENSIVE = {"input_tokens": 400_000, "output_tokens": 100_000}  # ~$0.12 for gpt-4o-mini: past LIMITED at once


def _chat(user: Any, assistant: Any, chat: str) -> Any:
    if chat == "initiate_chat":
        return user.initiate_chat(assistant, message="go", max_turns=3, silent=True)
    return asyncio.run(user.a_initiate_chat(assistant, message="go", max_turns=3, silent=True))


def _statuses(memory: Any, kind: str) -> list[tuple[str, str]]:
    agentwatch.flush()
    return [(span["name"], span["status"]) for span in memory.spans if span["kind"] == kind]


@pytest.mark.parametrize("chat", ["initiate_chat", "a_initiate_chat"])
def test_a_block_inside_an_agent_used_as_a_tool_reaches_the_caller(stub_provider, memory, llm_config, chat):
    from autogen import ConversableAgent

    agentwatch.init(exporters=[memory], agents={"helper": LIMITED})
    helper = ConversableAgent("helper", llm_config=llm_config, human_input_mode="NEVER")
    stub_provider.queue(Reply(content="warmed up", **EXPENSIVE))
    helper.generate_reply(messages=[{"role": "user", "content": "warm up"}])  # over its budget now

    def ask_helper(question: str) -> str:
        """Ask the helper."""
        return str(helper.generate_reply(messages=[{"role": "user", "content": question}]))

    assistant, user = make_pair(llm_config, ask_helper, "ask")
    stub_provider.queue(Reply(content="", tool_calls=[{"name": "ask_helper", "arguments": {"question": "q"}}]))
    before = stub_provider.count()

    with pytest.raises(CircuitBreakerException) as blocked:
        _chat(user, assistant, chat)

    assert blocked.value.scope_id == "helper"
    assert stub_provider.count() == before + 1  # the assistant's call that asked for the tool; nothing after it
    assert _statuses(memory, "tool") == [("ask_helper", "blocked")]
    assert ("user", "blocked") in _statuses(memory, "agent")  # the agent that ran the tool
    assert [span for span in _statuses(memory, "chain")][-1][1] == "blocked"
    assert all(message.get("role") != "tool" for message in assistant.chat_messages[user])  # no "Error: ..." reply

    # Recovery: more budget, then the blocked turn again (the user proxy runs the tool) answers the tool call.
    blocked.value.monitor.increase_budget(1.0)
    stub_provider.queue(Reply(content="the helper's answer"))
    reply = user.generate_reply(messages=user.chat_messages[assistant], sender=assistant)
    assert reply["tool_responses"][0]["content"] == "the helper's answer"


def _expensive_ask(stub: Any) -> None:
    """The assistant's answer that asks for the tool puts it over its budget: the tool's own call is blocked."""
    stub.queue(Reply(content="", tool_calls=[{"name": "summarize", "arguments": {"text": "abc"}}], **EXPENSIVE),
               Reply(content="done"), Reply(content="TERMINATE"))


@pytest.mark.parametrize("flavour", ["def", "async def"])
@pytest.mark.parametrize("chat", ["initiate_chat", "a_initiate_chat"])
def test_a_block_of_a_tools_own_call_reaches_the_caller(stub_provider, memory, llm_config, chat, flavour):
    agentwatch.init(exporters=[memory], agents={"assistant": LIMITED})
    tool = summarizer(stub_provider.openai_base_url, flavour, "gpt-4o-mini")
    assistant, user = make_pair(llm_config, tool, "summarize")
    _expensive_ask(stub_provider)
    with pytest.raises(CircuitBreakerException) as blocked:
        _chat(user, assistant, chat)
    assert blocked.value.scope_id == "assistant"
    assert stub_provider.count() == 1
    assert _statuses(memory, "tool") == [("summarize", "blocked")]
    assert all(message.get("role") != "tool" for message in assistant.chat_messages[user])  # no "Error: ..." reply


def test_a_block_the_tool_handles_itself_stays_handled(stub_provider, memory, llm_config):
    agentwatch.init(exporters=[memory], agents={"assistant": LIMITED})
    assistant, user = make_pair(llm_config, summarizer(stub_provider.openai_base_url, "def", "gpt-4o-mini", catch=True),
                                "summarize")
    _expensive_ask(stub_provider)
    with pytest.raises(CircuitBreakerException):  # the assistant's own next call, over its budget
        _chat(user, assistant, "initiate_chat")
    assert [message.get("content") for message in assistant.chat_messages[user]][-1] == \
        "no budget left for a summary"  # the tool's own answer went back to the assistant
    assert _statuses(memory, "tool") == [("summarize", "ok")]


@pytest.mark.parametrize("asked", [["slow_lookup", "ask_helper"], ["ask_helper", "slow_lookup", "ask_helper"]])
def test_an_async_chats_other_tool_calls_finish_before_the_block_reaches_the_caller(stub_provider, memory, llm_config,
                                                                                   asked):
    """AG2 runs an async chat's tool calls with ``asyncio.gather``, which raises the first error at once and leaves the
    others running. Found by a probe: a sibling tool went on after the caller had the block (its side effect, its span
    closed after the chat's), and a program that stays in its loop had it spend after handling the block. Two blocked
    calls do not wait on each other."""
    from autogen import ConversableAgent

    agentwatch.init(exporters=[memory], agents={"helper": LIMITED})
    helper = ConversableAgent("helper", llm_config=llm_config, human_input_mode="NEVER")
    stub_provider.queue(Reply(content="warmed up", **EXPENSIVE))
    helper.generate_reply(messages=[{"role": "user", "content": "warm up"}])  # over its budget now
    done: list[str] = []

    async def slow_lookup(key: str) -> str:
        """Look a key up."""
        await asyncio.sleep(0.3)
        done.append(key)
        return "found"

    async def ask_helper(question: str) -> str:
        """Ask the helper."""
        return str(await helper.a_generate_reply(messages=[{"role": "user", "content": question}]))

    assistant, user = make_pair(llm_config, slow_lookup, "look up")
    assistant.register_for_llm(name="ask_helper", description="Ask the helper.")(ask_helper)
    user.register_for_execution(name="ask_helper")(ask_helper)
    arguments = {"slow_lookup": {"key": "k"}, "ask_helper": {"question": "q"}}
    stub_provider.queue(Reply(content="", tool_calls=[{"name": name, "arguments": arguments[name]} for name in asked]))

    async def chat() -> tuple[list[str], set[asyncio.Task[Any]]]:
        try:
            await user.a_initiate_chat(assistant, message="go", max_turns=3, silent=True)
        except CircuitBreakerException:
            return list(done), asyncio.all_tasks() - {asyncio.current_task()}
        raise AssertionError("not blocked")

    finished, still_running = asyncio.run(chat())

    assert finished == ["k"] and not still_running  # when the block arrived
    assert sorted(_statuses(memory, "tool")) == sorted(
        (name, "ok" if name == "slow_lookup" else "blocked") for name in asked)
    agentwatch.flush()
    closed = [span["name"] for span in memory.spans]
    assert closed.index("slow_lookup") < closed.index("chat user -> assistant")
