"""LlamaIndex overhead: time AgentWatch adds per LLM call, per streamed call and per RAG query.

Rounds alternate in one process between no AgentWatch and a plain ``init()`` with the collector down (the
default HTTP exporter spooling) and up (``agentwatch serve`` in its own process); ``shutdown()`` takes the
instrumentation out again between rounds. Each round is timed in process CPU time (every thread, the export
worker's included) and wall time; medians are compared. The model is a local
``CustomLLM`` that reports OpenAI-style usage, so what is measured is LlamaIndex plus AgentWatch, no I/O:
``complete`` (one LLM event), ``chat`` (``CustomLLM.chat`` runs ``complete``: two nested events, one
call), ``stream_complete`` (20 chunks), a query over a 20-document vector index (a query span,
retriever, query embedding, synthesizer, LLM call) and a two-agent ``AgentWorkflow`` run with a handoff
(``MockFunctionCallingLLM``: tool call, handoff, answer; 14 workflow steps, each in its agent's scope).
A profile summary (cProfile of AgentWatch's functions per call) follows.

    python bench/bench_llamaindex.py [--rounds 5] [--calls 400] [--no-collector]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _framework_overhead import collector, init_settings, interleaved_rounds, median_table, profile_summary  # noqa: E402

CALLS = 400
CHUNKS = 20
TARGET_US = 50.0
LABELS = {"complete": "complete()", "chat": "chat()", "stream": f"stream_complete(), {CHUNKS} chunks",
          "query": "RAG query (1 LLM call)", "workflow": "AgentWorkflow run (3 LLM calls)"}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per mode")
    parser.add_argument("--calls", type=int, default=CALLS, help="LLM calls per round (queries: a quarter)")
    parser.add_argument("--no-collector", action="store_true", help="skip the collector-up mode")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile summary")
    args = parser.parse_args()
    logging.getLogger("agentwatch").setLevel(logging.ERROR)  # "collector not reachable", once per init()

    import agentwatch

    operations = _workload()
    counts = {"query": max(args.calls // 4, 5), "workflow": max(args.calls // 20, 3)}
    with collector(not args.no_collector) as collector_url:
        settings = init_settings(collector_url)
        label_counts = {LABELS[name]: count for name, count in counts.items()}
        modes, samples = interleaved_rounds({LABELS[name]: operations[name] for name in LABELS}, settings, args.rounds,
                                            lambda label: label_counts.get(label, args.calls), 5)
        profiles = []
        if not args.no_profile:
            agentwatch.init(**settings["down"])
            try:
                for name in ("chat", "query"):
                    profiles.append(profile_summary(operations[name], 1000 if name == "chat" else 200,
                                                    f"down, {LABELS[name]}"))
            finally:
                agentwatch.shutdown()
    print(median_table(f"LlamaIndex, {args.rounds} interleaved rounds ({args.calls} LLM calls, "
                       f"{counts['query']} queries, {counts['workflow']} workflows); medians; a local LLM, no I/O",
                       samples, modes, {LABELS["chat"]: TARGET_US, LABELS["complete"]: TARGET_US}))
    for profile in profiles:
        print(profile)


if __name__ == "__main__":
    main()
