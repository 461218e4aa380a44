"""Span trees and figures recorded through LlamaIndex's instrumentation dispatcher and legacy callbacks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import agentwatch
from tests.plugins.llamaindex.conftest import MODEL, llm_spans, mock_index, openai_llm, tree
from tests.stubs.provider_server import Reply


def test_query_engine_tree_with_mock_models(memory: agentwatch.InMemoryExporter) -> None:
    from llama_index.core.llms import MockLLM

    agentwatch.init(exporters=[memory], capture_messages=True)
    index = mock_index()
    agentwatch.flush()
    memory.clear()  # the embeddings of indexing are checked in test_embeddings_are_recorded
    engine = index.as_query_engine(llm=MockLLM(max_tokens=8), similarity_top_k=2)

    answer = engine.query("What do bees do?")

    assert str(answer).strip()
    agentwatch.flush()
    assert tree(memory.spans) == [
        (0, "chain", "RetrieverQueryEngine.query"),
        (1, "retriever", "VectorIndexRetriever.retrieve"),
        (2, "embedding", "MockEmbedding"),
        (1, "chain", "CompactAndRefine.synthesize"),
        (2, "llm", "MockLLM"),
    ]
    by_name = {span["name"]: span for span in memory.spans}
    query, retrieve = by_name["RetrieverQueryEngine.query"], by_name["VectorIndexRetriever.retrieve"]
    assert query["input"] == "What do bees do?" and retrieve["input"] == "What do bees do?"
    assert retrieve["attributes"]["retriever.documents"] == 2
    assert len({span["trace_id"] for span in memory.spans if span["kind"] != "process"}) == 1
    assert all(span["status"] == "ok" for span in memory.spans)


def test_no_text_captured_by_default(memory: agentwatch.InMemoryExporter) -> None:
    from llama_index.core.llms import MockLLM

    agentwatch.init(exporters=[memory])
    mock_index().as_query_engine(llm=MockLLM(max_tokens=4)).query("secret question")

    agentwatch.flush()
    assert all(span.get("input") is None and span.get("output") is None for span in memory.spans)


def test_embeddings_are_recorded(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    mock_index()

    agentwatch.flush()
    [embedding] = memory.by_kind("embedding")
    assert embedding["name"] == "MockEmbedding"
    assert embedding["attributes"]["embedding.texts"] == 3
    # MockEmbedding reports no usage: the count is LlamaIndex's own tokenizer's, and flagged as such.
    assert embedding["input_tokens"] > 10 and embedding["attributes"]["usage_estimated"] is True
    # A test double is free (tests/plugins/llamaindex/test_free_models.py has the details).
    assert embedding["provider"] == "mock" and embedding["cost_usd"] == 0.0


def test_openai_chat_figures_and_one_span(memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    from llama_index.core.llms import ChatMessage

    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="Hello there", input_tokens=1000, output_tokens=200, cached_tokens=400))
    llm = openai_llm(stub_provider)

    response = llm.chat([ChatMessage(role="user", content="hi")])

    assert response.message.content == "Hello there"
    agentwatch.flush()
    [span] = llm_spans(memory.spans)  # the OpenAI SDK plugin adds to this call instead of a second span
    assert span["name"] == "OpenAI" and span["model"] == MODEL and span["provider"] == "openai"
    assert (span["input_tokens"], span["output_tokens"], span["cached_input_tokens"]) == (1000, 200, 400)
    expected, _ = agentwatch.get_client().price(MODEL, "openai", 1000, 200, 400)
    assert span["cost_usd"] == expected > 0
    assert span["status"] == "ok"
    assert stub_provider.count("/chat/completions") == 1


def _streamed_chat(stub: Any) -> list[tuple[str, str | None]]:
    """One streamed chat of the real OpenAI LLM: each chunk's delta and text so far."""
    from llama_index.core.llms import ChatMessage

    stub.queue(Reply(content="one two three", input_tokens=50, output_tokens=3, cached_tokens=10))
    llm = openai_llm(stub)
    chunks = [(chunk.delta or "", chunk.message.content) for chunk in llm.stream_chat([ChatMessage(role="user",
                                                                                                  content="count")])]
    assert "stream_options" not in llm.additional_kwargs  # the user's LLM is left as it was
    return chunks


def test_openai_stream_is_charged_once_and_streams_as_without_agentwatch(memory: agentwatch.InMemoryExporter,
                                                                          stub_provider: Any) -> None:
    """The stream's usage is the core's (``init(stream_usage=...)``): asked for where configured, its chunk
    hidden before LlamaIndex reads the response, so the chunks are those of a run without AgentWatch."""
    plain = _streamed_chat(stub_provider)
    assert "stream_options" not in stub_provider.last.json

    agentwatch.init(exporters=[memory], stream_usage=[stub_provider.openai_base_url])
    watched = _streamed_chat(stub_provider)

    assert stub_provider.last.json["stream_options"] == {"include_usage": True}  # the core asked for usage
    assert watched == plain and watched[-1][1] == "one two three"
    agentwatch.flush()
    [span] = llm_spans(memory.spans)
    assert (span["input_tokens"], span["output_tokens"], span["cached_input_tokens"]) == (50, 3, 10)
    assert "usage_estimated" not in span["attributes"] and span["attributes"]["streaming"] is True
    assert span["attributes"]["time_to_first_token_ms"] >= 0
    spend = agentwatch.get_client().monitor.snapshot()["spend_last_hour"]
    assert span["cost_usd"] > 0 and spend == pytest.approx(span["cost_usd"])  # charged once


