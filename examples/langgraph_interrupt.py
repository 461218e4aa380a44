"""Blocking mode "interrupt": the graph pauses for a human, who approves a top-up with Command(resume=...).

Run: python examples/langgraph_interrupt.py   (no API key: scripted models stand in for gpt-4o)
"""

from __future__ import annotations

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from research_graph import build_workflow  # examples/research_graph.py: the graph, on scripted models

import agentwatch
from agentwatch.plugins.langchain import AgentWatchHandler

agentwatch.init(exporters=["console"], agents={"researcher": {"budget_per_hour": 0.12, "block_on_threshold": True}})

graph = build_workflow(InMemorySaver())
config = {"configurable": {"thread_id": "example-interrupt"},
          "callbacks": [AgentWatchHandler(on_budget="interrupt")]}
state = graph.invoke({"topic": "EU AI Act", "notes": []}, config)
while "__interrupt__" in state:
    request = state["__interrupt__"][0].value
    print(f"paused for approval: {request['scope_id']} {request['reason']} "
          f"(${request['current']:.3f} of ${request['threshold']:.3f})")
    state = graph.invoke(Command(resume={"increase_budget": 0.10}), config)  # a human said yes
print("report:", state["report"])
agentwatch.shutdown()
