"""Structured output: ``llm.as_structured_llm(Model)`` and ``FunctionAgent(output_cls=...)``. The ``StructuredLLM``
wrapper makes no request of its own (the LLM it wraps does): one request is one call, checked, counted and charged
once, under the wrapped LLM's name and price."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
from pydantic import BaseModel

import agentwatch
from tests.plugins.llamaindex.conftest import MODEL, llm_spans, openai_llm
from tests.stubs.provider_server import Reply


class Song(BaseModel):
    title: str
    year: int


SONG = '{"title": "Hey", "year": 1999}'


def _ask(sllm: Any, how: str, stub: Any, times: int) -> list[Any]:
    """``times`` requests through ``how`` (one event loop: the async client is bound to it); what each returned."""
    from llama_index.core.llms import ChatMessage

    messages = [ChatMessage(role="user", content="a song")]
    answers = []

    async def ask() -> Any:
        if how == "chat":
            return sllm.chat(messages).raw
        if how == "stream_chat":
            return [chunk.raw for chunk in sllm.stream_chat(messages)][-1]
        if how == "achat":
            return (await sllm.achat(messages)).raw
        return [chunk.raw async for chunk in await sllm.astream_chat(messages)][-1]

    async def run() -> None:
        for _ in range(times):
            stub.queue(Reply(content=SONG, input_tokens=100, output_tokens=20))
            answers.append(await ask())

    asyncio.run(run())
    return answers


@pytest.mark.parametrize("how", ["chat", "achat", "stream_chat", "astream_chat"])
def test_structured_llm_request_is_one_call(how: str, memory: agentwatch.InMemoryExporter,
                                            stub_provider: Any) -> None:
    agentwatch.init(exporters=[memory], max_calls_per_minute=3, block_on_threshold=True, stream_usage="always")
    sllm = openai_llm(stub_provider).as_structured_llm(Song)

    # The limit allows three calls: three requests are three calls, none blocked.
    assert _ask(sllm, how, stub_provider, 3) == [Song(title="Hey", year=1999)] * 3

    assert stub_provider.count("/chat/completions") == 3
    assert agentwatch.get_state()["monitors"]["global"]["calls_last_minute"] == 3
    agentwatch.flush()
    spans = llm_spans(memory.spans)
    assert [(span["name"], span["model"], span["input_tokens"], span["output_tokens"]) for span in spans] == \
        [("OpenAI", MODEL, 100, 20)] * 3
    assert all(span["cost_usd"] > 0 and "usage_missing" not in span["attributes"] for span in spans)


def test_agent_output_cls_is_one_call_per_request(memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    from llama_index.core.agent.workflow import FunctionAgent

    class Out(BaseModel):
        title: str

    agentwatch.init(exporters=[memory], agents={"Writer": {"max_calls_per_minute": 2, "block_on_threshold": True}})
    stub_provider.queue(Reply(content="Bees dance."), Reply(content='{"title": "Bees"}'))
    agent = FunctionAgent(name="Writer", description="writes", tools=[], llm=openai_llm(stub_provider),
                          output_cls=Out, streaming=False)

    async def main() -> Any:
        return await agent.run(user_msg="write")

    result = asyncio.run(main())  # the answer and its structured output: two requests

    assert result.structured_response == {"title": "Bees"}
    assert stub_provider.count("/chat/completions") == 2
    agentwatch.flush()
    assert [span["name"] for span in llm_spans(memory.spans)] == ["OpenAI", "OpenAI"]


def test_structured_llm_blocked_before_its_request(memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    from llama_index.core.llms import ChatMessage

    agentwatch.init(exporters=[memory], budget_per_hour=0.0, block_on_threshold=True)
    sllm = openai_llm(stub_provider).as_structured_llm(Song)

    with pytest.raises(agentwatch.CircuitBreakerException) as caught:
        sllm.chat([ChatMessage(role="user", content="a song")])

    assert stub_provider.requests == []
    caught.value.monitor.increase_budget(1.0)
    stub_provider.queue(Reply(content=SONG))
    assert sllm.chat([ChatMessage(role="user", content="a song")]).raw == Song(title="Hey", year=1999)
    agentwatch.flush()
    assert [(span["name"], span["status"]) for span in llm_spans(memory.spans)] == [("OpenAI", "blocked"),
                                                                                  ("OpenAI", "ok")]


@pytest.mark.parametrize("workflow", [False, True], ids=["FunctionAgent", "AgentWorkflow"])
def test_block_of_the_structured_output_call_reaches_the_caller(workflow: bool, memory: agentwatch.InMemoryExporter,
                                                                stub_provider: Any) -> None:
    """LlamaIndex turns any error of the structured-output call into a UserWarning (``structured_response=None``):
    a block is raised to the caller of ``await handler`` instead, before the request, and the run can go again."""
    from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent

    class Out(BaseModel):
        title: str

    agentwatch.init(exporters=[memory], budget_per_hour=0.00001, block_on_threshold=True)
    llm = openai_llm(stub_provider)
    runner: Any = FunctionAgent(name="Writer", description="writes", tools=[], llm=llm, streaming=False,
                                output_cls=None if workflow else Out)
    if workflow:
        runner = AgentWorkflow(agents=[runner], output_cls=Out)
    # The answer spends more than the budget: the structured-output call after it is blocked.
    stub_provider.queue(Reply(content="Bees dance.", input_tokens=100, output_tokens=5))

    async def run_twice() -> Any:  # one event loop: the LLM's async client is bound to it
        handler = runner.run(user_msg="write")
        events = [type(event).__name__ async for event in handler.stream_events()]
        assert "AgentStreamStructuredOutput" not in events
        with pytest.raises(agentwatch.CircuitBreakerException) as caught:
            await handler
        assert caught.value.reason == "budget_per_hour"
        assert stub_provider.count("/chat/completions") == 1  # the structured-output request was not sent

        caught.value.monitor.increase_budget(1.0)
        stub_provider.queue(Reply(content="Bees dance."), Reply(content='{"title": "Bees"}'))
        return await runner.run(user_msg="write")

    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        assert asyncio.run(run_twice()).structured_response == {"title": "Bees"}
    assert not [warning for warning in warned if "structured output" in str(warning.message)]
    agentwatch.flush()
    assert [span["status"] for span in llm_spans(memory.spans)] == ["ok", "blocked", "ok", "ok"]


@pytest.mark.parametrize("workflow", [False, True], ids=["FunctionAgent", "AgentWorkflow"])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync_fn", "async_fn"])
def test_block_inside_a_structured_output_fn_reaches_the_caller(workflow: bool, asynchronous: bool,
                                                                memory: agentwatch.InMemoryExporter,
                                                                stub_provider: Any) -> None:
    """``structured_output_fn`` is the program's own function, run inside the same ``except Exception`` as
    ``output_cls``: a block of the LLM call it makes is raised to the caller, not turned into a UserWarning and a run
    that ends as if it had succeeded without its structured output."""
    from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent
    from llama_index.core.llms import ChatMessage

    agentwatch.init(exporters=[memory], budget_per_hour=0.00001, block_on_threshold=True)
    llm = openai_llm(stub_provider)

    def extract(messages: list[Any]) -> dict[str, Any]:
        return Song.model_validate_json(llm.chat([ChatMessage(role="user", content="as JSON")]).message.content or "")\
            .model_dump()

    async def extract_async(messages: list[Any]) -> dict[str, Any]:
        answer = await llm.achat([ChatMessage(role="user", content="as JSON")])
        return Song.model_validate_json(answer.message.content or "").model_dump()

    fn = extract_async if asynchronous else extract
    runner: Any = FunctionAgent(name="Writer", description="writes", tools=[], llm=llm, streaming=False,
                                structured_output_fn=None if workflow else fn)
    if workflow:
        runner = AgentWorkflow(agents=[runner], structured_output_fn=fn)
    stub_provider.queue(Reply(content="Bees dance.", input_tokens=100, output_tokens=5))

    async def run_twice() -> Any:
        with pytest.raises(agentwatch.CircuitBreakerException) as caught:
            await runner.run(user_msg="write")
        assert caught.value.reason == "budget_per_hour"
        assert stub_provider.count("/chat/completions") == 1

        caught.value.monitor.increase_budget(1.0)
        stub_provider.queue(Reply(content="Bees dance."), Reply(content=SONG))
        return await runner.run(user_msg="write")

    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        assert asyncio.run(run_twice()).structured_response == {"title": "Hey", "year": 1999}
    assert not [warning for warning in warned if "structured output" in str(warning.message)]
    agentwatch.flush()
    assert [span["status"] for span in llm_spans(memory.spans)] == ["ok", "blocked", "ok", "ok"]
