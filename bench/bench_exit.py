"""Exit time of ``import agentwatch; agentwatch.init()`` with and without a collector, and queue memory with
large captured prompts while the collector is down.

Run: python bench/bench_exit.py   (prints numbers; targets: exit adds ≤ 100 ms when the collector refuses,
queue memory bounded by ``max_queue_bytes``)
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _exit_ms(code: str, env: dict[str, str], runs: int) -> tuple[float, float]:
    """(median, max) ms from the script's last statement to the end of its process: the exit alone, without
    interpreter start-up and init(), which vary far more than exit on a shared machine."""
    samples = []
    for _ in range(runs):
        script = code + "\nimport sys, time; sys.stdout.write(repr(time.time()))"
        process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   env=env)
        assert process.stdout is not None
        printed = process.stdout.read()
        process.wait()
        samples.append((time.time() - float(printed)) * 1000)
    return statistics.median(samples), max(samples)


def exit_times(runs: int = 9) -> None:
    down = f"http://127.0.0.1:{_free_port()}/api/ingest"
    with tempfile.TemporaryDirectory() as spool:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
        env.update(AGENTWATCH_SPOOL_DIR=spool, AGENTWATCH_DISABLED_PLUGINS="crewai,llamaindex,autogen,ag2")
        cases = (("no exporter (baseline)", "import agentwatch; agentwatch.init(exporters=[])"),
                 ("collector refuses", f"import agentwatch; agentwatch.init(proxy_url={down!r})"),
                 ("default URL, nothing on :3001", "import agentwatch; agentwatch.init()"))
        base = None
        for label, code in cases:
            median, worst = _exit_ms(code, env, runs)
            base = median if base is None else base
            print(f"exit of `init()` script, {label + ':':<31} median {median:6.1f} ms (+{median - base:5.1f} ms),"
                  f" max {worst:6.1f} ms")


_SHUTDOWN = """
import socket, time, agentwatch
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
agentwatch.init(proxy_url=f"http://127.0.0.1:{port}/api/ingest", flush_interval=FLUSH, exporters=EXPORTERS)
time.sleep(0.5)  # with flush_interval 0.05 the worker has failed by now: the collector is known down
for i in range(2000):
    agentwatch.event(f"e{i}")
start = time.perf_counter()
agentwatch.shutdown()
print((time.perf_counter() - start) * 1000)
"""


def shutdown_times(runs: int = 7) -> None:
    """The exit flush alone, timed inside the process (steadier than whole-interpreter wall time)."""
    with tempfile.TemporaryDirectory() as spool:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
        env.update(AGENTWATCH_SPOOL_DIR=spool, AGENTWATCH_DISABLED_PLUGINS="crewai,llamaindex,autogen,ag2")
        for label, flush, exporters in (("no exporter", "3600", "[]"), ("collector refuses", "3600", "['http']"),
                                        ("collector known down", "0.05", "['http']")):
            code = _SHUTDOWN.replace("FLUSH", flush).replace("EXPORTERS", exporters)
            samples = [float(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                                            text=True).stdout) for _ in range(runs)]
            print(f"shutdown() with 2,000 spans queued, {label + ':':<22} median {statistics.median(samples):6.1f} ms,"
                  f" max {max(samples):6.1f} ms (spooled to disk when the collector is down)")


_QUEUE_MEMORY = """
import resource, socket, agentwatch
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
agentwatch.init(proxy_url=f"http://127.0.0.1:{port}/api/ingest", max_queue_size=100_000, flush_interval=3600,
                capture_messages=True, spool_dir="", **KW)
client = agentwatch.get_client()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for i in range(100_000):
    span = client.start_span("call", "llm")
    span.input = [{"role": "user", "content": "p" * 20_000}]
    client.end_span(span)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
state = agentwatch.get_state()["exporter"]
print((after - before) / 1024, state["queued"], state["dropped"])
"""


def queue_memory() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env["AGENTWATCH_DISABLED_PLUGINS"] = "crewai,llamaindex,autogen,ag2"
    for label, kwargs in (("default max_queue_bytes (32 MiB)", "{}"),
                          ("max_queue_bytes=2**40 (span count only)", "{'max_queue_bytes': 2**40}")):
        code = _QUEUE_MEMORY.replace("**KW", f"**{kwargs}")
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
        grown, queued, dropped = out.stdout.split()
        print(f"100k spans x 20 KB prompt, collector down, {label}: +{float(grown):.0f} MB RSS, "
              f"{queued} queued, {dropped} dropped")


if __name__ == "__main__":
    exit_times()
    shutdown_times()
    queue_memory()
