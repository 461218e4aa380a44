"""End-to-end ingest throughput: a real collector process, gzip'd batches of SDK-format spans over HTTP.

    python bench/bench_ingest.py [--spans 400000] [--batch 512] [--clients 2] [--db PATH]

The collector runs as its own process (``agentwatch serve``) on 127.0.0.1; the client threads send
pre-built payloads over kept-alive connections, as the SDK's HTTP exporter does, so the number measured
is the collector's: validate, store, commit, answer. Prints numbers; asserts nothing about timing.
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
from pathlib import Path

_BOOTSTRAP = "import sys; from agentwatch.server._cli import main; sys.exit(main(sys.argv[1:]))"

# One SDK process: records LLM spans through the public API as fast as it can; its HTTP exporter ships them.
_SDK_CLIENT = """
import sys, agentwatch
port, count = int(sys.argv[1]), int(sys.argv[2])
agentwatch.init(proxy_url=f"http://127.0.0.1:{port}/api/ingest", max_queue_size=count + 1000, max_batch_size=2048,
                flush_interval=0.05, auto_instrument=False)
with agentwatch.trace("bench"):
    for i in range(count):
        with agentwatch.llm_call("chat", model="gpt-4o-mini", provider="openai") as call:
            call.set_usage(1200, 300, 200)
ok = agentwatch.flush(120)
state = agentwatch.get_state()["exporter"]
agentwatch.shutdown()
sys.exit(0 if ok and state["dropped"] == 0 and state["failed"] == 0 else 3)
"""


def stored_spans(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/api/metrics")
    data = json.loads(connection.getresponse().read())
    connection.close()
    return int(data["spans"])


def run_sdk_clients(port: int, clients: int, spans: int) -> tuple[int, float]:
    """End to end: SDK processes → HTTP exporter → collector → SQLite; time until every span is stored."""
    before = stored_spans(port)
    per_client = spans // clients
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", _SDK_CLIENT, str(port), str(per_client)])
             for _ in range(clients)]
    codes = [proc.wait(timeout=600) for proc in procs]
    expected = before + per_client * clients + clients  # + one trace span per client
    while stored_spans(port) < expected and time.perf_counter() - started < 600:
        time.sleep(0.25)  # the metrics query competes with ingest: poll gently
    elapsed = time.perf_counter() - started
    if any(codes):
        print(f"SDK client exit codes: {codes}")
    return stored_spans(port) - before, elapsed

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


def send_all(port: int, payloads: list[bytes], latencies: list[float], errors: list[str]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    for body in payloads:
        started = time.perf_counter()
        connection.request("POST", "/api/ingest", body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            errors.append(f"{response.status} {data[:200]!r}")
    connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=400_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="collector processes (serve --workers)")
    parser.add_argument("--db", type=Path, help="database file (default: a fresh temporary one)")
    parser.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL")
    parser.add_argument("--port", type=int, help="use a collector already running on this port (for profiling)")
    parser.add_argument("--sdk", action="store_true",
                        help="send with real SDK processes (agentwatch.init + llm_call + HTTP exporter) instead of "
                             "pre-built payloads")
    args = parser.parse_args()
    if args.sdk:
        return sdk_main(args)

    print(f"building {args.spans:,} spans in batches of {args.batch} ...", flush=True)
    payloads = build_payloads(args.spans, args.batch, seed=7)
    print(f"{len(payloads)} payloads, {sum(map(len, payloads)) / len(payloads) / 1024:.1f} KiB gzip'd each")
    with tempfile.TemporaryDirectory() as scratch:
        db = args.db or Path(scratch) / "bench.db"
        port = args.port or free_port()
        env = {**os.environ, "AGENTWATCH_SYNCHRONOUS": args.synchronous,
               "AGENTWATCH_SIGNING_KEY": str(Path(scratch) / "k.pem")}
        env.pop("API_KEY", None)
        command = [sys.executable, "-c", _BOOTSTRAP, "serve", "--port", str(port), "--db", str(db),
                   "--log-level", "warning", "--workers", str(args.workers)]
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
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            cpu_after = None if args.port else cpu_seconds(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
        sent = sum(len(json.loads(gzip.decompress(p))) for p in work)
        latencies.sort()
        print(f"ingested {sent:,} spans in {elapsed:.2f} s with {args.clients} clients: "
              f"{sent / elapsed:,.0f} spans/s sustained ({args.workers} collector processes, synchronous="
              f"{args.synchronous})")
        print(f"request latency: p50 {statistics.median(latencies) * 1000:.1f} ms, "
              f"p95 {latencies[int(len(latencies) * 0.95) - 1] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
        if cpu_before is not None and cpu_after is not None:
            per_span = (cpu_after - cpu_before) / sent * 1e6
            # CPU per span does not depend on what else the machine runs, unlike the wall-clock rate.
            print(f"collector CPU: {per_span:.1f} us per span ({1e6 / per_span:,.0f} spans/s per fully used core; "
                  f"{(cpu_after - cpu_before) / elapsed:.2f} cores busy)")
        print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
        if db.exists():
            print(f"database size: {db.stat().st_size / 1e6:.0f} MB")
    return 1 if errors else 0


def sdk_main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        db = args.db or Path(scratch) / "bench.db"
        port = free_port()
        env = {**os.environ, "AGENTWATCH_SYNCHRONOUS": args.synchronous,
               "AGENTWATCH_SIGNING_KEY": str(Path(scratch) / "k.pem")}
        env.pop("API_KEY", None)
        server = subprocess.Popen([sys.executable, "-c", _BOOTSTRAP, "serve", "--port", str(port), "--db", str(db),
                                   "--log-level", "warning", "--workers", str(args.workers)], env=env)
        try:
            wait_ready(port, server)
            stored, elapsed = run_sdk_clients(port, args.clients, args.spans)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"SDK end to end: {stored:,} spans stored in {elapsed:.2f} s from {args.clients} SDK processes: "
          f"{stored / elapsed:,.0f} spans/s ({args.workers} collector processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
