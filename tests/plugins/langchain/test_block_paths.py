"""The block on every model path: decided on the caller's thread and in its context, before the model runs,
and raised to the caller as ``CircuitBreakerException`` (what ``run_inline`` is for, kept with issue 22's fix)."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from contextvars import ContextVar
from typing import Any

import pytest
from langchain_core.language_models import FakeListLLM, FakeStreamingListLLM

import agentwatch
from agentwatch import CircuitBreakerException
from tests.plugins.langchain.fakes import UsageChatModel

CALLER: ContextVar[str] = ContextVar("caller", default="unset")


def _model(kind: str) -> Any:
    if kind == "chat":
        return UsageChatModel(reply="a b")
    return (FakeStreamingListLLM if kind == "completion_streaming" else FakeListLLM)(responses=["a b"] * 3)


def _calls(model: Any) -> int:
    return model.calls if isinstance(model, UsageChatModel) else model.i


def _block_everything(seen: list[tuple[int, str]]) -> None:
    # A zero budget blocks the first call; the hook records where the decision was made, then declines.
    agentwatch.init(exporters=[], budget_per_hour=0.0, block_on_threshold=True,
                    on_block=lambda event: seen.append((threading.get_ident(), CALLER.get())))


@pytest.mark.parametrize("kind", ["chat", "completion", "completion_streaming"])
@pytest.mark.parametrize("how", ["invoke", "stream", "batch", "ainvoke", "astream", "abatch", "astream_events"])
def test_block_before_the_model_on_the_callers_thread_and_context(kind: str, how: str) -> None:
    seen: list[tuple[int, str]] = []
    _block_everything(seen)
    model = _model(kind)

    async def run_async() -> None:
        CALLER.set("async caller")
        if how == "ainvoke":
            await model.ainvoke("x")
        elif how == "abatch":
            await model.abatch(["x"])
        elif how == "astream":
            async for _ in model.astream("x"):
                pass
        else:
            async for _ in model.astream_events("x", version="v2"):
                pass

    caller = threading.get_ident()  # asyncio.run runs the loop on this thread
    expected_context = "async caller" if how.startswith("a") else "sync caller"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CircuitBreakerException):
            if how.startswith("a"):
                asyncio.run(run_async())
            else:
                CALLER.set("sync caller")
                if how == "invoke":
                    model.invoke("x")
                elif how == "batch":
                    model.batch(["x"])
                else:
                    list(model.stream("x"))
        gc.collect()  # a coroutine never awaited says so when it is collected
    # The block leaves nothing half done behind it: no other handler's start made and dropped (astream_events has one).
    assert not [w for w in caught if "never awaited" in str(w.message)], [str(w.message) for w in caught]
    assert _calls(model) == 0
    if how in ("batch", "abatch"):  # LangChain runs a batch's inputs in its own thread pool / tasks
        assert [context for _, context in seen] == [expected_context]
    else:
        assert seen == [(caller, expected_context)]


def test_a_block_in_a_completion_batch_leaves_no_call_open(memory: agentwatch.InMemoryExporter) -> None:
    from langchain_core.callbacks.manager import AsyncCallbackManager

    # One async start for three prompts: the third is blocked; the two before it are never sent.
    agentwatch.init(exporters=[memory], max_calls_per_minute=2, block_on_threshold=True)
    model = FakeListLLM(responses=["a"] * 3)

    async def main() -> None:
        manager = AsyncCallbackManager.configure()
        with pytest.raises(CircuitBreakerException):
            await manager.on_llm_start(model._serialized, ["p1", "p2", "p3"])

    asyncio.run(main())
    agentwatch.flush()
    spans = memory.by_kind("llm")
    # All three are ended; the two never sent end with the block as their cause (not counted as errors).
    assert len(spans) == 3 and {span["status"] for span in spans} == {"blocked"}
    assert sum("breaker.reason" in span["attributes"] for span in spans) >= 1
