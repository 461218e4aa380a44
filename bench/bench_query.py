"""Query latency with a large store: /api/traces and /api/metrics (and friends) over 1,000,000 spans.

    python bench/bench_query.py [--spans 1000000] [--days 30] [--db PATH] [--rounds 30]

The database is filled directly through the store's ingest (no HTTP; that is bench_ingest's job), then a
real collector on 127.0.0.1 answers each query ``--rounds`` times. An existing ``--db`` with enough spans
is reused. Prints p50/p95/max per query; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import http.client
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
try:
    import agentwatch.server  # noqa: F401
except ImportError:  # a source checkout that is not installed: map the packages like the tests do
    sys.path.insert(0, str(REPO / "tests" / "server"))
    import aw_bootstrap

    aw_bootstrap.ensure_importable()

from agentwatch.server import Settings, SpanRecord, SQLiteStore, start_background  # noqa: E402

AGENTS = [("researcher", "Researcher"), ("writer", "Writer"), ("reviewer", "Reviewer"), ("planner", "Planner"),
          ("coder", "Coder"), ("tester", "Tester"), ("router", "Router"), ("summarizer", "Summarizer")]
MODELS = [("gpt-4o-mini", "openai"), ("gpt-4o", "openai"), ("claude-sonnet-4-6", "anthropic"),
          ("claude-haiku-4-5", "anthropic"), ("gemini-1.5-flash", "google")]
SPANS_PER_TRACE = 8
DAY_NS = 86_400 * 10**9


def build(store: SQLiteStore, total: int, days: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    traces = total // SPANS_PER_TRACE
    end = time.time_ns()
    start = end - days * DAY_NS
    step = (end - start) // traces
    batch: list[SpanRecord] = []
    began = time.perf_counter()
    for index in range(traces):
        trace_id = rng.getrandbits(128).to_bytes(16, "big").hex()
        root_id = rng.getrandbits(64).to_bytes(8, "big").hex()
        agent_id, agent_name = rng.choice(AGENTS)
        t0 = start + index * step
        failed = rng.random() < 0.03
        blocked = not failed and rng.random() < 0.01
        batch.append(SpanRecord(trace_id, root_id, None, f"{agent_name.lower()} task {index % 97}", "agent", "ok",
                                t0, t0 + 7 * 900_000_000, agent_id, agent_name, "Agent", attributes={"run": index}))
        for call in range(SPANS_PER_TRACE - 1):
            model, provider = rng.choice(MODELS)
            begin = t0 + call * 900_000_000
            status = "error" if failed and call == 6 else "blocked" if blocked and call == 6 else "ok"
            tokens_in, tokens_out = rng.randint(200, 3000), rng.randint(20, 600)
            batch.append(SpanRecord(
                trace_id, rng.getrandbits(64).to_bytes(8, "big").hex(), root_id, f"{provider}.chat", "llm", status,
                begin, begin + int(rng.lognormvariate(6.5, 0.6) * 1_000_000), agent_id, agent_name, "Agent", model,
                provider, tokens_in, tokens_out, 0, round(tokens_in * 2.5e-6 + tokens_out * 1e-5, 8),
                {"http.status_code": 200}))
        if len(batch) >= 4096:
            store.ingest(batch)
            batch = []
            done = (index + 1) * SPANS_PER_TRACE
            if done % 200_000 < 4096:
                print(f"  {done:,} spans ({done / (time.perf_counter() - began):,.0f}/s)", flush=True)
    if batch:
        store.ingest(batch)


def timed_get(port: int, path: str) -> tuple[float, int]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed, response.status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--db", type=Path)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        db = args.db or Path(scratch) / "query.db"
        store = SQLiteStore(db)
        have = store.counts()["spans"]
        if have < args.spans:
            print(f"filling {db} with {args.spans - have:,} spans over {args.days} days ...", flush=True)
            began = time.perf_counter()
            build(store, args.spans - have, args.days)
            print(f"filled in {time.perf_counter() - began:.0f} s", flush=True)
        counts = store.counts()
        some_trace = store.list_traces(__import__("agentwatch.server", fromlist=["TraceQuery"]).TraceQuery(limit=1))
        store.close()
        print(f"store: {counts['spans']:,} spans, {counts['traces']:,} traces, "
              f"{db.stat().st_size / 1e6:.0f} MB")
        week = datetime.fromtimestamp(time.time() - 7 * 86_400 + 1234.5, UTC).isoformat()
        trace_id = some_trace["traces"][0]["trace_id"]
        queries = [
            "/api/traces", "/api/traces?status=error", "/api/traces?status=blocked&sort=cost",
            "/api/traces?agent_id=writer", "/api/traces?model=gemini-1.5-flash", "/api/traces?search=planner",
            "/api/traces?sort=cost&order=desc", "/api/traces?sort=duration&order=asc", "/api/traces?offset=5000",
            f"/api/traces?from={urllib.parse.quote(week)}&agent_id=coder",
            "/api/metrics", f"/api/metrics?from={urllib.parse.quote(week)}",
            "/api/cost/daily", "/api/cost/by-agent", "/api/cost/by-model", f"/api/traces/{trace_id}/spans",
        ]
        settings = Settings(db_path=db, signing_key_path=Path(scratch) / "key.pem", data_retention_days=0)
        handle = start_background(settings=settings, port=0)
        try:
            print(f"{'query':<64} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
            for path in queries:
                timed_get(handle.port, path)  # warm the page cache for this query
                samples = []
                for _ in range(args.rounds):
                    elapsed, status = timed_get(handle.port, path)
                    if status != 200:
                        raise RuntimeError(f"{path}: HTTP {status}")
                    samples.append(elapsed * 1000)
                samples.sort()
                p95 = samples[max(0, int(len(samples) * 0.95) - 1)]
                label = path if len(path) <= 64 else path[:61] + "..."
                print(f"{label:<64} {statistics.median(samples):8.1f} {p95:8.1f} {samples[-1]:8.1f}")
        finally:
            handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
