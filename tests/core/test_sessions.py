"""``agentwatch.session()`` and LangGraph threads put ``session.id`` on every span they group."""

from __future__ import annotations

import asyncio

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

import agentwatch
from agentwatch._context import current_session_id


def _sessions(memory: agentwatch.InMemoryExporter) -> dict[str, str | None]:
    return {span["name"]: span["attributes"].get("session.id") for span in memory.spans if span["kind"] != "process"}


def test_every_span_inside_a_session_carries_its_id(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    with agentwatch.session("support-chat", session_id="conv-42") as session:
        assert session.id == "conv-42" and current_session_id() == "conv-42"
        with agentwatch.trace("turn-1"), agentwatch.llm_call("chat", model="gpt-4o-mini") as call:
            call.set_usage(10, 5)
        with agentwatch.session("inner") as inner:  # the innermost session names the spans inside it
            agentwatch.event("note")
    with agentwatch.trace("outside"):
        pass
    agentwatch.flush()
    assert current_session_id() is None
    assert inner.id == "inner"
    assert _sessions(memory) == {"support-chat": "conv-42", "turn-1": "conv-42", "chat": "conv-42", "inner": "inner",
                                 "note": "inner", "outside": None}


def test_each_trace_in_a_session_is_a_trace_of_its_own(memory: agentwatch.InMemoryExporter) -> None:
    """Sessions group traces: a chat app's session() around the conversation and a trace() per turn gives one trace
    per turn, each with the session's id. Found 2026-12-05: the turns were branches of one trace under the session
    span (the collector's session view read one trace; a blocked run and its retry, one trace with no resume)."""
    agentwatch.init(exporters=[memory])
    with agentwatch.session("conv-42") as session:
        for turn in range(3):
            with agentwatch.trace(f"turn-{turn}"), agentwatch.llm_call("chat", model="gpt-4o-mini") as call:
                call.set_usage(10, 5)
        with agentwatch.agent("Helper"), agentwatch.llm_call("aside", model="gpt-4o-mini"):
            pass  # not in a trace(): in the session's own tree, as before
    with agentwatch.trace("outer"), agentwatch.session("inner"), agentwatch.trace("nested"):
        pass  # a session inside a trace is a part of that trace: a trace() in it stays in it
    agentwatch.flush()
    spans = {span["name"]: span for span in memory.spans if span["kind"] != "process"}
    turns = [spans[f"turn-{turn}"] for turn in range(3)]
    assert len({turn["trace_id"] for turn in turns} | {spans["conv-42"]["trace_id"]}) == 4
    assert all(turn["parent_span_id"] is None and turn["attributes"]["session.id"] == session.id for turn in turns)
    assert spans["Helper"]["parent_span_id"] == spans["conv-42"]["span_id"]
    assert spans["nested"]["trace_id"] == spans["outer"]["trace_id"] == spans["inner"]["trace_id"]
    assert spans["nested"]["parent_span_id"] == spans["inner"]["span_id"]


def test_a_session_entered_again_keeps_its_id_and_an_unnamed_one_gets_a_new_id(
        memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    for _ in range(2):
        with agentwatch.session("nightly"):
            agentwatch.event("run")
    first, second = agentwatch.session(), agentwatch.session()
    assert first.id != second.id and len(first.id) == 32

    @agentwatch.session()
    async def handle(n: int) -> str | None:
        agentwatch.event(f"handled-{n}")
        return current_session_id()

    async def both() -> list[str | None]:
        return list(await asyncio.gather(handle(1), handle(2)))

    ids = asyncio.run(both())
    agentwatch.flush()
    assert [span["attributes"]["session.id"] for span in memory.spans if span["name"] == "run"] == ["nightly"] * 2
    assert ids[0] != ids[1] and None not in ids  # each decorated call is a session of its own
    assert {span["attributes"]["session.id"] for span in memory.spans if span["name"].startswith("handled-")} == \
        set(ids)


class _State(TypedDict):
    text: str


def test_a_langgraph_thread_is_a_session_across_invocations(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    model = FakeListChatModel(responses=["one", "two"])
    graph = StateGraph(_State)
    graph.add_node("answer", lambda state: {"text": str(model.invoke(state["text"]).content)})
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    app = graph.compile(checkpointer=InMemorySaver())
    app.invoke({"text": "a"}, {"configurable": {"thread_id": "thread-1"}})
    app.invoke({"text": "b"}, {"configurable": {"thread_id": "thread-1"}})
    with agentwatch.session("explicit"):  # an enclosing session wins over the thread
        app.invoke({"text": "c"}, {"configurable": {"thread_id": "thread-2"}})
    agentwatch.flush()
    graph_spans = [span for span in memory.spans if span["kind"] in ("graph", "node", "llm")]
    by_trace: dict[str, set[str]] = {}
    for span in graph_spans:
        by_trace.setdefault(span["trace_id"], set()).add(span["attributes"]["session.id"])
    assert sorted(tuple(ids) for ids in by_trace.values()) == [("explicit",), ("thread-1",), ("thread-1",)]
