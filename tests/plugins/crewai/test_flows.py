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
        steps = {span["name"]: span for span in spans if span["parent_span_id"] == flow["span_id"]}
        assert {name: span["kind"] for name, span in steps.items()} == {"pick_topic": "node", "research": "node"}
        under = {name: [child["kind"] for child in spans if child["parent_span_id"] == step["span_id"]]
                 for name, step in steps.items()}
        assert under == {"pick_topic": ["llm"], "research": ["chain"]}  # the step's own call, the step's crew
        assert flow["attributes"]["crewai.flow_id"]
        in_trace = [span for span in spans if span["trace_id"] == flow["trace_id"]]
        assert sorted(span["kind"] for span in in_trace) == [
            "agent", "chain", "graph", "llm", "llm", "node", "node", "task"]


def test_a_blocked_flow_span_is_blocked(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.01, block_on_threshold=True)
    stub_provider.queue(Reply(content="bees", **BIG))
    with pytest.raises(CircuitBreakerException):
        _research_flow(stub_provider.openai_base_url).kickoff()
    settle()
    flow = next(span for span in memory.spans if span["kind"] == "graph")
    assert flow["status"] == "blocked" and flow["parent_span_id"] is None
    steps = {span["name"]: span for span in memory.spans if span["parent_span_id"] == flow["span_id"]}
    assert {name: span["status"] for name, span in steps.items()} == {"pick_topic": "ok", "research": "blocked"}
    assert steps["research"]["attributes"]["breaker.reason"] == "budget_per_hour"
    under = {span["kind"]: span["status"] for span in memory.spans if span["parent_span_id"] in
             (steps["pick_topic"]["span_id"], steps["research"]["span_id"]) and span["kind"] in ("llm", "chain")}
    assert under == {"llm": "ok", "chain": "blocked"}  # the first call went out; the crew's was blocked


def _racing_flow(base_url: str, ran: list[str]) -> Any:
    """Two drafts race for ``publish`` (``or_``): CrewAI tolerates a racer that fails."""
    from crewai.flow.flow import Flow, listen, or_, start

    class RacingFlow(Flow):  # type: ignore[type-arg]
        @start()
        def plan(self) -> str:
            return str(_llm(base_url).call("plan"))

        @listen(plan)
        def fast_draft(self) -> str:
            return str(_llm(base_url).call("fast"))

        @listen(plan)
        def careful_draft(self) -> str:
            return str(_llm(base_url).call("careful"))

        @listen(or_(fast_draft, careful_draft))
        def publish(self, draft: str) -> str:
            ran.append("publish")
            return draft

    return RacingFlow()


def test_a_block_of_racing_flow_listeners_reaches_the_caller(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.01, block_on_threshold=True)
    stub_provider.queue(Reply(content="plan", **BIG))
    ran: list[str] = []
    with pytest.raises(CircuitBreakerException) as caught:
        _racing_flow(stub_provider.openai_base_url, ran).kickoff()
    assert caught.value.reason == "budget_per_hour"
    assert stub_provider.count() == 1 and ran == []
    settle()
    flow = next(span for span in memory.spans if span["kind"] == "graph")
    assert flow["status"] == "blocked" and flow["attributes"]["breaker.reason"] == "budget_per_hour"


