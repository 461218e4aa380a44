"""An LLM call a CrewAI tool makes itself (the openai SDK used directly) is recorded under the tool and counts against
the agent using the tool. Found 2026-12-05: such a call was a trace of its own with no agent, and
``init(agents={"Researcher": {...}})`` never saw it ($0.12 past a $0.05 budget, the agent's next call sent)."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.plugins.tool_calls import call_in_tool
from tests.stubs.provider_server import Reply

from .conftest import MODEL

LIMITED = {"budget_per_hour": 0.05, "block_on_threshold": True}
EXPENSIVE = Reply(content="a long summary", input_tokens=400_000, output_tokens=100_000)  # ~$0.12 for gpt-4o-mini


def _crew(base_url: str) -> Any:
    from crewai import LLM, Agent, Crew, Task
    from crewai.tools import tool

    @tool("summarize")
    def summarize(text: str) -> str:
        """Summarize a text."""
        client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
        answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])
        return answer.choices[0].message.content or ""

    llm = LLM(model=f"openai/{MODEL}", base_url=base_url, api_key="k", max_retries=0)
    researcher = Agent(role="Researcher", goal="Summarize", backstory="Careful.", llm=llm, tools=[summarize],
                       verbose=False)
    task = Task(description="Summarize abc", expected_output="A summary", agent=researcher)
    return Crew(agents=[researcher], tasks=[task], verbose=False)


def _script(stub: Any) -> None:
    stub.queue(Reply(content="", tool_calls=[{"name": "summarize", "arguments": {"text": "abc"}}]), EXPENSIVE,
               Reply(content="Thought: I now know the final answer\nFinal Answer: done"))


@pytest.mark.parametrize("kickoff", ["kickoff", "akickoff"])
def test_a_tools_own_call_counts_against_its_agent(stub_provider: Any, memory: Any, kickoff: str) -> None:
    from crewai.events import crewai_event_bus

    agentwatch.init(exporters=[memory], agents={"Researcher": LIMITED})
    crew = _crew(stub_provider.openai_base_url)
    _script(stub_provider)
    with pytest.raises(CircuitBreakerException) as caught:
        crew.kickoff() if kickoff == "kickoff" else asyncio.run(crew.akickoff())
    assert (caught.value.reason, caught.value.scope_id) == ("budget_per_hour", "researcher")
    assert stub_provider.count() == 2  # the Researcher's call after the tool was not sent
    crewai_event_bus.flush(timeout=10)
    agentwatch.flush()
    spent = call_in_tool(memory, "tool:summarize", "Researcher")
    assert spent["input_tokens"] == 400_000


def test_work_delegated_to_a_coworker_counts_against_the_delegating_agent(stub_provider: Any, memory: Any) -> None:
    from .test_delegation import _crew as delegating_crew
    from .test_delegation import _script as delegation_script

    client = agentwatch.init(exporters=[memory])
    crew, worker = delegating_crew(stub_provider.openai_base_url, "delegating")
    delegation_script(stub_provider, worker)
    crew.kickoff()
    agentwatch.flush()
    costs = {span["agent_name"]: span["cost_usd"] for span in memory.spans if span["kind"] == "llm"
             and span["agent_name"] == worker}
    researcher = client.agents["Researcher"].monitor.snapshot()["spend_last_hour"]
    writer = client.agents[worker].monitor.snapshot()["spend_last_hour"]
    assert writer == pytest.approx(costs[worker]) and writer > 0
    assert researcher == pytest.approx(client.monitor.snapshot()["spend_last_hour"])  # its own calls and the Writer's


def test_a_coworkers_tool_is_named_after_the_coworker(stub_provider: Any, memory: Any) -> None:
    """Inside delegated work the delegator's scope is pushed too (its delegation tool is running): the coworker's
    tool span still names the coworker, whose tool it is."""
    from crewai import LLM, Agent, Crew, Task
    from crewai.tools import tool

    from .test_delegation import _delegate

    base_url = stub_provider.openai_base_url

    @tool("summarize")
    def summarize(text: str) -> str:
        """Summarize a text."""
        return "short"

    def llm() -> Any:
        return LLM(model=f"openai/{MODEL}", base_url=base_url, api_key="k", max_retries=0)

    researcher = Agent(role="Researcher", goal="Find facts", backstory="Careful.", llm=llm(), allow_delegation=True,
                       verbose=False)
    writer = Agent(role="Writer", goal="Write", backstory="Concise.", llm=llm(), tools=[summarize], verbose=False)
    task = Task(description="Research bees", expected_output="Facts", agent=researcher)
    agentwatch.init(exporters=[memory])
    stub_provider.queue(_delegate("Writer"),
                        Reply(content="", tool_calls=[{"name": "summarize", "arguments": {"text": "bees"}}]),
                        Reply(content="Bees dance."), Reply(content="Final: bees dance."))
    Crew(agents=[researcher, writer], tasks=[task], verbose=False).kickoff()
    agentwatch.flush()
    tools = {span["name"]: span["agent_name"] for span in memory.spans if span["kind"] == "tool"}
    assert tools == {"tool:delegate_work_to_coworker": "Researcher", "tool:summarize": "Writer"}


@pytest.mark.parametrize("client", ["openai", "crewai"])
def test_a_block_under_the_tools_own_agent_scope_stops_the_kickoff(stub_provider: Any, memory: Any,
                                                                   client: str) -> None:
    """The tool's call runs under the program's own ``with agentwatch.agent("Summarizer")``: blocked there (by the
    openai SDK's layer, or CrewAI's hook for ``crewai.LLM.call``), CrewAI hands the block to the model as the tool's
    result. The kickoff raises it, and the Researcher's next request is not sent."""
    from crewai import LLM, Agent, Crew, Task
    from crewai.tools import tool

    base_url = stub_provider.openai_base_url
    summarizer = LLM(model=f"openai/{MODEL}", base_url=base_url, api_key="k", max_retries=0)

    @tool("summarize")
    def summarize(text: str) -> str:
        """Summarize a text."""
        with agentwatch.agent("Summarizer"):
            if client == "crewai":
                return str(summarizer.call(text))
            sdk = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
            answer = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])
            return answer.choices[0].message.content or ""

    def summarize_call(text: str) -> Reply:
        return Reply(content="", tool_calls=[{"name": "summarize", "arguments": {"text": text}}])

    agentwatch.init(exporters=[memory], agents={"Summarizer": {"budget_per_hour": 1e-9, "block_on_threshold": True}})
    stub_provider.queue(summarize_call("a"), Reply(content="summary a"), summarize_call("b"),
                        Reply(content="summary b"), Reply(content="Final: done"))
    researcher = Agent(role="Researcher", goal="Summarize", backstory="Careful.", llm=LLM(
        model=f"openai/{MODEL}", base_url=base_url, api_key="k", max_retries=0), tools=[summarize], verbose=False)
    crew = Crew(agents=[researcher], tasks=[Task(description="Summarize a and b", expected_output="Summaries",
                                                 agent=researcher)], verbose=False)
    with pytest.raises(CircuitBreakerException) as caught:
        crew.kickoff()
    assert (caught.value.reason, caught.value.scope_id) == ("budget_per_hour", "summarizer")
    assert stub_provider.count() == 3  # the summary of "a" went over the budget; nothing after the block


