"""Time AgentWatch adds to an openai call: instrumented vs not, in the same run.

    /work/venv/bin/python bench/bench_openai_overhead.py [--calls 4000] [--rounds 40] [--stub thread]
        [--exporter none|down|up|all] [--no-in-process] [--no-profile] [--cpu [--cold MB]] [--instructions [--keep DIR]]

One openai client talks to the loopback stub provider (tests/stubs/provider_server.py), run in its own
process by default: a provider does not share the client's GIL, and a stub thread in this process would
charge its work (and its waits for the GIL) to whichever arm is running. Rounds alternate between no
AgentWatch and ``agentwatch.init(...)`` with the same client, the same stub and the same pooled
connection, so drift (CPU frequency, other load) hits both alike; the medians of all per-call times are
compared. Each round's own difference is printed too (median, 25th-75th percentile): drift between rounds
cancels in it, and its spread shows the noise; so is the "without" arm against itself (its even rounds against its
odd ones): how far two medians of the same code fall apart in this run.

Measured, each with and without:
- chat.completions, not streamed: the whole call;
- chat.completions, streamed with usage: time to the first chunk (the call starts, the first chunk is in
  the user's hands) and the time for the whole stream. Every stream is read to its end, so the
  connection is reused as in the non-streamed case (a stream closed after its first chunk would cost a
  new connection per call and time the handshake);
- the same calls through an in-process httpx transport (no socket, no stub): the added time without
  loopback jitter;
- ``--cpu``: on a shared machine, the in-process calls in CPU time of this thread (``time.thread_time_ns``),
  paired per call: each call without AgentWatch is followed by the same call with it (the active client is
  switched off and on between them, the patches stay), so load and drift hit both alike; the median of the
  per-call differences is printed, then a profile summary per path (chat, stream). ``--cold MB``: each call of both arms
  after MB megabytes are copied over (the caches flushed), as in a program where the framework, the kernel's network
  path and other processes run between two LLM calls: AgentWatch's code and data are then read from memory, not from
  the caches, and what it adds per call is mostly the lines it touches, not its instructions (2026-12-07: a chat call
  +5.6 µs warm, +38-53 cold; +31-37 in paired thread CPU against the stub in its own process).

``--instructions``: instructions per in-process call counted by callgrind (deterministic whatever the machine's
load; each setting in a process of its own under valgrind, minutes each): on the user's thread per chat call and per
whole 5-event stream, without and with AgentWatch, and the export worker's instructions per chat call (its thread,
from after its start-up to the end of a flush of the counted calls' spans: one batch of 512). ``flush_interval`` is set
far out there, as under callgrind a second is ~20 calls and batches would be that small; a program making more than
512 calls a second has the worker wake by batch size too. ``--keep DIR`` keeps the callgrind files (for
``callgrind_annotate``).

The instrumented arm is run per exporter setting (``--exporter``, default all three):
- none: ``init(exporters=[])``, the core alone;
- down: a plain ``init()`` (the default HTTP exporter and its spool) whose collector is not there (a closed
  loopback port), as for a user who never started one;
- up: a plain ``init()`` sending to a real collector (``agentwatch serve``, SQLite) in its own process.
For each, the export worker's own CPU time per call is printed (it competes with the user's thread for the
GIL), and a profile summary of the user's thread (cProfile, the functions of AgentWatch that cost most).

Targets (issue 20): added <= 15 us median per non-streamed call with ``exporters=[]``, <= 25 us with the default
exporter whether the collector is up or down; no measurable delay to the first chunk.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import json
import os
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import openai  # noqa: E402
from openai.types.chat import ChatCompletionMessageParam  # noqa: E402

import agentwatch  # noqa: E402

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
TARGETS_US = {"none": 15.0, "down": 25.0, "up": 25.0}
#: init() keyword arguments per exporter setting; "down" and "up" get their proxy_url in main().
SETTINGS: dict[str, dict[str, Any]] = {"none": {"exporters": []}, "down": {}, "up": {}}


def _chunk(delta: dict[str, object], finish: str | None = None, usage: object = None) -> dict[str, object]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o-mini",
            "system_fingerprint": "fp", "choices": [] if usage else [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], "usage": usage}


_USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
          "prompt_tokens_details": {"cached_tokens": 0}}
_CANNED = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": _USAGE,
}).encode()
#: What the stub streams for Reply(content="ok"), one event per chunk as a server flushes them.
_EVENTS = [b"data: " + json.dumps(event).encode() + b"\n\n" for event in (
    _chunk({"role": "assistant", "content": ""}), _chunk({"content": "ok"}), _chunk({}, "stop"),
    _chunk({}, usage=_USAGE))] + [b"data: [DONE]\n\n"]
_HEADERS = {"x-request-id": "req_1"}  # as every provider sends


class _Events(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield from _EVENTS


def _in_process(request: httpx.Request) -> httpx.Response:
    if json.loads(request.content).get("stream"):
        return httpx.Response(200, stream=_Events(), headers={"content-type": "text/event-stream", **_HEADERS})
    return httpx.Response(200, content=_CANNED, headers={"content-type": "application/json", **_HEADERS})


# ---- timing ------------------------------------------------------------------------------------------

Sample = tuple[float, ...]  # microseconds: one or more figures per call


def _time_calls(call: Callable[[], Sample], count: int) -> list[Sample]:
    return [call() for _ in range(count)]


def _settled_then_timed(call: Callable[[], Sample], count: int, pause: float = 0.0) -> list[Sample]:
    """Time calls once the process is quiet: a fresh client's export worker does its start-up work
    (price table, process fingerprint) right after init(), which would be charged to the first calls.

    ``pause``: how long the other arm's flush blocked this thread. With the collector down a flush waits out
    its timeout, and after a sleep of half a second the kernel tends to put the stub's thread on this
    thread's CPU (``perf sched``: the stub's handler preempts it ~60 times in 300 calls, against ~2 without
    the sleep), adding ~100 us per call whatever the thread runs. Both arms sleep alike, so that is not
    charged to AgentWatch."""
    for _ in range(20):
        call()
    agentwatch.flush()
    if pause:
        time.sleep(pause)
    gc.collect()
    return _time_calls(call, count)


def _settle_instrumented(call: Callable[[], Sample]) -> float:
    """The instrumented arm's settling (its worker's start-up, then a flush); returns how long it slept."""
    for _ in range(20):
        call()
    started = time.perf_counter()
    agentwatch.flush(0.5)
    gc.collect()
    return time.perf_counter() - started


def _worker_cpu() -> float:
    """CPU seconds used so far by the running client's export worker thread (0 if there is none)."""
    client = agentwatch.get_client()
    worker = getattr(getattr(client, "processor", None), "_worker", None)
    if worker is None or worker.ident is None or not hasattr(time, "pthread_getcpuclockid"):
        return 0.0
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(worker.ident))
    except OSError:  # the thread has ended
        return 0.0


