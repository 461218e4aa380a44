"""An async LangChain call leaves nothing behind in its caller's context (issue 14, hole 4).

LangChain ends an ``ainvoke`` in a task of its own; before the fix the finished call stayed "current" in
the caller's task: the next raw ``openai`` request was added to it instead of being counted and checked,
and later spans nested under it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any, cast

import openai
import pytest
from langchain_core.language_models import FakeListLLM
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

import agentwatch
from agentwatch import CircuitBreakerException
from tests.plugins.langchain.fakes import UsageChatModel
from tests.stubs.provider_server import Reply, StubProvider


def _chat(stub: StubProvider) -> ChatOpenAI:
    return ChatOpenAI(model="gpt-4o-mini", base_url=stub.openai_base_url, api_key=SecretStr("sk-test"),
                      max_retries=0)


def _raw(stub: StubProvider) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stub.openai_base_url, api_key="sk-test", max_retries=0)


def test_after_ainvoke_nothing_is_current_and_the_next_raw_call_is_its_own(
        memory: agentwatch.InMemoryExporter, stub_provider: StubProvider) -> None:
    agentwatch.init(exporters=[memory])
    seen: dict[str, object] = {}

    async def main() -> None:
        before = (agentwatch.current_llm_call(), agentwatch.current_span())
        await _chat(stub_provider).ainvoke("hi")
        seen["after_ainvoke"] = (agentwatch.current_llm_call(), agentwatch.current_span())
        seen["before"] = before
        await _raw(stub_provider).chat.completions.create(model="gpt-4o-mini",
                                                          messages=[{"role": "user", "content": "raw"}])
        seen["after_raw"] = (agentwatch.current_llm_call(), agentwatch.current_span())
        with agentwatch.span("after", kind="chain"):
            later = agentwatch.current_span()
            assert later is not None
            seen["later_parent"] = later.parent_span_id

    asyncio.run(main())
    agentwatch.flush()
    assert seen["after_ainvoke"] == seen["before"] == (None, None)
    assert seen["after_raw"] == (None, None)
    assert seen["later_parent"] is None  # a root span, not a child of the finished LLM span
    llm = memory.by_kind("llm")
    assert llm[0]["name"] == "ChatOpenAI"
    assert len(llm) == 2 == len(stub_provider.requests)  # one span per request: the raw one is its own
    assert all(s["parent_span_id"] is None for s in llm)


def test_the_raw_call_after_ainvoke_is_checked_and_blocked(memory: agentwatch.InMemoryExporter,
                                                           stub_provider: StubProvider) -> None:
    stub_provider.queue(Reply(content="hi", input_tokens=100_000, output_tokens=1000))
    agentwatch.init(exporters=[memory], budget_per_hour=0.001, block_on_threshold=True)

    async def main() -> None:
        await _chat(stub_provider).ainvoke("hi")  # admitted; its cost exhausts the budget
        with pytest.raises(CircuitBreakerException):
            await _raw(stub_provider).chat.completions.create(model="gpt-4o-mini",
                                                              messages=[{"role": "user", "content": "raw"}])

    asyncio.run(main())
    assert len(stub_provider.requests) == 1


@pytest.mark.parametrize("model", ["chat", "completion"])
@pytest.mark.parametrize("how", ["ainvoke", "astream", "abatch", "astream_events"])
def test_no_model_path_leaks_into_its_caller(memory: agentwatch.InMemoryExporter, model: str, how: str) -> None:
    agentwatch.init(exporters=[memory])
    llm = UsageChatModel(reply="a b c") if model == "chat" else FakeListLLM(responses=["a b c"] * 4)
    during: list[object] = []

    async def main() -> list[object]:
        if how == "ainvoke":
            await llm.ainvoke("x")
        elif how == "abatch":
            await llm.abatch(["x", "y"])
        elif how == "astream":
            async for _ in llm.astream("x"):
                # The consumer's code between chunks is not inside the model call.
                during.append(agentwatch.current_llm_call())
        else:
            async for _ in llm.astream_events("x", version="v2"):
                during.append(agentwatch.current_llm_call())
        return [agentwatch.current_llm_call(), agentwatch.current_span()]

    assert asyncio.run(main()) == [None, None]
    assert during == [None] * len(during)
    agentwatch.flush()
    assert len(memory.by_kind("llm")) == (2 if how == "abatch" else 1)


def test_sync_stream_consumer_is_outside_the_call(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    between = [agentwatch.current_llm_call() for _ in UsageChatModel(reply="a b c").stream("x")]
    assert len(between) >= 4 and set(between) == {None} and agentwatch.current_llm_call() is None
    partial = cast("Generator[Any, None, None]", UsageChatModel(reply="a b c").stream("x"))
    next(partial)
    partial.close()  # abandoned early: the call ends, nothing stays current
    assert agentwatch.current_llm_call() is None and agentwatch.current_span() is None


def test_an_ended_call_is_no_current_call() -> None:
    agentwatch.init(exporters=[])
    call = agentwatch.start_llm_call("manual")
    call.activate()
    assert agentwatch.current_llm_call() is call
    call.end()
    assert agentwatch.current_llm_call() is None
    call.deactivate()


def test_langchain_openai_streams_leave_nothing_current(memory: agentwatch.InMemoryExporter,
                                                        stub_provider: StubProvider) -> None:
    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="one two three", input_tokens=100, output_tokens=5))
    stub_provider.queue(Reply(content="four five", input_tokens=100, output_tokens=5))
    model = ChatOpenAI(model="gpt-4o-mini", base_url=stub_provider.openai_base_url, api_key=SecretStr("sk-test"),
                       max_retries=0, stream_usage=True)
    between: list[object] = []

    async def main() -> list[object]:
        async for _ in model.astream("hi"):
            between.append(agentwatch.current_llm_call())
        return [agentwatch.current_llm_call(), agentwatch.current_span()]

    assert asyncio.run(main()) == [None, None]
    between.extend(agentwatch.current_llm_call() for _ in model.stream("hi"))
    assert between and set(between) == {None} and agentwatch.current_span() is None
    agentwatch.flush()
    assert [(s["input_tokens"], s["output_tokens"]) for s in memory.by_kind("llm")] == [(100, 5), (100, 5)]


def test_autogen_team_after_ainvoke_in_the_same_task_raises_the_block(memory: agentwatch.InMemoryExporter,
                                                                      stub_provider: StubProvider) -> None:
    # The AutoGen layer opens its own call only when none is current; a leaked, finished LangChain call made
    # it skip that, and the block surfaced from the team as RuntimeError.
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import MaxMessageTermination
    from autogen_agentchat.teams import RoundRobinGroupChat
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    stub_provider.queue(Reply(content="hi", input_tokens=100_000, output_tokens=1000))
    agentwatch.init(exporters=[memory], budget_per_hour=0.001, block_on_threshold=True)

    async def main() -> None:
        await _chat(stub_provider).ainvoke("hi")  # admitted; its cost exhausts the budget
        client = OpenAIChatCompletionClient(model="gpt-4o-mini-2024-07-18", base_url=stub_provider.openai_base_url,
                                            api_key="test-key", max_retries=0)
        team = RoundRobinGroupChat([AssistantAgent("writer", model_client=client)],
                                   termination_condition=MaxMessageTermination(2))
        try:
            with pytest.raises(CircuitBreakerException):
                await team.run(task="Write a haiku")
        finally:
            await client.close()

    asyncio.run(main())
    assert len(stub_provider.requests) == 1  # the team's call was never sent


@pytest.mark.parametrize("end", ["on_llm_end", "on_llm_error"])
def test_a_callback_manager_driven_by_hand_leaves_nothing_current(memory: agentwatch.InMemoryExporter,
                                                                   end: str) -> None:
    """Found 2026-12-06 by a probe: a library that drives LangChain's async callback manager itself
    (``AsyncCallbackManager.configure(...)``, ``on_chat_model_start``, then ``on_llm_end``), as libraries wrapping
    their own model clients do, left the ended call current in its task: later spans nested under it and the next raw
    request was added to it. langchain-core runs the end in a task of its own, where the start's activation cannot be
    undone."""
    from langchain_core.callbacks import AsyncCallbackManager
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.outputs import ChatGeneration, LLMResult

    agentwatch.init(exporters=[memory])
    result = LLMResult(generations=[[ChatGeneration(message=AIMessage("hi"))]],
                       llm_output={"token_usage": {"prompt_tokens": 10, "completion_tokens": 5}})
    seen: dict[str, object] = {}

    async def main() -> None:
        manager = AsyncCallbackManager.configure(inheritable_callbacks=None)
        (run,) = await manager.on_chat_model_start({"name": "wrapped"}, [[HumanMessage("hi")]],
                                                   invocation_params={"model": "gpt-4o"})
        seen["during"] = agentwatch.current_llm_call()
        if end == "on_llm_end":
            await run.on_llm_end(result)
        else:
            await run.on_llm_error(RuntimeError("provider down"))
        seen["after"] = (agentwatch.current_llm_call(), agentwatch.current_span())
        with agentwatch.trace("next"):
            pass

    asyncio.run(main())
    assert seen["during"] is not None and seen["after"] == (None, None)
    agentwatch.flush()
    (call,) = memory.by_kind("llm")
    assert call["status"] == ("ok" if end == "on_llm_end" else "error")
    assert next(span for span in memory.spans if span["name"] == "next")["parent_span_id"] is None
