"""``examples/openai_agents_resume.py`` run as users run it, in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "openai_agents_resume.py"


def test_the_resume_example_blocks_billing_then_finishes_without_repeating_a_turn() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTWATCH_", "OPENAI_"))}
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("blocked: billing budget_per_hour") and lines[0].endswith(
        "waiting: Billing with 5 input items")
    assert lines[1] == "resumed: 'Order A-17 is refunded.'; tool runs: ['A-17']; model calls left: 0"
