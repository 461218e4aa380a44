"""One scope object entered by several tasks or threads at once, or nested in itself: each entry is a span of its own,
ended and exported, with the calls made inside it as its children. Found 2026-12-06: a module-level
``bot = agentwatch.agent("Bot", ...)`` used as ``async with bot:`` per request kept one span for all the entries in
flight: all but the last were never exported, and the LLM calls under them named a parent that never arrived."""

from __future__ import annotations

import asyncio
import threading

import agentwatch
from tests.stubs.provider_server import StubProvider


def _check_tree(spans: list[dict], scope_name: str, entries: int) -> None:
    by_id = {span["span_id"]: span for span in spans}
    scopes = [span for span in spans if span["name"] == scope_name]
    calls = [span for span in spans if span["kind"] == "llm"]
    assert len(scopes) == entries and len({span["span_id"] for span in scopes}) == entries
    assert len(calls) == entries
    assert sorted(by_id[call["parent_span_id"]]["span_id"] for call in calls) == \
        sorted(span["span_id"] for span in scopes)  # every call under an entry of its own, none orphaned


def test_one_agent_object_entered_by_concurrent_tasks(memory: agentwatch.InMemoryExporter,
                                                      stub_provider: StubProvider) -> None:
    from openai import AsyncOpenAI

    agentwatch.init(exporters=[memory])
    bot = agentwatch.agent("Bot", budget_per_hour=5.0)

    async def handle(i: int, started: asyncio.Barrier, client: AsyncOpenAI) -> None:
        async with bot as entry:
            await started.wait()  # every task is inside the scope before any call is made
            await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": str(i)}])
            assert entry.monitor is bot.monitor  # one agent: one monitor, whichever entry

    async def main() -> None:
        client = AsyncOpenAI(base_url=stub_provider.openai_base_url, api_key="x", max_retries=0)
        started = asyncio.Barrier(3)
        await asyncio.gather(*(handle(i, started, client) for i in range(3)))

    asyncio.run(main())
    assert agentwatch.current_span() is None
    agentwatch.flush()
    _check_tree(memory.spans, "Bot", 3)
    assert agentwatch.get_state()["monitors"]["agents"]["Bot"]["calls_last_minute"] == 3


def test_one_trace_object_entered_by_threads_and_nested_in_itself(memory: agentwatch.InMemoryExporter,
                                                                  stub_provider: StubProvider) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=stub_provider.openai_base_url, api_key="x", max_retries=0)
    # openai builds its response models on first use, not thread-safely (openai-python#3079): one unwatched call first.
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    agentwatch.init(exporters=[memory])
    request = agentwatch.trace("request")
    started = threading.Barrier(2)

    def handle() -> None:
        with request:
            started.wait(30)
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

    threads = [threading.Thread(target=handle) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    agentwatch.flush()
    _check_tree(memory.spans, "request", 2)

    memory.clear()
    step = agentwatch.span("step")
    with step as outer:
        with step as inner:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            assert agentwatch.current_span() is inner.span
        assert agentwatch.current_span() is outer.span
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert agentwatch.current_span() is None
    agentwatch.flush()
    _check_tree(memory.spans, "step", 2)
    spans = {span["span_id"]: span for span in memory.spans}
    assert spans[inner.span.span_id]["parent_span_id"] == outer.span.span_id
