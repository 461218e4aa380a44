"""An LLM call made inside a function tool belongs to the agent that called the tool: it is recorded under the
tool's span in the run's trace and counts against that agent's limits. Found 2026-12-05: such a call (the openai
SDK used in a tool, an agent used as a tool) was a trace of its own with no agent, and the calling agent's budget
never saw it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool
from openai import AsyncOpenAI

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import MODEL, by_id, llm_spans
from .test_blocking import _run

EXPENSIVE = Reply(content="a long summary", input_tokens=400_000, output_tokens=100_000)  # ~$0.12 for gpt-4o-mini
LIMITED = {"budget_per_hour": 0.05, "block_on_threshold": True}


def _writer(stub: Any) -> Agent:
    client = AsyncOpenAI(base_url=stub.openai_base_url, api_key="test-key", max_retries=0)

    @function_tool
    async def summarize(text: str) -> str:
        """Summarize a text."""
        answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])
        return answer.choices[0].message.content or ""

    return Agent(name="Writer", instructions="Summarize.", model=OpenAIResponsesModel(MODEL, client),
                 tools=[summarize])


def _calls_tool(name: str, **arguments: Any) -> Reply:
    return Reply(content="", tool_calls=[{"name": name, "arguments": arguments}])


def test_a_call_inside_a_tool_is_under_the_tool_and_its_agent(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    stub_provider.queue(_calls_tool("summarize", text="abc"), Reply(content="short"), Reply(content="done"))
    assert asyncio.run(Runner.run(_writer(stub_provider), "summarize abc")).final_output == "done"
    agentwatch.flush()
    spans = by_id(memory)
    inner = next(span for span in llm_spans(memory) if span["name"] == "openai.chat.completions")
    tool = spans[inner["parent_span_id"]]
    assert (tool["name"], tool["kind"]) == ("summarize", "tool")
    assert inner["agent_name"] == "Writer"
    assert inner["trace_id"] == tool["trace_id"] == spans[tool["parent_span_id"]]["trace_id"]


def test_a_call_inside_a_tool_counts_against_the_calling_agents_budget(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory], agents={"Writer": LIMITED})
    stub_provider.queue(_calls_tool("summarize", text="abc"), EXPENSIVE)
    with pytest.raises(CircuitBreakerException) as caught:
        asyncio.run(Runner.run(_writer(stub_provider), "summarize abc"))
    assert (caught.value.reason, caught.value.scope, caught.value.scope_id) == ("budget_per_hour", "agent", "writer")
    assert stub_provider.count() == 2  # the Writer's next model call, after the tool, was not sent


def test_an_agent_used_as_a_tool_counts_against_the_manager(stub_provider: Any, memory: Any) -> None:
    client = AsyncOpenAI(base_url=stub_provider.openai_base_url, api_key="test-key", max_retries=0)
    researcher = Agent(name="Researcher", instructions="Research.", model=OpenAIResponsesModel(MODEL, client))
    manager = Agent(name="Manager", instructions="Delegate.", model=OpenAIResponsesModel(MODEL, client),
                    tools=[researcher.as_tool(tool_name="research", tool_description="Research a topic.")])
    agentwatch.init(exporters=[memory], agents={"Manager": LIMITED})
    stub_provider.queue(_calls_tool("research", input="llm costs"), EXPENSIVE)
    with pytest.raises(CircuitBreakerException) as caught:
        asyncio.run(Runner.run(manager, "what do LLMs cost?"))
    assert (caught.value.reason, caught.value.scope_id) == ("budget_per_hour", "manager")
    assert stub_provider.count() == 2
    agentwatch.flush()
    research = next(span for span in llm_spans(memory) if span["agent_name"] == "Researcher")
    assert research["input_tokens"] == 400_000


def test_a_tool_of_an_agent_used_as_a_tool_is_named_after_that_agent(stub_provider: Any, memory: Any) -> None:
    """The Manager's scope is pushed while its tool runs the Researcher: the Researcher's own tool is still the
    Researcher's."""
    client = AsyncOpenAI(base_url=stub_provider.openai_base_url, api_key="test-key", max_retries=0)

    @function_tool
    def lookup(query: str) -> str:
        """Look a fact up."""
        return "a fact"

    researcher = Agent(name="Researcher", instructions="Research.", model=OpenAIResponsesModel(MODEL, client),
                       tools=[lookup])
    manager = Agent(name="Manager", instructions="Delegate.", model=OpenAIResponsesModel(MODEL, client),
                    tools=[researcher.as_tool(tool_name="research", tool_description="Research a topic.")])
    agentwatch.init(exporters=[memory])
    stub_provider.queue(_calls_tool("research", input="bees"), _calls_tool("lookup", query="bees"),
                        Reply(content="a fact"), Reply(content="done"))
    assert asyncio.run(Runner.run(manager, "tell me about bees")).final_output == "done"
    agentwatch.flush()
    tools = {span["name"]: span["agent_name"] for span in memory.spans if span["kind"] == "tool"}
    assert tools == {"research": "Manager", "lookup": "Researcher"}


