"""Limits are checked in CrewAI's before-LLM-call hook: a block reaches kickoff()'s caller, nothing is sent."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from crewai.hooks import HookAborted

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import MODEL, make_crew, script, settle

# gpt-4o-mini: the scripted crew run costs $0.000147 (Researcher $0.000072, Writer $0.000075).
RUN_COST = 0.000147


def _kickoff(crew: Any, how: str) -> Any:
    if how == "kickoff":
        return crew.kickoff()
    if how == "kickoff_async":
        return asyncio.run(crew.kickoff_async())
    return asyncio.run(crew.akickoff())


def _llm_spans(memory: Any) -> list[dict[str, Any]]:
    return [span for span in memory.spans if span["kind"] == "llm"]


@pytest.mark.parametrize("how", ["kickoff", "kickoff_async", "akickoff"])
def test_block_reaches_the_caller_with_zero_requests_then_recovers(crew_stub: Any, memory: Any, how: str) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.0001, block_on_threshold=True)
    _kickoff(make_crew(crew_stub.openai_base_url), how)  # spends more than the budget; each call was under
    assert crew_stub.count() == 3

    crew_stub.clear()
    with pytest.raises(CircuitBreakerException) as caught:
        _kickoff(make_crew(crew_stub.openai_base_url), how)
    settle()
    assert crew_stub.count() == 0  # blocked before the request, and not retried by CrewAI
    blocked = caught.value
    assert issubclass(type(blocked), HookAborted)  # what lets it through CrewAI
    assert blocked.reason == "budget_per_hour" and blocked.scope == "global"
    assert blocked.current == pytest.approx(RUN_COST) and blocked.monitor is agentwatch.get_client().monitor
    blocked_spans = [span for span in _llm_spans(memory) if span["status"] == "blocked"]
    assert len(blocked_spans) == 1 and blocked_spans[0]["agent_name"] == "Researcher"
    assert blocked_spans[0]["attributes"]["breaker.reason"] == "budget_per_hour"

    # Every span of the blocked run is closed, marked blocked, not left open or failed.
    blocked_run = [span for span in memory.spans if span["attributes"].get("framework") == "crewai"
                   and span["kind"] in ("chain", "task", "agent")][-3:]
    assert [(span["kind"], span["status"]) for span in blocked_run] == [
        ("agent", "blocked"), ("task", "blocked"), ("chain", "blocked")]

    blocked.monitor.increase_budget(1.0)
    script(crew_stub)
    result = _kickoff(make_crew(crew_stub.openai_base_url), how)
    settle()
    assert "bees" in result.raw and crew_stub.count() == 3
    crews = [span for span in memory.spans if span["kind"] == "chain"]
    assert len(crews) == 3 and all(span["parent_span_id"] is None for span in crews)
    assert len({span["trace_id"] for span in crews}) == 3


def test_per_agent_budget_trips_only_the_agent_that_overspent(crew_stub: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory],
                    agents={"Researcher": {"budget_per_hour": 0.00005, "block_on_threshold": True}})
    make_crew(crew_stub.openai_base_url).kickoff()  # Researcher spends $0.000072, Writer $0.000075
    client = agentwatch.get_client()
    assert client is not None
    assert set(client.agents) == {"Researcher", "Writer"}

    crew_stub.clear()
    crew_stub.queue({"content": "Writer goes first and is not limited.", "input_tokens": 300, "output_tokens": 50})
    with pytest.raises(CircuitBreakerException) as caught:
        make_crew(crew_stub.openai_base_url, writer_first=True).kickoff()
    settle()
    assert crew_stub.count() == 1  # the Writer's request; the Researcher's never left
    assert caught.value.scope == "agent" and caught.value.scope_id == "researcher"
    assert caught.value.monitor is client.agents["Researcher"].monitor
    assert client.agents["Writer"].monitor.snapshot()["state"] == "CLOSED"
    assert client.monitor.snapshot()["state"] == "CLOSED"
    statuses = [(span["agent_name"], span["status"]) for span in _llm_spans(memory)]
    assert statuses[-2:] == [("Writer", "ok"), ("Researcher", "blocked")]


def test_agent_limits_declared_with_the_agent_context_manager(crew_stub: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    with agentwatch.agent("Researcher", budget_per_hour=0.00001, block_on_threshold=True):
        pass  # declares the limits of the scope the plugin maps the CrewAI agent "Researcher" to
    with pytest.raises(CircuitBreakerException) as caught:
        make_crew(crew_stub.openai_base_url).kickoff()
    assert caught.value.scope_id == "researcher"
    assert crew_stub.count() == 1  # first call under the limit; the second one blocked


def test_per_agent_limits_match_a_role_from_the_yaml_project_layout(stub_provider: Any, memory: Any) -> None:
    """``crewai create crew`` writes ``role: >`` in config/agents.yaml: the role CrewAI keeps ends with a newline."""
    import yaml
    from crewai import LLM, Agent, Crew, Task
    from crewai.tools import tool

    config = yaml.safe_load("researcher:\n  role: >\n    Senior Data Researcher\n  goal: >\n    Find facts\n"
                            "  backstory: >\n    Careful.\n")["researcher"]
    assert config["role"] == "Senior Data Researcher\n"
    agentwatch.init(exporters=[memory],
                    agents={"Senior Data Researcher": {"budget_per_hour": 0.01, "block_on_threshold": True}})

    @tool("lookup")
    def lookup(query: str) -> str:
        """Look up a fact about a subject."""
        return "fact"

    llm = LLM(model=f"openai/{MODEL}", base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    researcher = Agent(config=config, llm=llm, tools=[lookup])
    crew = Crew(agents=[researcher], tasks=[Task(description="Research", expected_output="Facts", agent=researcher)])
    stub_provider.queue(Reply(content="", tool_calls=[{"name": "lookup", "arguments": {"query": "AI"}}],
                              input_tokens=100000, output_tokens=10),  # $0.015: over the agent's budget
                        Reply(content="Facts.", input_tokens=10, output_tokens=10))
    with pytest.raises(CircuitBreakerException) as caught:
        crew.kickoff()
    settle()
    assert stub_provider.count() == 1
    assert caught.value.scope == "agent" and caught.value.scope_id == "senior-data-researcher"
    agent_spans = [span for span in memory.spans if span["agent_name"] is not None]
    assert {span["agent_name"] for span in agent_spans} == {"Senior Data Researcher"}
    assert "agent:Senior Data Researcher" in {span["name"] for span in agent_spans}


def test_a_per_agent_limit_that_names_no_agent_of_the_crew_is_warned_of_once(
        crew_stub: Any, memory: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A typo in a role key (or a role renamed since) limits nothing: the kickoff says so, once, naming the key and the
    crew's roles. A key that names an agent is not named (nor, in the test below, a templated role's)."""
    agentwatch.init(exporters=[memory], agents={"Reseacher": {"budget_per_hour": 0.00001, "block_on_threshold": True},
                                                "Writer": {"budget_per_hour": 1.0}})
    with caplog.at_level(logging.WARNING, logger="agentwatch"):
        make_crew(crew_stub.openai_base_url).kickoff()
        script(crew_stub)
        make_crew(crew_stub.openai_base_url).kickoff()
        agentwatch.shutdown()  # (at the program's exit: another crew run later might have had that agent)

    assert crew_stub.count() == 6  # nothing was limited: the key names no agent
    assert [record.getMessage() for record in caplog.records if record.name == "agentwatch"] == [
        "agentwatch: init(agents=...) set limits for 'Reseacher', but no agent of that name ran (the agents of the "
        "CrewAI crew 'crew': 'Researcher', 'Writer'); its limits applied to nothing"]


