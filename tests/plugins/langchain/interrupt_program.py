"""A user's program for the cross-process interrupt test: ``pause`` runs the graph until AgentWatch pauses it
for a human; ``resume`` (a new process, same SqliteSaver file) answers with a top-up. Prints one JSON line."""

from __future__ import annotations

import json
import sqlite3
import sys
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

import agentwatch
from agentwatch.plugins.langchain import AgentWatchHandler
from tests.plugins.langchain.fakes import gpt4o_cost
from tests.plugins.langchain.graphs import Workflow


def main(step: str, database: str) -> None:
    memory = agentwatch.InMemoryExporter()
    agentwatch.init(exporters=[memory], budget_per_hour=1.5 * gpt4o_cost(), block_on_threshold=True)
    workflow = Workflow()
    connection = sqlite3.connect(database, check_same_thread=False)
    graph = workflow.build(SqliteSaver(connection))
    config = {"configurable": {"thread_id": "approval"}, "callbacks": [AgentWatchHandler(on_budget="interrupt")]}
    outcome: dict[str, Any]
    if step == "pause":
        result = graph.invoke({"log": []}, config)
        outcome = {"interrupt": [request.value for request in result.get("__interrupt__", [])]}
    else:
        outcome = {"final": graph.invoke(Command(resume={"increase_budget": 5.0}), config)}
    agentwatch.flush()
    outcome.update(
        runs=workflow.runs, model_calls={name: model.calls for name, model in workflow.models.items()},
        next=list(graph.get_state(config).next),
        blocked=[span["name"] for span in memory.by_kind("llm") if span["status"] == "blocked"],
        budget=agentwatch.get_state()["monitors"]["global"]["limits"]["budget_per_hour"])
    connection.close()
    print(json.dumps(outcome))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
