"""LlamaIndex test doubles (``MockLLM``, ``MockEmbedding`` and the application's subclasses of them) cost $0,
while a model nobody knows is still priced at the documented default of $1.00 input / $2.00 output per 1M
tokens and flagged. Expected figures are written here, not computed by AgentWatch's pricing."""

from __future__ import annotations

from typing import Any

import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.plugins.llamaindex.conftest import llm_spans, mock_index, openai_llm

_USAGE = {"usage": {"prompt_tokens": 1_000, "completion_tokens": 500}}


def _scripted(base: Any) -> Any:
    """An LLM class on ``base`` that answers with a provider-style usage of 1,000 in / 500 out."""
    from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback

    class Scripted(base):  # type: ignore[misc, valid-type]
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata()

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            return CompletionResponse(text="done", raw=_USAGE)

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            yield CompletionResponse(text="done", delta="done", raw=_USAGE)

    return Scripted()


def test_mock_llm_subclass_with_usage_costs_nothing(memory: agentwatch.InMemoryExporter) -> None:
    from llama_index.core.llms import CustomLLM, MockLLM

    agentwatch.init(exporters=[memory])
    assert _scripted(MockLLM).complete("hi").text == "done"
    assert _scripted(CustomLLM).complete("hi").text == "done"  # the application's own model: unknown

    agentwatch.flush()
    mock, custom = llm_spans(memory.spans)
    assert (mock["provider"], mock["input_tokens"], mock["output_tokens"]) == ("mock", 1_000, 500)
    assert mock["cost_usd"] == 0.0 and "cost_estimated" not in mock["attributes"]
    assert custom["provider"] is None
    assert custom["cost_usd"] == pytest.approx(1_000 * 1.00 / 1e6 + 500 * 2.00 / 1e6)
    assert custom["attributes"]["cost_estimated"] is True


def test_mock_embeddings_cost_nothing_and_never_trip_a_budget(memory: agentwatch.InMemoryExporter) -> None:
    # At the default rate each index build's ~30 estimated tokens would cost ~$0.00003: over this budget.
    agentwatch.init(exporters=[memory], budget_per_hour=0.000001, block_on_threshold=True)

    for _ in range(3):
        mock_index().as_retriever(similarity_top_k=1).retrieve("What do bees do?")

    agentwatch.flush()
    embeddings = memory.by_kind("embedding")
    assert len(embeddings) == 6 and all(span["input_tokens"] > 0 for span in embeddings)
    assert {(span["provider"], span["cost_usd"], span["status"]) for span in embeddings} == {("mock", 0.0, "ok")}
    assert agentwatch.get_state()["monitors"]["global"]["spend_last_hour"] == 0.0


def test_local_embeddings_are_no_calls_of_the_call_rate(memory: agentwatch.InMemoryExporter,
                                                        stub_provider: Any) -> None:
    """An index a mock model embeds in many batches is no loop: the batches are recorded, not counted, and the paid
    LLM calls after them are judged alone (the sixth batch used to open the breaker and block the query)."""
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding

    agentwatch.init(exporters=[memory], max_calls_per_minute=2, block_on_threshold=True)
    documents = [Document(text=f"Note {number}: bees dance to show where flowers are.") for number in range(12)]
    index = VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=8, embed_batch_size=2))
    engine = index.as_query_engine(llm=openai_llm(stub_provider), similarity_top_k=1)

    assert str(engine.query("What do bees do?")) == "ok"
    assert str(engine.query("Where are the flowers?")) == "ok"
    with pytest.raises(CircuitBreakerException) as caught:  # the third paid call in the minute
        engine.query("And the hive?")

    assert str(caught.value).startswith("AgentWatch blocked the LLM call")
    assert stub_provider.count("/chat/completions") == 2
    agentwatch.flush()
    embeddings = memory.by_kind("embedding")
    assert len(embeddings) == 6 + 3 and {span["status"] for span in embeddings} == {"ok"}


def test_local_embeddings_pass_an_open_breaker_and_leave_the_probe_to_a_paid_call(
        memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    import time

    agentwatch.init(exporters=[memory], max_calls_per_minute=1, block_on_threshold=True)
    llm = openai_llm(stub_provider)
    assert llm.complete("hi").text == "ok"
    with pytest.raises(CircuitBreakerException) as caught:
        llm.complete("hi")

    assert mock_index().as_retriever(similarity_top_k=1).retrieve("What do bees do?")  # OPEN: still embeds
    caught.value.monitor.pause(0.05)
    time.sleep(0.1)
    mock_index().as_retriever(similarity_top_k=1).retrieve("What do bees do?")  # no probe: decides nothing
    assert agentwatch.get_state()["monitors"]["global"]["state"] != "CLOSED"
    assert llm.complete("hi").text == "ok"  # the probe: a paid call's success closes the breaker
    assert agentwatch.get_state()["monitors"]["global"]["state"] == "CLOSED"
    assert stub_provider.count("/chat/completions") == 2
