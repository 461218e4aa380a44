"""``/api/traces/{id}/graph`` on deep traces: chains of plumbing spans 1k to 100k deep (the query limit).

    python bench/bench_graph.py [--depths 1000,2000,4000,100000]

Each trace is a root agent, a chain of ``depth`` plumbing spans, and an LLM call under every 10th link; it is
stored through the store's ingest, then a real collector on 127.0.0.1 answers the graph query. Prints the time
of the graph query (and of ``build_graph`` alone); asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agentwatch.server import Settings, SQLiteStore, start_background  # noqa: E402
from agentwatch.server._graph import build_graph  # noqa: E402
from agentwatch.server._ingest import parse_spans  # noqa: E402


def chain(depth: int, trace_id: str) -> list[dict[str, object]]:
    start = time.time_ns() - 3_600_000_000_000
    spans: list[dict[str, object]] = [{"trace_id": trace_id, "span_id": "s0", "name": "root", "kind": "agent",
                                       "agent_id": "a", "start_time_unix_nano": start}]
    for index in range(1, depth + 1):
        spans.append({"trace_id": trace_id, "span_id": f"s{index}", "parent_span_id": f"s{index - 1}",
                      "name": "step", "kind": "llm" if index % 10 == 0 else "chain", "model": "gpt-4o-mini",
                      "start_time_unix_nano": start + index, "input_tokens": 1, "cost_usd": 0.000001})
    return spans


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depths", default="1000,2000,4000,100000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "graph.db"
        store = SQLiteStore(db)
        depths = [int(depth) for depth in args.depths.split(",")]
        for depth in depths:
            spans = chain(depth, f"deep{depth}")
            for offset in range(0, len(spans), 10_000):
                store.ingest(parse_spans(json.dumps(spans[offset:offset + 10_000]).encode(), 10_000).records)
        store.close()
        handle = start_background(settings=Settings(db_path=db, signing_key_path=Path(folder) / "key.pem"))
        try:
            for depth in depths:
                connection = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=600)
                began, cpu = time.perf_counter(), time.process_time()
                connection.request("GET", f"/api/traces/deep{depth}/graph")
                body = connection.getresponse().read()
                took, cpu = time.perf_counter() - began, time.process_time() - cpu
                answer = json.loads(body)
                # Where the time goes (CPU, as wall-clock time depends on what else the machine runs): the
                # store's read of the spans, then building the graph from them.
                store = SQLiteStore(db)
                read_cpu = time.process_time()
                spans_read = store.graph_spans(f"deep{depth}", 100_000)
                read_cpu = time.process_time() - read_cpu
                store.close()
                build_cpu = time.process_time()
                build_graph(spans_read)
                build_cpu = time.process_time() - build_cpu
                spans_only = chain(depth, "x")
                for span in spans_only:
                    span.setdefault("parent_span_id", None)
                began = time.perf_counter()
                build_graph(spans_only)
                alone = time.perf_counter() - began
                print(f"depth {depth:>7,}: GET graph {took:6.3f} s wall, {cpu:6.3f} s CPU ({answer['span_count']:,} "
                      f"spans, {len(answer['nodes']):,} nodes); build_graph alone {alone:6.3f} s; profile (CPU): "
                      f"store read {read_cpu:.3f} s, build_graph {build_cpu:.3f} s")
        finally:
            handle.stop()


if __name__ == "__main__":
    main()
