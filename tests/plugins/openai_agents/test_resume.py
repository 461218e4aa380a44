"""``Runner.run(e.resume.agent, e.resume.input, **e.resume.run_kwargs)`` continues a blocked run with exactly the
requests an uninterrupted run sends, whatever holds the conversation: the caller (no session), a ``session`` (pass
it again) or the server (``previous_response_id``, ``auto_previous_response_id``, ``conversation_id``).

Found 2026-12-06: with a session, ``e.resume.input`` was the whole conversation, which the SDK had already saved to
the session and put in front of it again: the resumed request sent the history twice (a tool call split from its
output) and the session grew to 11 items instead of 6. A run chained on the server could not be resumed at all:
``e.resume`` had no ``previous_response_id``, so the tool output went out alone, answering no call."""

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
from agents import Runner, SQLiteSession

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import HANDOFF_RUN, Team
from .test_blocking import BUDGET, EXPENSIVE_TOOL_CALL

ROOT = Path(__file__).resolve().parents[3]
GREETING = Reply(content="hello Ann")


def _run(how: str, agent: Any, given: Any, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> Any:
    if how == "run_sync":
        return Runner.run_sync(agent, given, **kwargs).final_output
    if how == "run":
        return loop.run_until_complete(Runner.run(agent, given, **kwargs)).final_output

    async def streamed() -> Any:
        result = Runner.run_streamed(agent, given, **kwargs)
        async for _ in result.stream_events():
            pass
        return result.final_output

    return loop.run_until_complete(streamed())


def _normal(value: Any) -> Any:
    """The stub's response and call ids numbered away: two runs' requests compare equal."""
    return json.loads(re.sub(r"stub_?\d+", "stub#", json.dumps(value)))


def _requests(stub: Any) -> list[Any]:
    return [_normal(request.json) for request in stub.requests]


def _blocked(how: str, agent: Any, given: Any, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> Any:
    with pytest.raises(CircuitBreakerException) as caught:
        _run(how, agent, given, loop, **kwargs)
    return caught.value


@pytest.mark.parametrize("how", ["run_sync", "run", "run_streamed"])
def test_a_run_with_a_session_resumes_without_repeating_the_history(stub_provider: Any, memory: Any, how: str,
                                                                     loop: asyncio.AbstractEventLoop) -> None:
    # Without AgentWatch: a first question, then one answered with a tool call and its result.
    plain = Team(stub_provider)
    session = SQLiteSession("plain")
    stub_provider.queue(GREETING, HANDOFF_RUN[1], HANDOFF_RUN[2])
    _run(how, plain.billing, "I am Ann.", loop, session=session)
    assert _run(how, plain.billing, "what is 1 + 2?", loop, session=session) == "the sum is 3"
    expected_requests, expected_items = _requests(stub_provider), _normal(loop.run_until_complete(session.get_items()))
    assert len(expected_items) == 6
    stub_provider.requests.clear()

    agentwatch.init(exporters=[memory], agents={"Billing": {"budget_per_hour": BUDGET, "block_on_threshold": True}})
    team = Team(stub_provider)
    session = SQLiteSession("conversation")
    stub_provider.queue(GREETING, EXPENSIVE_TOOL_CALL)
    _run(how, team.billing, "I am Ann.", loop, session=session)
    blocked = _blocked(how, team.billing, "what is 1 + 2?", loop, session=session)
    resume = blocked.resume
    assert (resume.agent, resume.input, resume.session_id, resume.run_kwargs) == (team.billing, [], "conversation",
                                                                                  {})
    blocked.monitor.increase_budget(1.0)
    stub_provider.queue(HANDOFF_RUN[2])
    assert _run(how, resume.agent, resume.input, loop, session=session, **resume.run_kwargs) == "the sum is 3"
    assert team.tool_calls == 1
    assert _requests(stub_provider) == expected_requests  # the resumed request is the uninterrupted run's
    assert _normal(loop.run_until_complete(session.get_items())) == expected_items


@pytest.mark.parametrize("chain", [{"auto_previous_response_id": True}, {"previous_response_id": "resp_earlier"},
                                   {"conversation_id": "conv_1"}], ids=["auto", "previous", "conversation"])
@pytest.mark.parametrize("how", ["run_sync", "run", "run_streamed"])
def test_a_run_chained_on_the_server_resumes_in_its_conversation(stub_provider: Any, memory: Any, how: str,
                                                                 chain: dict[str, Any],
                                                                 loop: asyncio.AbstractEventLoop) -> None:
    plain = Team(stub_provider)
    stub_provider.queue(HANDOFF_RUN[1], HANDOFF_RUN[2])
    assert _run(how, plain.billing, "what is 1 + 2?", loop, **chain) == "the sum is 3"
    expected = _requests(stub_provider)
    stub_provider.requests.clear()

    agentwatch.init(exporters=[memory], agents={"Billing": {"budget_per_hour": BUDGET, "block_on_threshold": True}})
    team = Team(stub_provider)
    stub_provider.queue(EXPENSIVE_TOOL_CALL)
    blocked = _blocked(how, team.billing, "what is 1 + 2?", loop, **chain)
    resume = blocked.resume
    assert [item.get("type") for item in resume.input] == ["function_call_output"]  # what the server lacks
    if "conversation_id" in chain:
        assert resume.run_kwargs == chain
    else:  # chained on the answer of the turn before the block
        assert re.fullmatch(r"resp_stub\d+", resume.previous_response_id or "")
        assert resume.run_kwargs == {**chain, "previous_response_id": resume.previous_response_id}
    json.dumps([resume.input, resume.run_kwargs])  # plain data
    blocked.monitor.increase_budget(1.0)
    stub_provider.queue(HANDOFF_RUN[2])
    assert _run(how, resume.agent, resume.input, loop, **resume.run_kwargs) == "the sum is 3"
    assert _requests(stub_provider) == expected and team.tool_calls == 1


def test_a_run_blocked_before_its_first_answer_keeps_chaining_when_resumed(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory], agents={"Billing": {"budget_per_hour": BUDGET, "block_on_threshold": True}})
    with agentwatch.agent("Billing"), agentwatch.llm_call(model="gpt-4o-mini") as spent:  # Billing's budget is spent
        spent.set_usage(1000, 100)
    team = Team(stub_provider)
    with pytest.raises(CircuitBreakerException) as caught:
        Runner.run_sync(team.billing, "what is 1 + 2?", auto_previous_response_id=True)
    resume = caught.value.resume
    assert stub_provider.count() == 0 and resume.run_kwargs == {"auto_previous_response_id": True}
    caught.value.monitor.increase_budget(1.0)
    stub_provider.queue(HANDOFF_RUN[1], HANDOFF_RUN[2])
    assert Runner.run_sync(resume.agent, resume.input, **resume.run_kwargs).final_output == "the sum is 3"
    first, second = (request.json for request in stub_provider.requests)
    assert second["previous_response_id"] == "resp_stub1"  # the continued run chains its own answers
    assert [item.get("type") for item in second["input"]] == ["function_call_output"]


PROGRAM = textwrap.dedent("""
    import json, sys
    import agentwatch
    agentwatch.init(exporters=[], agents={"Billing": {"budget_per_hour": 0.0001, "block_on_threshold": True}})
    from agents import Agent, OpenAIResponsesModel, Runner, SQLiteSession, function_tool, set_trace_processors
    from openai import AsyncOpenAI
    set_trace_processors([])  # the default exporter posts to api.openai.com

    @function_tool
    def add(a: int, b: int) -> int:
        '''Add two numbers.'''
        print("tool ran", file=sys.stderr)
        return a + b

    step, base_url, database, how = sys.argv[1:5]
    model = OpenAIResponsesModel("gpt-4o-mini", AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0))
    billing = Agent(name="Billing", instructions="b", model=model, tools=[add])
    session = {"session": SQLiteSession("ann", database)} if how == "session" else {}
    if step == "block":
        chain = {} if session else {"auto_previous_response_id": True}
        try:
            Runner.run_sync(billing, "what is 1 + 2?", **session, **chain)
        except agentwatch.CircuitBreakerException as blocked:
            resume = blocked.resume
            print(json.dumps({"agent": resume.agent.name, "input": resume.input, "run_kwargs": resume.run_kwargs,
                              "session_id": resume.session_id}))
    else:
        saved = json.loads(sys.stdin.read())
        print(json.dumps(Runner.run_sync(billing, saved["input"], **session, **saved["run_kwargs"]).final_output))
""")


@pytest.mark.parametrize("how", ["session", "previous_response_id"])
def test_a_run_blocked_in_one_process_is_continued_in_another(stub_provider: Any, how: str, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTWATCH_", "OPENAI_"))}
    env["PYTHONPATH"] = str(ROOT)
    database = str(tmp_path / "sessions.db")

    def step(name: str, given: str = "") -> str:
        done = subprocess.run([sys.executable, "-c", PROGRAM, name, stub_provider.openai_base_url, database, how],
                              input=given, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        assert done.stderr.count("tool ran") == (name == "block")  # no finished turn runs again
        return done.stdout.splitlines()[-1]

    stub_provider.queue(EXPENSIVE_TOOL_CALL)
    saved = step("block")
    assert json.loads(saved)["agent"] == "Billing" and stub_provider.count() == 1
    stub_provider.queue(HANDOFF_RUN[2])
    assert json.loads(step("resume", saved)) == "the sum is 3"
    resumed = stub_provider.last.json
    types = [item.get("type") or item.get("role") for item in resumed["input"]]
    if how == "session":
        assert types == ["user", "function_call", "function_call_output"]
        assert resumed.get("previous_response_id") is None
    else:
        assert types == ["function_call_output"] and resumed["previous_response_id"] == "resp_stub1"



@pytest.mark.parametrize("how", ["run_sync", "run", "run_streamed"])
@pytest.mark.parametrize("parallel", [False, True], ids=["before", "beside"])
def test_a_block_inside_a_guardrails_run_resumes_the_run_the_caller_started(stub_provider: Any, memory: Any,
                                                                            how: str, parallel: bool,
                                                                            loop: asyncio.AbstractEventLoop) -> None:
    """Found 2026-12-07: a block in a run inside the caller's run (an input guardrail running a checker agent) carried
    the inner run's resume: ``e.resume.agent`` was the checker with the guardrail's input, so the documented recovery
    ran the checker alone and the caller's run was never continued. Each run the block passes out of now puts its own
    resume on it: the caller gets the one of the run it started. The guardrail runs before the agent's first model
    call, or beside it (the SDK's default: that call is under way, and cancelled, when the block comes)."""
    from agents import Agent, GuardrailFunctionOutput, input_guardrail

    agentwatch.init(exporters=[memory], agents={"Checker": {"budget_per_hour": BUDGET, "block_on_threshold": True}})
    team = Team(stub_provider)
    checker = Agent(name="Checker", instructions="Is it homework?", model=team.model("responses"))

    @input_guardrail(run_in_parallel=parallel)
    async def homework(context: Any, agent: Any, given: Any) -> GuardrailFunctionOutput:
        if parallel:  # beside: the agent's own request goes out first
            await stub_provider.until_received(1)
        checked = await Runner.run(checker, given, context=context.context)
        return GuardrailFunctionOutput(output_info=None, tripwire_triggered="homework" in checked.final_output)

    tutor = Agent(name="Tutor", instructions="Teach.", model=team.model("responses"), input_guardrails=[homework])
    stub_provider.queue(Reply(content="no", input_tokens=1000, output_tokens=100))
    assert _run(how, checker, "is 1+1 homework?", loop) == "no"  # the checker's budget is spent
    stub_provider.clear()
    stub_provider.queue(*[Reply(content="too late", delay=2.0)] * parallel)
    blocked = _blocked(how, tutor, "what is 3+3?", loop)
    assert (blocked.scope, blocked.scope_id) == ("agent", "checker")
    assert blocked.resume.agent is tutor
    assert blocked.resume.input == [{"content": "what is 3+3?", "role": "user"}] and blocked.resume.run_kwargs == {}
    blocked.monitor.increase_budget(1.0)
    stub_provider.clear()
    checker_says, tutor_says = Reply(content="no"), Reply(content="6")
    stub_provider.queue(*([tutor_says, checker_says] if parallel else [checker_says, tutor_says]))
    assert _run(how, blocked.resume.agent, blocked.resume.input, loop, **blocked.resume.run_kwargs) == "6"
    assert stub_provider.count() == 2  # the checker's and the tutor's requests
