"""A block inside a LangGraph graph run by a process pool's worker reaches the caller as the block. Found 2026-12-06:
the graph's block class was a local class, so the worker could not send it back ("Can't pickle local object
'_graph_block_class.<locals>.GraphCircuitBreakerException'"), and the caller got an AttributeError with no reason,
figures or recovery."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PROGRAM = textwrap.dedent("""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from typing import TypedDict

    import agentwatch
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, StateGraph


    class State(TypedDict):
        n: int


    def run_graph(_: int) -> dict:
        agentwatch.init(exporters=[], budget_per_hour=0.000001, block_on_threshold=True)
        usage = {"input_tokens": 1000, "output_tokens": 500, "total_tokens": 1500}
        reply = AIMessage(content="x", usage_metadata=usage, response_metadata={"model_name": "gpt-4o"})
        model = GenericFakeChatModel(messages=iter([reply] * 5),
                                     metadata={"ls_model_name": "gpt-4o", "ls_provider": "openai"})

        def node(state: State) -> State:
            model.invoke("hi")
            model.invoke("hi")  # over the budget: blocked
            return {"n": 1}

        graph = StateGraph(State)
        graph.add_node("work", node)
        graph.add_edge(START, "work")
        graph.add_edge("work", END)
        return graph.compile().invoke({"n": 0})


    if __name__ == "__main__":
        for method in ("spawn", "fork"):
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method)) as pool:
                try:
                    pool.submit(run_graph, 0).result()
                    print(method, "not blocked")
                except agentwatch.CircuitBreakerException as error:
                    print(method, "blocked", type(error).__name__, error.reason, error.scope, error.monitor)
""")


def test_a_block_in_a_graph_in_a_worker_process_reaches_the_caller(tmp_path: Path) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "spawn blocked GraphCircuitBreakerException budget_per_hour global None",
        "fork blocked GraphCircuitBreakerException budget_per_hour global None",
    ], done.stdout + done.stderr
