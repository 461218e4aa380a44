"""The documented examples of both blocking modes run as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize(("script", "expected"), [
    ("langgraph_raise.py", ["blocked: researcher budget_per_hour", "waiting node: ('researcher',)",
                            "resumed; report:"]),
    ("langgraph_interrupt.py", ["paused for approval: researcher budget_per_hour", "report: Report:"]),
])
def test_example_runs(script: str, expected: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    result = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 0, result.stderr
    for line in expected:
        assert line in result.stdout
