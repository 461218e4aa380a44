"""LangGraph's Functional API: a ``@task`` is an agent scope of its name, as a graph node is. Found 2026-12-05: a task's
LLM calls ran under the entrypoint with no agent, so ``init(agents={"research": {...}})`` never applied to the task
``research`` (a $0.05 budget let $0.12 and then another call through)."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.func import entrypoint, task
from langgraph.types import Command

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch.plugins.langchain import AgentWatchHandler
from tests.stubs.provider_server import Reply

LIMITED = {"budget_per_hour": 0.05, "block_on_threshold": True}
EXPENSIVE = Reply(content="a long answer", input_tokens=400_000, output_tokens=100_000)  # ~$0.12 for gpt-4o-mini
CONFIG = {"configurable": {"thread_id": "t1"}}


def _llm_spans(memory: Any) -> list[dict[str, Any]]:
    return [span for span in memory.spans if span["kind"] == "llm"]


def _parent(memory: Any, span: dict[str, Any]) -> dict[str, Any]:
    return next(other for other in memory.spans if other["span_id"] == span["parent_span_id"])


def _research_twice_then_write(stub_provider: Any) -> Any:
    """A Functional API workflow: the task ``research`` twice, then ``write``, each one model call."""
    model = ChatOpenAI(model="gpt-4o-mini", base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)

    @task
    def research(topic: str) -> str:
        return str(model.invoke(f"research {topic}").content)

    @task
    def write(notes: str) -> str:
        return str(model.invoke(f"write {notes}").content)

    @entrypoint(checkpointer=InMemorySaver())
    def workflow(topic: str) -> str:
        first = research(topic).result()
        second = research(topic + " again").result()
        return write(first + second).result()

    return workflow


def test_a_tasks_model_calls_count_against_the_task_and_resume_skips_finished_tasks(stub_provider: Any,
                                                                                   memory: Any) -> None:
    agentwatch.init(exporters=[memory], agents={"research": LIMITED})
    workflow = _research_twice_then_write(stub_provider)

    stub_provider.queue(EXPENSIVE)
    with pytest.raises(CircuitBreakerException) as caught:
        workflow.invoke("tides", CONFIG)
    assert (caught.value.reason, caught.value.scope_id) == ("budget_per_hour", "research")
    assert stub_provider.count() == 1  # the second research task was stopped before its model call
    caught.value.monitor.increase_budget(5.0)
    assert workflow.invoke(None, CONFIG) == "ok"
    assert stub_provider.count() == 3  # the finished task was not run again
    agentwatch.flush()
    spent = _llm_spans(memory)
    assert [(span["agent_name"], _parent(memory, span)["kind"], _parent(memory, span)["name"]) for span in spent] == [
        ("research", "task", "research"), ("research", "task", "research"), (None, "task", "write")]
    assert [span["status"] for span in memory.spans if span["kind"] == "task"].count("blocked") == 1


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_tasks_own_sdk_calls_count_against_the_task(stub_provider: Any, memory: Any, flavour: str) -> None:
    """The openai SDK used directly in a task's body is checked against, and charged to, the task's agent."""
    agentwatch.init(exporters=[memory], agents={"research": LIMITED})
    base_url = stub_provider.openai_base_url

    def ask(text: str) -> str:
        client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
        return answer.choices[0].message.content or ""

    async def aask(text: str) -> str:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0)
        answer = await client.chat.completions.create(model="gpt-4o-mini",
                                                      messages=[{"role": "user", "content": text}])
        return answer.choices[0].message.content or ""

    stub_provider.queue(EXPENSIVE)
    if flavour == "sync":
        @task(name="research")
        def research(topic: str) -> str:
            return ask(topic)

        @entrypoint()
        def workflow(topic: str) -> str:
            return research(topic).result() + research(topic + " again").result()

        with pytest.raises(CircuitBreakerException) as caught:
            workflow.invoke("tides")
    else:
        @task(name="research")
        async def aresearch(topic: str) -> str:
            return await aask(topic)

        @entrypoint()
        async def aworkflow(topic: str) -> str:
            return await aresearch(topic) + await aresearch(topic + " again")

        with pytest.raises(CircuitBreakerException) as caught:
            asyncio.run(aworkflow.ainvoke("tides"))
    assert (caught.value.reason, caught.value.scope_id) == ("budget_per_hour", "research")
    assert stub_provider.count() == 1
    agentwatch.flush()
    (spent,) = _llm_spans(memory)
    task_span = _parent(memory, spent)
    assert (task_span["kind"], task_span["name"], spent["agent_name"]) == ("task", "research", "research")
    assert _parent(memory, task_span)["kind"] == "node"  # under the entrypoint, in the run's trace


def test_a_runnable_named_like_its_task_is_no_second_task(memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    inner = RunnableLambda(lambda text: text.upper(), name="shout")

    @task
    def shout(text: str) -> str:
        return inner.invoke(text)

    @entrypoint()
    def workflow(text: str) -> str:
        return shout(text).result()

    assert workflow.invoke("hi") == "HI"
    agentwatch.flush()
    named = [(span["kind"], span["name"]) for span in memory.spans if span["name"] == "shout"]
    assert sorted(named) == [("chain", "shout"), ("task", "shout")]


def test_a_pause_in_a_task_resumes_once_and_later_tasks_run(stub_provider: Any, memory: Any) -> None:
    """``on_budget="interrupt"`` in a task: one ``Command(resume=...)`` answers the pause and the workflow runs to its
    end. Found 2026-12-05: the answer (a resume without an interrupt id, one value for the whole run) was taken by the
    paused task and then seen again by the next task, which paused with ``Interrupt(value=None)``."""
    agentwatch.init(exporters=[memory], agents={"research": LIMITED})
    workflow = _research_twice_then_write(stub_provider)

    config = {**CONFIG, "callbacks": [AgentWatchHandler(on_budget="interrupt")]}
    stub_provider.queue(EXPENSIVE)
    paused = workflow.invoke("tides", config)
    (request,) = paused["__interrupt__"]
    assert (request.value["reason"], request.value["scope_id"]) == ("budget_per_hour", "research")
    assert stub_provider.count() == 1
    assert workflow.invoke(Command(resume={"increase_budget": 5.0}), config) == "ok"
    assert stub_provider.count() == 3  # the paused task's call and the writer's, the finished task not again
    agentwatch.flush()
    assert [span["status"] for span in memory.spans if span["kind"] == "llm"].count("blocked") == 1


def test_one_answer_object_answers_the_pauses_of_every_thread(stub_provider: Any, memory: Any) -> None:
    """A program answering every pause with one constant dict: each thread's resume takes it (review of 2026-12-05:
    from the second thread on it was taken for already consumed, and the answered call was blocked a second time)."""
    agentwatch.init(exporters=[memory], agents={"research": LIMITED})
    model = ChatOpenAI(model="gpt-4o-mini", base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    approve = {"reset": True}

    @task
    def research(topic: str) -> str:
        return str(model.invoke(f"research {topic}").content)

    @entrypoint(checkpointer=InMemorySaver())
    def workflow(topic: str) -> str:
        return research(topic).result() + research(topic + " again").result()

    handler = AgentWatchHandler(on_budget="interrupt")
    for thread in ("t1", "t2"):
        config = {"configurable": {"thread_id": thread}, "callbacks": [handler]}
        stub_provider.queue(EXPENSIVE)
        assert workflow.invoke("tides", config)["__interrupt__"]
        agentwatch.flush()
        blocked_before = [span["status"] for span in memory.spans if span["kind"] == "llm"].count("blocked")
        assert workflow.invoke(Command(resume=approve), config) == "a long answerok"
        agentwatch.flush()
        assert [span["status"] for span in memory.spans if span["kind"] == "llm"].count("blocked") == blocked_before
