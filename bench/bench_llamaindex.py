"""LlamaIndex overhead: time AgentWatch adds per LLM call, per streamed call and per RAG query.

Each mode runs in its own subprocess (the instrumentation is process-global); the best round of each
is reported (the least disturbed by other load). ``agentwatch, plugin off`` is ``init()`` with the
LlamaIndex plugin disabled: the rest is this plugin's share. The model is a local
``CustomLLM`` that reports OpenAI-style usage, so what is measured is LlamaIndex plus AgentWatch, no I/O:
``complete`` (one LLM event), ``chat`` (``CustomLLM.chat`` runs ``complete``: two nested events, one
call), ``stream_complete`` (20 chunks), a query over a 20-document vector index (a query span,
retriever, query embedding, synthesizer, LLM call) and a two-agent ``AgentWorkflow`` run with a handoff
(``MockFunctionCallingLLM``: tool call, handoff, answer; 14 workflow steps, each in its agent's scope).

    python bench/bench_llamaindex.py
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

MODES = ("baseline", "plugin_off", "agentwatch")
ROUNDS = 7
CALLS = 400
QUERIES = 100
WORKFLOWS = 20
CHUNKS = 20


def _workload() -> dict[str, Any]:
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import ChatMessage, CustomLLM
    from llama_index.core.llms.callbacks import llm_completion_callback

    usage = {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 1000, "completion_tokens": 200}}

    class BenchLLM(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="gpt-4o-mini")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            return CompletionResponse(text="ok", raw=usage)

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            def chunks() -> Any:
                text = ""
                for index in range(CHUNKS):
                    text += "x"
                    yield CompletionResponse(text=text, delta="x", raw=usage if index == CHUNKS - 1 else None)

            return chunks()

    llm = BenchLLM()
    workflow = _agent_workflow()
    messages = [ChatMessage(role="user", content="hi")]
    documents = [Document(text=f"document {number} about topic {number % 7}") for number in range(20)]
    index = VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=16))
    engine = index.as_query_engine(llm=llm, similarity_top_k=2)
    return {
        "complete": lambda: llm.complete("hi"),
        "chat": lambda: llm.chat(messages),
        "stream": lambda: sum(1 for _ in llm.stream_complete("hi")),
        "query": lambda: engine.query("topic 3"),
        "workflow": lambda: asyncio.run(_run(workflow)),
    }


async def _run(workflow: Any) -> str:
    return str(await workflow.run(user_msg="add 1 and 2"))


def _agent_workflow() -> Any:
    from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent
    from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
    from llama_index.core.llms.mock import MockFunctionCallingLLM

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    def researcher_turn(messages: Any, **kwargs: Any) -> ChatMessage:
        if messages[-1].role == MessageRole.TOOL and messages[-1].content == "3":
            return ChatMessage(role="assistant", blocks=[ToolCallBlock(
                tool_call_id="h", tool_name="handoff", tool_kwargs={"to_agent": "writer", "reason": "write"})])
        return ChatMessage(role="assistant", blocks=[
            ToolCallBlock(tool_call_id="a", tool_name="add", tool_kwargs={"a": 1, "b": 2})])

    def writer_turn(messages: Any, **kwargs: Any) -> ChatMessage:
        return ChatMessage(role="assistant", content="the answer is 3")

    def agent(name: str, turn: Any, **kwargs: Any) -> Any:
        llm = MockFunctionCallingLLM(response_generator=turn, is_chat_model=True)
        return FunctionAgent(name=name, description=name, llm=llm, streaming=False, **kwargs)

    return AgentWorkflow(agents=[agent("researcher", researcher_turn, tools=[add], can_handoff_to=["writer"]),
                                 agent("writer", writer_turn)], root_agent="researcher")


def _child(mode: str) -> None:
    if mode != "baseline":
        import agentwatch

        disabled = ["llamaindex"] if mode == "plugin_off" else []
        agentwatch.init(exporters=[], max_queue_size=100_000, disabled_plugins=disabled)
    operations = _workload()
    for operation in operations.values():  # warm up imports, caches and price lookups
        for _ in range(10):
            operation()
    results: dict[str, float] = {}
    for name, operation in operations.items():
        count = {"query": QUERIES, "workflow": WORKFLOWS}.get(name, CALLS)
        rounds = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for _ in range(count):
                operation()
            rounds.append((time.perf_counter() - start) / count * 1e6)
        results[name] = min(rounds)
    print(json.dumps({"mode": mode, **results}))


def main() -> None:
    results: dict[str, dict[str, float]] = {}
    for mode in MODES:
        run = subprocess.run([sys.executable, __file__, "--child", mode], capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{run.stderr[-3000:]}")
        results[mode] = json.loads(run.stdout.strip().splitlines()[-1])
    base, off, ours = results["baseline"], results["plugin_off"], results["agentwatch"]
    print(f"{'operation':>16} {'baseline µs':>12} {'agentwatch µs':>14} {'added µs':>9} "
          f"{'of it plugin µs':>16}")
    for name, label in (("complete", "complete()"), ("chat", "chat()"), ("stream", f"stream {CHUNKS} chunks"),
                        ("query", "RAG query"), ("workflow", "AgentWorkflow run")):
        print(f"{label:>16} {base[name]:>12.1f} {ours[name]:>14.1f} {ours[name] - base[name]:>9.1f} "
              f"{ours[name] - off[name]:>16.1f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(sys.argv[2])
    else:
        main()