def test_openai_stream_elsewhere_is_not_asked_and_is_estimated(memory: agentwatch.InMemoryExporter,
                                                               stub_provider: Any) -> None:
    """By default only OpenAI's own API is asked for stream usage: a compatible server is charged an estimate."""
    agentwatch.init(exporters=[memory])
    _streamed_chat(stub_provider)

    assert "stream_options" not in stub_provider.last.json
    agentwatch.flush()
    [span] = llm_spans(memory.spans)
    assert span["input_tokens"] > 0 and span["cost_usd"] > 0 and span["attributes"]["usage_estimated"] is True


def _agent_events(stub: Any) -> list[tuple[str, Any]]:
    """A streamed ``FunctionAgent`` run (a tool call, then the answer): every event's type and text."""
    from llama_index.core.agent.workflow import FunctionAgent

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    stub.queue(Reply(content="", tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}]),
               Reply(content="the sum is three"))
    agent = FunctionAgent(name="adder", description="Adds.", tools=[add], llm=openai_llm(stub), streaming=True)

    async def run() -> list[tuple[str, Any]]:
        handler = agent.run(user_msg="add 1 and 2")
        seen = [(type(event).__name__, getattr(event, "delta", None)) async for event in handler.stream_events()]
        seen.append(("result", str(await handler)))
        return seen

    return asyncio.run(run())


def test_streamed_agent_events_are_identical_with_and_without_agentwatch(memory: agentwatch.InMemoryExporter,
                                                                         stub_provider: Any) -> None:
    plain = _agent_events(stub_provider)
    assert [name for name, _ in plain].count("AgentStream") >= 2 and plain[-1] == ("result", "the sum is three")

    agentwatch.init(exporters=[memory], stream_usage="always")
    watched = _agent_events(stub_provider)

    assert watched == plain
    assert stub_provider.last.json["stream_options"] == {"include_usage": True}
    agentwatch.flush()
    spans = llm_spans(memory.spans)
    assert len(spans) == 2 and all("usage_estimated" not in span["attributes"] for span in spans)
    spend = agentwatch.get_client().monitor.snapshot()["spend_last_hour"]
    assert spend == pytest.approx(sum(span["cost_usd"] for span in spans)) and spend > 0  # each charged once


def test_openai_stream_keeps_users_stream_options(memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    from llama_index.core.llms import ChatMessage

    agentwatch.init(exporters=[memory])
    llm = openai_llm(stub_provider, additional_kwargs={"stream_options": {"include_usage": False}})

    list(llm.stream_chat([ChatMessage(role="user", content="count")]))

    assert stub_provider.last.json["stream_options"] == {"include_usage": False}
    agentwatch.flush()
    [span] = llm_spans(memory.spans)
    # No usage came: the HTTP tap's estimate from the request and the streamed text is charged.
    assert span["input_tokens"] > 0 and span["attributes"]["usage_estimated"] is True


def test_openai_async_and_async_stream(memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    from llama_index.core.llms import ChatMessage

    # The stub stands in for OpenAI's API, whose streams the core asks for usage.
    agentwatch.init(exporters=[memory], stream_usage=[stub_provider.openai_base_url])
    stub_provider.queue(Reply(content="a", input_tokens=20, output_tokens=2),
                        Reply(content="b c", input_tokens=30, output_tokens=4, cached_tokens=5))
    llm = openai_llm(stub_provider)
    messages = [ChatMessage(role="user", content="hi")]

    async def main() -> str:
        first = await llm.achat(messages)
        text = ""
        async for chunk in await llm.astream_chat(messages):
            text = chunk.message.content or ""
        return (first.message.content or "") + "|" + text

    assert asyncio.run(main()) == "a|b c"
    agentwatch.flush()
    spans = sorted(llm_spans(memory.spans), key=lambda span: span["start_time_unix_nano"])
    assert [(s["input_tokens"], s["output_tokens"], s["cached_input_tokens"]) for s in spans] == [(20, 2, 0),
                                                                                                  (30, 4, 5)]
    assert stub_provider.count("/chat/completions") == 2


def test_query_engine_over_openai_stream(memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    # The stub stands in for OpenAI's API, whose streams the core asks for usage.
    agentwatch.init(exporters=[memory], stream_usage=[stub_provider.openai_base_url])
    stub_provider.queue(Reply(content="They dance.", input_tokens=120, output_tokens=3))
    index = mock_index()
    agentwatch.flush()
    memory.clear()
    engine = index.as_query_engine(llm=openai_llm(stub_provider), streaming=True, similarity_top_k=1)

    streamed = engine.query("What do bees do?")
    text = "".join(streamed.response_gen)

    assert text == "They dance."
    agentwatch.flush()
    shape = tree(memory.spans)
    assert shape[:2] == [(0, "chain", "RetrieverQueryEngine.query"), (1, "retriever", "VectorIndexRetriever.retrieve")]
    # The LLM runs while the caller reads the stream, after query() returned: it still hangs in the query.
    [llm] = llm_spans(memory.spans)
    assert ("llm", "OpenAI") in [(kind, name) for depth, kind, name in shape if depth >= 1]
    assert (llm["input_tokens"], llm["output_tokens"]) == (120, 3)
    assert agentwatch.current_span() is None and agentwatch.current_llm_call() is None
