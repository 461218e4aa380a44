"""End-to-end ingest throughput: a real collector process, gzip'd batches of SDK-format spans over HTTP.

    python bench/bench_ingest.py [--spans 400000] [--batch 512] [--clients 2] [--workers 2] [--db PATH]
    python bench/bench_ingest.py --store chdb [--clients 4]
    python bench/bench_ingest.py --sdk [--spans 400000] [--clients 2] [--workers 2] [--trace-size 0]

The collector runs as its own process (``agentwatch serve --workers 2``) on 127.0.0.1. By default client
threads send pre-built payloads over kept-alive connections, as the SDK's HTTP exporter does, so the number
measured is the collector's: validate, store, commit, answer. ``--store chdb`` runs the collector on the embedded
ClickHouse engine instead (``serve --store chdb:///dir``, one process); its spans are counted through the API.

With ``--sdk`` the senders are ``--clients`` real SDK processes (default 2: two agent programs beside a
two-process collector on a 2-core machine) that record spans through the public API (``agentwatch.llm_call``)
as fast as they can while their HTTP exporter ships them: the time runs from starting the processes until each
has had every span acknowledged, and the spans counted are those found in the database file afterwards (each
2xx is sent after the commit; the run fails if a span was dropped, refused, lost or stored twice). Both CPU
figures are printed, as wall-clock rates depend on what else the machine runs. Asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_BOOTSTRAP = "import sys; from agentwatch.server._cli import main; sys.exit(main(sys.argv[1:]))"

# One SDK process: records LLM spans through the public API as fast as it can; its HTTP exporter ships them.
# The queue holds the whole run so that recording faster than the collector stores is not counted as drops;
# the process exits 0 only when every span was acknowledged (a 2xx is sent after the commit).
_SDK_CLIENT = """
import json, os, sys, time, agentwatch
port, count, trace_size, batch = (int(arg) for arg in sys.argv[1:5])
agentwatch.init(proxy_url=f"http://127.0.0.1:{port}/api/ingest", max_queue_size=count + 1000,
                max_queue_bytes=(count + 1000) * 4096, max_batch_size=batch, flush_interval=0.05, auto_instrument=False)
started = time.perf_counter()
done = 0
while done < count:
    # trace_size 0: one trace holding every span of the process (a long-lived session); otherwise agent runs of
    # trace_size spans each (the root span and trace_size - 1 LLM calls), as the collector-only mode sends.
    calls = count - done - 1 if trace_size <= 0 else min(trace_size, count - done) - 1
    with agentwatch.trace("bench"):
        for i in range(calls):
            with agentwatch.llm_call("chat", model="gpt-4o-mini", provider="openai") as call:
                call.set_usage(1200, 300, 200)
    done += calls + 1
recorded = time.perf_counter() - started
ok = agentwatch.flush(300)
flushed = time.perf_counter() - started
state = agentwatch.get_state()["exporter"]
agentwatch.shutdown()
times = os.times()
print(json.dumps({**state, "recorded_s": recorded, "flushed_s": flushed, "cpu_s": times.user + times.system}))
sys.exit(0 if ok and state["dropped"] == 0 and state["failed"] == 0 else 3)
"""


def stored_spans(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/api/metrics")
    data = json.loads(connection.getresponse().read())
    connection.close()
    return int(data["spans"])


def count_rows(db: Path) -> tuple[int, int]:
    """Spans and distinct (trace, span) ids in the database file itself, read after the collector stopped."""
    import sqlite3

    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        spans, distinct = connection.execute(
            "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT trace_id, span_id FROM spans)) FROM spans"
        ).fetchone()
    finally:
        connection.close()
    return int(spans), int(distinct)


def run_sdk_clients(port: int, clients: int, spans: int, trace_size: int, batch: int
                    ) -> tuple[int, float, list[dict[str, float]], list[int]]:
    """End to end: SDK processes → HTTP exporter → collector → SQLite; time until every span is stored.

    Returns the spans the SDKs had acknowledged, the elapsed time, each SDK's report and exit codes."""
    per_client = spans // clients
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", _SDK_CLIENT, str(port), str(per_client), str(trace_size),
                               str(batch)], stdout=subprocess.PIPE) for _ in range(clients)]
    outputs = [proc.communicate(timeout=900)[0] for proc in procs]
    elapsed = time.perf_counter() - started
    reports = [json.loads(out.splitlines()[-1]) if out.strip() else {} for out in outputs]
    return sum(int(report.get("sent", 0)) for report in reports), elapsed, reports, [p.returncode for p in procs]

