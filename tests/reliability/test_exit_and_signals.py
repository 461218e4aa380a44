"""Process exit with spans queued: flushed within the shutdown timeout, on a normal exit and on SIGTERM.

The victims call plain ``agentwatch.init()``: the SIGTERM handler must come with it, nothing else wired.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import ROOT, UNUSED_PLUGINS, run_script, scale

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")

SPANS = scale(2_000, 20_000)

_WIRE = """
import agentwatch

start = agentwatch.init
"""


def _names(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["name"] for line in path.read_text().splitlines()]


def _spawn(code: str, tmp_path: Path) -> subprocess.Popen[str]:
    script = tmp_path / "victim.py"
    script.write_text(_WIRE + code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update(PYTHONPATH=str(ROOT), **UNUSED_PLUGINS)
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=str(ROOT))


def _wait_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "ready", (line, process.stderr.read() if process.stderr else "")


def test_normal_exit_flushes_queued_spans_within_the_timeout(tmp_path: Path) -> None:
    target = tmp_path / "exit.jsonl"
    result = run_script(f"""
        import agentwatch
        agentwatch.init(exporters=["jsonl:{target}"], flush_interval=3600)
        for i in range({SPANS}):
            agentwatch.event(f"e{{i}}")
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(n for n in _names(target) if n != "process.start") == sorted(f"e{i}" for i in range(SPANS))


def test_sigterm_with_default_action_flushes_then_dies_by_the_signal(tmp_path: Path) -> None:
    target = tmp_path / "term.jsonl"
    process = _spawn(f"""
import time
start(exporters=["jsonl:{target}"], flush_interval=3600)
for i in range({SPANS}):
    agentwatch.event(f"e{{i}}")
print("ready", flush=True)
time.sleep(60)
""", tmp_path)
    _wait_ready(process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == -signal.SIGTERM  # the exit status the default action gives
    names = _names(target)
    assert {f"e{i}" for i in range(SPANS)} <= set(names)
    assert len(names) == len(set(names))


def test_sigterm_chains_to_the_previous_python_handler(tmp_path: Path) -> None:
    target = tmp_path / "chain.jsonl"
    process = _spawn(f"""
import signal, sys, time
def previous(signum, frame):
    print("previous handler ran", flush=True)
    sys.exit(7)
signal.signal(signal.SIGTERM, previous)
start(exporters=["jsonl:{target}"], flush_interval=3600)
for i in range(500):
    agentwatch.event(f"e{{i}}")
print("ready", flush=True)
time.sleep(60)
""", tmp_path)
    _wait_ready(process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 7, err
    assert "previous handler ran" in out
    assert {f"e{i}" for i in range(500)} <= set(_names(target))


def test_sigterm_ignored_before_stays_ignored_but_flushes(tmp_path: Path) -> None:
    target = tmp_path / "ign.jsonl"
    process = _spawn(f"""
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
start(exporters=["jsonl:{target}"], flush_interval=3600)
agentwatch.event("before-term")
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.2)
agentwatch.event("after-term")
print("survived", flush=True)
""", tmp_path)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "survived" in out
    assert {"before-term", "after-term"} <= set(_names(target))


def test_sigterm_during_heavy_enqueue_neither_deadlocks_nor_loses_spans(tmp_path: Path) -> None:
    """The signal lands while the main thread is (often) inside enqueue: half the spans take the lock-free
    append, half (more attributes than a plain span has) the locked, sized path. The bounds are set above
    what the loop makes before the signal, so any span missing was lost to the signal, not dropped by the
    queue's policy (a tight loop outruns the worker and would drop the oldest otherwise)."""
    target = tmp_path / "busy.jsonl"
    process = _spawn(f"""
wide = {{f"k{{n}}": n for n in range(20)}}
start(exporters=["jsonl:{target}"], flush_interval=0.05, max_queue_size=4_000_000, max_queue_bytes=1 << 34)
print("ready", flush=True)
for i in range(2_000_000):
    agentwatch.event(f"e{{i}}", wide if i & 1 else None)
""", tmp_path)
    _wait_ready(process)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == -signal.SIGTERM
    names = _names(target)
    made = [n for n in names if n.startswith("e")]
    assert made, "nothing was exported"
    last = max(int(n[1:]) for n in made)
    # Every span made before the signal was handled is in the file, once.
    assert len(made) == len(set(made)) == last + 1


def test_uninstall_restores_the_previous_handler(tmp_path: Path) -> None:
    result = run_script("""
        import signal, agentwatch
        from agentwatch import _signals
        def mine(signum, frame):
            pass
        signal.signal(signal.SIGTERM, mine)
        agentwatch.init(exporters=[])
        assert _signals.installed() and signal.getsignal(signal.SIGTERM) is not mine
        agentwatch.shutdown()
        assert signal.getsignal(signal.SIGTERM) is mine
        agentwatch.init(exporters=[])
        assert _signals.installed()
        _signals.uninstall()
        assert signal.getsignal(signal.SIGTERM) is mine
        agentwatch.shutdown()
        assert signal.getsignal(signal.SIGTERM) is mine
        print("ok")
    """, tmp_path)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
