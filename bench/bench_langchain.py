"""LangChain/LangGraph handler overhead: AgentWatch vs Langfuse vs OpenInference, same machine, same run.

Each mode runs in its own subprocess (the instrumentations patch LangChain globally), timing a fake
chat-model ``invoke`` and a 3-node LangGraph run; the table shows the added time per call and per graph
step over the uninstrumented baseline.

    python bench/bench_langchain.py                 # AgentWatch only (project venv)
    /work/bench-venv/bin/python bench/bench_langchain.py   # with langfuse + openinference installed
"""

from __future__ import annotations

import json
import operator
import os
import statistics
import subprocess
import sys
import time
from typing import Annotated, Any, TypedDict

MODES = ("baseline", "agentwatch", "langfuse", "openinference")
#: Every pass runs each mode once, in turn, so a change in machine load hits all modes alike.
PASSES = 5
ROUNDS = 3
CALLS = 400


class State(TypedDict):
    log: Annotated[list[str], operator.add]


def _workload() -> tuple[Any, Any]:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langgraph.graph import END, START, StateGraph

    class FakeModel(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "bench-fake"

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
            usage = {"input_tokens": 1000, "output_tokens": 200, "total_tokens": 1200}
            message = AIMessage(content="ok", usage_metadata=usage, response_metadata={"model_name": "gpt-4o"})
            return ChatResult(generations=[ChatGeneration(message=message)])

    model = FakeModel()

    def node(name: str) -> Any:
        return lambda state: {"log": [name + str(model.invoke(name).content)]}

    graph = StateGraph(State)
    for name in ("a", "b", "c"):
        graph.add_node(name, node(name))
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return model, graph.compile()


def _setup(mode: str) -> list[Any]:
    """Instrument like a user would; returns callbacks to pass (empty for zero-config modes)."""
    if mode == "agentwatch":
        import agentwatch

        agentwatch.init(exporters=[], max_queue_size=100_000)
        return []
    if mode == "langfuse":
        os.environ.update(LANGFUSE_PUBLIC_KEY="pk-bench", LANGFUSE_SECRET_KEY="sk-bench",
                          LANGFUSE_HOST="http://127.0.0.1:9", LANGFUSE_BASE_URL="http://127.0.0.1:9")
        from langfuse.langchain import CallbackHandler

        return [CallbackHandler()]
    if mode == "openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter(), max_queue_size=100_000))
        LangChainInstrumentor().instrument(tracer_provider=provider)
    return []


def _child(mode: str) -> None:
    callbacks = _setup(mode)
    model, graph = _workload()
    config = {"callbacks": callbacks} if callbacks else {}
    for _ in range(50):  # warm up imports, caches and price lookups
        model.invoke("hi", config=config)
        graph.invoke({"log": []}, config=config)
    invoke, step = [], []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(CALLS):
            model.invoke("hi", config=config)
        invoke.append((time.perf_counter() - start) / CALLS * 1e6)
        start = time.perf_counter()
        for _ in range(CALLS // 4):
            graph.invoke({"log": []}, config=config)
        step.append((time.perf_counter() - start) / (CALLS // 4) / 3 * 1e6)
    print(json.dumps({"mode": mode, "invoke_us": statistics.median(invoke), "step_us": statistics.median(step)}))


def main() -> None:
    samples: dict[str, list[dict[str, float]]] = {}
    unavailable: set[str] = set()
    for _ in range(PASSES):
        for mode in MODES:
            if mode in unavailable:
                continue
            run = subprocess.run([sys.executable, __file__, "--child", mode], capture_output=True, text=True)
            if run.returncode != 0:
                unavailable.add(mode)
                print(f"{mode:>14}: not available ({run.stderr.strip().splitlines()[-1] if run.stderr else 'failed'})")
                continue
            samples.setdefault(mode, []).append(json.loads(run.stdout.strip().splitlines()[-1]))
    results = {mode: {key: statistics.median(row[key] for row in rows) for key in ("invoke_us", "step_us")}
               for mode, rows in samples.items()}
    base = results["baseline"]
    print(f"{'mode':>14} {'invoke µs':>10} {'added':>8} {'graph step µs':>14} {'added':>8}")
    for mode, row in results.items():
        print(f"{mode:>14} {row['invoke_us']:>10.1f} {row['invoke_us'] - base['invoke_us']:>8.1f} "
              f"{row['step_us']:>14.1f} {row['step_us'] - base['step_us']:>8.1f}")
    others = [results[m] for m in ("langfuse", "openinference") if m in results]
    if "agentwatch" in results and others:
        ours = results["agentwatch"]
        lighter_invoke = min(r["invoke_us"] - base["invoke_us"] for r in others)
        lighter_step = min(r["step_us"] - base["step_us"] for r in others)
        print(f"AgentWatch added / lighter competitor added: invoke "
              f"{(ours['invoke_us'] - base['invoke_us']) / lighter_invoke:.2f}, graph step "
              f"{(ours['step_us'] - base['step_us']) / lighter_step:.2f}   [goal ≤ 0.33]")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(sys.argv[2])
    else:
        main()
