"""What ``init()`` imports of LlamaIndex, and what it leaves for the program's own imports."""

from __future__ import annotations

import subprocess
import sys

_PROGRAM = """
import asyncio, sys
import llama_index.core
import agentwatch
memory = agentwatch.InMemoryExporter()
agentwatch.init(exporters=[memory])
print("imported by init():", "workflows.runtime.types.step_function" in sys.modules)
from llama_index.core.workflow import StartEvent, StopEvent, Workflow, step
from workflows.errors import WorkflowCancelledByUser

class Slow(Workflow):
    @step
    async def wait(self, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(30)
        return StopEvent(result="late")

async def main():
    handler = Slow(timeout=60).run()
    await asyncio.sleep(0.3)
    await handler.cancel_run()
    try:
        await handler
    except WorkflowCancelledByUser:
        print("cancelled")

asyncio.run(main())
agentwatch.flush()
print(sorted((span["name"], span["status"], span["attributes"].get("error.type")) for span in memory.spans
             if span["kind"] in ("graph", "node")))
"""


def test_a_workflow_cancelled_is_heard_though_init_did_not_import_its_event() -> None:
    """``init()`` does not import llama-index-workflows' runtime for its cancellation event (~15 ms for a program
    without workflows); a workflow imported afterwards and cancelled still ends its spans as cancelled."""
    run = subprocess.run([sys.executable, "-c", _PROGRAM], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "internal error" not in run.stderr
    assert run.stdout.splitlines() == [
        "imported by init(): False", "cancelled",
        "[('Slow', 'error', 'CancelledError'), ('wait', 'error', 'CancelledError')]"]
