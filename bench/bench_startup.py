"""Start-up cost: ``import agentwatch``, ``init()``, and the GC pauses caused by what init() leaves behind.

    /work/venv/bin/python bench/bench_startup.py [--runs 15] [--profile] [--preimport openai,langchain_core]

Each run is a fresh interpreter (what a user's program pays), with every framework installed, no collector
listening (the default HTTP exporter on, as after a plain ``init()``). Printed per figure: the minimum and the
median of the runs, wall clock and CPU time of the process (CPU time is steadier on a loaded machine). GC
pauses are timed in the collecting thread's CPU time, so that preemption on a busy machine does not count.

- import: ``import agentwatch``;
- init: ``agentwatch.init()`` right after it;
- gc: a full collection (``gc.collect()``, timed through ``gc.callbacks``) after import + init, compared with
  the same program without AgentWatch: the difference is what init()'s objects cost every full pass; also
  the longest automatic collection seen while the program then allocates (what a user's call would stall).
- first priced call: ``Client.price`` of a model right after init() (genai-prices' answer read from the shipped
  index: no price-table import);
- modules: how many modules import + init added, and the heaviest ones (``-X importtime``) with ``--profile``,
  with a cProfile summary of init().

With ``--preimport`` each interpreter first imports those modules (not timed), so that init() instruments them
(plugins instrument a framework when it is imported, so by default init() instruments none).

init() is also timed in the calling thread's CPU time alone: the export worker starts at its end, and its
work (the process span, the first connection attempt) lands in the process CPU time of a busy machine.

With ``--instructions`` (valgrind's callgrind; a minute or more per framework) it prints instead the machine
instructions ``import agentwatch`` and ``init()`` (default exporter) execute on the calling thread, in a fresh
interpreter after the ``--preimport`` modules: a count that does not move with the machine's load, for comparing
two versions on a noisy machine (time: the runs above). Each is run inside ``itertools.starmap``, the only place
callgrind collects (``--toggle-collect=starmap_next``); the export worker's thread is not counted.

Targets (issue 20): import <= 30 ms, init <= 30 ms, no GC pause > 5 ms caused by init's objects.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 30.0
GC_TARGET_MS = 5.0

_PROGRAM = r"""
import gc, importlib, json, sys, time
for name in PREIMPORT:  # the user's frameworks, imported before agentwatch: init() instruments them
    importlib.import_module(name)
pauses = []
started = [0.0]
def _timer(phase, info):
    if phase == "start":
        started[0] = time.thread_time()
    else:
        pauses.append((info["generation"], (time.thread_time() - started[0]) * 1e3))
modules = len(sys.modules)
wall, cpu = time.perf_counter(), time.process_time()
if WATCH:
    import agentwatch
wall_import, cpu_import = time.perf_counter(), time.process_time()
thread_import = time.thread_time()
if WATCH:
    agentwatch.init()
wall_init, cpu_init = time.perf_counter(), time.process_time()
thread_init = time.thread_time() - thread_import
if WATCH:
    client = agentwatch.get_client()
    wall_price, cpu_price = time.perf_counter(), time.thread_time()
    client.price("gpt-4o", "openai", 1000, 100)
    wall_price, cpu_price = time.perf_counter() - wall_price, time.thread_time() - cpu_price
else:
    wall_price = cpu_price = 0.0
objects = len(gc.get_objects())
frozen = gc.get_freeze_count()
gc.callbacks.append(_timer)
gc.collect()
full = pauses[-1][1]
pauses.clear()
# A user's program allocating afterwards: containers that live a while, as a framework's would.
keep = []
for index in range(300_000):
    keep.append({"i": index, "l": [index]})
    if len(keep) > 20_000:
        keep = keep[10_000:]
gc.callbacks.remove(_timer)
print(json.dumps({
    "import_ms": (wall_import - wall) * 1e3, "import_cpu_ms": (cpu_import - cpu) * 1e3,
    "init_ms": (wall_init - wall_import) * 1e3, "init_cpu_ms": (cpu_init - cpu_import) * 1e3,
    "init_thread_cpu_ms": thread_init * 1e3, "price_ms": wall_price * 1e3, "price_cpu_ms": cpu_price * 1e3,
    "objects": objects, "frozen": frozen, "modules": len(sys.modules) - modules, "full_gc_ms": full,
    "max_auto_gc_ms": max((p for _, p in pauses), default=0.0),
    "gen2_collections": sum(1 for g, _ in pauses if g == 2),
}))
if WATCH:
    agentwatch.shutdown(0.1)
"""


#: As an installed package runs: with bytecode caches (pip compiles them on install; PYTHONDONTWRITEBYTECODE
#: would make every run compile every module again).
_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def _run(watch: bool, preimport: tuple[str, ...] = ()) -> dict[str, float]:
    program = f"WATCH = {watch}\nPREIMPORT = {list(preimport)!r}\n" + _PROGRAM
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, check=True,
                          env=_ENV)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _summary(runs: list[dict[str, float]], key: str) -> str:
    values = [run[key] for run in runs]
    return f"min {min(values):7.1f}  median {statistics.median(values):7.1f}"


def _import_profile(limit: int = 15) -> None:
    """The heaviest modules of ``import agentwatch; agentwatch.init()`` by cumulative import time."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import agentwatch; agentwatch.init()"],
                          capture_output=True, text=True, cwd=ROOT, check=True, env=_ENV)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative, name = line[len("import time:"):].split("|")
        rows.append((int(cumulative), int(self_us), name.rstrip()))
    print(f"  heaviest imports (cumulative us, self us) of {len(rows)} modules:")
    for cumulative, self_us, name in sorted(rows, reverse=True)[:limit]:
        print(f"    {cumulative:8d} {self_us:8d} {name}")


