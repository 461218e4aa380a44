"""Real AutoGen AgentChat objects talking to the stub OpenAI-compatible provider on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import agentwatch

MODEL = "gpt-4o-mini-2024-07-18"


@pytest.fixture
async def model_client(stub_provider: Any) -> AsyncIterator[Any]:
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    client = OpenAIChatCompletionClient(model=MODEL, base_url=stub_provider.openai_base_url,
                                        api_key="test-key", max_retries=0)
    yield client
    await client.close()


def spans(memory: agentwatch.InMemoryExporter, kind: str | None = None) -> list[dict[str, Any]]:
    agentwatch.flush()
    return [span for span in memory.spans if kind is None or span["kind"] == kind]


def by_id(memory: agentwatch.InMemoryExporter) -> dict[str, dict[str, Any]]:
    return {span["span_id"]: span for span in spans(memory)}


def chat_requests(stub: Any) -> int:
    return stub.count("/chat/completions")
