"""A block inside a delegated agent reaches kickoff()'s caller, with no request after it.

CrewAI's delegation tool turns every exception of the delegated agent into a tool result, so a
per-agent limit of the worker used to be swallowed: the manager carried on and kickoff() returned.
Real crews (hierarchical with ``manager_llm``, sequential with ``allow_delegation=True``, inside a
Flow) on ``crewai.LLM`` against the stub server, whose replies script the delegation tool call.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from crewai.hooks import HookAborted

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import MODEL, settle

ROOT = Path(__file__).resolve().parents[3]
FINAL = "Final: bees dance to share where flowers are."
#: The worker's answer costs $0.000048 (200 in, 30 out on gpt-4o-mini): over this budget after one run.
WORKER_BUDGET = 0.00002


def _delegate(coworker: str) -> Reply:
    return Reply(content="", tool_calls=[{"name": "delegate_work_to_coworker", "arguments": {
        "task": "Find one fact about bees", "context": "We write about bees.", "coworker": coworker}}],
        input_tokens=100, output_tokens=20)


def _replies(worker: str) -> list[Reply]:
    """Manager delegates to ``worker``, the worker answers, the manager answers: three requests."""
    return [_delegate(worker), Reply(content="Bees dance.", input_tokens=200, output_tokens=30),
            Reply(content=FINAL, input_tokens=300, output_tokens=50)]


def _script(stub: Any, worker: str) -> None:
    stub.queue(*_replies(worker))


def _crew(base_url: str, process: str) -> tuple[Any, str]:
    """The crew and the name of the agent the manager (or the delegating agent) hands work to."""
    from crewai import LLM, Agent, Crew, Process, Task

    def llm() -> Any:
        return LLM(model=f"openai/{MODEL}", base_url=base_url, api_key="x", max_retries=0)

    researcher = Agent(role="Researcher", goal="Find facts", backstory="Careful.", llm=llm(), verbose=False,
                       allow_delegation=process == "delegating")
    writer = Agent(role="Writer", goal="Write text", backstory="Concise.", llm=llm(), verbose=False)
    if process == "hierarchical":
        task = Task(description="Research bees", expected_output="Facts")
        crew = Crew(agents=[researcher, writer], tasks=[task], process=Process.hierarchical, manager_llm=llm(),
                    verbose=False)
        return crew, "Researcher"
    task = Task(description="Research bees", expected_output="Facts", agent=researcher)
    return Crew(agents=[researcher, writer], tasks=[task], verbose=False), "Writer"


def _kickoff(target: Any, how: str) -> Any:
    if how == "kickoff":
        return target.kickoff()
    if how == "kickoff_async":
        return asyncio.run(target.kickoff_async())
    return asyncio.run(target.akickoff())


def _llm_spans(memory: Any) -> list[dict[str, Any]]:
    return sorted((span for span in memory.spans if span["kind"] == "llm"),
                  key=lambda span: span["start_time_unix_nano"])


def _limit(worker: str) -> dict[str, Any]:
    return {worker: {"budget_per_hour": WORKER_BUDGET, "block_on_threshold": True}}


@pytest.mark.parametrize("how", ["kickoff", "kickoff_async", "akickoff"])
@pytest.mark.parametrize("process", ["hierarchical", "delegating"])
def test_block_in_the_delegated_agent_reaches_the_caller_then_recovers(
        stub_provider: Any, memory: Any, process: str, how: str) -> None:
    stub = stub_provider
    worker = _crew(stub.openai_base_url, process)[1]
    agentwatch.init(exporters=[memory], agents=_limit(worker))
    client = agentwatch.get_client()
    assert client is not None

    # Under the limit: an ordinary run, one span and one charge per request.
    _script(stub, worker)
    assert _kickoff(_crew(stub.openai_base_url, process)[0], how).raw == FINAL
    settle()
    assert stub.count("/chat/completions") == 3
    llms = _llm_spans(memory)
    assert len(llms) == 3 and all(span["status"] == "ok" and span["cost_usd"] > 0 for span in llms)
    assert [span["agent_name"] for span in llms][1] == worker
    spent = client.monitor.snapshot()["spend_last_hour"]
    assert spent == pytest.approx(sum(span["cost_usd"] for span in llms))
    assert client.agents[worker].monitor.snapshot()["spend_last_hour"] == pytest.approx(llms[1]["cost_usd"])

    # The worker is over its budget now: its call is blocked inside the delegation tool, and the
    # delegating agent's next call is refused, so the block reaches the caller after one request.
    stub.clear()
    _script(stub, worker)
    with pytest.raises(CircuitBreakerException) as caught:
        _kickoff(_crew(stub.openai_base_url, process)[0], how)
    settle()
    assert stub.count() == 1  # the delegating call; nothing after the block
    blocked = caught.value
    assert issubclass(type(blocked), HookAborted)  # what lets it through CrewAI
    assert blocked.scope == "agent" and blocked.scope_id == worker.lower()
    assert blocked.monitor is client.agents[worker].monitor
    run = _llm_spans(memory)[3:]
    assert [span["status"] for span in run] == ["ok", "blocked", "blocked"]
    assert run[1]["agent_name"] == worker and run[2]["attributes"]["crewai.refused_after_block"] is True
    assert all(span["cost_usd"] == 0 for span in run[1:])
    assert client.monitor.snapshot()["spend_last_hour"] == pytest.approx(spent + run[0]["cost_usd"])
    # The worker and the delegation tool read as blocked too, though CrewAI ended them as a tool result.
    last = {span["name"]: span["status"] for span in memory.spans}
    assert last[f"agent:{worker}"] == last["tool:delegate_work_to_coworker"] == last["crew:crew"] == "blocked"

    # Recovery as documented: the same crew setup runs through again.
    blocked.monitor.increase_budget(1.0)
    stub.clear()
    _script(stub, worker)
    assert _kickoff(_crew(stub.openai_base_url, process)[0], how).raw == FINAL
    assert stub.count() == 3


@pytest.mark.parametrize("how", ["kickoff", "akickoff"])
def test_hard_budget_refusal_in_the_delegated_agent_reaches_the_caller_then_recovers(
        stub_provider: Any, memory: Any, how: str) -> None:
    """A hard budget's refusal leaves the Writer's breaker CLOSED (nothing was spent): checking the Writer's limits
    again passes, yet the refused call still does not fit, so the delegating agent's next call is refused too."""
    stub = stub_provider
    # The Writer's worst case (gpt-4o-mini, no max_tokens) is about $0.0099: more than its whole hard budget.
    agentwatch.init(exporters=[memory], agents={"Writer": {"budget_per_hour": 0.005, "hard_budget": True}})
    _script(stub, "Writer")
    with pytest.raises(CircuitBreakerException) as caught:
        _kickoff(_crew(stub.openai_base_url, "delegating")[0], how)
    settle()
    assert stub.count() == 1  # the delegating call; the Writer's request and every later one never left
    assert caught.value.reason == "hard_budget" and caught.value.scope_id == "writer"
    assert [(span["agent_name"], span["status"]) for span in _llm_spans(memory)] == [
        ("Researcher", "ok"), ("Writer", "blocked"), ("Researcher", "blocked")]

    caught.value.monitor.increase_budget(1.0)  # type: ignore[union-attr]
    stub.clear()
    _script(stub, "Writer")
    assert _kickoff(_crew(stub.openai_base_url, "delegating")[0], how).raw == FINAL
    assert stub.count() == 3


