"""Every LLM entry point is one call (LlamaIndex's LLM methods call each other), blocked before the model
runs; streams and their context; what the plugin must never do to the host."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.plugins.llamaindex.conftest import llm_spans, mock_index, tree

ROOT = Path(__file__).resolve().parents[3]
METHODS = ("chat", "stream_chat", "achat", "astream_chat", "complete", "stream_complete", "acomplete",
           "astream_complete")


def _counting_llm(raw: Any = None) -> Any:
    """A fake paid model: counts the requests that reach it; ``raw`` is what it reports as the provider's."""
    from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
    from llama_index.core.llms import CustomLLM
    from llama_index.core.llms.callbacks import llm_completion_callback

    class CountingLLM(CustomLLM):  # decorated like every LlamaIndex integration
        requests: int = 0

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="gpt-4o-mini")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            self.requests += 1
            return CompletionResponse(text="fine", raw=raw)

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            self.requests += 1
            yield CompletionResponse(text="fi", delta="fi")
            yield CompletionResponse(text="fine", delta="ne", raw=raw)

    return CountingLLM()


def _call(llm: Any, method: str) -> str:
    """One call through ``method``; the text the caller gets."""
    from llama_index.core.llms import ChatMessage

    argument: Any = [ChatMessage(role="user", content="hi")] if "chat" in method else "hi"

    def text(response: Any) -> str:
        return response.message.content if "chat" in method else response.text

    if not method.startswith("a"):
        result = getattr(llm, method)(argument)
        return "".join(chunk.delta or "" for chunk in result) if "stream" in method else text(result)

    async def main() -> str:
        result = await getattr(llm, method)(argument)
        if "stream" in method:
            return "".join([chunk.delta or "" async for chunk in result])
        return text(result)

    return asyncio.run(main())


@pytest.mark.parametrize("method", METHODS)
def test_each_llm_method_is_one_call(method: str, memory: agentwatch.InMemoryExporter) -> None:
    client = agentwatch.init(exporters=[memory])
    llm = _counting_llm()

    assert _call(llm, method) == "fine"

    agentwatch.flush()
    [span] = llm_spans(memory.spans)  # chat() runs complete(), astream_chat() iterates stream_chat(): one call
    assert span["name"] == "CountingLLM" and span["model"] == "gpt-4o-mini" and span["status"] == "ok"
    assert span["attributes"]["llamaindex.method"] == method
    assert client.monitor.snapshot()["calls_last_minute"] == 1 == llm.requests
    if "stream" in method:
        assert span["attributes"]["streaming"] is True and span["attributes"]["time_to_first_token_ms"] >= 0
    assert agentwatch.current_llm_call() is None and agentwatch.current_span() is None


@pytest.mark.parametrize("method", ["chat", "stream_chat", "achat", "astream_chat", "complete"])
def test_blocked_call_never_reaches_the_model(method: str, memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], max_calls_per_minute=1, block_on_threshold=True)
    llm = _counting_llm()
    assert _call(llm, method) == "fine"

    with pytest.raises(CircuitBreakerException) as caught:
        _call(llm, method)

    assert type(caught.value) is CircuitBreakerException and caught.value.reason == "max_calls_per_minute"
    assert llm.requests == 1
    caught.value.monitor.reset_windows()
    assert _call(llm, method) == "fine" and llm.requests == 2
    agentwatch.flush()
    blocked = [span for span in llm_spans(memory.spans) if span["status"] == "blocked"]
    assert [(span["name"], span["attributes"]["breaker.reason"]) for span in blocked] == [
        ("CountingLLM", "max_calls_per_minute")]


def test_usage_and_cost_from_the_providers_response(memory: agentwatch.InMemoryExporter) -> None:
    from genai_prices import Usage, calc_price

    agentwatch.init(exporters=[memory])
    usage = {"prompt_tokens": 1200, "completion_tokens": 80, "prompt_tokens_details": {"cached_tokens": 300}}
    assert _call(_counting_llm(raw={"model": "gpt-4o-mini", "usage": usage}), "chat") == "fine"

    agentwatch.flush()
    [span] = llm_spans(memory.spans)
    assert (span["input_tokens"], span["output_tokens"], span["cached_input_tokens"]) == (1200, 80, 300)
    expected = calc_price(Usage(input_tokens=1200, cache_read_tokens=300, output_tokens=80), "gpt-4o-mini")
    assert span["cost_usd"] == pytest.approx(float(expected.total_price))


@pytest.mark.parametrize("outer_usage", [None, {"prompt_tokens": 7, "completion_tokens": 3}])
def test_usage_of_the_inner_call_counts_when_the_outer_response_has_none(
        outer_usage: dict[str, int] | None, memory: agentwatch.InMemoryExporter) -> None:
    """An integration's ``chat()`` that runs its own ``complete()`` and drops ``raw`` on the way: one call, with the
    inner response's usage; a ``chat()`` response that reports its own usage is the one counted."""
    from llama_index.core.base.llms.types import ChatResponse
    from llama_index.core.llms import ChatMessage
    from llama_index.core.llms.callbacks import llm_chat_callback

    inner = _counting_llm(raw={"usage": {"prompt_tokens": 1200, "completion_tokens": 80}})

    class DroppingLLM(type(inner)):  # type: ignore[misc]
        @llm_chat_callback()
        def chat(self, messages: Any, **kwargs: Any) -> ChatResponse:
            text = self.complete("hi").text
            raw = {"usage": outer_usage} if outer_usage else None
            return ChatResponse(message=ChatMessage(role="assistant", content=text), raw=raw)

    client = agentwatch.init(exporters=[memory])
    llm = DroppingLLM()
    assert _call(llm, "chat") == "fine" and llm.requests == 1

    agentwatch.flush()
    [span] = llm_spans(memory.spans)
    expected = (7, 3) if outer_usage else (1200, 80)
    assert (span["input_tokens"], span["output_tokens"]) == expected and span["cost_usd"] > 0
    assert "usage_missing" not in span["attributes"]
    assert client.monitor.snapshot()["calls_last_minute"] == 1


