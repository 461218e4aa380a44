"""The collector's address as ``agentwatch serve`` prints it (``http://127.0.0.1:3001``, no path) given as
``proxy_url``/``AGENTWATCH_URL``: a program's spans reach the collector. Found 2026-12-06: every batch was posted to
``/`` and answered 405, and the spans were dropped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agentwatch.server import ServerHandle

PROGRAM = """
import sys
import agentwatch

agentwatch.init(**({"proxy_url": sys.argv[2]} if sys.argv[1] == "argument" else {}))
with agentwatch.trace(sys.argv[3]):
    with agentwatch.span("step"):
        pass
print("flushed", agentwatch.flush())
"""


@pytest.mark.parametrize("how", ["argument", "environment"])
@pytest.mark.parametrize("suffix", ["", "/"])
def test_the_collectors_root_url_receives_the_spans(tmp_path: Path, collector: ServerHandle, how: str,
                                                     suffix: str) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    url = collector.url.rstrip("/") + suffix
    name = f"root-url-{how}-{len(suffix)}"
    environ = {**os.environ, "AGENTWATCH_URL": url} if how == "environment" else dict(os.environ)
    done = subprocess.run([sys.executable, str(program), how, url, name], capture_output=True, text=True,
                          timeout=120, env=environ, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "flushed True" in done.stdout, done.stdout + done.stderr
    assert "405" not in done.stderr
    traces = httpx.get(f"{collector.url.rstrip('/')}/api/traces", params={"search": name}, timeout=30).json()
    assert [trace["name"] for trace in traces["traces"]] == [name]
    assert traces["traces"][0]["span_count"] == 2


def test_a_path_of_its_own_is_kept() -> None:
    """A reverse proxy's prefix or another receiver's route is the user's to choose: only an empty path is completed."""
    from agentwatch._config import build_config

    assert build_config({"proxy_url": "https://proxy.example/agentwatch/api/ingest"}).proxy_url == \
        "https://proxy.example/agentwatch/api/ingest"
    assert build_config({"proxy_url": "http://user:secret@collector:3001"}).proxy_url == \
        "http://user:secret@collector:3001/api/ingest"