@pytest.mark.parametrize("limit", ["Writer", "global"])
def test_the_breakers_records_of_a_block_name_the_blocked_agent_in_the_crews_trace(
        stub_provider: Any, memory: Any, limit: str) -> None:
    """breaker.triggered and alert.* of a block in a crew: in the kickoff's trace, under the blocked call's agent, and
    named after the agent whose limit it is (the Writer's, inside the Researcher's delegation tool) or, for the global
    limit, the agent whose call was blocked (the Researcher's first call: no span of ours was current there)."""
    stub = stub_provider
    if limit == "Writer":
        agentwatch.init(exporters=[memory], agents=_limit("Writer"))
    else:
        agentwatch.init(exporters=[memory], budget_per_hour=0.0001, block_on_threshold=True)
    for _ in range(2):
        _script(stub, "Writer")
    _crew(stub.openai_base_url, "delegating")[0].kickoff()  # over the limit afterwards
    with pytest.raises(CircuitBreakerException):
        _crew(stub.openai_base_url, "delegating")[0].kickoff()
    settle()
    crew = [span for span in memory.spans if span["name"] == "crew:crew"][-1]
    records = [span for span in memory.spans if span["kind"] in ("breaker", "alert")]
    assert {span["name"] for span in records} == {"breaker.triggered", "alert.budget_per_hour"}
    blocked_agent = "Writer" if limit == "Writer" else "Researcher"
    assert {(span["trace_id"], span["agent_name"]) for span in records} == {(crew["trace_id"], blocked_agent)}
    parents = {span["span_id"]: span for span in memory.spans}
    assert all(parents[span["parent_span_id"]]["name"] == f"agent:{blocked_agent}" for span in records)