def test_garbage_usage_is_flagged_not_raised(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    raw = {"usage": {"prompt_tokens": "lots", "completion_tokens": -4}}

    assert _call(_counting_llm(raw=raw), "chat") == "fine"

    agentwatch.flush()
    [span] = llm_spans(memory.spans)
    assert span["attributes"]["usage_invalid"] is True and span["input_tokens"] == span["output_tokens"] == 0


def test_internal_error_never_reaches_the_caller(memory: agentwatch.InMemoryExporter) -> None:
    class Exploding:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("a provider object that cannot be read")

    agentwatch.init(exporters=[memory])
    assert _call(_counting_llm(raw=Exploding()), "chat") == "fine"
    assert _call(_counting_llm(raw=Exploding()), "stream_chat") == "fine"


def test_call_inside_a_manual_llm_call_counts_once(memory: agentwatch.InMemoryExporter) -> None:
    client = agentwatch.init(exporters=[memory])
    with agentwatch.llm_call("my-wrapper", model="gpt-4o-mini"):
        assert _call(_counting_llm(), "chat") == "fine"

    agentwatch.flush()
    assert [span["name"] for span in llm_spans(memory.spans)] == ["my-wrapper"]
    assert client.monitor.snapshot()["calls_last_minute"] == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_streaming_query_calls_its_llm_under_the_synthesizer(mode: str,
                                                            memory: agentwatch.InMemoryExporter) -> None:
    from llama_index.core.llms import MockLLM

    index = mock_index()
    agentwatch.init(exporters=[memory])
    engine = index.as_query_engine(llm=MockLLM(max_tokens=4), streaming=True, similarity_top_k=1)

    async def read_async() -> str:
        response = await engine.aquery("What do bees do?")
        return "".join([text async for text in response.async_response_gen()])

    with agentwatch.trace("job") as job:
        if mode == "sync":
            # The LLM is called only while the stream is read, after query() has returned.
            text = "".join(engine.query("What do bees do?").response_gen)
        else:
            text = asyncio.run(read_async())
        assert agentwatch.current_span() is job.span and agentwatch.current_llm_call() is None

    assert text.split() == ["text"] * 4
    agentwatch.flush()
    prefix = "a" if mode == "async" else ""
    assert tree(memory.spans) == [
        (0, "trace", "job"),
        (1, "chain", f"RetrieverQueryEngine.{prefix}query"),
        (2, "retriever", f"VectorIndexRetriever.{prefix}retrieve"),
        (3, "embedding", "MockEmbedding"),
        (2, "chain", f"CompactAndRefine.{prefix}synthesize"),
        (3, "llm", "MockLLM"),
    ]
    [synthesize] = [span for span in memory.spans if span["name"].startswith("CompactAndRefine")]
    assert synthesize["attributes"]["streaming"] is True


def test_applications_own_callbacks_are_left_alone(memory: agentwatch.InMemoryExporter) -> None:
    from llama_index.core import Settings
    from llama_index.core.callbacks import CallbackManager, TokenCountingHandler

    counter = TokenCountingHandler()
    llm = _counting_llm()
    llm.callback_manager = CallbackManager([counter])
    Settings.llm = llm

    agentwatch.init(exporters=[memory])
    assert _call(Settings.llm, "complete") == "fine"
    agentwatch.shutdown()

    # init() must not create Settings.callback_manager: LlamaIndex would then put it over the LLM's own.
    assert Settings._callback_manager is None
    assert llm.callback_manager.handlers == [counter] and counter.llm_token_counts
    assert len(llm_spans(memory.spans)) == 1


def test_disabled_plugin_records_nothing(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], disabled_plugins=["llamaindex"], max_calls_per_minute=1,
                    block_on_threshold=True)
    llm = _counting_llm()
    for _ in range(2):
        assert _call(llm, "chat") == "fine"
    agentwatch.flush()
    assert llm_spans(memory.spans) == []


def test_entry_module_does_not_import_llamaindex() -> None:
    script = ("import sys, agentwatch.plugins.llamaindex._plugin as plugin; "
              "assert plugin.AGENTWATCH_REQUIRES == ('llama_index.core',); "
              "print(sorted(name for name in sys.modules if name.startswith('llama_index')))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"



def test_an_embedding_class_of_the_users_own_is_priced_as_the_sdk_it_calls(
        memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    """A ``BaseEmbedding`` subclass of the user's calling the openai SDK: LlamaIndex names no provider for it, and
    embedding models are priced per provider (found 2026-12-05: charged at the unknown-model default, 50x)."""
    import openai
    from llama_index.core.embeddings import BaseEmbedding

    from tests.stubs.provider_server import Reply

    client = openai.OpenAI(api_key="sk-test", base_url=stub_provider.openai_base_url, max_retries=0)

    class SdkEmbedding(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embedding(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            answer = client.embeddings.create(model=self.model_name, input=[text])
            return list(answer.data[0].embedding)

    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(input_tokens=30_000, output_tokens=0))
    SdkEmbedding(model_name="text-embedding-3-small").get_text_embedding("bees dance")
    agentwatch.flush()
    [span] = memory.by_kind("embedding")
    assert (span["provider"], span["input_tokens"]) == ("openai", 30_000)
    assert span["cost_usd"] == pytest.approx(30_000 * 0.02 / 1e6)
    assert not span["attributes"].get("cost_estimated")
