"""LangChain runs become a span tree with the native hierarchy, tokens and cost, zero-config or explicit."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool

import agentwatch
from agentwatch.plugins.langchain import AgentWatchHandler
from tests.plugins.langchain.fakes import UsageChatModel, gpt4o_cost


class _Docs(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager: Any = None) -> list[Document]:
        return [Document(page_content=f"doc about {query}"), Document(page_content="another")]


@tool
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


def _tree(memory: agentwatch.InMemoryExporter) -> dict[str, dict]:
    agentwatch.flush()
    return {span["name"]: span for span in memory.spans if span["kind"] != "process"}


def test_zero_config_chain_tree_tokens_and_cost(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], capture_messages=True)
    chain = ChatPromptTemplate.from_template("Explain {topic}") | UsageChatModel(cached_tokens=100) | StrOutputParser()
    assert chain.invoke({"topic": "EU AI Act"}) == "ok"
    spans = _tree(memory)
    sequence, prompt, model, parser = (spans["RunnableSequence"], spans["ChatPromptTemplate"],
                                       spans["UsageChatModel"], spans["StrOutputParser"])
    assert sequence["kind"] == "chain" and sequence["parent_span_id"] is None
    for child in (prompt, model, parser):
        assert child["parent_span_id"] == sequence["span_id"] and child["trace_id"] == sequence["trace_id"]
    assert model["kind"] == "llm" and (model["model"], model["provider"]) == ("gpt-4o", "openai")
    assert (model["input_tokens"], model["output_tokens"], model["cached_input_tokens"]) == (1000, 500, 100)
    assert model["cost_usd"] == pytest.approx(gpt4o_cost(cached=100))
    assert model["attributes"]["finish_reason"] == "stop"
    assert model["input"] == [{"role": "human", "content": "Explain EU AI Act"}]
    assert model["output"] == "ok"


def test_text_not_kept_without_capture(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], capture_messages=True, zero_data_retention=True)
    UsageChatModel().invoke("secret")
    spans = _tree(memory)
    assert "input" not in spans["UsageChatModel"] and "output" not in spans["UsageChatModel"]


def test_explicit_handler_plus_zero_config_records_once(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    model = UsageChatModel()
    handler = AgentWatchHandler()
    model.invoke("a", config={"callbacks": [handler]})
    (model.with_config(callbacks=[AgentWatchHandler()]) | StrOutputParser()).invoke("b")
    UsageChatModel(callbacks=[handler]).invoke("c")
    agentwatch.flush()
    llm = memory.by_kind("llm")
    assert len(llm) == 3
    assert agentwatch.get_state()["monitors"]["global"]["spend_last_hour"] == pytest.approx(3 * gpt4o_cost())


def test_explicit_handler_without_init_records_nothing_and_works() -> None:
    assert UsageChatModel().invoke("x", config={"callbacks": [AgentWatchHandler()]}).content == "ok"


def test_streaming_usage_and_time_to_first_token(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    chunks = list(UsageChatModel(reply="one two three").stream("hi"))
    assert "".join(c.content for c in chunks) == "one two three"

    async def run_async() -> str:
        parts = [chunk.content async for chunk in UsageChatModel(reply="a b").astream("hi")]
        return "".join(parts)  # type: ignore[arg-type]

    assert asyncio.run(run_async()) == "a b"
    agentwatch.flush()
    llm = memory.by_kind("llm")
    assert len(llm) == 2
    for span in llm:
        assert (span["input_tokens"], span["output_tokens"]) == (1000, 500)
        assert span["attributes"]["time_to_first_token_ms"] >= 0


def test_batch_ainvoke_and_astream_events(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    model = UsageChatModel()
    model.batch(["a", "b", "c"])

    async def run() -> None:
        await model.ainvoke("d")
        async for _ in (model | StrOutputParser()).astream_events("e", version="v2"):
            pass

    asyncio.run(run())
    agentwatch.flush()
    assert len(memory.by_kind("llm")) == 5


def test_model_error_is_recorded_and_raised(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    with pytest.raises(RuntimeError, match="rate limited"):
        UsageChatModel(fail_with="rate limited").invoke("x")
    agentwatch.flush()
    (span,) = memory.by_kind("llm")
    assert span["status"] == "error" and span["attributes"]["error.message"] == "rate limited"


def test_tools_and_retrievers(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], capture_messages=True)
    pipeline = RunnableLambda(lambda q: _Docs().invoke(q)) | RunnableLambda(
        lambda docs: word_count.invoke({"text": docs[0].page_content}))
    assert pipeline.invoke("cats") == 3
    with pytest.raises(ValueError):
        RunnableLambda(lambda _: (_ for _ in ()).throw(ValueError("bad"))).invoke(1)
    spans = _tree(memory)
    retriever, counter = spans["_Docs"], spans["word_count"]
    assert retriever["kind"] == "retriever" and retriever["attributes"]["retriever.documents"] == 2
    assert retriever["input"] == "cats"
    assert counter["kind"] == "tool" and counter["input"] == {"text": "doc about cats"} and counter["output"] == 3
    errors = [s for s in memory.spans if s["status"] == "error"]
    assert errors and errors[0]["attributes"]["error.type"] == "ValueError"


def test_agent_scope_of_handler_limits_the_model(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    handler = AgentWatchHandler(agent="Summariser", role="Writer", budget_per_hour=gpt4o_cost(),
                                block_on_threshold=True)
    model = UsageChatModel()
    model.invoke("1", config={"callbacks": [handler]})
    with pytest.raises(agentwatch.CircuitBreakerException) as caught:
        model.invoke("2", config={"callbacks": [handler]})
    assert caught.value.scope_id == "summariser" and model.calls == 1  # the blocked call never ran
    agentwatch.flush()
    statuses = [(s["status"], s["agent_name"], s["agent_role"]) for s in memory.by_kind("llm")]
    assert statuses == [("ok", "Summariser", "Writer"), ("blocked", "Summariser", "Writer")]


def test_shutdown_removes_the_zero_config_hook(memory: agentwatch.InMemoryExporter) -> None:
    from langchain_core.tracers.context import _configure_hooks

    before = len(_configure_hooks)
    agentwatch.init(exporters=[memory])
    assert len(_configure_hooks) == before + 1
    agentwatch.shutdown()
    assert len(_configure_hooks) == before
    agentwatch.init(exporters=[memory])
    UsageChatModel().invoke("x")
    agentwatch.flush()
    assert len(memory.by_kind("llm")) == 1


@pytest.mark.parametrize("how", ["invoke", "ainvoke"])
def test_a_models_own_agent_handler_limits_it_inside_a_chain(stub_provider: Any, memory: Any, how: str) -> None:
    """Found 2026-12-06 by a probe: ``ChatOpenAI(callbacks=[AgentWatchHandler(agent=..., budget_per_hour=...)])`` in
    ``prompt | model | parser`` was never limited (three calls sent past a $0.001 budget): LangChain gives a model's
    start to the handler its chain passed on (zero-config's) before the model's own, and the first recorded the call
    without the agent. The model alone was limited."""
    from langchain_openai import ChatOpenAI

    from tests.stubs.provider_server import Reply

    agentwatch.init(exporters=[memory])
    handler = AgentWatchHandler(agent="Summariser", budget_per_hour=0.001, block_on_threshold=True)
    model = ChatOpenAI(model="gpt-4o", base_url=stub_provider.openai_base_url, api_key="k", max_retries=0,
                       callbacks=[handler])
    chain = ChatPromptTemplate.from_template("{q}") | model | StrOutputParser()
    stub_provider.queue(Reply(content="first", input_tokens=1000, output_tokens=500),
                        Reply(content="second", input_tokens=1000, output_tokens=500))

    def call() -> str:
        return chain.invoke({"q": "x"}) if how == "invoke" else asyncio.run(chain.ainvoke({"q": "x"}))

    assert call() == "first"
    with pytest.raises(agentwatch.CircuitBreakerException) as caught:
        call()
    assert caught.value.scope_id == "summariser" and stub_provider.count() == 1
    agentwatch.flush()
    calls = [(span["status"], span["agent_name"], span["cost_usd"] > 0) for span in memory.by_kind("llm")]
    assert calls == [("ok", "Summariser", True), ("blocked", "Summariser", False)]
    chain_run = next(span for span in memory.spans if span["name"] == "RunnableSequence")
    assert next(span for span in memory.by_kind("llm"))["parent_span_id"] == chain_run["span_id"]


@pytest.mark.parametrize("zero_data_retention", [False, True])
def test_the_programs_tags_and_metadata_are_on_the_spans(memory: agentwatch.InMemoryExporter,
                                                         zero_data_retention: bool) -> None:
    """Found 2026-12-06 by a probe: ``config={"tags": [...], "metadata": {...}}`` given to ``invoke``/``stream`` (and
    a runnable's ``with_config``) was on no span, though LangSmith and Langfuse show it and programs put their user
    and tenant there to break cost down by. LangChain's and LangGraph's own labels stay out; zero data retention keeps
    neither (metadata can carry any text)."""
    from langgraph.checkpoint.memory import InMemorySaver

    from tests.plugins.langchain.graphs import Workflow

    agentwatch.init(exporters=[memory], zero_data_retention=zero_data_retention)
    model = UsageChatModel().with_config(tags=["model-tag"], metadata={"tier": "gold"})
    chain = ChatPromptTemplate.from_template("{q}") | model | StrOutputParser()

    def request() -> None:
        agentwatch.set_metadata(team="ml")
        chain.invoke({"q": "x"}, config={"tags": ["prod"], "metadata": {"user_id": "u-7", "note": "y" * 5000}})

    contextvars.copy_context().run(request)
    for _chunk in chain.stream({"q": "x"}, config={"tags": ["streamed"], "metadata": {"user_id": "u-8"}}):
        pass
    Workflow(("planner",)).build(InMemorySaver()).invoke(
        {"log": []}, {"configurable": {"thread_id": "t-1"}, "tags": ["graph-run"], "metadata": {"user_id": "u-9"}})
    agentwatch.flush()
    spans = [span for span in memory.spans if span["kind"] in ("chain", "llm", "graph", "node")]
    labels = [(span["kind"], span["attributes"].get("tags"), span["attributes"].get("metadata")) for span in spans]
    if zero_data_retention:
        assert all(span_tags is None for _, span_tags, _ in labels)
        assert {str(span_metadata) for kind, _, span_metadata in labels if kind == "llm"} == {"{'team': 'ml'}", "None"}
        return
    long_note = "y" * 256
    first = {"user_id": "u-7", "note": long_note}
    assert ("chain", ["prod"], {"team": "ml", **first}) in labels  # merged with set_metadata's, which it keeps
    assert ("llm", ["model-tag", "prod"], {"team": "ml", **first, "tier": "gold"}) in labels
    assert ("llm", ["model-tag", "streamed"], {"user_id": "u-8", "tier": "gold"}) in labels
    assert ("graph", ["graph-run"], {"user_id": "u-9"}) in labels
    assert ("node", ["graph-run"], {"user_id": "u-9"}) in labels
    assert ("llm", ["graph-run"], {"user_id": "u-9"}) in labels


class _Unprintable:
    """A metadata value whose text cannot be had (a detached SQLAlchemy row, a closed resource's proxy)."""

    def __str__(self) -> str:
        raise RuntimeError("no text for this object")

    __repr__ = __str__


def test_a_label_that_cannot_be_printed_does_not_stand_between_a_call_and_its_check(
        memory: agentwatch.InMemoryExporter) -> None:
    """Found 2026-12-06 by a review: a metadata value whose ``str()`` raised made opening the model's span fail before
    its limits were checked; the internal error was swallowed, so with the budget spent the call went out and was on
    no span. Now the label is kept as ``"<unprintable>"`` and the call is checked and blocked as any other."""
    agentwatch.init(exporters=[memory], budget_per_hour=0.000001, block_on_threshold=True)
    model = UsageChatModel()
    model.invoke("spend the budget", config={"metadata": {"obj": _Unprintable(), "user_id": "u-1"}})
    with pytest.raises(agentwatch.CircuitBreakerException):
        model.invoke("hi", config={"metadata": {"obj": _Unprintable()}, "tags": ["prod"]})
    assert model.calls == 1
    agentwatch.flush()
    calls = [(span["status"], span["attributes"].get("metadata")) for span in memory.by_kind("llm")]
    assert calls == [("ok", {"obj": "<unprintable>", "user_id": "u-1"}), ("blocked", {"obj": "<unprintable>"})]


def test_the_programs_metadata_is_kept_short_on_every_span(memory: agentwatch.InMemoryExporter) -> None:
    """Found 2026-12-06 by a review: a nested metadata value was kept whole but for its texts' length (4,000 characters
    each, any number of items), and LangChain gives every run of a chain its metadata: ``{"history": [3,000 characters]
    * 2,000}`` put ~6 MB on each of four spans, and the collector refused the batches (every span of them lost). Now
    only texts, numbers, booleans and null are kept as they are (a text to 256 characters); any other value is a JSON
    text of it clipped to 256 characters; at most 32 tags and 32 metadata keys."""
    agentwatch.init(exporters=[memory])
    chain = ChatPromptTemplate.from_template("{q}") | UsageChatModel() | StrOutputParser()
    metadata: dict[str, Any] = {"history": ["x" * 3000] * 2000, "user": {"id": 7, "roles": ("admin",), "ok": True},
                                "cap": 2.5, "note": "y" * 300, **{f"k{index}": index for index in range(40)}}
    chain.invoke({"q": "x"}, config={"tags": [f"t{index}" for index in range(40)], "metadata": metadata})
    agentwatch.flush()
    spans = [span for span in memory.spans if span["kind"] in ("chain", "llm")]
    assert len(spans) == 4
    for span in spans:
        kept = span["attributes"]["metadata"]
        assert kept["history"] == ('["' + "x" * 3000)[:256]
        assert kept["user"] == '{"id": 7, "roles": ["admin"], "ok": true}'
        assert (kept["cap"], kept["note"]) == (2.5, "y" * 256)
        assert list(kept) == ["history", "user", "cap", "note", *(f"k{index}" for index in range(28))]
        assert span["attributes"]["tags"] == [f"t{index}" for index in range(32)]
