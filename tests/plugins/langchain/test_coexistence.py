"""AgentWatch is invisible to every other LangChain handler and to streamed events (issue 22).

Each workload runs twice with Langfuse's LangChain handler and a user's own recording handlers (sync and
async) in the callbacks: once without AgentWatch, once with it (zero-config, or an explicit handler placed
first). What each other handler receives, what Langfuse records, and what the streams yield must be the
same. Completion models (``BaseLLM``) are the case langchain-core gets wrong when a handler is inline.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.language_models import FakeStreamingListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langfuse import Langfuse
from langfuse.langchain import CallbackHandler as LangfuseHandler
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentwatch
from agentwatch.plugins.langchain import AgentWatchHandler
from tests.plugins.langchain.fakes import UsageChatModel

_LANGFUSE_KEY = "pk-lf-agentwatch-test"


@pytest.fixture(scope="module")
def langfuse_spans() -> Iterator[tuple[Langfuse, InMemorySpanExporter]]:
    # Langfuse's real client and handler; its spans go to an in-memory exporter (the host is never called).
    # The CrewAI tests in the same worker switch the OpenTelemetry SDK off process-wide (OTEL_SDK_DISABLED);
    # Langfuse records through it, so it is switched on for the provider made here.
    disabled = os.environ.pop("OTEL_SDK_DISABLED", None)
    try:
        exporter = InMemorySpanExporter()
        client = Langfuse(public_key=_LANGFUSE_KEY, secret_key="sk-lf-test", host="http://127.0.0.1:9",
                          span_exporter=exporter, tracer_provider=TracerProvider())
    finally:
        if disabled is not None:
            os.environ["OTEL_SDK_DISABLED"] = disabled
    yield client, exporter
    client.shutdown()


class _Ids:
    def __init__(self) -> None:
        self._ids: dict[Any, int] = {}

    def __call__(self, run_id: UUID | str | None) -> int | None:
        return None if run_id is None else self._ids.setdefault(run_id, len(self._ids))


class Recorder(BaseCallbackHandler):
    """A user's handler: every event with its run and parent, and the per-run state a real one keeps."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.open: set[UUID] = set()
        self._id = _Ids()

    def _add(self, event: str, run_id: UUID, parent_run_id: UUID | None, detail: Any = None) -> None:
        self.events.append((event, self._id(run_id), self._id(parent_run_id), detail))

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                       **kwargs: Any) -> None:
        self._add("chain_start", run_id, parent_run_id, kwargs.get("name"))

    def on_chain_end(self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._add("chain_end", run_id, parent_run_id, repr(outputs)[:80])

    def on_chat_model_start(self, serialized: Any, messages: list[list[Any]], *, run_id: UUID,
                            parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self.open.add(run_id)
        self._add("chat_model_start", run_id, parent_run_id, [[m.content for m in batch] for batch in messages])

    def on_llm_start(self, serialized: Any, prompts: list[str], *, run_id: UUID, parent_run_id: UUID | None = None,
                     **kwargs: Any) -> None:
        self.open.add(run_id)
        self._add("llm_start", run_id, parent_run_id, tuple(prompts))

    def on_llm_new_token(self, token: Any, *, chunk: Any = None, run_id: UUID, parent_run_id: UUID | None = None,
                         tags: list[str] | None = None, **kwargs: Any) -> None:
        self._add("llm_new_token", run_id, parent_run_id, token)

    def on_llm_end(self, response: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self.open.remove(run_id)  # KeyError (LangChain logs it) if the start never arrived
        self._add("llm_end", run_id, parent_run_id, [[g.text for g in gens] for gens in response.generations])


class AsyncRecorder(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self._id = _Ids()

    async def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID,
                             parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self.events.append(("chain_start", self._id(run_id), self._id(parent_run_id)))

    async def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID,
                                  parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self.events.append(("chat_model_start", self._id(run_id), self._id(parent_run_id)))

    async def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                           **kwargs: Any) -> None:
        self.events.append(("llm_start", self._id(run_id), self._id(parent_run_id)))

    async def on_llm_end(self, response: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                         **kwargs: Any) -> None:
        self.events.append(("llm_end", self._id(run_id), self._id(parent_run_id)))

    async def on_chain_end(self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                           **kwargs: Any) -> None:
        self.events.append(("chain_end", self._id(run_id), self._id(parent_run_id)))


def _chat() -> Any:
    return UsageChatModel(reply="alpha beta gamma")


def _completion() -> Any:
    return FakeStreamingListLLM(responses=["alpha beta", "gamma delta"])


def _chain(model: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: PromptTemplate.from_template("Say {topic}") | model() | StrOutputParser()


def _event(event: dict[str, Any], ids: _Ids) -> tuple[Any, ...]:
    data = event.get("data", {})
    shown = {key: repr(getattr(value, "content", value))[:60] for key, value in data.items()
             if key in ("chunk", "output") and not hasattr(value, "generations")}
    return (event["event"], event["name"], ids(event["run_id"]), tuple(ids(p) for p in event.get("parent_ids", ())),
            tuple(sorted(data)), tuple(sorted(shown.items())))


def _run(how: str, make: Callable[[], Any], callbacks: list[Any]) -> list[Any]:
    """Run the workload; returns what the caller got (outputs, stream chunks, stream events)."""
    runnable = make()
    source = {"topic": "x"} if how.startswith("chain") else "x"
    config: Any = {"callbacks": callbacks}
    if how.endswith("invoke") and not how.endswith("ainvoke"):
        return [repr(runnable.invoke(source, config))]
    if how.endswith("batch") and not how.endswith("abatch"):
        return [repr(out) for out in runnable.batch([source, source], config)]
    if how.endswith("stream") and not how.endswith("astream"):
        return [repr(chunk) for chunk in runnable.stream(source, config)]

    async def main() -> list[Any]:
        if how.endswith("ainvoke"):
            return [repr(await runnable.ainvoke(source, config))]
        if how.endswith("abatch"):
            return [repr(out) for out in await runnable.abatch([source, source], config)]
        if how.endswith("astream"):
            return [repr(chunk) async for chunk in runnable.astream(source, config)]
        if how.endswith("astream_log"):
            return [[(op["op"], op["path"]) for op in patch.ops]
                    async for patch in runnable.astream_log(source, config)]
        ids = _Ids()
        version = "v1" if how.endswith("v1") else "v2"
        return [_event(event, ids) async for event in runnable.astream_events(source, config, version=version)]

    return asyncio.run(main())


def _strip_ids(value: Any) -> Any:
    # Chunk reprs carry LangChain's per-run message ids ("lc_run--<uuid>"); each run has a new one.
    import re

    return re.sub(r"lc_run--[0-9a-f-]+", "lc_run--*", repr(value))


def _observe(how: str, make: Callable[[], Any], langfuse: tuple[Langfuse, InMemorySpanExporter],
             agentwatch_first: bool) -> dict[str, Any]:
    client, exporter = langfuse
    exporter.clear()
    recorder, async_recorder = Recorder(), AsyncRecorder()
    callbacks: list[Any] = [recorder, LangfuseHandler(public_key=_LANGFUSE_KEY), async_recorder]
    if agentwatch_first:
        callbacks.insert(0, AgentWatchHandler())
    output = _run(how, make, callbacks)
    client.flush()
    spans = list(exporter.get_finished_spans())
    index = {span.context.span_id: i for i, span in enumerate(spans)}
    recorded = [(span.name, (span.attributes or {}).get("langfuse.observation.type"),
                 index.get(span.parent.span_id) if span.parent else None) for span in spans]
    seen = {"output": _strip_ids(output), "user": recorder.events, "user_open_runs": len(recorder.open),
            "async_user": async_recorder.events, "langfuse": recorded}
    if "batch" in how:  # a batch's inputs run concurrently: compare each run's own events, in any order
        seen.update({key: _per_run(seen[key]) for key in ("user", "async_user")},
                    langfuse=sorted((name, kind, parent is None) for name, kind, parent in recorded))
    return seen


def _per_run(events: list[tuple[Any, ...]]) -> list[Any]:
    runs: dict[Any, list[Any]] = {}
    for event, run, parent, *detail in events:
        runs.setdefault(run, []).append((event, parent is None, *detail))
    return sorted(runs.values(), key=repr)


_WORKLOADS = [
    *(f"{kind}_{how}" for kind in ("chat", "completion", "chain_chat", "chain_completion")
      for how in ("invoke", "ainvoke", "stream", "astream", "batch", "abatch", "astream_events_v1",
                  "astream_events_v2")),
    "chain_completion_astream_log", "chain_chat_astream_log",
]


def _factory(workload: str) -> Callable[[], Any]:
    model = _chat if "chat" in workload else _completion
    return _chain(model) if workload.startswith("chain") else model


@pytest.mark.parametrize("placement", ["zero_config", "explicit_first"])
@pytest.mark.parametrize("workload", _WORKLOADS)
def test_other_handlers_and_streams_see_exactly_what_they_see_without_agentwatch(
        workload: str, placement: str, memory: agentwatch.InMemoryExporter,
        langfuse_spans: tuple[Langfuse, InMemorySpanExporter]) -> None:
    make = _factory(workload)
    without = _observe(workload, make, langfuse_spans, agentwatch_first=False)
    assert without["user"] and without["langfuse"] and without["user_open_runs"] == 0

    agentwatch.init(exporters=[memory])
    with_agentwatch = _observe(workload, make, langfuse_spans, agentwatch_first=placement == "explicit_first")
    agentwatch.flush()

    assert with_agentwatch == without
    # ... and AgentWatch did record the model calls it stayed invisible for.
    assert len(memory.by_kind("llm")) == (2 if "batch" in workload else 1)
