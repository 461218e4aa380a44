"""Span trees and figures recorded through LlamaIndex's instrumentation dispatcher and legacy callbacks."""

from __future__ import annotations

import asyncio
from typing import Any

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


def test_openai_stream_asks_for_usage(memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    from llama_index.core.llms import ChatMessage

    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="one two three", input_tokens=50, output_tokens=3, cached_tokens=10))
    llm = openai_llm(stub_provider)

    chunks = list(llm.stream_chat([ChatMessage(role="user", content="count")]))

    assert chunks[-1].message.content == "one two three"
    assert stub_provider.last.json["stream_options"] == {"include_usage": True}
    assert "stream_options" not in llm.additional_kwargs  # the user's LLM is left as it was
    agentwatch.flush()
    [span] = llm_spans(memory.spans)
    assert (span["input_tokens"], span["output_tokens"], span["cached_input_tokens"]) == (50, 3, 10)
    assert span["cost_usd"] > 0 and span["attributes"]["streaming"] is True
    assert span["attributes"]["time_to_first_token_ms"] >= 0


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

    agentwatch.init(exporters=[memory])
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
    agentwatch.init(exporters=[memory])
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
