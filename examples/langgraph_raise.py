"""Blocking mode "raise": the breaker stops the next node; top up and resume from the checkpoint.

Run: python examples/langgraph_raise.py   (no API key: scripted models stand in for gpt-4o)
"""

from __future__ import annotations

from langgraph.checkpoint.memory import InMemorySaver
from research_graph import build_workflow  # examples/research_graph.py: the graph, on scripted models

import agentwatch
from agentwatch import CircuitBreakerException

agentwatch.init(exporters=["console"], agents={"researcher": {"budget_per_hour": 0.12, "block_on_threshold": True}})

graph = build_workflow(InMemorySaver())
config = {"configurable": {"thread_id": "example-raise"}}
try:
    graph.invoke({"topic": "EU AI Act", "notes": []}, config)
except CircuitBreakerException as blocked:
    print(f"blocked: {blocked.scope_id} {blocked.reason} (${blocked.current:.3f} of ${blocked.threshold:.3f}); "
          f"waiting node: {graph.get_state(config).next}")
    blocked.monitor.increase_budget(0.10)       # or .pause(60) / .reset_windows()
    result = graph.invoke(None, config)         # finished nodes do not run again
    print("resumed; report:", result["report"])
agentwatch.shutdown()
