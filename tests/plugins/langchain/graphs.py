"""Small LangGraph workflows for the tests: a chain of nodes that each call a model, and a fan-out."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from tests.plugins.langchain.fakes import UsageChatModel


class State(TypedDict):
    log: Annotated[list[str], operator.add]


class Workflow:
    """planner → researcher → writer; each node calls its own model once and logs its name."""

    def __init__(self, nodes: tuple[str, ...] = ("planner", "researcher", "writer"), **node_options: Any) -> None:
        self.models = {name: UsageChatModel(reply=f"{name} done") for name in nodes}
        self.runs: list[str] = []
        self.nodes = nodes
        self.node_options = node_options

    def _node(self, name: str) -> Any:
        def run(state: State) -> dict[str, list[str]]:
            self.runs.append(name)
            reply = self.models[name].invoke(f"{name}: {state['log']}")
            return {"log": [f"{name}:{reply.content}"]}

        async def arun(state: State) -> dict[str, list[str]]:
            self.runs.append(name)
            reply = await self.models[name].ainvoke(f"{name}: {state['log']}")
            return {"log": [f"{name}:{reply.content}"]}

        return run, arun

    def build(self, checkpointer: Any, *, use_async: bool = False) -> Any:
        graph = StateGraph(State)
        previous = START
        for name in self.nodes:
            sync_fn, async_fn = self._node(name)
            graph.add_node(name, async_fn if use_async else sync_fn, **self.node_options)
            graph.add_edge(previous, name)
            previous = name
        graph.add_edge(previous, END)
        return graph.compile(checkpointer=checkpointer)


class FanOut:
    """start → (left, right in parallel) → join."""

    def __init__(self) -> None:
        self.models = {name: UsageChatModel(reply=name) for name in ("start", "left", "right", "join")}
        self.runs: list[str] = []

    def build(self, checkpointer: Any) -> Any:
        graph = StateGraph(State)

        def make(name: str) -> Any:
            def run(state: State) -> dict[str, list[str]]:
                self.runs.append(name)
                self.models[name].invoke(name)
                return {"log": [name]}
            return run

        for name in self.models:
            graph.add_node(name, make(name))
        graph.add_edge(START, "start")
        graph.add_edge("start", "left")
        graph.add_edge("start", "right")
        graph.add_edge(["left", "right"], "join")
        graph.add_edge("join", END)
        return graph.compile(checkpointer=checkpointer)


__all__ = ["State", "Workflow", "FanOut", "RetryPolicy"]
