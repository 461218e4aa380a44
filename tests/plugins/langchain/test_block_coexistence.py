"""After a block, every other handler that heard of a run's start hears of its end.

LangChain gives a start to each handler in turn; when ours stops the run (a block, before the request), the
handlers before ours have heard of the start. Without an end such a run stays open in Langfuse or LangSmith
forever. Each workload runs with our handler placed last (as zero-config adds it) or explicitly after the
others, a sync recorder, and an async one that runs inline (as LangSmith's tracer does)."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.language_models import FakeListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import LLMResult
from langchain_core.prompts import PromptTemplate
from langgraph.checkpoint.memory import InMemorySaver

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch.plugins.langchain import AgentWatchHandler
from tests.plugins.langchain.fakes import UsageChatModel
from tests.plugins.langchain.graphs import Workflow


class OpenRuns(BaseCallbackHandler):
    """The runs whose start this handler heard and whose end (or error) it did not, and every error it heard."""

    def __init__(self) -> None:
        self.open: set[UUID] = set()
        self.errors: list[str] = []
        self.starts = 0

    def _start(self, run_id: UUID) -> None:
        self.open.add(run_id)
        self.starts += 1

    def _end(self, run_id: UUID, error: BaseException | None = None) -> None:
        self.open.remove(run_id)  # a KeyError (LangChain logs it) for an end without a start
        if error is not None:
            self.errors.append(type(error).__name__)

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._start(run_id)

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._start(run_id)

    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._start(run_id)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)


class InlineOpenRuns(AsyncCallbackHandler):
    """The same, async and inline: LangChain awaits it before the other async handlers."""

    run_inline = True

    def __init__(self) -> None:
        self.runs = OpenRuns()

    async def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs._start(run_id)

    async def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs._start(run_id)

    async def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs._start(run_id)

    async def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs._end(run_id)

    async def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs._end(run_id)

    async def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs._end(run_id, error)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs._end(run_id, error)


def _model(kind: str) -> Any:
    return UsageChatModel(reply="a b") if kind == "chat" else FakeListLLM(responses=["a b"] * 4)


def _run(runnable: Any, how: str, source: Any, callbacks: list[Any]) -> None:
    config: Any = {"callbacks": callbacks}
    if how == "invoke":
        runnable.invoke(source, config)
    elif how == "stream":
        list(runnable.stream(source, config))
    elif how == "batch":
        runnable.batch([source, source], config)
    else:
        async def main() -> None:
            if how == "ainvoke":
                await runnable.ainvoke(source, config)
            elif how == "astream":
                [chunk async for chunk in runnable.astream(source, config)]
            else:
                await runnable.abatch([source, source], config)

        asyncio.run(main())


@pytest.mark.parametrize("placement", ["zero_config", "explicit_last"])
@pytest.mark.parametrize("chain", [False, True], ids=["model", "chain"])
@pytest.mark.parametrize("kind", ["chat", "completion"])
@pytest.mark.parametrize("how", ["invoke", "stream", "batch", "ainvoke", "astream", "abatch"])
def test_a_blocked_model_call_ends_for_every_handler_that_heard_it_start(
        how: str, kind: str, chain: bool, placement: str) -> None:
    agentwatch.init(exporters=[], budget_per_hour=0.0, block_on_threshold=True)  # the first call is blocked
    model = _model(kind)
    runnable = PromptTemplate.from_template("Say {topic}") | model | StrOutputParser() if chain else model
    runs, inline = OpenRuns(), InlineOpenRuns()
    callbacks: list[Any] = [runs, inline]
    if placement == "explicit_last":
        callbacks.append(AgentWatchHandler())
    with pytest.raises(CircuitBreakerException):
        _run(runnable, how, {"topic": "x"} if chain else "x", callbacks)
    assert (model.calls if kind == "chat" else model.i) == 0  # nothing was sent
    for recorder in (runs, inline.runs):
        # (An async model's start reaches no other handler once ours has blocked it: ours runs first there.)
        assert recorder.open == set()
        assert set(recorder.errors) <= {"CircuitBreakerException"}


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_node_stopped_at_its_start_ends_for_every_handler_that_heard_it(use_async: bool) -> None:
    # The first node spends the whole budget; the second is stopped at its start (its chain start raises).
    agentwatch.init(exporters=[], budget_per_hour=0.005, block_on_threshold=True)  # the first call costs 0.0075
    workflow = Workflow()
    graph = workflow.build(InMemorySaver(), use_async=use_async)
    runs, inline = OpenRuns(), InlineOpenRuns()
    config: Any = {"configurable": {"thread_id": "t"}, "callbacks": [runs, inline]}
    with pytest.raises(CircuitBreakerException):
        if use_async:
            asyncio.run(graph.ainvoke({"log": []}, config))
        else:
            graph.invoke({"log": []}, config)
    assert workflow.runs == ["planner"]
    for recorder in (runs, inline.runs):
        assert recorder.open == set()
        assert "GraphCircuitBreakerException" in recorder.errors



def test_one_start_for_several_prompts_stopped_part_way_ends_every_run_it_started() -> None:
    from langchain_core.callbacks.manager import CallbackManager

    # One start for three prompts (as a caller of the manager may make): the third is blocked.
    agentwatch.init(exporters=[], max_calls_per_minute=2, block_on_threshold=True)
    runs = OpenRuns()
    manager = CallbackManager.configure(inheritable_callbacks=[runs])
    with pytest.raises(CircuitBreakerException):
        # In a context of its own: a model's entry point would restore the caller's after its calls.
        contextvars.copy_context().run(manager.on_llm_start, FakeListLLM(responses=["a"])._serialized,
                                       ["p1", "p2", "p3"])
    assert runs.starts == 3 and runs.open == set()
    assert runs.errors == ["CircuitBreakerException"] * 3


@pytest.mark.parametrize("how", ["batch", "abatch"])
@pytest.mark.parametrize("placement", ["zero_config", "explicit_last"])
def test_a_completion_models_batch_stopped_part_way_ends_every_prompt_it_started(
        how: str, placement: str, memory: agentwatch.InMemoryExporter) -> None:
    # LangChain starts each prompt of a completion model's batch with a manager of its own. Two calls a minute:
    # the batch's first two prompts start (for every handler, ours too), its third is blocked.
    agentwatch.init(exporters=[memory], max_calls_per_minute=2, block_on_threshold=True)
    model = FakeListLLM(responses=["a b"] * 4)
    runs, inline = OpenRuns(), InlineOpenRuns()
    callbacks: list[Any] = [runs, inline] + ([AgentWatchHandler()] if placement == "explicit_last" else [])
    with pytest.raises(CircuitBreakerException):
        if how == "batch":
            model.batch(["x", "y", "z"], {"callbacks": callbacks})
        else:
            asyncio.run(model.abatch(["x", "y", "z"], {"callbacks": callbacks}))
    assert model.i == 0
    for recorder in (runs, inline.runs):
        # (In async the starts run as concurrent tasks: the others may hear of a prompt or of none.)
        assert recorder.open == set() and (how == "abatch" or recorder.starts >= 2)
        assert set(recorder.errors) <= {"CircuitBreakerException"}
    agentwatch.flush()
    # Ours too: the two prompts started are ended (blocked: never sent), as is the one that was stopped.
    spans = memory.by_kind("llm")
    assert len(spans) == 3 and {span["status"] for span in spans} == {"blocked"}


@pytest.mark.parametrize("manager_kind", ["sync", "async"])
def test_the_start_methods_take_their_arguments_by_keyword_as_langchain_names_them(manager_kind: str) -> None:
    """Found 2026-12-05 by running langchain-core's own tests with AgentWatch on (tracers/test_base_tracer.py):
    ``manager.on_chat_model_start(serialized, messages=...)`` and ``on_llm_start(serialized, prompts=...)`` raised
    ``TypeError`` (missing 'inputs'): the patched methods had renamed the parameter. Ours hears them too."""
    # Called as a model does (which activates each call in its context): in a context of its own.
    contextvars.copy_context().run(_start_by_keyword, manager_kind)


def _start_by_keyword(manager_kind: str) -> None:
    from langchain_core.callbacks import AsyncCallbackManager, CallbackManager
    from langchain_core.messages import HumanMessage

    agentwatch.init(exporters=[])
    handler = AgentWatchHandler()
    manager_class = CallbackManager if manager_kind == "sync" else AsyncCallbackManager
    manager = manager_class(handlers=[handler])
    serialized = {"name": "model", "kwargs": {"model_name": "gpt-4o-mini"}}

    def started(result: Any) -> list[Any]:
        return asyncio.run(result) if manager_kind == "async" else result

    chat = started(manager.on_chat_model_start(serialized, messages=[[HumanMessage("hi")]]))
    completion = started(manager.on_llm_start(serialized, prompts=["hi"]))
    assert len(chat) == len(completion) == 1
    for run in (*chat, *completion):
        if manager_kind == "sync":
            run.on_llm_end(LLMResult(generations=[[]]))
        else:
            asyncio.run(run.on_llm_end(LLMResult(generations=[[]])))
    client = agentwatch.get_client()
    assert client is not None and client.monitor.snapshot()["calls_last_minute"] == 2