def test_a_block_in_one_flow_branch_stops_the_other_branches(stub_provider: Any, memory: Any) -> None:
    """The Researcher's branch is blocked by its per-agent budget; the Writer's branch, started beside it, must not
    start its next step (CrewAI leaves it running after kickoff_async() raised)."""
    import threading

    from crewai import Agent, Crew, Task
    from crewai.flow.flow import Flow, listen, start

    base_url = stub_provider.openai_base_url
    research_blocked = threading.Event()
    ran: list[str] = []

    def crew(role: str, tasks: int) -> Any:
        agent = Agent(role=role, goal="Write", backstory="Concise.", llm=_llm(base_url))
        return Crew(agents=[agent], tasks=[Task(description=f"Step {index}", expected_output="Text", agent=agent)
                                           for index in range(tasks)])

    class Branches(Flow):  # type: ignore[type-arg]
        @start()
        def begin(self) -> str:
            return "go"

        @listen(begin)
        def research(self) -> str:
            try:
                return str(crew("Researcher", 2).kickoff().raw)
            except CircuitBreakerException:
                research_blocked.set()
                raise

        @listen(begin)
        def outline(self) -> str:
            research_blocked.wait(30)
            return "outline"

        @listen(outline)
        def write(self) -> str:
            ran.append("write")
            return str(crew("Writer", 1).kickoff().raw)

    async def main() -> None:
        with pytest.raises(CircuitBreakerException) as caught:
            await Branches().kickoff_async()
        assert caught.value.scope == "agent"
        # What CrewAI left running in this loop after kickoff_async() raised.
        await asyncio.gather(*(task for task in asyncio.all_tasks() if task is not asyncio.current_task()),
                             return_exceptions=True)

    agentwatch.init(exporters=[memory], agents={"Researcher": {"budget_per_hour": 0.01}}, block_on_threshold=True)
    stub_provider.queue(Reply(content="notes", **BIG), Reply(content="text"))
    asyncio.run(main())
    assert ran == [] and stub_provider.count() == 1


def _review_flow(base_url: str) -> Any:
    """A router on a structured state, two parallel listeners of its outcome (a direct call, a crew), a join, and a
    step that fails."""
    from crewai import Agent, Crew, Task
    from crewai.flow.flow import Flow, and_, listen, router, start
    from pydantic import BaseModel

    class Review(BaseModel):
        verdict: str = ""
        notes: list[str] = []

    class ReviewFlow(Flow[Review]):
        @start()
        def review(self) -> None:
            self.state.verdict = str(_llm(base_url).call("Verdict?"))

        @router(review)
        def route(self) -> str:
            return "approved" if self.state.verdict == "yes" else "rejected"

        @listen("approved")
        async def summarize(self) -> None:
            self.state.notes.append(str(await _llm(base_url).acall("Summarize")))

        @listen("approved")
        def illustrate(self) -> None:
            artist = Agent(role="Artist", goal="Draw", backstory="Concise.", llm=_llm(base_url))
            task = Task(description="Draw", expected_output="Text", agent=artist)
            self.state.notes.append(str(Crew(agents=[artist], tasks=[task]).kickoff().raw))

        @listen(and_(summarize, illustrate))
        def publish(self) -> str:
            raise ValueError("the printer is out of paper")

    return ReviewFlow()


@pytest.mark.parametrize("how", ["kickoff", "kickoff_async"])
def test_each_flow_step_is_a_span_under_its_flow(stub_provider: Any, memory: Any, how: str) -> None:
    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="yes"), Reply(content="a"), Reply(content="b"))
    with pytest.raises(ValueError, match="out of paper"):
        _kickoff(_review_flow(stub_provider.openai_base_url), how)
    settle()
    spans = [span for span in memory.spans if span["attributes"].get("framework") == "crewai"]
    flow = next(span for span in spans if span["kind"] == "graph")
    assert (flow["status"], flow["attributes"]["error.type"]) == ("error", "ValueError")
    steps = {span["name"]: span for span in spans if span["parent_span_id"] == flow["span_id"]}
    assert {name: (span["kind"], span["status"]) for name, span in steps.items()} == {
        "review": ("node", "ok"), "route": ("node", "ok"), "summarize": ("node", "ok"),
        "illustrate": ("node", "ok"), "publish": ("node", "error")}
    assert steps["route"]["attributes"]["crewai.router_outcome"] == "approved"
    assert steps["publish"]["attributes"]["error.type"] == "ValueError"
    under = {name: sorted(child["kind"] for child in spans if child["parent_span_id"] == step["span_id"])
             for name, step in steps.items()}
    assert under == {"review": ["llm"], "route": [], "summarize": ["llm"], "illustrate": ["chain"], "publish": []}
    assert len({span["trace_id"] for span in spans}) == 1
