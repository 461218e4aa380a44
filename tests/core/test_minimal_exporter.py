"""An exporter of the program's own with ``export()`` alone (all ``init(exporters=[...])`` checks for) works with
``flush()``, ``shutdown()`` and the exit. Found 2026-12-06: ``agentwatch.flush()`` and ``agentwatch.shutdown()``
raised ``AttributeError: ... has no attribute 'force_flush'`` into the program."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROGRAM = """
import agentwatch

class Collect:
    spans = []
    def export(self, spans):
        Collect.spans.extend(spans)
        return True

agentwatch.init(exporters=[Collect()])
with agentwatch.trace("job"):
    pass
print("flushed", agentwatch.flush(), sorted(span["name"] for span in Collect.spans))
with agentwatch.trace("later"):
    pass
agentwatch.shutdown()
print("shut down", "later" in [span["name"] for span in Collect.spans])
agentwatch.init(exporters=[Collect()])
with agentwatch.trace("at exit"):
    pass
"""


def test_an_exporter_with_export_alone(tmp_path: Path) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "flushed True ['job', 'process.start']" in done.stdout, done.stdout + done.stderr
    assert "shut down True" in done.stdout, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "AttributeError" not in done.stderr, done.stderr
