"""Span tree and figures of a real crew run: kickoff → task → agent → LLM call / tool."""

from __future__ import annotations

from typing import Any

import pytest

import agentwatch

from .conftest import MODEL, make_crew, settle


def _by_kind(spans: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [span for span in spans if span["kind"] == kind]


def _one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [span for span in spans if span["name"] == name]
    assert len(found) == 1, (name, [span["name"] for span in spans])
    return found[0]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streaming"])
def test_crew_run_becomes_a_span_tree_with_figures(crew_stub: Any, memory: Any, stream: bool) -> None:
    agentwatch.init(exporters=[memory], capture_messages=True)
    result = make_crew(crew_stub.openai_base_url, stream=stream).kickoff()
    settle()
    assert "bees" in result.raw
    spans = [span for span in memory.spans if span["attributes"].get("framework") == "crewai"]
    crew = _one(spans, "crew:crew")
    research, write = _one(spans, "task:Research bees"), _one(spans, "task:Write about bees")
    researcher, writer = _one(spans, "agent:Researcher"), _one(spans, "agent:Writer")
    tool = _one(spans, "tool:lookup")
    assert len(spans) == 9  # crew, 2 tasks, 2 agents, 1 tool, 3 LLM calls
    llms = sorted(_by_kind(spans, "llm"), key=lambda span: span["start_time_unix_nano"])

    assert crew["parent_span_id"] is None
    assert {span["trace_id"] for span in spans} == {crew["trace_id"]}
    assert research["parent_span_id"] == write["parent_span_id"] == crew["span_id"]
    assert researcher["parent_span_id"] == research["span_id"]
    assert writer["parent_span_id"] == write["span_id"]
    assert tool["parent_span_id"] == researcher["span_id"]
    assert [llm["parent_span_id"] for llm in llms] == [researcher["span_id"]] * 2 + [writer["span_id"]]

    # One span per request, with the stub's figures and a cost priced by the core.
    assert len(llms) == crew_stub.count("/chat/completions") == 3
    assert [(llm["input_tokens"], llm["output_tokens"], llm["cached_input_tokens"]) for llm in llms] == [
        (100, 20, 40), (200, 30, 0), (300, 50, 0)]
    for llm in llms:
        assert llm["model"] == MODEL and llm["provider"] == "openai" and llm["status"] == "ok"
        assert llm["cost_usd"] > 0 and llm["attributes"]["latency_ms"] > 0
        assert llm["attributes"]["crewai.call_id"]
    assert [llm["agent_name"] for llm in llms] == ["Researcher", "Researcher", "Writer"]
    assert researcher["agent_name"] == "Researcher" and writer["agent_name"] == "Writer"
    assert llms[0]["agent_id"] == llms[1]["agent_id"] == researcher["agent_id"] != writer["agent_id"]
    assert llms[2]["output"] == "A short text about bees."
    if stream:
        assert all(llm["attributes"]["time_to_first_token_ms"] >= 0 for llm in llms[1:])
        assert all(request.json["stream"] for request in crew_stub.requests)
    # An agent's executor runs the hook before CrewAI announces the call: the announcement still says it streams.
    assert [llm["attributes"].get("stream", False) for llm in llms] == [stream] * 3

    assert tool["attributes"]["tool.name"] == "lookup"
    assert "bees" in tool["attributes"]["tool.input"] and "they dance" in tool["output"]
    for span in (crew, research, write, researcher, writer, tool):
        assert span["status"] == "ok" and span["end_time_unix_nano"] >= span["start_time_unix_nano"]


def _solo(base_url: str) -> Any:
    """A lone agent (``Agent.kickoff``, CrewAI's lite-agent events) with a ``lookup`` tool."""
    from crewai import LLM, Agent
    from crewai.tools import tool

    @tool("lookup")
    def lookup(query: str) -> str:
        """Look up a fact about a subject."""
        return f"fact about {query}: they hoot"

    llm = LLM(model=f"openai/{MODEL}", base_url=base_url, api_key="test-key", max_retries=0)
    return Agent(role="Solo", goal="Answer", backstory="Alone.", llm=llm, tools=[lookup], verbose=False)


def test_a_lone_agent_kickoff_is_an_agent_span_over_its_calls_and_tools_in_its_agent_scope(stub_provider: Any,
                                                                                           memory: Any) -> None:
    from tests.stubs.provider_server import Reply

    from .conftest import tool_call

    agentwatch.init(exporters=[memory], agents={"Solo": {"budget_per_hour": 0.00005, "block_on_threshold": True}})
    stub_provider.queue(tool_call("owls"), Reply(content="Owls hoot.", input_tokens=200, output_tokens=30))
    assert _solo(stub_provider.openai_base_url).kickoff("Tell me about owls").raw == "Owls hoot."
    settle()
    spans = [span for span in memory.spans if span["attributes"].get("framework") == "crewai"]
    agent = _one(spans, "agent:Solo")
    assert agent["parent_span_id"] is None and agent["status"] == "ok" and agent["agent_name"] == "Solo"
    children = sorted((span for span in spans if span is not agent), key=lambda span: span["start_time_unix_nano"])
    assert [span["kind"] for span in children] == ["llm", "tool", "llm"]
    assert all(span["parent_span_id"] == agent["span_id"] for span in children)
    assert {span["trace_id"] for span in spans} == {agent["trace_id"]}
    assert all(span["agent_name"] == "Solo" for span in children)

    # The run cost the agent $0.000072, over its own limit: its next kickoff is blocked before any request.
    stub_provider.clear()
    with pytest.raises(agentwatch.CircuitBreakerException) as caught:
        _solo(stub_provider.openai_base_url).kickoff("And about bats?")
    settle()
    assert stub_provider.count() == 0 and (caught.value.scope, caught.value.scope_id) == ("agent", "solo")
    blocked = [span for span in memory.spans if span["attributes"].get("framework") == "crewai"][len(spans):]
    assert sorted((span["kind"], span["status"]) for span in blocked) == [("agent", "blocked"), ("llm", "blocked")]


def test_a_litellm_routed_llm_names_its_model_as_the_native_provider_does(stub_provider: Any, memory: Any) -> None:
    """``LLM(model="openai/gpt-4o-mini", is_litellm=True)`` and the native ``LLM(model="openai/gpt-4o-mini")`` call
    the same model: one name for it, or the dashboard's spend by model splits it in two."""
    from crewai import LLM

    from tests.stubs.provider_server import Reply

    agentwatch.init(exporters=[memory])
    for is_litellm in (True, False):
        stub_provider.queue(Reply(content="Bees dance.", input_tokens=100, output_tokens=20))
        LLM(model=f"openai/{MODEL}", is_litellm=is_litellm, base_url=stub_provider.openai_base_url, api_key="k",
            max_retries=0).call("Tell me about bees")
    settle()
    llms = _by_kind(memory.spans, "llm")
    assert [(span["name"], span["model"], span["provider"]) for span in llms] == [
        ("LLM", MODEL, "openai"), ("OpenAICompletion", MODEL, "openai")]
    assert llms[0]["cost_usd"] == llms[1]["cost_usd"] > 0
