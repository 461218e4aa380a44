"""flush() and shutdown() take what a program may pass as a timeout. Found 2026-12-06: flush(None) and shutdown(None)
raised "unsupported operand type(s) for +: 'float' and 'NoneType'" from the export worker's clock, flush(inf) an
OverflowError, flush("5") the same TypeError with no word of which argument."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PROGRAM = textwrap.dedent("""
    import agentwatch

    exporter = agentwatch.InMemoryExporter()
    agentwatch.init(exporters=[exporter])
    with agentwatch.trace("job"):
        pass
    print("none", agentwatch.flush(None), sorted({span["name"] for span in exporter.spans}))
    print("inf", agentwatch.flush(float("inf")))
    print("negative", agentwatch.flush(-1))
    for bad in ("5", float("nan"), True):
        try:
            agentwatch.flush(bad)
        except (TypeError, ValueError) as error:
            print("refused", type(error).__name__, error)
    with agentwatch.trace("last"):
        pass
    agentwatch.shutdown(None)
    print("shutdown", sorted({span["name"] for span in exporter.spans}))
""")


def test_flush_and_shutdown_timeouts(tmp_path: Path) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "none True ['job', 'process.start']"
    assert lines[1] == "inf True"
    assert lines[2] in ("negative True", "negative False")  # nothing queued: no wait needed
    assert lines[3] == "refused TypeError flush() timeout must be a number of seconds or None, not str"
    assert lines[4] == "refused ValueError flush() timeout must be a number of seconds, got nan"
    assert lines[5] == "refused TypeError flush() timeout must be a number of seconds or None, not bool"
    assert lines[6] == "shutdown ['job', 'last', 'process.start']"
    assert "internal error" not in done.stderr
