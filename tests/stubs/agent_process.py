"""An SDK program looping OpenAI calls against the stub provider in its own interpreter, and the outcomes it
prints (one JSON line per attempted call): what operator-control tests drive and watch."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

__all__ = ["PROGRAM", "WAIT", "Agent"]

WAIT = 60.0  # generous: an outcome that never comes fails, a slow machine does not

PROGRAM = textwrap.dedent("""
    import json, sys, time
    import openai
    import agentwatch

    agentwatch.init()  # the collector's URL comes from AGENTWATCH_URL, as a deployment sets it
    name, base_url = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0,
                           default_headers={"X-Agent-Process": name})
    with agentwatch.agent(name):
        n = 0
        while True:
            n += 1
            try:
                client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
                print(json.dumps({"n": n, "ok": True, "t": time.time()}), flush=True)
            except agentwatch.CircuitBreakerException as error:
                print(json.dumps({"n": n, "ok": False, "reason": error.reason, "scope": error.scope,
                                  "threshold": error.threshold, "t": time.time()}), flush=True)
            time.sleep(0.05)
""")


class Agent:
    """One SDK program and the outcomes it printed, one per attempted call."""

    def __init__(self, name: str, program: Path, collector: str, provider: str) -> None:
        env = {**os.environ, "AGENTWATCH_URL": f"{collector}/api/ingest", "PYTHONUNBUFFERED": "1"}
        for key in ("AGENTWATCH_API_KEY", "AGENTWATCH_LIMITS_BACKEND", "AGENTWATCH_REMOTE_CONTROL"):
            env.pop(key, None)
        self.name = name
        self.process = subprocess.Popen([sys.executable, str(program), name, provider], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def next_outcome(self) -> dict[str, Any]:
        try:
            outcome = self.lines.get(timeout=WAIT)
        except queue.Empty:
            stderr = self.process.stderr.read() if self.process.poll() is not None and self.process.stderr else ""
            raise AssertionError(f"{self.name}: no outcome for {WAIT} s; stderr: {stderr[-2000:]}") from None
        self.seen.append(outcome)
        return outcome

    def wait_for(self, ok: bool, reason: str | None = None) -> dict[str, Any]:
        """The first outcome from now on that is ``ok`` (or blocked with ``reason``); skipped ones are kept."""
        while True:
            outcome = self.next_outcome()
            if outcome["ok"] == ok and (reason is None or outcome.get("reason") == reason):
                return outcome

    def outcomes(self, count: int) -> list[dict[str, Any]]:
        return [self.next_outcome() for _ in range(count)]