def test_the_breakers_spans_of_an_agent_used_as_a_tool_name_that_agent(stub_provider: Any, memory: Any) -> None:
    """Found 2026-12-06: the Translator's block (scope ``translator``) recorded its breaker.triggered and alert spans
    with agent Triage, whose tool ran the Translator."""
    client = AsyncOpenAI(base_url=stub_provider.openai_base_url, api_key="test-key", max_retries=0)
    translator = Agent(name="Translator", instructions="Translate.", model=OpenAIResponsesModel(MODEL, client))
    triage = Agent(name="Triage", instructions="Route.", model=OpenAIResponsesModel(MODEL, client),
                   tools=[translator.as_tool(tool_name="translate", tool_description="Translate a text.")])
    agentwatch.init(exporters=[memory], agents={"Translator": LIMITED})
    stub_provider.queue(_calls_tool("translate", input="hola"), EXPENSIVE, _calls_tool("translate", input="adios"))
    with pytest.raises(CircuitBreakerException):  # the block inside the tool reaches the caller
        asyncio.run(Runner.run(triage, "translate"))
    agentwatch.flush()
    assert [(span["agent_name"], span["status"]) for span in llm_spans(memory)] == [
        ("Triage", "ok"), ("Translator", "ok"), ("Triage", "ok"), ("Translator", "blocked")]
    audit = [(span["kind"], span["agent_name"], span["attributes"].get("scope_id")) for span in memory.spans
             if span["kind"] in ("breaker", "alert")]
    assert audit == [("breaker", "Translator", "translator"), ("alert", "Translator", "translator")]


def test_the_breakers_spans_of_a_blocked_agent_name_it(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory], agents={"Writer": LIMITED})
    stub_provider.queue(_calls_tool("summarize", text="abc"), EXPENSIVE)
    with pytest.raises(CircuitBreakerException):
        asyncio.run(Runner.run(_writer(stub_provider), "summarize abc"))
    stub_provider.queue(Reply(content="never sent"))
    with pytest.raises(CircuitBreakerException):
        asyncio.run(Runner.run(_writer(stub_provider), "again"))
    agentwatch.flush()
    assert {span["agent_name"] for span in memory.spans if span["kind"] in ("breaker", "alert")} == {"Writer"}
    # ... and sit under the blocked agent's span, in the run's trace (2026-12-05: traces of their own).
    by_id = {span["span_id"]: span for span in memory.spans}
    for audit in (span for span in memory.spans if span["kind"] in ("breaker", "alert")):
        parent = by_id.get(audit["parent_span_id"])
        assert parent is not None and parent["kind"] == "agent" and parent["name"] == "Writer"
        assert audit["trace_id"] == parent["trace_id"]