@pytest.mark.parametrize("kickoff", ["kickoff", "akickoff"])
def test_a_tasks_llm_guardrail_counts_against_the_tasks_agent(stub_provider: Any, memory: Any, kickoff: str) -> None:
    """A task's guardrail written as text (``guardrail="..."``) is checked by CrewAI's "Guardrail Agent" on the task
    agent's own LLM: its call counts against that agent too (found 2026-12-06: it counted against "Guardrail Agent"
    alone, so the Researcher's expensive answer was followed by a guardrail request its limit never saw)."""
    from crewai import LLM, Agent, Crew, Task

    agentwatch.init(exporters=[memory], agents={"Researcher": LIMITED})
    llm = LLM(model=f"openai/{MODEL}", base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    researcher = Agent(role="Researcher", goal="Summarize", backstory="Careful.", llm=llm, verbose=False)
    task = Task(description="Summarize abc", expected_output="A summary", agent=researcher,
                guardrail="The summary must mention abc")
    stub_provider.queue(EXPENSIVE, Reply(content='{"valid": true, "feedback": null}'))
    crew = Crew(agents=[researcher], tasks=[task], verbose=False)
    with pytest.raises(CircuitBreakerException) as caught:
        crew.kickoff() if kickoff == "kickoff" else asyncio.run(crew.akickoff())
    assert (caught.value.reason, caught.value.scope_id) == ("budget_per_hour", "researcher")
    assert stub_provider.count() == 1  # the guardrail's request was not sent
    agentwatch.flush()
    blocked = [span for span in memory.spans if span["kind"] == "llm" and span["status"] == "blocked"]
    assert [span["agent_name"] for span in blocked] == ["Guardrail Agent"]


def test_an_agent_a_guardrail_sends_back_to_work_is_charged_once_per_call(stub_provider: Any, memory: Any) -> None:
    """A guardrail that rejects the answer has CrewAI run the agent again from inside the guardrail's scope: the
    agent's calls still count once each against it."""
    from crewai import LLM, Agent, Crew, Task

    rejected: list[str] = []

    def needs_a_second_draft(output):  # type: ignore[no-untyped-def]  # CrewAI rejects a string annotation
        rejected.append(output.raw)
        return (False, "needs more detail") if len(rejected) == 1 else (True, output.raw)

    client = agentwatch.init(exporters=[memory])
    llm = LLM(model=f"openai/{MODEL}", base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    researcher = Agent(role="Researcher", goal="Summarize", backstory="Careful.", llm=llm, verbose=False)
    task = Task(description="Summarize abc", expected_output="A summary", agent=researcher,
                guardrail=needs_a_second_draft)
    stub_provider.queue(Reply(content="draft", input_tokens=100, output_tokens=20),
                        Reply(content="final", input_tokens=100, output_tokens=20))
    assert Crew(agents=[researcher], tasks=[task], verbose=False).kickoff().raw == "final"
    monitor = client.agents["Researcher"].monitor.snapshot()
    assert monitor["calls_last_minute"] == stub_provider.count() == 2
    assert monitor["spend_last_hour"] == pytest.approx(client.monitor.snapshot()["spend_last_hour"])