def _init_profile(limit: int = 12) -> None:
    """Where init() spends its time (cProfile, cumulative), in a fresh interpreter."""
    program = ("import cProfile, pstats, agentwatch\nprofile = cProfile.Profile()\nprofile.enable()\n"
               "agentwatch.init()\nprofile.disable()\n"
               f"pstats.Stats(profile).sort_stats('cumulative').print_stats({limit})\nagentwatch.shutdown(0.1)\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, check=True,
                          env=_ENV)
    rows = [line for line in done.stdout.splitlines() if line.strip()]
    start = next((index for index, line in enumerate(rows) if "ncalls" in line), 0)
    print("  init() profile (cProfile, cumulative s):")
    for line in rows[start:start + limit + 1]:
        print(f"    {line.strip()[:150]}")


def _instructions_of(statement: str, preimport: tuple[str, ...]) -> int:
    """Instructions callgrind counts inside ``statement`` (a callable and its arguments for ``itertools.starmap``),
    run after ``preimport`` in a fresh interpreter."""
    program = "".join(f"import {name}\n" for name in preimport) + (
        "import functools, importlib, itertools\n"
        f"list(itertools.starmap({statement}))\n"
        "import agentwatch\nagentwatch.shutdown(0)\n")
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--collect-atstart=no",
                           "--toggle-collect=starmap_next", sys.executable, "-c", program], capture_output=True,
                          text=True, cwd=ROOT, check=True, env={**_ENV, "PYTHONHASHSEED": "0"})
    collected = [line for line in done.stderr.splitlines() if "Collected :" in line]
    return int(collected[-1].rsplit(":", 1)[1])


def _instructions(preimport: tuple[str, ...]) -> None:
    _run(True, preimport)  # writes the bytecode caches and the entry-point cache
    imported = _instructions_of('importlib.import_module, [("agentwatch",)]', preimport)
    initialised = _instructions_of("functools.partial(__import__('agentwatch').init), [()]", preimport)
    print(f"python {sys.version.split()[0]}; callgrind, the calling thread"
          + (f"; imported first: {', '.join(preimport)}" if preimport else ""))
    print(f"  import agentwatch   {imported / 1e6:8.2f} M instructions")
    print(f"  init()              {initialised / 1e6:8.2f} M instructions")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--profile", action="store_true", help="also print the heaviest imports")
    parser.add_argument("--preimport", default="", metavar="MODULES",
                        help="comma-separated modules each interpreter imports first, untimed (e.g. "
                             "openai,langchain_core): init() then instruments them, as in a program that imports its "
                             "framework before init()")
    parser.add_argument("--instructions", action="store_true",
                        help="count machine instructions with callgrind instead of timing (see above)")
    args = parser.parse_args()
    preimport = tuple(name for name in args.preimport.split(",") if name)
    if args.instructions:
        _instructions(preimport)
        return
    _run(True, preimport)  # writes the bytecode caches
    bare = [_run(False, preimport) for _ in range(args.runs)]
    watched = [_run(True, preimport) for _ in range(args.runs)]
    print(f"python {sys.version.split()[0]}; {args.runs} fresh interpreters per arm; ms"
          + (f"; imported first: {', '.join(preimport)}" if preimport else ""))
    print(f"  import agentwatch   wall {_summary(watched, 'import_ms')}   cpu {_summary(watched, 'import_cpu_ms')}")
    print(f"  init()              wall {_summary(watched, 'init_ms')}   cpu {_summary(watched, 'init_cpu_ms')}")
    print(f"  init() in its own thread's CPU time      {_summary(watched, 'init_thread_cpu_ms')}")
    print(f"  first priced call   wall {_summary(watched, 'price_ms')}   cpu {_summary(watched, 'price_cpu_ms')}")
    print(f"  modules added: {statistics.median(run['modules'] for run in watched):.0f}; gc-tracked objects "
          f"{statistics.median(run['objects'] for run in bare):.0f} -> "
          f"{statistics.median(run['objects'] for run in watched):.0f} "
          f"(+{statistics.median(run['frozen'] for run in watched):.0f} frozen by init: never walked again)")
    full_bare = statistics.median(run["full_gc_ms"] for run in bare)
    full_watched = statistics.median(run["full_gc_ms"] for run in watched)
    auto_bare = statistics.median(run["max_auto_gc_ms"] for run in bare)
    auto_watched = statistics.median(run["max_auto_gc_ms"] for run in watched)
    print(f"  full gc pass        without {full_bare:6.2f}  with {full_watched:6.2f}  caused by init "
          f"{full_watched - full_bare:+6.2f}")
    print(f"  longest automatic gc while allocating: without {auto_bare:6.2f}  with {auto_watched:6.2f}")
    import_ms = statistics.median(run["import_ms"] for run in watched)
    init_ms = statistics.median(run["init_ms"] for run in watched)
    gc_added = max(full_watched - full_bare, auto_watched - auto_bare)
    verdict = "PASS" if import_ms <= TARGET_MS and init_ms <= TARGET_MS and gc_added <= GC_TARGET_MS else "OVER"
    print(f"target: import <= {TARGET_MS:.0f} ms, init <= {TARGET_MS:.0f} ms, gc added <= {GC_TARGET_MS:.0f} ms -> "
          f"{verdict} (median import {import_ms:.1f}, init {init_ms:.1f}, gc {gc_added:+.2f})")
    if args.profile:
        _import_profile()
        _init_profile()


if __name__ == "__main__":
    main()
