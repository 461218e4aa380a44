"""Zero-config tracing whatever the import order: ``init()`` first, then the handler's import brings in LangChain."""

from __future__ import annotations

import subprocess
import sys

_PROGRAM = """
import agentwatch
memory = agentwatch.InMemoryExporter()
agentwatch.init(exporters=[memory])
from agentwatch.plugins.langchain import AgentWatchHandler  # imports langchain_core: the plugin's hook runs now
from langchain_core.language_models import FakeListChatModel
FakeListChatModel(responses=["a"]).invoke("x")
agentwatch.flush()
print(sorted(span["name"] for span in memory.by_kind("llm")), "langchain" in agentwatch.get_state()["plugins"])
"""


def test_handler_imported_after_init_still_instruments_langchain() -> None:
    # A fresh interpreter: in this one langchain_core is imported already.
    run = subprocess.run([sys.executable, "-c", _PROGRAM], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "internal error" not in run.stderr
    assert run.stdout.split("\n")[0] == "['FakeListChatModel'] True"
