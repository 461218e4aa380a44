"""The export worker beside a program that releases the GIL often and briefly: spans sent while the loop runs,
spans dropped, and the pauses the program's thread took for the worker (``_STAND_ASIDE_SECONDS`` each).

    /work/venv/bin/python bench/bench_starved_worker.py [--calls 20000] [--queue 10000]

Each case is a fresh interpreter running plain ``init()`` and a tight loop of openai chat calls answered in
process (httpx ``MockTransport``: the client draws ``os.urandom`` per request, which releases and at once retakes the
GIL), against a real collector (``agentwatch serve``, SQLite) or one that accepts connections and never answers.
Cases: the plain loop; the same under asyncio (``AsyncOpenAI``, ten calls gathered at a time); the plain loop with
no collector (connection refused: the worker spools); and with a collector that never answers (the worker waits on
it, not on the GIL: pauses do not help it and stay few).

Target (the reliability row of the README): nothing dropped while the worker is only short of the GIL.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = textwrap.dedent("""
    import asyncio, json, sys, time
    import httpx, openai
    import agentwatch
    import agentwatch._export as export

    pauses = []
    real_time = export.time

    class CountingTime:  # the export module's view of ``time``: its sleeps (the stand-asides) are counted
        def __getattr__(self, name):
            return getattr(real_time, name)

        def sleep(self, seconds):
            pauses.append(seconds)
            real_time.sleep(seconds)

    export.time = CountingTime()
    url, calls, queue, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    body = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": "hello"}}],
                       "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}).encode()

    def answer(request):
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    async def answer_async(request):
        return answer(request)

    agentwatch.init(proxy_url=url, max_queue_size=queue, spool_dir=sys.argv[5])
    messages = [{"role": "user", "content": "hi"}]
    started = time.perf_counter()
    if mode == "asyncio":
        client = openai.AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1",
                                    http_client=httpx.AsyncClient(transport=httpx.MockTransport(answer_async)))

        async def loop():
            for _ in range(calls // 10):
                await asyncio.gather(*(client.chat.completions.create(model="gpt-4o-mini", messages=messages)
                                       for _ in range(10)))

        asyncio.run(loop())
    else:
        client = openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1",
                               http_client=httpx.Client(transport=httpx.MockTransport(answer)))
        for _ in range(calls):
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    elapsed = time.perf_counter() - started
    stats = agentwatch.get_client().processor.stats()
    print(json.dumps({"seconds": elapsed, "pauses": len(pauses), "paused_ms": sum(pauses) * 1000, **stats}))
    agentwatch.shutdown(timeout=0.5)
""")


def _silent_collector() -> tuple[int, socket.socket]:
    """A port that accepts connections and never answers (a hung collector)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return int(server.getsockname()[1]), server


def _case(url: str, calls: int, queue: int, mode: str, scratch: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", PROGRAM, url, str(calls), str(queue), mode,
                           os.path.join(scratch, f"spool-{mode}")], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return dict(json.loads(done.stdout.splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--queue", type=int, default=10_000, help="max_queue_size of the program")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_openai_overhead import _collector, _free_port

    silent_port, silent = _silent_collector()
    with tempfile.TemporaryDirectory() as scratch, _collector() as ingest_url:
        try:
            print(f"python {sys.version.split()[0]}; {args.calls} in-process openai calls, queue {args.queue}")
            cases = [("plain loop, collector up", ingest_url, "plain"),
                     ("asyncio, collector up", ingest_url, "asyncio"),
                     ("plain loop, collector down (refused)", f"http://127.0.0.1:{_free_port()}/api/ingest", "plain"),
                     ("plain loop, collector never answers", f"http://127.0.0.1:{silent_port}/api/ingest", "plain")]
            for label, url, mode in cases:
                result = _case(url, args.calls, args.queue, mode, scratch)
                print(f"  {label:38s} {result['seconds']:5.1f} s; during the loop sent {int(result['sent']):6d}, "
                      f"spooled {int(result['spooled']):6d}, queued {int(result['queued']):6d}, "
                      f"dropped {int(result['dropped']):6d}; "
                      f"pauses {int(result['pauses'])} ({result['paused_ms']:.0f} ms)")
        finally:
            silent.close()


if __name__ == "__main__":
    main()
