"""Flows: a step's own ``crewai.LLM`` calls and the crews it kicks off, against the stub server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import MODEL, settle

#: 100,000 input tokens on gpt-4o-mini: $0.015006, over a $0.01 budget after one call.
BIG = {"input_tokens": 100000, "output_tokens": 10}


def _llm(base_url: str) -> Any:
    from crewai import LLM

    return LLM(model=f"openai/{MODEL}", base_url=base_url, api_key="x", max_retries=0)


def _fallback_flow(base_url: str, mode: str) -> Any:
    """Research with a direct call, then write (a direct call or a crew), falling back on a block."""
    from crewai import Agent, Crew, Task
    from crewai.flow.flow import Flow, listen, start

    class WritingFlow(Flow):  # type: ignore[type-arg]
        @start()
        def research(self) -> str:
            return str(_llm(base_url).call("research"))

        @listen(research)
        def write(self, notes: str) -> str:
            try:
                if mode == "crew":
                    writer = Agent(role="Writer", goal="Write", backstory="Concise.", llm=_llm(base_url))
                    task = Task(description="Write", expected_output="Text", agent=writer)
                    return str(Crew(agents=[writer], tasks=[task]).kickoff().raw)
                return str(_llm(base_url).call("write"))
            except CircuitBreakerException:
                return "cached article"

    return WritingFlow()


@pytest.mark.parametrize("mode", ["direct", "crew"])
@pytest.mark.parametrize("how", ["kickoff", "kickoff_async"])
def test_a_block_a_flow_step_catches_stays_caught(stub_provider: Any, memory: Any, mode: str, how: str) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.01, block_on_threshold=True)
    stub_provider.queue(Reply(content="notes", **BIG))
    flow = _fallback_flow(stub_provider.openai_base_url, mode)
    result = flow.kickoff() if how == "kickoff" else asyncio.run(flow.kickoff_async())
    assert result == "cached article"
    assert stub_provider.count() == 1


def test_a_block_a_flow_step_does_not_catch_fails_the_flow(stub_provider: Any, memory: Any) -> None:
    from crewai.flow.flow import Flow, listen, start

    base_url = stub_provider.openai_base_url

    class TwoCalls(Flow):  # type: ignore[type-arg]
        @start()
        def first(self) -> str:
            return str(_llm(base_url).call("first"))

        @listen(first)
        def second(self, notes: str) -> str:
            return str(_llm(base_url).call("second"))

    agentwatch.init(exporters=[memory], budget_per_hour=0.01, block_on_threshold=True)
    stub_provider.queue(Reply(content="notes", **BIG))
    with pytest.raises(CircuitBreakerException) as caught:
        TwoCalls().kickoff()
    assert caught.value.reason == "budget_per_hour" and stub_provider.count() == 1


def _research_flow(base_url: str) -> Any:
    """A direct call, then a crew of one agent."""
    from crewai import Agent, Crew, Task
    from crewai.flow.flow import Flow, listen, start

    class ResearchFlow(Flow):  # type: ignore[type-arg]
        @start()
        def pick_topic(self) -> str:
            return str(_llm(base_url).call("Pick a topic."))

        @listen(pick_topic)
        def research(self, topic: str) -> str:
            writer = Agent(role="Writer", goal="Write", backstory="Concise.", llm=_llm(base_url))
            task = Task(description=f"Write about {topic}", expected_output="Text", agent=writer)
            return str(Crew(agents=[writer], tasks=[task]).kickoff().raw)

    return ResearchFlow()


def _kickoff(flow: Any, how: str) -> Any:
    if how == "kickoff":
        return flow.kickoff()
    return asyncio.run(getattr(flow, how)())


@pytest.mark.parametrize("how", ["kickoff", "kickoff_async", "akickoff"])
def test_a_flow_run_is_one_trace_under_its_flow_span(stub_provider: Any, memory: Any, how: str) -> None:
    agentwatch.init(exporters=[memory])
    for _ in range(2):
        stub_provider.queue(Reply(content="bees"), Reply(content="Bees dance."))
        assert _kickoff(_research_flow(stub_provider.openai_base_url), how) == "Bees dance."
    settle()
    spans = [span for span in memory.spans if span["attributes"].get("framework") == "crewai"]
    flows = [span for span in spans if span["kind"] == "graph"]
    assert [(span["name"], span["status"], span["parent_span_id"]) for span in flows] == [
        ("flow:ResearchFlow", "ok", None)] * 2
    assert len({span["trace_id"] for span in spans}) == 2  # one trace per kickoff, every span in one of them
    for flow in flows:
        children = [span for span in spans if span["parent_span_id"] == flow["span_id"]]
        assert sorted(span["kind"] for span in children) == ["chain", "llm"]  # the step's call, the step's crew
        assert flow["attributes"]["crewai.flow_id"]
        in_trace = [span for span in spans if span["trace_id"] == flow["trace_id"]]
        assert sorted(span["kind"] for span in in_trace) == ["agent", "chain", "graph", "llm", "llm", "task"]


def test_a_blocked_flow_span_is_blocked(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.01, block_on_threshold=True)
    stub_provider.queue(Reply(content="bees", **BIG))
    with pytest.raises(CircuitBreakerException):
        _research_flow(stub_provider.openai_base_url).kickoff()
    settle()
    flow = next(span for span in memory.spans if span["kind"] == "graph")
    assert flow["status"] == "blocked" and flow["parent_span_id"] is None
    under = {span["kind"]: span["status"] for span in memory.spans if span["parent_span_id"] == flow["span_id"]
             and span["kind"] in ("llm", "chain")}
    assert under == {"llm": "ok", "chain": "blocked"}  # the first call went out; the crew's was blocked
