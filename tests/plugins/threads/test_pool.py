"""Work handed to a thread pool is the submitter's: recorded under its span, limited by its agent scopes. Found
2026-12-05: calls made in a ``ThreadPoolExecutor`` inside ``with agentwatch.agent(..., budget_per_hour=0.05)`` had no
agent and no parent, and six calls of $0.12 went out under the $0.05 budget."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

EXPENSIVE = Reply(content="long", input_tokens=400_000, output_tokens=100_000)  # ~$0.12 for gpt-4o-mini
HOST_VALUE: contextvars.ContextVar[str] = contextvars.ContextVar("host_value", default="unset")


def _asker(base_url: str) -> Any:
    client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)

    def ask(text: str) -> str:
        try:
            answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
        except CircuitBreakerException as blocked:
            return blocked.reason
        return answer.choices[0].message.content or ""

    return ask


def test_calls_in_a_pool_count_against_the_submitters_agent(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    ask = _asker(stub_provider.openai_base_url)
    stub_provider.queue(EXPENSIVE)
    with agentwatch.agent("batch", budget_per_hour=0.05, block_on_threshold=True), agentwatch.span("job") as job:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(ask, "one").result()
            later = list(pool.map(ask, ["two", "three"]))
    assert (first, later) == ("long", ["budget_per_hour"] * 2)
    assert stub_provider.count() == 1
    agentwatch.flush()
    calls = [span for span in memory.spans if span["kind"] == "llm"]
    assert {(span["agent_name"], span["parent_span_id"]) for span in calls} == {("batch", job.span.span_id)}


def test_run_in_executor_carries_them_too(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    ask = _asker(stub_provider.openai_base_url)

    async def main() -> str:
        with agentwatch.agent("worker"):
            return await asyncio.get_running_loop().run_in_executor(None, ask, "hi")

    assert asyncio.run(main()) == "ok"
    agentwatch.flush()
    assert [span["agent_name"] for span in memory.spans if span["kind"] == "llm"] == ["worker"]


def test_asyncio_to_thread_runs_in_the_context_it_copied(stub_provider: Any, memory: Any) -> None:
    """``asyncio.to_thread`` submits its own context's run (CrewAI calls it ~20 times an LLM call): the work is the
    submitter's through that copy, the submitter's other values included, as without AgentWatch."""
    agentwatch.init(exporters=[memory])
    ask = _asker(stub_provider.openai_base_url)

    def ask_and_look(text: str) -> tuple[str, str, Any]:
        return ask(text), HOST_VALUE.get(), agentwatch.current_span()

    async def main() -> tuple[tuple[str, str, Any], Any]:
        HOST_VALUE.set("the submitter's")
        with agentwatch.agent("worker"), agentwatch.span("job") as job:
            return await asyncio.to_thread(ask_and_look, "hi"), job.span

    (answer, value, current), job_span = asyncio.run(main())
    assert (answer, value, current) == ("ok", "the submitter's", job_span)
    agentwatch.flush()
    assert [(span["agent_name"], span["parent_span_id"]) for span in memory.spans if span["kind"] == "llm"] == [
        ("worker", job_span.span_id)]


def test_the_worker_sees_what_it_sees_without_agentwatch(memory: Any) -> None:
    """The submitter's other values stay behind; the worker's own (set by the pool's initializer) are kept; outside
    any span or agent the work is handed over as it is."""
    def worker_value() -> None:
        HOST_VALUE.set("the worker's")

    def seen() -> tuple[str, Any]:
        return HOST_VALUE.get(), agentwatch.current_span()

    agentwatch.init(exporters=[memory])
    HOST_VALUE.set("the submitter's")
    with ThreadPoolExecutor(1) as plain, ThreadPoolExecutor(1, initializer=worker_value) as initialised:
        assert plain.submit(seen).result() == ("unset", None)
        with agentwatch.span("job") as job:
            assert plain.submit(seen).result() == ("unset", job.span)
            assert initialised.submit(seen).result() == ("the worker's", job.span)
        assert initialised.submit(seen).result() == ("the worker's", None)
        with agentwatch.span("job"):  # what a task sets stays in its worker for the next task, as without AgentWatch
            plain.submit(HOST_VALUE.set, "left by a task").result()
            assert plain.submit(seen).result()[0] == "left by a task"


def test_shutdown_puts_submit_back() -> None:
    original = ThreadPoolExecutor.__dict__["submit"]
    agentwatch.init(exporters=[])
    assert ThreadPoolExecutor.__dict__["submit"] is not original
    agentwatch.shutdown()
    assert ThreadPoolExecutor.__dict__["submit"] is original


@pytest.fixture(autouse=True)
def _host_value() -> Any:
    token = HOST_VALUE.set("unset")
    yield
    HOST_VALUE.reset(token)


_POOL_AFTER_INIT = """
import sys
import agentwatch
agentwatch.init(exporters=[])
print("pool imported by init():", "concurrent.futures.thread" in sys.modules)
from concurrent.futures import ThreadPoolExecutor
with agentwatch.span("job") as job, ThreadPoolExecutor(1) as pool:
    print("the job's span in the pool:", pool.submit(agentwatch.current_span).result() is job.span)
"""


def test_a_pool_imported_after_init_carries_them() -> None:
    """``ThreadPoolExecutor``'s module is patched when the program imports it, not imported by ``init()``."""
    run = subprocess.run([sys.executable, "-c", _POOL_AFTER_INIT], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["pool imported by init(): False", "the job's span in the pool: True"]
