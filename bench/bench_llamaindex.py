"""LlamaIndex overhead: time AgentWatch adds per LLM call, per streamed call and per RAG query.

Each mode runs in its own subprocess (the instrumentation is process-global); the best round of each
is reported (the least disturbed by other load). ``agentwatch, plugin off`` is ``init()`` with the
LlamaIndex plugin disabled: the rest is this plugin's share. The model is a local
``CustomLLM`` that reports OpenAI-style usage, so what is measured is LlamaIndex plus AgentWatch, no I/O:
``complete`` (one LLM event), ``chat`` (``CustomLLM.chat`` runs ``complete``: two nested events, one
call), ``stream_complete`` (20 chunks) and a query over a 20-document vector index (a query span,
retriever, query embedding, synthesizer, LLM call).

    python bench/bench_llamaindex.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

MODES = ("baseline", "plugin_off", "agentwatch")
ROUNDS = 7
CALLS = 400
QUERIES = 100
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
    messages = [ChatMessage(role="user", content="hi")]
    documents = [Document(text=f"document {number} about topic {number % 7}") for number in range(20)]
    index = VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=16))
    engine = index.as_query_engine(llm=llm, similarity_top_k=2)
    return {
        "complete": lambda: llm.complete("hi"),
        "chat": lambda: llm.chat(messages),
        "stream": lambda: sum(1 for _ in llm.stream_complete("hi")),
        "query": lambda: engine.query("topic 3"),
    }


def _child(mode: str) -> None:
    if mode != "baseline":
        import agentwatch

        disabled = ["llamaindex"] if mode == "plugin_off" else []
        agentwatch.init(exporters=[], max_queue_size=100_000, disabled_plugins=disabled)
    operations = _workload()
    for operation in operations.values():  # warm up imports, caches and price lookups
        for _ in range(30):
            operation()
    results: dict[str, float] = {}
    for name, operation in operations.items():
        count = QUERIES if name == "query" else CALLS
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
                        ("query", "RAG query")):
        print(f"{label:>16} {base[name]:>12.1f} {ours[name]:>14.1f} {ours[name] - base[name]:>9.1f} "
              f"{ours[name] - off[name]:>16.1f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(sys.argv[2])
    else:
        main()
