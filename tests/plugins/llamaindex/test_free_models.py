"""LlamaIndex test doubles (``MockLLM``, ``MockEmbedding`` and the application's subclasses of them) cost $0,
while a model nobody knows is still priced at the documented default of $1.00 input / $2.00 output per 1M
tokens and flagged. Expected figures are written here, not computed by AgentWatch's pricing."""

from __future__ import annotations

from typing import Any

import pytest

import agentwatch
from tests.plugins.llamaindex.conftest import llm_spans, mock_index

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
