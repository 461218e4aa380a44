"""Runs of the real SDK (handoff, tool, sync, async, streamed; Responses and Chat Completions) give one LLM
span and one charge per request under the agent that made it, in the SDK's tree, and behave exactly as
without AgentWatch."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import weakref
from typing import Any

import pytest
from agents import Runner
from agents.tracing import set_tracing_disabled, trace

import agentwatch
from tests.stubs.provider_server import Reply

from .conftest import HANDOFF_RUN, MODEL, Team, by_id, llm_spans


def _run(how: str, team: Team) -> tuple[Any, list[str]]:
    """Run the team; returns the final output and the types of the streamed events (streamed runs)."""
    if how == "run_sync":
        return Runner.run_sync(team.triage, "what is 1 + 2?").final_output, []
    if how == "run":
        return asyncio.run(Runner.run(team.triage, "what is 1 + 2?")).final_output, []

    async def streamed() -> tuple[Any, list[str]]:
        result = Runner.run_streamed(team.triage, "what is 1 + 2?")
        events = [f"{event.type}:{getattr(getattr(event, 'data', None), 'type', '')}"
                  async for event in result.stream_events()]
        return result.final_output, events

    return asyncio.run(streamed())


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("how", ["run_sync", "run", "run_streamed"])
def test_one_span_and_one_charge_per_request_in_the_sdk_tree(stub_provider: Any, memory: Any, how: str,
                                                              api: str) -> None:
    agentwatch.init(exporters=[memory])
    team = Team(stub_provider, api)
    stub_provider.queue(*HANDOFF_RUN)
    output, _ = _run(how, team)
    agentwatch.flush()
    assert output == "the sum is 3" and team.tool_calls == 1
    calls = llm_spans(memory)
    assert stub_provider.count() == 3 and len(calls) == 3  # the HTTP layer added to ours, counted nothing again
    assert [span["agent_name"] for span in calls] == ["Triage", "Billing", "Billing"]
    for span in calls:
        assert (span["model"], span["provider"], span["status"]) == (MODEL, "openai", "ok")
        if api == "chat" and how == "run_streamed":  # the SDK asks a non-OpenAI server for no stream usage
            assert span["attributes"].get("usage_estimated") is True
        else:
            assert (span["input_tokens"], span["output_tokens"]) == (10, 5)
        assert span["cost_usd"] > 0
    spans = by_id(memory)
    parents = [spans[span["parent_span_id"]] for span in calls]
    assert [(parent["kind"], parent["name"]) for parent in parents] == [("agent", "Triage"), ("agent", "Billing"),
                                                                        ("agent", "Billing")]
    tool = next(span for span in memory.spans if span["kind"] == "tool")
    assert (tool["name"], spans[tool["parent_span_id"]]["name"], tool["agent_name"]) == ("add", "Billing", "Billing")
    handoff = next(span for span in memory.spans if span["kind"] == "handoff")
    assert handoff["name"] == "handoff Triage -> Billing"
    root = spans[parents[0]["parent_span_id"]]
    assert (root["kind"], root["name"]) == ("trace", "Agent workflow")
    assert spans[parents[1]["parent_span_id"]] is root
    assert sum(span["cost_usd"] for span in memory.spans) == pytest.approx(sum(span["cost_usd"] for span in calls))


def _requests(stub: Any) -> list[str]:
    return [re.sub(r"stub_?\d+", "stub#", f"{request.path} {json.dumps(request.json)}") for request in stub.requests]


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("how", ["run_sync", "run", "run_streamed"])
def test_behaves_as_without_agentwatch_when_no_limit_is_hit(stub_provider: Any, memory: Any, how: str,
                                                            api: str) -> None:
    stub_provider.queue(*HANDOFF_RUN)
    plain = _run(how, Team(stub_provider, api))
    plain_requests = _requests(stub_provider)
    stub_provider.requests.clear()
    agentwatch.init(exporters=[memory], budget_per_hour=100.0, block_on_threshold=True,
                    agents={"Triage": {"budget_per_hour": 50.0}, "Billing": {"budget_per_hour": 50.0}})
    stub_provider.queue(*HANDOFF_RUN)
    watched = _run(how, Team(stub_provider, api))
    assert watched == plain  # same output, same streamed events in the same order
    assert _requests(stub_provider) == plain_requests  # the same requests, byte for byte but the stub's ids


def test_limits_and_llm_spans_do_not_depend_on_the_sdks_tracing(stub_provider: Any, memory: Any) -> None:
    set_tracing_disabled(True)
    agentwatch.init(exporters=[memory], agents={"Billing": {"budget_per_hour": 1e-9, "block_on_threshold": True}})
    team = Team(stub_provider)
    stub_provider.queue(*HANDOFF_RUN)
    with pytest.raises(agentwatch.CircuitBreakerException) as caught:
        Runner.run_sync(team.triage, "what is 1 + 2?")
    agentwatch.flush()
    assert caught.value.scope_id == "billing" and stub_provider.count() == 2
    assert [(span["agent_name"], span["status"]) for span in llm_spans(memory)] == [
        ("Triage", "ok"), ("Billing", "ok"), ("Billing", "blocked")]
    assert not [span for span in memory.spans if span["kind"] in ("agent", "tool", "trace")]


def test_inside_an_agentwatch_trace_the_sdk_trace_is_a_child(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    team = Team(stub_provider)
    stub_provider.queue(*HANDOFF_RUN)
    with agentwatch.trace("support") as outer:
        Runner.run_sync(team.triage, "what is 1 + 2?")
    agentwatch.flush()
    workflow = next(span for span in memory.spans if span["name"] == "Agent workflow")
    assert workflow["kind"] == "chain" and workflow["parent_span_id"] == outer.span.span_id
    assert {span["trace_id"] for span in llm_spans(memory)} == {outer.span.trace_id}


def test_guardrails_and_an_agent_used_as_a_tool_are_spans_of_their_agent(stub_provider: Any, memory: Any) -> None:
    from agents import Agent, GuardrailFunctionOutput, input_guardrail

    @input_guardrail
    def polite(context: Any, agent: Any, given: Any) -> GuardrailFunctionOutput:
        return GuardrailFunctionOutput(output_info=None, tripwire_triggered=False)

    agentwatch.init(exporters=[memory], agents={"Billing": {"budget_per_hour": 10.0}})
    team = Team(stub_provider)
    lead = Agent(name="Lead", instructions="Use the billing tool.", model=team.model("responses"),
                 input_guardrails=[polite],
                 tools=[team.billing.as_tool(tool_name="billing", tool_description="Ask billing.")])
    stub_provider.queue(Reply(content="", tool_calls=[{"name": "billing", "arguments": {"input": "1 + 2?"}}]),
                        Reply(content="3"), Reply(content="billing says 3"))
    assert Runner.run_sync(lead, "what is 1 + 2?").final_output == "billing says 3"
    agentwatch.flush()
    spans = by_id(memory)
    guardrail = next(span for span in memory.spans if span["kind"] == "guardrail")
    assert (guardrail["name"], guardrail["attributes"]["guardrail.triggered"]) == ("polite", False)
    assert spans[guardrail["parent_span_id"]]["name"] == "Lead"
    calls = llm_spans(memory)
    assert [span["agent_name"] for span in calls] == ["Lead", "Billing", "Lead"] and stub_provider.count() == 3
    tool = next(span for span in memory.spans if span["kind"] == "tool" and span["name"] == "billing")
    nested = spans[calls[1]["parent_span_id"]]  # Billing's agent span, inside the tool call of Lead
    assert nested["kind"] == "agent" and nested["name"] == "Billing"
    assert nested["parent_span_id"] == tool["span_id"] and spans[tool["parent_span_id"]]["name"] == "Lead"


def test_concurrent_runs_keep_their_agents_apart(stub_provider: Any, memory: Any) -> None:
    from agents import Agent

    agentwatch.init(exporters=[memory])
    team = Team(stub_provider)
    agents = [Agent(name=f"Worker{index}", instructions="Answer.", model=team.model("responses"))
              for index in range(6)]

    async def together() -> list[Any]:
        results = await asyncio.gather(*(Runner.run(agent, "hi") for agent in agents))
        return [result.final_output for result in results]

    assert asyncio.run(together()) == ["ok"] * 6
    agentwatch.flush()
    spans = by_id(memory)
    calls = llm_spans(memory)
    assert sorted(span["agent_name"] for span in calls) == [f"Worker{index}" for index in range(6)]
    for span in calls:
        assert spans[span["parent_span_id"]]["name"] == span["agent_name"]  # under its own agent's span


@pytest.mark.parametrize("how", ["run_sync", "run", "run_streamed"])
def test_an_input_guardrail_that_trips_ends_its_agent_as_an_error(stub_provider: Any, memory: Any, how: str) -> None:
    """Found 2026-12-06: in ``Runner.run``/``run_sync`` the agent span ended "ok" (streamed: "error")."""
    from agents import Agent, GuardrailFunctionOutput, InputGuardrailTripwireTriggered, input_guardrail

    @input_guardrail
    def rude(context: Any, agent: Any, given: Any) -> GuardrailFunctionOutput:
        return GuardrailFunctionOutput(output_info=None, tripwire_triggered=True)

    agentwatch.init(exporters=[memory])
    team = Team(stub_provider)
    team.triage = Agent(name="Triage", instructions="Route.", model=team.model("responses"), input_guardrails=[rude])
    with pytest.raises(InputGuardrailTripwireTriggered):
        _run(how, team)
    agentwatch.flush()
    agent = next(span for span in memory.spans if span["kind"] == "agent")
    guardrail = next(span for span in memory.spans if span["kind"] == "guardrail")
    assert (agent["name"], agent["status"], agent["attributes"]["error.message"]) == (
        "Triage", "error", "Guardrail tripwire triggered")
    assert guardrail["attributes"]["guardrail.triggered"] is True and guardrail["parent_span_id"] == agent["span_id"]
    workflow = next(span for span in memory.spans if span["kind"] == "trace")  # found 2026-12-07: it ended "ok"
    assert (workflow["status"], workflow["attributes"]["error.type"]) == ("error", "InputGuardrailTripwireTriggered")


@pytest.mark.parametrize("handled", [False, True])
@pytest.mark.parametrize("how", ["run", "run_streamed"])
def test_a_run_over_its_max_turns_ends_its_workflow_as_an_error(stub_provider: Any, memory: Any, how: str,
                                                                 handled: bool) -> None:
    """Found 2026-12-08: a streamed run over its ``max_turns`` raised ``MaxTurnsExceeded`` from ``stream_events()``
    but its workflow span ended "ok" (the run's task stops without raising; the error is raised to the consumer after
    the trace ended). It ends as an error, as in ``Runner.run``; a run whose ``max_turns`` handler gave a final output
    ends "ok"."""
    from agents import MaxTurnsExceeded

    agentwatch.init(exporters=[memory])
    team = Team(stub_provider)
    stub_provider.queue(*[Reply(content="", tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}])] * 3)
    options: dict[str, Any] = {"max_turns": 2}
    if handled:
        options["error_handlers"] = {"max_turns": lambda data: "gave up"}

    async def run() -> Any:
        if how == "run":
            return (await Runner.run(team.billing, "add forever", **options)).final_output
        result = Runner.run_streamed(team.billing, "add forever", **options)
        async for _ in result.stream_events():
            pass
        return result.final_output

    if handled:
        assert asyncio.run(run()) == "gave up"
    else:
        with pytest.raises(MaxTurnsExceeded):
            asyncio.run(run())
    agentwatch.flush()
    [workflow] = [span for span in memory.spans if span["kind"] == "trace"]
    if handled:
        assert workflow["status"] == "ok"
    else:
        assert (workflow["status"], workflow["attributes"]["error.type"], workflow["attributes"]["error.message"]) == (
            "error", "MaxTurnsExceeded", "Max turns (2) exceeded")


def test_a_model_call_cancelled_by_a_tripped_guardrail_is_charged_for_its_prompt(stub_provider: Any,
                                                                                  memory: Any) -> None:
    """Found 2026-12-07: an input guardrail runs beside the agent's first model call; when it trips, the SDK cancels
    that call. Its request had reached the provider, which bills the prompt, but the call was charged $0."""
    from agents import Agent, GuardrailFunctionOutput, InputGuardrailTripwireTriggered, input_guardrail

    @input_guardrail
    async def policy(context: Any, agent: Any, given: Any) -> GuardrailFunctionOutput:
        await stub_provider.until_received(1)  # a slow check: the model's request goes out meanwhile
        return GuardrailFunctionOutput(output_info=None, tripwire_triggered=True)

    client = agentwatch.init(exporters=[memory])
    team = Team(stub_provider)
    tutor = Agent(name="Tutor", instructions="Teach.", model=team.model("responses"), input_guardrails=[policy])
    stub_provider.queue(Reply(content="too late", delay=2.0))
    with pytest.raises(InputGuardrailTripwireTriggered):
        asyncio.run(Runner.run(tutor, "a long document " * 300))
    agentwatch.flush()
    [call] = llm_spans(memory)
    assert (call["status"], call["attributes"]["error.type"], call["agent_name"]) == ("error", "CancelledError",
                                                                                       "Tutor")
    assert call["attributes"]["usage_estimated"] is True and call["input_tokens"] > 1000 and call["cost_usd"] > 0
    assert client.monitor.snapshot()["spend_last_hour"] == pytest.approx(call["cost_usd"])


@pytest.mark.parametrize("how", ["run", "run_streamed"])
def test_a_cancelled_run_ends_its_workflow_and_agent_as_cancelled(stub_provider: Any, memory: Any, how: str) -> None:
    """Found 2026-12-07: the workflow and agent spans of a run cancelled while its model answered (a task cancelled,
    ``asyncio.wait_for`` around ``Runner.run``) ended "ok"; they end as errors of type ``CancelledError``, as every
    plugin's cancelled span does. A run made while the caller handles an exception (inside ``except``) is not
    taken for one that ended by it."""
    agentwatch.init(exporters=[memory])
    team = Team(stub_provider)

    async def run() -> None:
        if how == "run":
            await Runner.run(team.billing, "what is 1 + 2?")
        else:
            async for _ in Runner.run_streamed(team.billing, "what is 1 + 2?").stream_events():
                pass

    async def cut_off_then_run_in_except() -> None:
        task = asyncio.create_task(run())
        await stub_provider.until_received(1)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            await run()  # while CancelledError is being handled

    stub_provider.queue(Reply(content="too late", delay=2.0), Reply(content="3"))
    asyncio.run(cut_off_then_run_in_except())
    agentwatch.flush()
    workflows = [span for span in memory.spans if span["kind"] == "trace"]
    agents = [span for span in memory.spans if span["kind"] == "agent"]
    assert [(span["status"], span["attributes"].get("error.type")) for span in workflows + agents] == [
        ("error", "CancelledError"), ("ok", None), ("error", "CancelledError"), ("ok", None)]


def test_a_workflow_started_while_handling_an_exception_does_not_keep_it_alive(stub_provider: Any,
                                                                               memory: Any) -> None:
    """Found 2026-12-07 (review): to tell the caller's exception from the one a run ends by, the processor kept the
    exception itself (with its traceback's frames and their locals) until the trace or agent span ended: a workflow
    started in an ``except`` (``trace(...).start()``, the SDK's manual form) and run after it held them for the whole
    run. It keeps the exception's identity only."""
    agentwatch.init(exporters=[memory])
    team = Team(stub_provider)
    stub_provider.queue(Reply(content="3"))

    class Handled(Exception):
        pass

    try:
        raise Handled("handled before the workflow")
    except Handled as error:
        handled = weakref.ref(error)
        workflow = trace("recovery")
        workflow.start(mark_as_current=True)
    gc.collect()
    freed = handled() is None
    Runner.run_sync(team.billing, "what is 1 + 2?")
    workflow.finish(reset_current=True)
    assert freed
    agentwatch.flush()
    assert [span["status"] for span in memory.spans if span["kind"] in ("trace", "agent")] == ["ok", "ok"]