MODELS = [("gpt-4o-mini", "openai"), ("gpt-4o", "openai"), ("claude-sonnet-4-6", "anthropic")]
AGENTS = [("researcher", "Researcher"), ("writer", "Writer"), ("reviewer", "Reviewer"), ("planner", "Planner")]


def make_trace(rng: random.Random, start_ns: int, spans_per_trace: int) -> list[dict[str, object]]:
    trace_id = rng.getrandbits(128).to_bytes(16, "big").hex()
    root_id = rng.getrandbits(64).to_bytes(8, "big").hex()
    agent_id, agent_name = rng.choice(AGENTS)
    spans: list[dict[str, object]] = [{
        "trace_id": trace_id, "span_id": root_id, "parent_span_id": None, "name": f"{agent_name.lower()}-task",
        "kind": "agent", "status": "ok", "start_time_unix_nano": start_ns,
        "end_time_unix_nano": start_ns + spans_per_trace * 900_000_000, "agent_id": agent_id,
        "agent_name": agent_name, "agent_role": "Agent", "model": None, "provider": None, "input_tokens": 0,
        "output_tokens": 0, "cached_input_tokens": 0, "cost_usd": 0.0, "attributes": {"framework": "langgraph"},
    }]
    for index in range(spans_per_trace - 1):
        model, provider = rng.choice(MODELS)
        begin = start_ns + index * 900_000_000
        tokens_in, tokens_out = rng.randint(200, 3000), rng.randint(20, 600)
        spans.append({
            "trace_id": trace_id, "span_id": rng.getrandbits(64).to_bytes(8, "big").hex(), "parent_span_id": root_id,
            "name": f"{provider}.chat", "kind": "llm", "status": "error" if rng.random() < 0.02 else "ok",
            "start_time_unix_nano": begin, "end_time_unix_nano": begin + rng.randint(200, 4000) * 1_000_000,
            "agent_id": agent_id, "agent_name": agent_name, "agent_role": "Agent", "model": model,
            "provider": provider, "input_tokens": tokens_in, "output_tokens": tokens_out,
            "cached_input_tokens": 0, "cost_usd": round(tokens_in * 2.5e-6 + tokens_out * 1e-5, 8),
            "attributes": {"llm.request.temperature": 0.2, "http.status_code": 200, "langgraph.node": "agent"},
        })
    return spans


