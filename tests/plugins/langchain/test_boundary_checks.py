"""A node's start checks the limits as a boundary: a limit over stops it, a calls-per-minute limit merely reached
does not (the node may make no call)."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

import agentwatch
from tests.plugins.langchain.fakes import UsageChatModel
from tests.plugins.langchain.graphs import State


def test_a_node_making_no_call_runs_after_the_calls_a_minute_allows() -> None:
    """Found 2026-12-06: with max_calls_per_minute=2, a graph a (one call) -> b (one call) -> c (no call) was stopped
    at c's start, and the breaker was left OPEN by a check."""
    agentwatch.init(exporters=[], max_calls_per_minute=2, block_on_threshold=True)
    model = UsageChatModel(reply="done")

    def calls_the_model(state: State) -> dict[str, list[str]]:
        return {"log": [str(model.invoke("hi").content)]}

    def formats(state: State) -> dict[str, list[str]]:
        return {"log": ["formatted"]}

    graph = StateGraph(State)
    graph.add_node("a", calls_the_model)
    graph.add_node("b", calls_the_model)
    graph.add_node("c", formats)
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    assert graph.compile().invoke({"log": []}) == {"log": ["done", "done", "formatted"]}
    assert model.calls == 2
    assert agentwatch.get_client().monitor.snapshot()["state"] == "CLOSED"