def test_a_run_inside_the_program_s_own_scope_of_the_same_agent_is_limited(stub_provider: Any, memory: Any) -> None:
    """Found 2026-12-06: a run inside ``with agentwatch.agent("Writer")`` (the agent's own name) left a placeholder
    among the context's agent scopes at each model call: the limit check failed inside (an internal error, logged)
    and the call went out unchecked, past the agent's limit."""
    agentwatch.init(exporters=[memory], agents={"Writer": {"max_calls_per_minute": 1, "block_on_threshold": True}})
    writer = _writer(stub_provider)

    async def run_twice() -> None:
        with agentwatch.agent("Writer"):
            stub_provider.queue(Reply(content="done"))
            await Runner.run(writer, "summarize this")
            with pytest.raises(CircuitBreakerException) as caught:
                await Runner.run(writer, "and this")
            assert (caught.value.scope, caught.value.scope_id) == ("agent", "writer")

    asyncio.run(run_twice())
    assert stub_provider.count() == 1


@pytest.mark.parametrize("how", ["run_sync", "run", "run_streamed"])
@pytest.mark.parametrize("blocked_in", ["agent_as_tool", "tools_own_call"])
def test_a_block_inside_a_tool_reaches_the_caller_and_the_run_resumes(stub_provider: Any, memory: Any, how: str,
                                                                       blocked_in: str,
                                                                       loop: asyncio.AbstractEventLoop) -> None:
    """Found 2026-12-07: the SDK made a block inside a function tool (the Researcher used as a tool over its budget,
    the tool's own openai call refused) the tool's error text for the calling agent's model; the run went on paying
    for the Manager's requests and the program never saw the block. It now reaches the caller of the run."""
    client = AsyncOpenAI(base_url=stub_provider.openai_base_url, api_key="test-key", max_retries=0)
    researcher = Agent(name="Researcher", instructions="Research.", model=OpenAIResponsesModel(MODEL, client))

    @function_tool
    async def look_up(topic: str) -> str:
        """Look a topic up."""
        with agentwatch.agent("Search"):
            answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": topic}])
        return answer.choices[0].message.content or ""

    tool = (researcher.as_tool(tool_name="research", tool_description="Research a topic.")
            if blocked_in == "agent_as_tool" else look_up)
    manager = Agent(name="Manager", instructions="Delegate.", model=OpenAIResponsesModel(MODEL, client), tools=[tool])
    limited = "Researcher" if blocked_in == "agent_as_tool" else "Search"
    agentwatch.init(exporters=[memory], agents={limited: LIMITED})
    with agentwatch.agent(limited), agentwatch.llm_call(model=MODEL) as spent:  # its hour's budget is spent
        spent.set_usage(400_000, 100_000)
    asks = _calls_tool(tool.name, **({"input": "bees"} if blocked_in == "agent_as_tool" else {"topic": "bees"}))
    stub_provider.queue(asks, Reply(content="never sent"))
    with pytest.raises(CircuitBreakerException) as caught:
        _run(how, manager, "tell me about bees", loop)
    blocked = caught.value
    assert type(blocked) is CircuitBreakerException  # not the SDK's UserError, not a text for the model
    assert (blocked.reason, blocked.scope_id) == ("budget_per_hour", limited.lower())
    assert stub_provider.count() == 1  # the Manager's request that asked for the tool; nothing after the block
    agentwatch.flush()
    workflow = next(span for span in memory.spans if span["kind"] == "trace")
    assert workflow["status"] == "blocked"
    # ... and so do the tool and the agent that called it (2026-12-08: "error", with the SDK's "Error running tool").
    for kind, name in (("tool", tool.name), ("agent", "Manager")):
        span = next(span for span in memory.spans if (span["kind"], span["name"]) == (kind, name))
        assert (span["status"], span["attributes"]["breaker.reason"]) == ("blocked", "budget_per_hour"), span

    # The resume sends the turn that asked for the tool again, and the run finishes.
    blocked.monitor.increase_budget(1.0)
    stub_provider.clear()
    stub_provider.queue(asks, Reply(content="bees are insects"), Reply(content="Bees are insects."))
    assert blocked.resume.agent is manager  # type: ignore[attr-defined]
    resumed = _run(how, blocked.resume.agent, blocked.resume.input, loop)  # type: ignore[attr-defined]
    assert resumed == "Bees are insects." and stub_provider.count() == 3