def test_per_agent_limits_for_the_agents_of_two_crews_run_one_after_the_other_are_not_warned_of(
        stub_provider: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Found 2026-12-06: a program (or a Flow) running a research crew, then a writing crew, was warned at the first
    kickoff that 'Writer' named no agent, although the second crew's agent is named so."""
    from crewai import LLM, Agent, Crew, Task

    agentwatch.init(exporters=[], agents={"Researcher": {"budget_per_hour": 1.0}, "Writer": {"budget_per_hour": 1.0}})
    llm = LLM(model=f"openai/{MODEL}", base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    with caplog.at_level(logging.WARNING, logger="agentwatch"):
        for role in ("Researcher", "Writer"):
            agent = Agent(role=role, goal="Do the work", backstory="Careful.", llm=llm)
            stub_provider.queue(Reply(content=f"{role} done.", input_tokens=100, output_tokens=10))
            Crew(name=role, agents=[agent], tasks=[Task(description="Work", expected_output="Text", agent=agent)]
                 ).kickoff()
        agentwatch.shutdown()
    assert stub_provider.count() == 2
    assert [record.getMessage() for record in caplog.records if record.name == "agentwatch"] == []


@pytest.mark.parametrize("key", ["{topic} Senior Data Researcher", "Senior Data Researcher"])
def test_per_agent_limits_hold_across_the_inputs_a_templated_role_is_kicked_off_with(
        stub_provider: Any, memory: Any, key: str, caplog: pytest.LogCaptureFixture) -> None:
    """``crewai create crew``'s template: ``role: {topic} Senior Data Researcher``, filled in by each kickoff's inputs.
    The agent is the role as written, whatever the topic; its limits are configured under that role or without its
    placeholders."""
    from crewai import LLM, Agent, Crew, Task
    from crewai.tools import tool

    agentwatch.init(exporters=[memory], agents={key: {"budget_per_hour": 0.01, "block_on_threshold": True}})

    @tool("lookup")
    def lookup(query: str) -> str:
        """Look up a fact about a subject."""
        return "fact"

    llm = LLM(model=f"openai/{MODEL}", base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    researcher = Agent(role="{topic} Senior Data Researcher", goal="Find facts about {topic}", backstory="Careful.",
                       llm=llm, tools=[lookup])
    crew = Crew(agents=[researcher], tasks=[Task(description="Research {topic}", expected_output="Facts",
                                                 agent=researcher)])
    stub_provider.queue(Reply(content="", tool_calls=[{"name": "lookup", "arguments": {"query": "AI"}}]),
                        Reply(content="Facts.", input_tokens=100000, output_tokens=10))  # $0.015: over the budget
    with pytest.raises(CircuitBreakerException) as caught, caplog.at_level(logging.WARNING, logger="agentwatch"):
        crew.kickoff_for_each(inputs=[{"topic": "AI LLMs"}, {"topic": "Quantum"}])
    settle()
    assert [record for record in caplog.records if record.name == "agentwatch"] == []  # the key names the agent
    assert stub_provider.count() == 2  # the first topic's; the second topic's first call was blocked
    assert caught.value.monitor is agentwatch.get_client().agents[key].monitor  # type: ignore[union-attr]
    assert {span["agent_name"] for span in memory.spans if span["agent_name"] is not None} == {key}
    assert {"agent:AI LLMs Senior Data Researcher", "tool:lookup"} <= {span["name"] for span in memory.spans}
    with caplog.at_level(logging.WARNING, logger="agentwatch"):
        agentwatch.shutdown()
    assert [record for record in caplog.records if record.name == "agentwatch"] == []


@pytest.mark.parametrize("how", ["call", "acall"])
def test_a_blocked_direct_llm_call_is_recorded_once(stub_provider: Any, memory: Any, how: str) -> None:
    """``crewai.LLM.call``/``acall`` outside a crew: CrewAI reports the hook's block as a failed call too.

    That report must not become a second, failed (unchecked) LLM span: it counted as a provider error."""
    from crewai import LLM

    agentwatch.init(exporters=[memory], budget_per_hour=0.01, max_error_rate=0.5, block_on_threshold=True)
    llm = LLM(model=f"openai/{MODEL}", base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)

    def call(prompt: str) -> Any:
        return llm.call(prompt) if how == "call" else asyncio.run(llm.acall(prompt))

    stub_provider.queue(Reply(content="a", input_tokens=100000, output_tokens=10))  # $0.015: over the budget
    call("one")
    for _ in range(2):
        with pytest.raises(CircuitBreakerException) as caught:
            call("two")
    settle()
    assert stub_provider.count() == 1
    spans = _llm_spans(memory)
    assert [span["status"] for span in spans] == ["ok", "blocked", "blocked"]
    assert not any(span["attributes"].get("agentwatch.unchecked") for span in spans)
    snapshot = caught.value.monitor.snapshot()
    assert snapshot["errors_in_error_window"] == 0


def test_an_answer_crewai_cannot_parse_is_charged_not_counted_as_a_provider_error(stub_provider: Any,
                                                                                   memory: Any) -> None:
    """``output_pydantic``: the model answers prose first, CrewAI's LLM fails to parse it (after an HTTP 200, billed),
    reports the call as failed and asks again. A healthy provider must not trip ``max_error_rate``."""
    from crewai import LLM, Agent, Crew, Task
    from pydantic import BaseModel

    class Facts(BaseModel):
        facts: list[str]

    agentwatch.init(exporters=[memory], max_error_rate=0.4, block_on_threshold=True)
    llm = LLM(model=f"openai/{MODEL}", base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    for _ in range(4):
        stub_provider.queue(Reply(content="Bees dance.", input_tokens=100, output_tokens=10),
                            Reply(content='{"facts": ["Bees dance"]}', input_tokens=100, output_tokens=10))
        researcher = Agent(role="Researcher", goal="Find facts", backstory="Careful.", llm=llm)
        task = Task(description="Research bees", expected_output="Facts", agent=researcher, output_pydantic=Facts)
        assert Crew(agents=[researcher], tasks=[task]).kickoff().pydantic == Facts(facts=["Bees dance"])
    settle()
    assert stub_provider.count() == 8
    spans = _llm_spans(memory)
    assert [span["status"] for span in spans] == ["ok"] * 8 and all(span["cost_usd"] > 0 for span in spans)
    assert sum("Facts" in span["attributes"].get("crewai.answer_rejected", "") for span in spans) == 4
    state = agentwatch.get_client().monitor.snapshot()  # type: ignore[union-attr]
    assert state["errors_in_error_window"] == 0 and state["spend_last_hour"] == pytest.approx(
        sum(span["cost_usd"] for span in spans))