def _profile(call: Callable[[], Sample], settings: dict[str, Any], count: int = 2000, top: int = 8) -> None:
    """Where the instrumented call's time goes on the user's thread: AgentWatch's costliest functions."""
    agentwatch.init(**settings)
    try:
        for _ in range(50):
            call()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            call()
        profiler.disable()
    finally:
        agentwatch.shutdown(1.0)
    stats = pstats.Stats(profiler)
    rows = [(tottime, cumtime, calls_, func) for func, (_, calls_, tottime, cumtime, _) in
            stats.stats.items()  # type: ignore[attr-defined]
            if "/agentwatch/" in func[0] or ("/core/" in func[0] or "/plugins/" in func[0])
            and "site-packages" not in func[0]]
    own = sum(row[0] for row in rows)
    print(f"    profile (user's thread, cProfile-inflated): AgentWatch's own time {own / count * 1e6:.1f} us/call;"
          " top:")
    for tottime, cumtime, calls_, (filename, line, name) in sorted(rows, reverse=True)[:top]:
        where = f"{Path(filename).parent.name}/{Path(filename).name}:{line} {name}"
        print(f"      {tottime / count * 1e6:6.2f} us self {cumtime / count * 1e6:6.2f} us cum "
              f"{calls_ / count:4.1f}/call  {where}")


