"""LlamaIndex fixtures: a clean ``Settings`` per test, mock models, and the real OpenAI LLM on the stub."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

MODEL = "gpt-4o-mini"
DOCUMENTS = ("Bees dance to tell the hive where flowers are.", "Ants follow pheromone trails to food.",
             "Wasps build nests from chewed wood.")


@pytest.fixture(autouse=True)
def _clean_settings() -> Iterator[None]:
    """``Settings`` is process-global: every test starts with no LLM, embedding model or callback manager."""
    from llama_index.core import Settings

    saved = (Settings._llm, Settings._embed_model, Settings._callback_manager)
    Settings._llm, Settings._embed_model, Settings._callback_manager = None, None, None
    yield
    Settings._llm, Settings._embed_model, Settings._callback_manager = saved


def openai_llm(stub: Any, **kwargs: Any) -> Any:
    """The real ``llama_index.llms.openai.OpenAI`` (and the real ``openai`` client) against the stub."""
    from llama_index.llms.openai import OpenAI

    return OpenAI(model=MODEL, api_key="sk-test", api_base=stub.openai_base_url, max_retries=0, **kwargs)


def mock_index() -> Any:
    """A ``VectorStoreIndex`` over three documents with a mock embedding model (no request)."""
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding

    embed_model = MockEmbedding(embed_dim=8)
    return VectorStoreIndex.from_documents([Document(text=text) for text in DOCUMENTS], embed_model=embed_model)


def sending_embedding(stub: Any, base: Any = None, via: str = "openai", **fields: Any) -> Any:
    """An embedding model of the application's own that asks OpenAI's embeddings API on the stub for every batch, as
    llama-index-embeddings-openai's ``OpenAIEmbedding`` does: through the real ``openai`` client (``via="openai"``) or
    a plain ``httpx`` POST (``via="httpx"``). Built on ``base`` (default ``BaseEmbedding``; ``MockEmbedding``: a test
    double that sends after all), with ``fields`` (a ``callback_manager``)."""
    import httpx
    import openai
    from llama_index.core.embeddings import BaseEmbedding

    client = openai.OpenAI(api_key="sk-test", base_url=stub.openai_base_url, max_retries=0)

    def embed(texts: list[str]) -> list[list[float]]:
        body = {"model": "text-embedding-3-small", "input": texts, "encoding_format": "float"}
        if via == "httpx":
            answer = httpx.post(f"{stub.openai_base_url}/embeddings", json=body,
                                headers={"Authorization": "Bearer sk-test"})
            return [item["embedding"] for item in answer.json()["data"]]
        return [item.embedding for item in client.embeddings.create(**body).data]

    class AppEmbedding(base or BaseEmbedding):  # type: ignore[misc]
        def _get_text_embedding(self, text: str) -> list[float]:
            return embed([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return embed(texts)

        def _get_query_embedding(self, query: str) -> list[float]:
            return embed([query])[0]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return embed([query])[0]

    if base is not None:
        fields.setdefault("embed_dim", 8)
    return AppEmbedding(embed_batch_size=1, **fields)


def tree(spans: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """(depth, kind, name) in start order, the spans of ``agentwatch``'s own process record left out."""
    by_id = {span["span_id"]: span for span in spans}

    def depth(span: dict[str, Any]) -> int:
        level = 0
        while span["parent_span_id"] in by_id:
            span = by_id[span["parent_span_id"]]
            level += 1
        return level

    ordered = sorted((span for span in spans if span["kind"] != "process"), key=lambda s: s["start_time_unix_nano"])
    return [(depth(span), span["kind"], span["name"]) for span in ordered]


def llm_spans(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [span for span in spans if span["kind"] == "llm"]
