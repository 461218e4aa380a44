"""What a program attaches to spans reaches the collector, and what the collector rejects anyway is said.

Found 2026-12-06: metadata nested deeper than the collector takes (200 levels) lost its span with flush() True and no
word in the log, and a list given to set_metadata and changed afterwards changed spans not exported yet. The SDK now
keeps bounded copies of what a program attaches (set_metadata, a scope's attributes, set_attribute, event data: 32
levels, 4,000 characters a string); a span the collector still rejects (202 with ``rejected``: here attributes written
into a span by hand) is logged with the collector's reasons and makes flush() False."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from agentwatch.server import ServerHandle

PROGRAM = """
import sys
import agentwatch

agentwatch.init(proxy_url=sys.argv[1])
deep = "x"
for _ in range(300):
    deep = [deep]
shared = ["first"]
with agentwatch.trace("deep-metadata"):
    agentwatch.set_metadata(deep=deep, shared=shared)
    agentwatch.event("deep-event", {"deep": deep})
shared.append("changed later")
print("first flush", agentwatch.flush())
with agentwatch.trace("written-by-hand"):
    agentwatch.current_span().attributes["deep"] = deep
with agentwatch.trace("plain"):
    pass
print("second flush", agentwatch.flush())
with agentwatch.trace("later"):
    pass
print("third flush", agentwatch.flush())
"""


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    return depth


def test_attached_values_are_bounded_copies_and_rejections_are_said(tmp_path: Path, collector: ServerHandle) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    done = subprocess.run([sys.executable, str(program), collector.url.rstrip("/") + "/api/ingest"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["first flush True", "second flush False", "third flush True"], \
        done.stdout + done.stderr
    assert "the collector stored a batch but rejected 1 of its spans (dropped)" in done.stderr
    assert "nested more than 200 levels deep" in done.stderr

    api = httpx.Client(base_url=collector.url, timeout=30)
    traces = {trace["name"]: trace for trace in api.get("/api/traces").json()["traces"]}
    assert set(traces) == {"deep-metadata", "plain", "later"}  # the batch's other spans stored
    spans = api.get(f"/api/traces/{traces['deep-metadata']['trace_id']}/spans").json()["spans"]
    root = next(span for span in spans if span["name"] == "deep-metadata")
    metadata = root["attributes"]["metadata"]
    assert metadata["shared"] == ["first"]  # a copy: the program's list changed afterwards
    assert 30 <= _depth(metadata["deep"]) <= 33  # cut to text below 32 levels, not refused
    event = next(span for span in spans if span["name"] == "deep-event")
    assert 30 <= _depth(event["attributes"]["deep"]) <= 33
