"""A batch the collector stores but for some spans it rejects (202 with ``rejected``): the program is told. Found
2026-12-06: metadata nested deeper than the collector takes lost its spans with flush() True and no word in the log."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentwatch.server import ServerHandle, start_background

PROGRAM = """
import sys
import agentwatch

agentwatch.init(proxy_url=sys.argv[1])
deep = "x"
for _ in range(300):
    deep = [deep]
with agentwatch.trace("too-deep"):
    agentwatch.set_metadata(deep=deep)
with agentwatch.trace("plain"):
    pass
print("first flush", agentwatch.flush())
with agentwatch.trace("later"):
    pass
print("second flush", agentwatch.flush())
"""


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[ServerHandle]:
    handle = start_background(port=0, db_path=tmp_path / "collector.db")
    try:
        yield handle
    finally:
        handle.stop()


def test_spans_the_collector_rejects_make_flush_false_and_are_logged(tmp_path: Path, collector: ServerHandle) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    done = subprocess.run([sys.executable, str(program), collector.url.rstrip("/") + "/api/ingest"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["first flush False", "second flush True"], done.stdout + done.stderr
    assert "the collector stored a batch but rejected 1 of its spans (dropped)" in done.stderr
    assert "nested more than 200 levels deep" in done.stderr
    traces = httpx.get(f"{collector.url.rstrip('/')}/api/traces", timeout=30).json()["traces"]
    names = {trace["name"] for trace in traces}
    assert names == {"plain", "later"}  # the batch's other spans stored
