"""Query latency with a large store: /api/traces and /api/metrics (and friends) over 1,000,000 spans.

    python bench/bench_query.py [--store sqlite|chdb] [--spans 1000000] [--days 30] [--db PATH] [--rounds 30]

The store (a SQLite file, or a chdb directory for ``--store chdb``) is filled directly through the store's
ingest in pre-built batches (``--batch``, 4096 spans; no HTTP, that is bench_ingest's job): the fill prints the
ingest rate by CPU time of ``ingest`` alone (span generation excluded) and by wall time. Then a real collector on
127.0.0.1 answers each query ``--rounds`` times. An existing ``--db`` with enough spans is reused. Prints
p50/p95/max wall and p50 CPU (the whole process: chdb's threads too) per query, the peak RSS, and a profile
summary of the main queries; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import io
import pstats
import random
import resource
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

from agentwatch.server import Settings, SpanRecord, SQLiteStore, Store, TraceQuery, start_background  # noqa: E402

AGENTS = [("researcher", "Researcher"), ("writer", "Writer"), ("reviewer", "Reviewer"), ("planner", "Planner"),
          ("coder", "Coder"), ("tester", "Tester"), ("router", "Router"), ("summarizer", "Summarizer")]
MODELS = [("gpt-4o-mini", "openai"), ("gpt-4o", "openai"), ("claude-sonnet-4-6", "anthropic"),
          ("claude-haiku-4-5", "anthropic"), ("gemini-1.5-flash", "google")]
SPANS_PER_TRACE = 8
DAY_NS = 86_400 * 10**9


def build(store: Store, total: int, days: int, seed: int = 3, batch_size: int = 4096) -> None:
    rng = random.Random(seed)
    traces = total // SPANS_PER_TRACE
    end = time.time_ns()
    start = end - days * DAY_NS
    step = (end - start) // traces
    batch: list[SpanRecord] = []
    began = time.perf_counter()
    ingest_cpu = ingest_wall = 0.0
    stored = 0

    def ingest(records: list[SpanRecord]) -> None:
        nonlocal ingest_cpu, ingest_wall, stored
        cpu, wall = time.process_time(), time.perf_counter()
        stored += store.ingest(records).accepted
        ingest_cpu += time.process_time() - cpu
        ingest_wall += time.perf_counter() - wall

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
        if len(batch) >= batch_size:
            ingest(batch)
            batch = []
            done = (index + 1) * SPANS_PER_TRACE
            if done % 1_000_000 < batch_size:
                print(f"  {done:,} spans ({done / (time.perf_counter() - began):,.0f}/s with generation)", flush=True)
    if batch:
        ingest(batch)
    print(f"ingest: {stored:,} spans, {stored / max(ingest_cpu, 1e-9):,.0f} spans/s by CPU time of ingest"
          f" ({ingest_cpu:.1f} s), {stored / max(ingest_wall, 1e-9):,.0f} spans/s by wall time;"
          f" peak RSS {peak_rss_mb():.0f} MB", flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_store(kind: str, db: Path) -> Store:
    if kind == "sqlite":
        return SQLiteStore(db)
    from agentwatch.server._clickhouse import ClickHouseStore

    return ClickHouseStore(f"chdb://{db}?database=bench")


def profile_summary(label: str, call: object, lines: int = 6) -> None:
    """Where one call's Python time goes (chdb's own threads show as the wait in its query call)."""
    profiler = cProfile.Profile()
    profiler.runcall(call)  # type: ignore[arg-type]
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(lines)
    rows = [line for line in out.getvalue().splitlines() if line.strip() and line.lstrip()[0].isdigit()]
    print(f"profile {label} (top by own time: ncalls tottime percall cumtime percall where):")
    for line in rows[:lines]:
        print("   ", line.strip()[:150])


def timed_get(port: int, path: str) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this whole process, HTTP status): the collector runs in this process."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started, cpu = time.perf_counter(), time.process_time()
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    connection.close()
    return elapsed, cpu, response.status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "chdb"), default="sqlite")
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--db", type=Path, help="SQLite file, or chdb directory (reused if it holds enough spans)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=4096, help="spans per ingest call while filling")
    parser.add_argument("--only", help="run only the queries whose path contains this text")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        db = args.db or Path(scratch) / ("query.db" if args.store == "sqlite" else "chdb")
        began = time.perf_counter()
        store = open_store(args.store, db)
        print(f"opened {args.store} store in {time.perf_counter() - began:.1f} s", flush=True)
        have = store.counts()["spans"]
        if have < args.spans:
            print(f"filling {db} with {args.spans - have:,} spans over {args.days} days ...", flush=True)
            began = time.perf_counter()
            build(store, args.spans - have, args.days, seed=3 + have, batch_size=args.batch)
            print(f"filled in {time.perf_counter() - began:.0f} s", flush=True)
        counts = store.counts()
        some_trace = store.list_traces(TraceQuery(limit=1))
        size = db.stat().st_size if db.is_file() else sum(f.stat().st_size for f in db.rglob("*") if f.is_file())
        print(f"store: {counts['spans']:,} spans, {counts['traces']:,} traces, {size / 1e6:.0f} MB")
        week = datetime.fromtimestamp(time.time() - 7 * 86_400 + 1234.5, UTC).isoformat()
        trace_id = some_trace["traces"][0]["trace_id"]
        queries = [
            "/api/traces", "/api/traces?status=error", "/api/traces?status=blocked&sort=cost",
            "/api/traces?agent_id=writer", "/api/traces?agent_id=auditor", "/api/traces?model=gemini-1.5-flash",
            "/api/traces?search=planner",
            "/api/traces?search=zzz-no-match", "/api/traces?search=" + trace_id[:12],
            "/api/traces?sort=cost&order=desc", "/api/traces?sort=duration&order=asc", "/api/traces?offset=5000",
            f"/api/traces?from={urllib.parse.quote(week)}&agent_id=coder",
            "/api/metrics", f"/api/metrics?from={urllib.parse.quote(week)}",
            "/api/cost/daily", "/api/cost/by-agent", "/api/cost/by-model", f"/api/traces/{trace_id}/spans",
        ]
        if args.only:
            queries = [path for path in queries if args.only in path]
        settings = Settings(db_path=db if args.store == "sqlite" else Path(scratch) / "unused.db",
                            signing_key_path=Path(scratch) / "key.pem", data_retention_days=0)
        if args.store == "sqlite":
            store.close()
            handle = start_background(settings=settings, port=0)
        else:
            handle = start_background(settings=settings, port=0, store=store)
        try:
            print(f"{'query':<64} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'CPU p50':>8}")
            for path in queries:
                timed_get(handle.port, path)  # warm the page cache for this query
                samples, cpus = [], []
                for _ in range(args.rounds):
                    elapsed, cpu, status = timed_get(handle.port, path)
                    if status != 200:
                        raise RuntimeError(f"{path}: HTTP {status}")
                    samples.append(elapsed * 1000)
                    cpus.append(cpu * 1000)
                samples.sort()
                p95 = samples[max(0, int(len(samples) * 0.95) - 1)]
                label = path if len(path) <= 64 else path[:61] + "..."
                print(f"{label:<64} {statistics.median(samples):8.1f} {p95:8.1f} {samples[-1]:8.1f}"
                      f" {statistics.median(cpus):8.1f}", flush=True)
            profiled = store if args.store != "sqlite" else SQLiteStore(db)
            profile_summary("list_traces", lambda: profiled.list_traces(TraceQuery()))
            profile_summary("list_traces search", lambda: profiled.list_traces(TraceQuery(search="planner")))
            profile_summary("metrics", lambda: profiled.metrics(None, None))
            if profiled is not store:
                profiled.close()
        finally:
            handle.stop()
        print(f"peak RSS {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