def _bodies(stub: Any) -> list[str]:
    """The request bodies, without the tool call ids the stub numbers per server."""
    return [re.sub(r"call_stub_\d+_", "call_stub_", json.dumps(request.json)) for request in stub.requests]


@pytest.mark.parametrize("process", ["hierarchical", "delegating"])
def test_outputs_and_requests_unchanged_when_no_limit_is_hit(stub_provider: Any, memory: Any,
                                                              process: str) -> None:
    stub = stub_provider
    _script(stub, _crew(stub.openai_base_url, process)[1])
    without = _crew(stub.openai_base_url, process)[0].kickoff()
    bodies_without = _bodies(stub)

    agentwatch.init(exporters=[memory], budget_per_hour=10.0, block_on_threshold=True)
    stub.clear()
    _script(stub, _crew(stub.openai_base_url, process)[1])
    with_agentwatch = _crew(stub.openai_base_url, process)[0].kickoff()
    settle()
    assert with_agentwatch.raw == without.raw == FINAL
    assert [task.raw for task in with_agentwatch.tasks_output] == [task.raw for task in without.tasks_output]
    assert _bodies(stub) == bodies_without
    assert len(_llm_spans(memory)) == 3


def _flow(base_url: str, *, recover: bool = False) -> Any:
    """A Flow whose one step kicks off a hierarchical crew (and, with ``recover``, handles a block)."""
    from crewai.flow.flow import Flow, start

    class ResearchFlow(Flow):  # type: ignore[type-arg]
        @start()
        def research(self) -> str:
            try:
                return str(_crew(base_url, "hierarchical")[0].kickoff().raw)
            except CircuitBreakerException as blocked:
                if not recover:
                    raise
                blocked.monitor.increase_budget(1.0)  # type: ignore[union-attr]
                return "recovered: " + str(_crew(base_url, "hierarchical")[0].kickoff().raw)

    return ResearchFlow()


@pytest.mark.parametrize("how", ["kickoff", "kickoff_async", "akickoff"])
def test_flow_running_a_crew_raises_the_block_then_recovers(stub_provider: Any, memory: Any, how: str) -> None:
    stub = stub_provider
    agentwatch.init(exporters=[memory], agents=_limit("Researcher"))
    _script(stub, "Researcher")
    assert _kickoff(_flow(stub.openai_base_url), how) == FINAL

    stub.clear()
    _script(stub, "Researcher")
    with pytest.raises(CircuitBreakerException) as caught:
        _kickoff(_flow(stub.openai_base_url), how)
    assert stub.count() == 1
    assert issubclass(type(caught.value), HookAborted) and caught.value.scope_id == "researcher"

    caught.value.monitor.increase_budget(1.0)  # type: ignore[union-attr]
    stub.clear()
    _script(stub, "Researcher")
    assert _kickoff(_flow(stub.openai_base_url), how) == FINAL
    assert stub.count() == 3


def test_flow_step_that_handles_the_block_finishes_normally(stub_provider: Any, memory: Any) -> None:
    stub = stub_provider
    agentwatch.init(exporters=[memory], agents=_limit("Researcher"))
    _script(stub, "Researcher")
    _crew(stub.openai_base_url, "hierarchical")[0].kickoff()  # the Researcher is over its budget now

    stub.clear()
    stub.queue(_delegate("Researcher"), *_replies("Researcher"))  # blocked after one request, then a rerun
    assert _flow(stub.openai_base_url, recover=True).kickoff() == "recovered: " + FINAL
    assert stub.count() == 4



