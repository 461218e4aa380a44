"""langchain-openai against a stub OpenAI server: zero-config plus an explicit handler, one span and one
charge per call, with the HTTP-level details (URL, status) merged into that span by the provider plugin."""

from __future__ import annotations

import asyncio

import pytest
from langchain_openai import ChatOpenAI

import agentwatch
from agentwatch.plugins.langchain import AgentWatchHandler
from tests.stubs.provider_server import Reply, StubProvider

# gpt-4o-mini list price: $0.15 / 1M input, $0.075 / 1M cached input, $0.60 / 1M output
COST = (800 * 0.15 + 200 * 0.075 + 50 * 0.6) / 1e6


def _model(stub: StubProvider, **kwargs: object) -> ChatOpenAI:
    return ChatOpenAI(model="gpt-4o-mini", base_url=stub.openai_base_url, api_key="sk-test", max_retries=0,
                      **kwargs)  # type: ignore[arg-type]


def test_one_span_and_one_charge_per_call(memory: agentwatch.InMemoryExporter, stub_provider: StubProvider) -> None:
    agentwatch.init(exporters=[memory])
    for _ in range(3):
        stub_provider.queue(Reply(content="hi", input_tokens=1000, output_tokens=50, cached_tokens=200))
    model = _model(stub_provider)
    model.invoke("a")
    model.invoke("b", config={"callbacks": [AgentWatchHandler()]})

    async def run() -> None:
        await model.ainvoke("c", config={"callbacks": [AgentWatchHandler()]})

    asyncio.run(run())
    agentwatch.flush()
    llm = memory.by_kind("llm")
    assert len(llm) == 3 == len([r for r in stub_provider.requests if r.path.endswith("/chat/completions")])
    for span in llm:
        assert (span["input_tokens"], span["output_tokens"], span["cached_input_tokens"]) == (1000, 50, 200)
        assert span["cost_usd"] == pytest.approx(COST)
        assert span["name"] == "ChatOpenAI"
    assert agentwatch.get_state()["monitors"]["global"]["spend_last_hour"] == pytest.approx(3 * COST)
    sync_call = llm[0]
    assert sync_call["attributes"].get("http.status_code") == 200
    assert sync_call["attributes"]["http.url"].startswith(stub_provider.openai_base_url)


def test_streaming_usage_through_langchain_openai(memory: agentwatch.InMemoryExporter,
                                                  stub_provider: StubProvider) -> None:
    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="one two three", input_tokens=1000, output_tokens=50, cached_tokens=200))
    text = "".join(str(chunk.content) for chunk in _model(stub_provider, stream_usage=True).stream("hi"))
    assert text == "one two three"
    agentwatch.flush()
    (span,) = memory.by_kind("llm")
    assert (span["input_tokens"], span["output_tokens"]) == (1000, 50)
    assert span["attributes"]["time_to_first_token_ms"] >= 0


def test_block_sends_nothing(memory: agentwatch.InMemoryExporter, stub_provider: StubProvider) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=COST, block_on_threshold=True)
    stub_provider.queue(Reply(content="hi", input_tokens=1000, output_tokens=50, cached_tokens=200))
    model = _model(stub_provider)
    model.invoke("a")
    with pytest.raises(agentwatch.CircuitBreakerException):
        model.invoke("b")
    assert len(stub_provider.requests) == 1