def _paired_cpu(call: Callable[[], Sample], labels: tuple[str, ...], count: int,
                flush: Callable[[], object] = lambda: None) -> list[float]:
    """Median CPU time added per call, each instrumented call paired with an uninstrumented one just before it
    (``--cpu``). The client stays initialised; only ``_client._active`` is switched. The uninstrumented arm still
    runs the patched methods up to their check of it (the httpx tap reads the request's path first): in rounds,
    that arm measured ~5 us over no ``init()`` at all, so both figures printed here read low against a comparison
    with a process that never called ``init()`` (the loopback and in-process rounds above)."""
    from agentwatch import _client as client_module

    active = client_module._active
    try:
        for _ in range(100):
            call()
        samples: list[tuple[list[float], list[float]]] = [([], []) for _ in labels]  # (without, with) per figure
        gc.collect()
        gc.disable()  # a collection lands on either arm at random: it widens the spread, not the median
        try:
            for _ in range(count):
                client_module._active = None
                flush()
                without = call()
                client_module._active = active
                flush()
                with_ = call()
                for index in range(len(labels)):
                    samples[index][0].append(without[index])
                    samples[index][1].append(with_[index])
        finally:
            gc.enable()
    finally:
        client_module._active = active
    added = []
    for index, label in enumerate(labels):
        diffs = sorted(w - a for a, w in zip(*samples[index], strict=True))
        added.append(statistics.median(diffs))
        if not label:  # a figure not asked for
            continue
        low, high = diffs[len(diffs) // 4], diffs[(3 * len(diffs)) // 4]
        # The median of the per-call differences reads 6-10 us lower than the difference of the medians (which
        # the loopback rounds and a paired benchmark of the two arms report) on this path: both are printed.
        of_medians = statistics.median(samples[index][1]) - statistics.median(samples[index][0])
        print(f"  {label:<30} added {statistics.median(diffs):+6.1f} us CPU median of per-call differences, "
              f"{of_medians:+6.1f} us difference of the medians (per call 25th-75th: {low:+.1f}..{high:+.1f}; "
              f"{count} pairs)")
    return added


def _compare(labels: tuple[str, ...], call: Callable[[], Sample], calls: int, rounds: int,
             settings: dict[str, Any] | None = None) -> list[float]:
    """Interleaved rounds without and with AgentWatch; prints a line per figure, returns the added medians."""
    settings = SETTINGS["none"] if settings is None else settings
    for _ in range(200):  # warm both paths: imports, pricing cache, connection pool
        call()
    agentwatch.init(**settings)
    for _ in range(200):
        call()
    pause = _settle_instrumented(call)
    agentwatch.shutdown(1.0)
    plain: list[Sample] = []
    plain_rounds: list[list[Sample]] = []
    watched: list[Sample] = []
    round_diffs: list[list[float]] = [[] for _ in labels]
    per_round = max(1, calls // rounds)
    worker_seconds = 0.0
    for _ in range(rounds):
        without = _settled_then_timed(call, per_round, pause)
        agentwatch.init(**settings)
        pause = _settle_instrumented(call)
        worker_before = _worker_cpu()
        with_ = _time_calls(call, per_round)
        # A round is shorter than the worker's flush interval: without this its spans would be exported by the
        # shutdown below, after the reading, and the worker's CPU for them never counted.
        agentwatch.flush(5)
        worker_seconds += _worker_cpu() - worker_before
        agentwatch.shutdown(1.0)
        plain_rounds.append(without)
        plain += without
        watched += with_
        for index in range(len(labels)):
            round_diffs[index].append(statistics.median(s[index] for s in with_)
                                      - statistics.median(s[index] for s in without))
    added = []
    for index, label in enumerate(labels):
        base = statistics.median(s[index] for s in plain)
        instrumented = statistics.median(s[index] for s in watched)
        diffs = sorted(round_diffs[index])
        low, high = diffs[len(diffs) // 4], diffs[(3 * len(diffs)) // 4]
        spread = f"{statistics.median(diffs):+.1f} [{low:+.1f}..{high:+.1f}]"
        # The same code against itself: the "without" arm's even rounds against its odd ones. Two medians of this
        # many loopback calls differ by this much with nothing changed (drift, the kernel's placement of the stub).
        halves = [statistics.median(s[index] for r in plain_rounds[parity::2] for s in r) for parity in (0, 1)]
        print(f"  {label:<30} without {base:7.1f} us  with {instrumented:7.1f} us  added {instrumented - base:+6.1f} us"
              f"  (per round: median {spread}; {len(plain)} calls each; without vs itself, even and odd rounds: "
              f"{halves[1] - halves[0]:+.1f} us)")
        added.append(instrumented - base)
    print(f"  {'export worker CPU':<30} {worker_seconds / max(len(watched), 1) * 1e6:6.1f} us per call "
          "(on its own thread, competing for the GIL)")
    return added


def _calls(client: openai.OpenAI, perf: Callable[[], int] = time.perf_counter_ns,
           ) -> tuple[Callable[[], Sample], Callable[[], Sample]]:
    """The timed calls; ``perf`` is the clock (wall by default, ``time.thread_time_ns`` for ``--cpu``)."""

    def chat() -> Sample:
        started = perf()
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return ((perf() - started) / 1000,)

    def stream() -> Sample:
        started = perf()
        chunks = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                stream_options={"include_usage": True})
        iterator = iter(chunks)
        next(iterator)
        first = perf()
        for _chunk in iterator:  # to the end (the span ends with it), so the connection is reused
            pass
        return (first - started) / 1000, (perf() - started) / 1000

    return chat, stream


@contextlib.contextmanager
def _stub(where: str) -> Iterator[str]:
    """The stub provider's OpenAI base URL: in a process of its own, or in a thread of this one."""
    if where == "thread":
        from tests.stubs.provider_server import StubProvider

        with StubProvider() as stub:
            yield stub.openai_base_url
        return
    program = ("import sys; sys.path.insert(0, sys.argv[1]); from tests.stubs.provider_server import StubProvider; "
               "stub = StubProvider().start(); print(stub.openai_base_url, flush=True); sys.stdin.read()")
    process = subprocess.Popen([sys.executable, "-c", program, str(ROOT)], stdin=subprocess.PIPE, preexec_fn=_pin_other,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        assert process.stdin is not None
        process.stdin.close()  # the stub exits when its stdin closes
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()


#: ``--pin``: this process on the first CPU, the stub and the collector on the others (set in main()).
PIN: list[set[int]] = []


def _pin_other() -> None:
    if PIN:
        os.sched_setaffinity(0, PIN[1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _collector() -> Iterator[str]:
    """A real collector (``agentwatch serve`` on SQLite) in its own process; yields its ingest URL."""
    with tempfile.TemporaryDirectory() as scratch:
        port = _free_port()
        program = "import sys; from agentwatch.server._cli import main; sys.exit(main(sys.argv[1:]))"
        env = {**os.environ, "AGENTWATCH_SIGNING_KEY": str(Path(scratch) / "k.pem")}
        env.pop("API_KEY", None)
        process = subprocess.Popen([sys.executable, "-c", program, "serve", "--port", str(port), "--db",
                                    str(Path(scratch) / "bench.db"), "--log-level", "warning"], env=env,
                                   preexec_fn=_pin_other)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("collector did not start") from None
                    time.sleep(0.2)
            yield f"http://127.0.0.1:{port}/api/ingest"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def _core_cycle(count: int = 20000) -> float:
    """What the core alone costs per call, for attributing the added time (no HTTP, no plugin)."""
    agentwatch.init(exporters=[])
    try:
        perf = time.perf_counter_ns

        def cycle() -> Sample:
            started = perf()
            call = agentwatch.start_llm_call("openai.chat.completions", model="gpt-4o-mini", provider="openai")
            call.set_usage(input_tokens=10, output_tokens=5)
            call.end()
            return ((perf() - started) / 1000,)

        return statistics.median(sample[0] for sample in _time_calls(cycle, count))
    finally:
        agentwatch.shutdown()


def _in_process_client() -> openai.OpenAI:
    return openai.OpenAI(base_url="http://stub.invalid/v1", api_key="k", max_retries=0,
                         http_client=httpx.Client(transport=httpx.MockTransport(_in_process)))


LONG_STREAM_EVENTS = 200


def _long_stream_client(events: int) -> openai.OpenAI:
    """A client whose streams bring ``events`` content chunks (one per token, as providers send them)."""
    wire = [b"data: " + json.dumps(event).encode() + b"\n\n" for event in (
        _chunk({"role": "assistant", "content": ""}), *(_chunk({"content": f"tok{i} "}) for i in range(events)),
        _chunk({}, "stop"), _chunk({}, usage=_USAGE))] + [b"data: [DONE]\n\n"]

    class Events(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield from wire

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Events(), headers={"content-type": "text/event-stream", **_HEADERS})

    return openai.OpenAI(base_url="http://stub.invalid/v1", api_key="k", max_retries=0,
                         http_client=httpx.Client(transport=httpx.MockTransport(respond)))


def _cpu_only(count: int, profile: bool, cold_mb: int = 0) -> None:
    """``--cpu``: the in-process calls in this thread's CPU time, paired per call (``_paired_cpu``); ``cold_mb``: the
    caches flushed before each call (``--cold``)."""
    print(f"python {sys.version.split()[0]}, openai {openai.__version__}, httpx {httpx.__version__}; in-process "
          f"transport, exporters=[]; {count} pairs per kind of call; CPU time of this thread"
          + (f"; caches flushed ({cold_mb} MB copied) before each call" if cold_mb else ""))
    client = _in_process_client()
    chat, stream = _calls(client, time.thread_time_ns)
    scratch = bytearray(cold_mb * 1024 * 1024)

    def flush() -> None:
        scratch[:] = scratch  # a copy over every line: what was cached before is gone

    flushing = flush if cold_mb else (lambda: None)
    agentwatch.init(exporters=[])
    try:
        _paired_cpu(chat, ("chat.completions",), count, flushing)
        _, short = _paired_cpu(stream, ("stream: time to first chunk", "stream: whole stream"), count, flushing)
        # What each streamed event adds (the reader's per-chunk path): a stream of many, against the short one (1).
        _, long_stream = _calls(_long_stream_client(LONG_STREAM_EVENTS), time.thread_time_ns)
        _, long = _paired_cpu(long_stream, ("", f"stream of {LONG_STREAM_EVENTS} content events"), max(50, count // 20),
                              flushing)
        print(f"  {'per streamed event':<30} added {(long - short) / (LONG_STREAM_EVENTS - 1):+6.2f} us CPU")
    finally:
        agentwatch.shutdown(1.0)
    print(f"core call cycle alone: {_core_cycle():.1f} us wall (start_llm_call + set_usage + end)")
    if profile:
        for label, call in (("chat.completions", chat), ("stream (read to its end)", stream)):
            print(f"  {label}:")
            _profile(call, SETTINGS["none"])
    client.close()


#: ``--instructions``: each counted loop runs inside its own rarely used C function, which callgrind's
#: ``--toggle-collect`` counts on the user's thread alone. The export worker's thread is counted from its start
#: (``thread_run``, the C start routine of every Python thread) and cut into windows by ``--dump-before`` another such
#: function, which dumps (and zeroes) the counts of the thread that calls it: the worker calls it from an idle task
#: at a flush, the user's thread after each counted loop.
_COUNTED_LOOPS = {("chat", False): "takewhile_next", ("chat", True): "filterfalse_next",
                  ("stream", False): "dropwhile_next", ("stream", True): "starmap_next"}
_DUMP_AT = "cycle_next"
INSTRUCTION_CALLS = {"chat": 512, "stream": 150}


def _counted(function: str, step: Callable[[], object], count: int, settle: bool = True) -> None:
    """``count`` calls of ``step`` inside the C function ``function`` (one of ``_COUNTED_LOOPS``, or ``_DUMP_AT``),
    which callgrind is told about.

    The objects alive before are frozen out of the collector's view first (``settle``): a full collection of them (the
    imports' ~200k objects, millions of instructions) fell in one loop or the other by chance, and moved the arm without
    AgentWatch by 15k instructions per call from one run to the next."""
    import itertools

    if settle:
        gc.collect()
        gc.freeze()
    calls = range(count)
    drivers: dict[str, Callable[[], object]] = {
        "takewhile_next": lambda: list(itertools.takewhile(lambda _: step() or True, calls)),
        "dropwhile_next": lambda: list(itertools.dropwhile(lambda _: step() or True, calls)),
        "filterfalse_next": lambda: list(itertools.filterfalse(lambda _: step() and False, calls)),
        "starmap_next": lambda: list(itertools.starmap(lambda _: step(), ((n,) for n in calls))),
        "cycle_next": lambda: next(itertools.cycle([step()])),
    }
    drivers[function]()


def _dump_worker_at_flush() -> None:
    """Flush, and have the export worker dump its thread's count once it has drained (an idle task)."""
    from agentwatch._idle import idle_tasks

    def dump() -> None:
        idle_tasks.remove(dump)
        # No collection here: it would count as the worker's (~2.2k instructions per chat call of a 512-call batch).
        _counted(_DUMP_AT, lambda: None, 1, settle=False)

    idle_tasks.append(dump)
    agentwatch.flush(10)


def _instructions_child(kind: str, proxy_url: str) -> None:
    """Run under callgrind (``_instructions``): the counted loops without, then with ``init()``, in process."""
    from _framework_overhead import SteppedClock

    settings = dict(SETTINGS[kind])
    if kind != "none":
        settings["proxy_url"] = proxy_url
        if kind == "down":
            from _framework_overhead import scratch_dir

            settings["spool_dir"] = scratch_dir("aw-bench-spool-")
    settings["flush_interval"] = 3600.0  # batches by size (512 spans), see the module's docstring
    calls = dict(zip(("chat", "stream"), _calls(_in_process_client()), strict=True))
    for what, call in calls.items():
        for _ in range(30):  # imports, caches
            call()
        _counted(_COUNTED_LOOPS[what, False], call, INSTRUCTION_CALLS[what])
    _counted(_DUMP_AT, lambda: None, 1)  # the user's thread: the counts without AgentWatch
    agentwatch.init(**settings)
    client = agentwatch.get_client()
    if client is not None and client.monitor is not None:
        client.monitor._clock = SteppedClock()
    for call in calls.values():
        for _ in range(30):
            call()
    _dump_worker_at_flush()  # the worker: its start-up
    _counted(_COUNTED_LOOPS["chat", True], calls["chat"], INSTRUCTION_CALLS["chat"])
    _dump_worker_at_flush()  # the worker: the counted chat calls' spans, exported or spooled
    _counted(_DUMP_AT, lambda: None, 1)  # the user's thread: the chat calls with AgentWatch
    _counted(_COUNTED_LOOPS["stream", True], calls["stream"], INSTRUCTION_CALLS["stream"])
    _counted(_DUMP_AT, lambda: None, 1)  # the user's thread: the streams with AgentWatch
    agentwatch.shutdown(10)


def _callgrind_totals(path: Path) -> tuple[int, dict[str, int]]:
    """A callgrind file's total and the inclusive count of each counted loop's function in it."""
    import re

    text = path.read_text()
    total = int(re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(path)], capture_output=True, text=True,
                               check=True).stdout
    loops = {}
    for function in _COUNTED_LOOPS.values():
        found = re.search(rf"^\s*([\d,]+) .*:{function} ", annotated, re.MULTILINE)
        if found:
            loops[function] = int(found.group(1).replace(",", ""))
    return total, loops


def _instructions(kinds: tuple[str, ...], keep: str | None) -> None:
    """``--instructions``: each setting in its own process under callgrind; prints instructions per call."""
    import shutil

    if shutil.which("valgrind") is None:
        print("instructions: valgrind not installed")
        return
    print(f"python {sys.version.split()[0]}, openai {openai.__version__}, httpx {httpx.__version__}; callgrind "
          f"instructions per in-process call ({INSTRUCTION_CALLS['chat']} chat calls, {INSTRUCTION_CALLS['stream']} "
          "streams of 5 events per arm), PYTHONHASHSEED=0")
    with contextlib.ExitStack() as stack:
        # "down" always gets a closed port: with "up" in the run, it was sent the running collector's URL, and counted
        # the collector-up path twice (no gzip, no spool).
        down_url = f"http://127.0.0.1:{_free_port()}/api/ingest"
        up_url = stack.enter_context(_collector()) if "up" in kinds else down_url
        for kind in kinds:
            scratch = Path(keep) / kind if keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
            scratch.mkdir(parents=True, exist_ok=True)
            out = scratch / "callgrind.out"
            toggles = [f"--toggle-collect={name}" for name in (*_COUNTED_LOOPS.values(), "thread_run")]
            subprocess.run(["valgrind", "--tool=callgrind", "--collect-atstart=no", *toggles, "--separate-threads=yes",
                            f"--dump-before={_DUMP_AT}", f"--callgrind-out-file={out}",
                            sys.executable, __file__, "--instructions-child", kind,
                            up_url if kind == "up" else down_url],
                           capture_output=True, check=True,
                           # str hashes are seeded per process: dict probes, and so the counts, move by ~10 % from one
                           # run to the next without a fixed seed
                           env={**os.environ, "PYTHONHASHSEED": "0"})
            # Files callgrind.out.<dump>-<thread>, the dumps numbered in order over all threads. The user's thread
            # (01): without AgentWatch, the chat calls with it, the streams with it. The worker's: its start-up, its
            # share of the chat calls.
            dumps: dict[int, list[Path]] = {}
            for path in sorted(scratch.glob("callgrind.out.*-*"), key=lambda path: int(path.name.split(".")[2]
                                                                                        .split("-")[0])):
                dumps.setdefault(int(path.name.rsplit("-", 1)[1]), []).append(path)
            user = [_callgrind_totals(path)[1] for path in dumps.pop(1)]
            worker = [_callgrind_totals(path)[0] for path in next(iter(dumps.values()), [])]
            base_chat, base_stream, with_chat, with_stream = (
                loops[_COUNTED_LOOPS[what, watched]] / INSTRUCTION_CALLS[what]
                for loops, what, watched in ((user[0], "chat", False), (user[0], "stream", False),
                                             (user[1], "chat", True), (user[2], "stream", True)))
            worker_share = f"{worker[1] / INSTRUCTION_CALLS['chat']:,.0f}" if len(worker) > 1 else "?"
            print(f"  {kind:>4}: chat call {base_chat:,.0f} without, {with_chat:,.0f} with: "
                  f"{with_chat - base_chat:+,.0f}; whole stream {base_stream:,.0f} / {with_stream:,.0f}: "
                  f"{with_stream - base_stream:+,.0f}; export "
                  f"worker {worker_share} per chat call (its thread, a batch of {INSTRUCTION_CALLS['chat']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000, help="timed calls per arm and kind of call")
    parser.add_argument("--rounds", type=int, default=40, help="alternations between the arms")
    parser.add_argument("--stub", choices=("process", "thread"), default="process",
                        help="run the stub provider in its own process (default) or in a thread of this one")
    parser.add_argument("--exporter", choices=("none", "down", "up", "all"), default="all",
                        help="exporter setting of the instrumented arm (see above)")
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process transport runs")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile summaries")
    parser.add_argument("--cpu", action="store_true",
                        help="only the in-process calls in CPU time, paired per call, and their profiles")
    parser.add_argument("--cold", type=int, default=0, metavar="MB",
                        help="with --cpu: copy MB megabytes before each call, the caches flushed (e.g. 16)")
    parser.add_argument("--instructions", action="store_true",
                        help="only count instructions per in-process call with callgrind (see above; minutes)")
    parser.add_argument("--keep", metavar="DIR", help="with --instructions: keep the callgrind files in DIR")
    parser.add_argument("--pin", action="store_true",
                        help="pin this process to one CPU and the stub and collector to the others: the kernel's "
                             "placement of the stub's thread (on this thread's CPU or not) otherwise moves the "
                             "loopback times by ~100 us from round to round on a 2-CPU machine")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if args.pin and len(cpus) >= 2:
        PIN[:] = [{cpus[0]}, set(cpus[1:])]
        os.sched_setaffinity(0, PIN[0])
    kinds = ("none", "down", "up") if args.exporter == "all" else (args.exporter,)
    if args.cpu:
        _cpu_only(args.calls, not args.no_profile, args.cold)
        return
    if args.instructions:
        _instructions(kinds, args.keep)
        return
    from _framework_overhead import scratch_dir

    spool = scratch_dir("aw-bench-spool-")
    SETTINGS["down"] = {"proxy_url": f"http://127.0.0.1:{_free_port()}/api/ingest", "spool_dir": spool}

    print(f"python {sys.version.split()[0]}, openai {openai.__version__}, httpx {httpx.__version__}; "
          f"{args.calls} calls per arm in {args.rounds} rounds; stub in a {args.stub}")
    results: dict[str, tuple[float, float]] = {}
    with _stub(args.stub) as base_url, contextlib.ExitStack() as stack:
        if "up" in kinds:
            SETTINGS["up"] = {"proxy_url": stack.enter_context(_collector())}
        client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
        chat, stream = _calls(client)
        for kind in kinds:
            given = ", ".join(f"{key}={value!r}" for key, value in SETTINGS[kind].items())
            print(f"loopback stub, exporter {kind} (init({given})):")
            [loopback] = _compare(("chat.completions",), chat, args.calls, args.rounds, SETTINGS[kind])
            first_chunk, _whole = _compare(("stream: time to first chunk", "stream: whole stream"), stream,
                                           args.calls, args.rounds, SETTINGS[kind])
            results[kind] = (loopback, first_chunk)
            if not args.no_profile:
                print("    chat.completions:")
                _profile(chat, SETTINGS[kind])
                print("    stream (read to its end):")
                _profile(stream, SETTINGS[kind])
        client.close()

    if not args.no_in_process:
        in_process = _in_process_client()
        chat, stream = _calls(in_process)
        print("in-process transport (no socket), exporter none:")
        _compare(("chat.completions",), chat, args.calls, args.rounds)
        _compare(("stream: time to first chunk", "stream: whole stream"), stream, args.calls, args.rounds)
    print(f"core call cycle alone: {_core_cycle():.1f} us (start_llm_call + set_usage + end, part of every "
          "added time above)")
    for kind, (loopback, first_chunk) in results.items():
        target = TARGETS_US[kind]
        print(f"target ({kind}): added <= {target:.0f} us median per call on loopback -> "
              f"{'PASS' if loopback <= target else 'OVER'} ({loopback:+.1f} us); "
              f"time to first chunk {first_chunk:+.1f} us")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--instructions-child":
        _instructions_child(sys.argv[2], sys.argv[3])
    else:
        main()