def build_payloads(total: int, batch: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    # Traces start one after another up to now, as a live stream of agents produces them.
    count = total // 8 + 1
    start = time.time_ns() - count * 20_000_000
    spans: list[dict[str, object]] = []
    for index in range(count):
        spans.extend(make_trace(rng, start + index * 20_000_000, 8))
    spans = spans[:total]
    return [gzip.compress(json.dumps(spans[i:i + batch], separators=(",", ":")).encode(), compresslevel=1)
            for i in range(0, len(spans), batch)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("collector exited during start-up")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("collector did not start")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process and its children (the worker processes), from /proc; None elsewhere."""
    try:
        pids = [pid] + [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        total = 0
        for each in pids:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def profile_summary(payloads: list[bytes], top: int = 12) -> None:
    """Where one collector worker's CPU goes per span: the request path (inflate, shape check, parse, store) run in
    this process on a fresh database, with the garbage collector set as the app sets it. Timed by CPU time
    (``time.thread_time``), so the figures do not depend on what else the machine runs: the CPU per span of each
    stage, the share of it spent holding the write lock (which every worker process takes in turn, so it bounds
    the rate of all of them together), and cProfile's functions with the most own CPU time."""
    import cProfile
    import gc
    import pstats

    from agentwatch.server import SQLiteStore, _ingest
    from agentwatch.server import _sqlite as sqlite_module
    from agentwatch.server._app import _GC_THRESHOLD
    from agentwatch.server._crons import learn_from_spans
    from agentwatch.server._ingest import check_shape, inflate, parse_spans

    stages = dict.fromkeys(("inflate + shape check", "parse + validate", "of which JSON parse", "store (Python + SQL)",
                            "of which locked", "crons"), 0.0)
    locked = sqlite_module._Transaction
    enter, leave = locked.__enter__, locked.__exit__

    def timed_enter(self: object) -> object:
        cursor = enter(self)  # type: ignore[arg-type]
        stages["_lock_at"] = time.thread_time()
        return cursor

    def timed_exit(self: object, *exc: object) -> None:
        leave(self, *exc)  # type: ignore[arg-type]
        stages["of which locked"] += time.thread_time() - stages["_lock_at"]

    from_json = _ingest.from_json  # the JSON parser of the SDK-shape path (the rest of the parse: its checks)

    def timed_from_json(*args: Any, **kwargs: Any) -> Any:
        began = time.thread_time()
        try:
            return from_json(*args, **kwargs)
        finally:
            stages["of which JSON parse"] += time.thread_time() - began

    thresholds = gc.get_threshold()
    gc.set_threshold(_GC_THRESHOLD, *thresholds[1:])
    locked.__enter__, locked.__exit__ = timed_enter, timed_exit  # type: ignore[method-assign,assignment]
    _ingest.from_json = timed_from_json
    try:
        with tempfile.TemporaryDirectory() as scratch:
            store = SQLiteStore(Path(scratch) / "profile.db")

            def run(batches: list[bytes], clock: Callable[[], float] = time.thread_time) -> int:
                spans = 0
                for body in batches:
                    began = clock()
                    raw = inflate(body, "gzip", 64 << 20)
                    check_shape(raw, 10_000, 1_000_000)
                    parsed = clock()
                    records = parse_spans(raw, 10_000).records
                    validated = clock()
                    store.ingest(records)
                    stored = clock()
                    learn_from_spans(store, records)
                    stages["inflate + shape check"] += parsed - began
                    stages["parse + validate"] += validated - parsed
                    stages["store (Python + SQL)"] += stored - validated
                    stages["crons"] += clock() - stored
                    spans += len(records)
                return spans

            run(payloads[:4])
            stages.update(dict.fromkeys(stages, 0.0))
            sample = payloads[4:64]
            began = time.thread_time()
            spans = run(sample[: len(sample) // 2])
            per_span = (time.thread_time() - began) / max(spans, 1) * 1e6
            split = {name: value / max(spans, 1) * 1e6 for name, value in stages.items() if not name.startswith("_")}
            profiler = cProfile.Profile()  # wall clock: a CPU-time timer's own cost would skew it
            locked.__enter__, locked.__exit__ = enter, leave  # type: ignore[method-assign]
            _ingest.from_json = from_json
            profiler.enable()
            run(sample[len(sample) // 2:], lambda: 0.0)  # the stage timers' own cost stays out of the profile
            profiler.disable()
            store.close()
    finally:
        locked.__enter__, locked.__exit__ = enter, leave  # type: ignore[method-assign]
        _ingest.from_json = from_json
        gc.set_threshold(*thresholds)
    print(f"profile: one worker's request path in-process (no HTTP), {per_span:.1f} us CPU per span:")
    print("  " + ", ".join(f"{name} {value:.1f}" for name, value in split.items()) + " (us per span)")
    if split["of which locked"]:
        print(f"  write lock held {split['of which locked']:.1f} us per span: at most "
              f"{1e6 / split['of which locked']:,.0f} spans/s whatever the number of workers")
    print("  top own time under cProfile:")
    stats = pstats.Stats(profiler)
    entries = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    total = sum(value[2] for _, value in entries) or 1.0
    for (filename, line, function), value in entries[:top]:
        where = f"{Path(filename).name}:{line}" if line else "built-in"
        print(f"  {value[2] / total * 100:5.1f} %  {function} ({where})")


class PeakRss:
    """Samples the resident memory of a process and its children (the workers) every 0.1 s, from /proc; the peak
    of any one process is kept (the target is per collector process)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            try:
                children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
                for each in [self.pid, *map(int, children)]:
                    for line in Path(f"/proc/{each}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except (OSError, ValueError):
                continue

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        return f"{self.peak_kb / 1024:.0f} MB" if self.peak_kb else "not measured"


def send_all(port: int, payloads: list[bytes], latencies: list[float], errors: list[str]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    for body in payloads:
        started = time.perf_counter()
        connection.request("POST", "/api/ingest", body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        latencies.append(time.perf_counter() - started)
        if not 200 <= response.status < 300:
            errors.append(f"{response.status} {data[:200]!r}")
    connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=400_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="collector processes (serve --workers)")
    parser.add_argument("--db", type=Path, help="database file (default: a fresh temporary one)")
    parser.add_argument("--store", choices=("sqlite", "chdb"), default="sqlite",
                        help="chdb: the collector keeps spans in embedded ClickHouse (one collector process)")
    parser.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL")
    parser.add_argument("--port", type=int, help="use a collector already running on this port (for profiling)")
    parser.add_argument("--sdk", action="store_true",
                        help="send with real SDK processes (agentwatch.init + llm_call + HTTP exporter) instead of "
                             "pre-built payloads; --clients is then the number of SDK processes")
    parser.add_argument("--trace-size", type=int, default=0,
                        help="with --sdk: spans per trace (0: one trace per SDK process, the default)")
    parser.add_argument("--profile", action="store_true",
                        help="also print where the collector's CPU goes (the request path under cProfile)")
    parser.add_argument("--sdk-batch", type=int, default=2048, help="with --sdk: the SDK's max_batch_size")
    args = parser.parse_args()
    if args.sdk:
        return sdk_main(args)
    if args.store == "chdb":
        args.workers = 1  # the embedded engine belongs to one process

    print(f"building {args.spans:,} spans in batches of {args.batch} ...", flush=True)
    payloads = build_payloads(args.spans, args.batch, seed=7)
    print(f"{len(payloads)} payloads, {sum(map(len, payloads)) / len(payloads) / 1024:.1f} KiB gzip'd each")
    with tempfile.TemporaryDirectory() as scratch:
        db = args.db or Path(scratch) / "bench.db"
        before = count_rows(db)[0] if db.exists() else 0
        port = args.port or free_port()
        env = {**os.environ, "AGENTWATCH_SYNCHRONOUS": args.synchronous,
               "AGENTWATCH_SIGNING_KEY": str(Path(scratch) / "k.pem")}
        env.pop("API_KEY", None)
        command = [sys.executable, "-c", _BOOTSTRAP, "serve", "--port", str(port), "--db", str(db),
                   "--log-level", "warning", "--workers", str(args.workers)]
        if args.store == "chdb":
            command += ["--store", f"chdb://{Path(scratch) / 'chdb'}"]
        # With --port the collector is someone else's; a sleeping stand-in keeps the clean-up below uniform.
        server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1e6)"] if args.port else command,
                                  env=env)
        try:
            wait_ready(port, server)
            warm = payloads[:4]
            send_all(port, warm, [], [])
            work = payloads[4:]
            shares = [work[i::args.clients] for i in range(args.clients)]
            latencies: list[float] = []
            errors: list[str] = []
            threads = [threading.Thread(target=send_all, args=(port, share, latencies, errors)) for share in shares]
            cpu_before = None if args.port else cpu_seconds(server.pid)
            rss = PeakRss(server.pid)
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            cpu_after = None if args.port else cpu_seconds(server.pid)
            peak = rss.stop()
            in_api = stored_spans(port) if args.store == "chdb" else None
        finally:
            server.terminate()
            server.wait(timeout=30)
        sent = sum(len(json.loads(gzip.decompress(p))) for p in work)
        # Counted in the database file after the collector stopped (unless the collector is someone else's).
        warm_spans = sum(len(json.loads(gzip.decompress(p))) for p in warm)
        stored = count_rows(db)[0] - before - warm_spans if db.exists() and not (args.port and not args.db) else None
        if in_api is not None:
            stored = in_api - warm_spans
        counted = sent if stored is None else stored
        latencies.sort()
        engine = "chdb" if args.store == "chdb" else f"synchronous={args.synchronous}"
        print(f"ingested {counted:,} spans in {elapsed:.2f} s with {args.clients} clients: "
              f"{counted / elapsed:,.0f} spans/s sustained ({args.workers} collector processes, {engine}); "
              f"{'not counted in the database' if stored is None else 'counted in the database'}")
        if stored is not None and stored != sent:
            errors.append(f"{sent:,} spans sent but {stored:,} stored")
        print(f"request latency: p50 {statistics.median(latencies) * 1000:.1f} ms, "
              f"p95 {latencies[int(len(latencies) * 0.95) - 1] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
        if cpu_before is not None and cpu_after is not None:
            per_span = (cpu_after - cpu_before) / max(counted, 1) * 1e6
            # CPU per span does not depend on what else the machine runs, unlike the wall-clock rate.
            print(f"collector CPU: {per_span:.1f} us per span ({1e6 / per_span:,.0f} spans/s per fully used core; "
                  f"{(cpu_after - cpu_before) / elapsed:.2f} cores busy)")
        print(f"peak collector RSS (largest process): {'not measured' if args.port else peak}")
        print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
        if db.exists():
            print(f"database size: {db.stat().st_size / 1e6:.0f} MB")
    if args.profile:
        profile_summary(payloads)
    return 1 if errors else 0


def sdk_main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        db = args.db or Path(scratch) / "bench.db"
        before = count_rows(db)[0] if db.exists() else 0
        port = free_port()
        env = {**os.environ, "AGENTWATCH_SYNCHRONOUS": args.synchronous,
               "AGENTWATCH_SIGNING_KEY": str(Path(scratch) / "k.pem")}
        env.pop("API_KEY", None)
        server = subprocess.Popen([sys.executable, "-c", _BOOTSTRAP, "serve", "--port", str(port), "--db", str(db),
                                   "--log-level", "warning", "--workers", str(args.workers)], env=env)
        try:
            wait_ready(port, server)
            cpu_before = cpu_seconds(server.pid)
            rss = PeakRss(server.pid)
            acknowledged, elapsed, reports, codes = run_sdk_clients(port, args.clients, args.spans,
                                                                    args.trace_size, args.sdk_batch)
            cpu_after = cpu_seconds(server.pid)
            peak = rss.stop()
            in_api = stored_spans(port)
        finally:
            server.terminate()
            server.wait(timeout=30)
        # Counted in the file, after the collector is gone: what is stored, not what was sent.
        stored, distinct = count_rows(db)
        stored -= before
    shape = "one trace per process" if args.trace_size <= 0 else f"traces of {args.trace_size} spans"
    print(f"SDK end to end: {stored:,} spans stored in {elapsed:.2f} s from {args.clients} SDK processes "
          f"(batches of {args.sdk_batch}, {shape}): {stored / elapsed:,.0f} spans/s ({args.workers} collector "
          f"processes, synchronous={args.synchronous})")
    sdk_cpu = sum(float(report.get("cpu_s", 0.0)) for report in reports)
    recorded = max(float(report.get("recorded_s", 0.0)) for report in reports)
    print(f"SDK processes: recording took {recorded:.2f} s, {sdk_cpu / max(stored, 1) * 1e6:.1f} us CPU per span "
          f"(start-up, recording and export); acknowledged {acknowledged:,}, API counts {in_api - before:,}")
    if cpu_before is not None and cpu_after is not None:
        per_span = (cpu_after - cpu_before) / max(stored, 1) * 1e6
        print(f"collector CPU: {per_span:.1f} us per span ({(cpu_after - cpu_before) / elapsed:.2f} cores busy)")
    print(f"peak collector RSS (largest process): {peak}")
    problems = []
    if any(codes):
        problems.append(f"SDK client exit codes {codes} (a span dropped, failed or not flushed)")
    if stored != acknowledged:
        problems.append(f"{acknowledged:,} spans acknowledged but {stored:,} stored")
    if distinct != stored + before:
        problems.append(f"{stored + before - distinct} duplicate rows")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