def _outer(base_url: str, kind: str) -> Any:
    """A Researcher whose tool kicks off a crew of its own (a Writer): as a crew, or as a lone agent."""
    from crewai import LLM, Agent, Crew, Task
    from crewai.tools import tool

    def llm() -> Any:
        return LLM(model=f"openai/{MODEL}", base_url=base_url, api_key="x", max_retries=0)

    @tool("ask_writer")
    def ask_writer(question: str) -> str:
        """Ask the writing crew a question."""
        writer = Agent(role="Writer", goal="Write text", backstory="Concise.", llm=llm(), verbose=False)
        inner = Crew(agents=[writer], tasks=[Task(description=question, expected_output="Text", agent=writer)],
                     verbose=False)
        return str(getattr(inner.kickoff(), "raw", ""))

    researcher = Agent(role="Researcher", goal="Find facts", backstory="Careful.", llm=llm(), tools=[ask_writer],
                       verbose=False)
    if kind == "agent":
        return researcher
    return Crew(agents=[researcher], tasks=[Task(description="Research bees", expected_output="Facts",
                                                 agent=researcher)], verbose=False)


def _run_outer(target: Any) -> str:
    result = target.kickoff("Research bees") if hasattr(target, "role") else target.kickoff()
    return str(result.raw)


@pytest.mark.parametrize("kind", ["crew", "agent"])
def test_block_in_a_crew_a_tool_kicks_off_stops_the_outer_run(stub_provider: Any, memory: Any, kind: str) -> None:
    stub = stub_provider
    agentwatch.init(exporters=[memory], agents=_limit("Writer"))
    ask = Reply(content="", tool_calls=[{"name": "ask_writer", "arguments": {"question": "A bee fact?"}}],
                input_tokens=100, output_tokens=20)
    replies = [ask, Reply(content="Bees dance.", input_tokens=200, output_tokens=30),
               Reply(content=FINAL, input_tokens=300, output_tokens=50)]
    stub.queue(*replies)
    assert _run_outer(_outer(stub.openai_base_url, kind)) == FINAL
    assert stub.count() == 3

    stub.clear()
    stub.queue(*replies)
    with pytest.raises(CircuitBreakerException) as caught:
        _run_outer(_outer(stub.openai_base_url, kind))
    assert stub.count() == 1  # the tool call; the Writer's and every later request never left
    assert caught.value.scope_id == "writer"

    caught.value.monitor.increase_budget(1.0)  # type: ignore[union-attr]
    stub.clear()
    stub.queue(*replies)
    assert _run_outer(_outer(stub.openai_base_url, kind)) == FINAL


def test_user_program_flow_with_a_hierarchical_crew(stub_provider: Any) -> None:
    """A whole program in a fresh interpreter, zero-config, CrewAI imported after ``init()``."""
    stub = stub_provider
    for _ in range(2):
        _script(stub, "Researcher")  # the first run; the second stops after the delegating request
    program = textwrap.dedent(f"""
        import asyncio, json, sys
        sys.path.insert(0, {str(ROOT)!r})
        import agentwatch
        agentwatch.init(exporters=[], agents={{"Researcher": {{"budget_per_hour": {WORKER_BUDGET},
                                                              "block_on_threshold": True}}}})
        from tests.plugins.crewai.test_delegation import _flow
        out = [_flow({stub.openai_base_url!r}).kickoff()]
        try:
            asyncio.run(_flow({stub.openai_base_url!r}).kickoff_async())
        except agentwatch.CircuitBreakerException as e:
            out.append([type(e).__name__, e.scope_id, e.reason])
        print(json.dumps(out))
    """)
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTWATCH_")}
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=180,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [
        FINAL, ["CrewAICircuitBreakerException", "researcher", "budget_per_hour"]]
    assert stub.count() == 4  # three, then the delegating request alone


def test_streamed_hierarchical_crew_raises_the_block_while_iterated(stub_provider: Any, memory: Any) -> None:
    stub = stub_provider
    agentwatch.init(exporters=[memory], agents=_limit("Researcher"))
    _script(stub, "Researcher")
    _crew(stub.openai_base_url, "hierarchical")[0].kickoff()

    stub.clear()
    _script(stub, "Researcher")
    crew = _crew(stub.openai_base_url, "hierarchical")[0]
    crew.stream = True
    streaming = crew.kickoff()
    with pytest.raises(CircuitBreakerException) as caught:
        for _chunk in streaming:
            pass
    assert caught.value.scope_id == "researcher" and stub.count() == 1
