"""Zero-config tracing whatever the import order: ``init()`` first, then the handler's import brings in LangChain."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROGRAM = """
import agentwatch
memory = agentwatch.InMemoryExporter()
agentwatch.init(exporters=[memory])
{import_line}
from langchain_core.language_models import FakeListChatModel
FakeListChatModel(responses=["a"]).invoke("x")
agentwatch.flush()
print(sorted(span["name"] for span in memory.by_kind("llm")), "langchain" in agentwatch.get_state()["plugins"])
"""


@pytest.mark.parametrize("import_line", [
    # imports langchain_core: the plugin's hook runs while the handler's module is half-imported
    "from agentwatch.plugins.langchain import AgentWatchHandler",
    # a module of the plugin that the handler imports: it must not bring in LangChain (and so run the hook) itself
    "import agentwatch.plugins.langchain._messages",
])
def test_plugin_imported_after_init_still_instruments_langchain(import_line: str) -> None:
    # A fresh interpreter: in this one langchain_core is imported already.
    program = _PROGRAM.format(import_line=import_line)
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "internal error" not in run.stderr
    assert run.stdout.split("\n")[0] == "['FakeListChatModel'] True"
