"""Limits are checked before the request leaves: the breaker's exception reaches the caller with its own
type, nothing reaches the stub, and the monitor carried by the exception lets the caller recover."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.plugins.llamaindex.conftest import DOCUMENTS, llm_spans, mock_index, openai_llm, sending_embedding


def _call(llm: Any, how: str) -> str:
    from llama_index.core.llms import ChatMessage

    messages = [ChatMessage(role="user", content="hi")]
    if how == "chat":
        return llm.chat(messages).message.content or ""
    if how == "stream_chat":
        return "".join(chunk.delta or "" for chunk in llm.stream_chat(messages))
    if how == "complete":
        return llm.complete("hi").text

    async def run() -> str:
        if how == "achat":
            return (await llm.achat(messages)).message.content or ""
        text = ""
        async for chunk in await llm.astream_chat(messages):
            text += chunk.delta or ""
        return text

    return asyncio.run(run())


@pytest.mark.parametrize("how", ["chat", "stream_chat", "achat", "astream_chat", "complete"])
def test_block_then_recover(how: str, memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.0, block_on_threshold=True)
    llm = openai_llm(stub_provider)

    with pytest.raises(CircuitBreakerException) as caught:
        _call(llm, how)

    assert type(caught.value) is CircuitBreakerException and caught.value.reason == "budget_per_hour"
    assert stub_provider.requests == []
    caught.value.monitor.increase_budget(1.0)
    assert _call(llm, how) == "ok"
    assert stub_provider.count("/chat/completions") == 1
    agentwatch.flush()
    assert [span["status"] for span in llm_spans(memory.spans)] == ["blocked", "ok"]


def test_block_llm_built_before_init(memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    llm = openai_llm(stub_provider)  # its callback manager exists before AgentWatch does
    agentwatch.init(exporters=[memory], budget_per_hour=0.0, block_on_threshold=True)

    with pytest.raises(CircuitBreakerException):
        _call(llm, "chat")

    assert stub_provider.requests == []


def test_block_with_users_settings_callback_manager(memory: agentwatch.InMemoryExporter,
                                                     stub_provider: Any) -> None:
    from llama_index.core import Settings
    from llama_index.core.callbacks import CallbackManager, TokenCountingHandler

    counter = TokenCountingHandler()
    Settings.callback_manager = CallbackManager([counter])
    agentwatch.init(exporters=[memory], max_calls_per_minute=1, block_on_threshold=True)
    llm = openai_llm(stub_provider)  # picks up Settings' handlers

    assert _call(llm, "chat") == "ok"
    with pytest.raises(CircuitBreakerException) as caught:
        _call(llm, "chat")

    assert caught.value.reason == "max_calls_per_minute"
    assert stub_provider.count("/chat/completions") == 1
    assert counter in Settings.callback_manager.handlers  # the user's own handler still works
    assert counter.total_llm_token_count == 15


def test_block_query_engine(memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    index = mock_index()
    agentwatch.init(exporters=[memory], budget_per_hour=0.0, block_on_threshold=True)
    engine = index.as_query_engine(llm=openai_llm(stub_provider), similarity_top_k=1)

    with pytest.raises(CircuitBreakerException) as caught:
        engine.query("What do bees do?")

    assert stub_provider.requests == []
    agentwatch.flush()
    statuses = {span["name"]: span["status"] for span in memory.spans}
    # The query's embedding (a mock model's, which costs nothing) is made; its LLM call is blocked.
    assert statuses["RetrieverQueryEngine.query"] == "blocked"
    assert {span["status"] for span in memory.by_kind("embedding")} == {"ok"}
    caught.value.monitor.increase_budget(1.0)
    assert str(engine.query("What do bees do?")) == "ok"
    assert stub_provider.count("/chat/completions") == 1


def test_block_paid_embeddings_while_indexing(memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    from llama_index.core import Document, VectorStoreIndex

    agentwatch.init(exporters=[memory], max_calls_per_minute=2, block_on_threshold=True)

    with pytest.raises(CircuitBreakerException) as caught:  # one request per document: the third is blocked
        VectorStoreIndex.from_documents([Document(text=text) for text in DOCUMENTS],
                                        embed_model=sending_embedding(stub_provider))

    assert str(caught.value).startswith("AgentWatch blocked the embedding call (global 'global', state OPEN)")
    assert stub_provider.count("/embeddings") == 2
    agentwatch.flush()
    assert [span["status"] for span in memory.by_kind("embedding")] == ["ok", "ok", "blocked"]


@pytest.mark.parametrize("via", ["openai", "httpx"])
def test_a_local_embedding_that_sends_a_request_is_checked_before_it_leaves(
        via: str, memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    """A test double (a ``MockEmbedding``) is not counted, until a request of it goes out to a provider after all."""
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding

    agentwatch.init(exporters=[memory], max_calls_per_minute=2, block_on_threshold=True)

    with pytest.raises(CircuitBreakerException) as caught:
        VectorStoreIndex.from_documents([Document(text=text) for text in DOCUMENTS],
                                        embed_model=sending_embedding(stub_provider, MockEmbedding, via))

    assert caught.value.reason == "max_calls_per_minute" and caught.value.what == "embedding call"
    assert stub_provider.count("/embeddings") == 2
    agentwatch.flush()
    assert [span["status"] for span in memory.by_kind("embedding")] == ["ok", "ok", "blocked"]
