"""A third-party plugin, installed by pip through its own entry point, traces, prices and blocks.

``examples/toychat-plugin`` is a separate distribution (a toy framework plus its AgentWatch plugin, written
against ``agentwatch.instrumentation`` only). It is pip-installed (editable, offline, no build isolation) into a
throwaway virtualenv layered on this one, and a program in a fresh interpreter there calls plain
``agentwatch.init()``: AgentWatch must find the plugin by its ``agentwatch.plugins`` entry point, instrument
toychat when the program imports it, price the call from its own price table and stop a request over budget
before toychat sends it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "toychat-plugin"
MODEL = "claude-3-5-haiku-latest"

PROGRAM = textwrap.dedent(f"""
    import json

    import agentwatch
    from agentwatch import CircuitBreakerException

    memory = agentwatch.InMemoryExporter()
    agentwatch.init(exporters=[memory], budget_per_hour=0.001, block_on_threshold=True)

    import toychat  # after init(): the plugin instruments toychat when it is imported

    model = toychat.Model({MODEL!r})
    writer = toychat.Agent("writer", model)
    answer = writer.run("draft the summary")  # under budget: sent, priced (it costs more than the budget)
    blocks = []
    for attempt in (lambda: model.chat("once more"), lambda: writer.run("and again")):
        try:
            attempt()
        except CircuitBreakerException as error:
            blocks.append({{"reason": error.reason, "scope": error.scope}})
    agentwatch.flush()
    print(json.dumps({{
        "answer": answer, "sent": len(model.sent), "blocks": blocks, "spans": memory.spans,
        "plugins": agentwatch.get_state()["plugins"],
        "price": agentwatch.get_client().price({MODEL!r}, "anthropic", 2000, 300, 800, 0),
    }}))
""")


def _layered_venv(root: Path) -> Path:
    """A virtualenv that sees every package of this one (agentwatch included) and installs into its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    # addsitedir (not a bare path) so that the .pth files there run too: this env's editable agentwatch.
    parents = [path for path in sys.path if path.endswith("site-packages") and Path(path).is_dir()]
    Path(own, "_layer_parent_env.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({path!r})" for path in parents) + "\n")
    return python


@pytest.fixture(scope="module")
def toychat_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    python = _layered_venv(tmp_path_factory.mktemp("venv"))
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-e",
         str(EXAMPLE)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python


def _run(python: Path, tmp_path: Path) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTWATCH_", "PYTHON"))}
    env["AGENTWATCH_SPOOL_DIR"] = str(tmp_path / "spool")
    done = subprocess.run([str(python), "-c", PROGRAM], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_example_plugin_traces_prices_and_blocks_through_its_entry_point(toychat_python: Path,
                                                                            tmp_path: Path) -> None:
    out = _run(toychat_python, tmp_path)
    assert "toychat" in out["plugins"]  # found by its entry point, registered when toychat was imported
    assert out["answer"] == "echo: draft the summary"

    # Traced: the agent run and its LLM call, in one trace, the call under the agent's span and scope.
    spans = out["spans"]
    agent = next(s for s in spans if s["kind"] == "agent" and s["status"] == "ok")
    call = next(s for s in spans if s["kind"] == "llm" and s["status"] == "ok")
    assert agent["name"] == "writer" and agent["agent_name"] == "writer"
    assert call["name"] == f"toychat.{MODEL}" and call["model"] == MODEL and call["provider"] == "anthropic"
    assert call["parent_span_id"] == agent["span_id"] and call["trace_id"] == agent["trace_id"]
    assert call["agent_name"] == "writer" and call["attributes"]["framework"] == "toychat"
    assert call["attributes"]["finish_reason"] == "end_turn"

    # Priced by AgentWatch: Anthropic's usage normalised (cache reads counted in), the table's price.
    assert (call["input_tokens"], call["cached_input_tokens"], call["output_tokens"]) == (2000, 800, 300)
    cost, estimated = out["price"]
    assert not estimated and cost > 0.001
    assert call["cost_usd"] == pytest.approx(cost)
    assert "cost_estimated" not in call["attributes"]

    # Blocked before the request: the call over budget and the agent's next run never reached toychat's
    # transport, each raised CircuitBreakerException into the program and left a blocked span.
    assert out["sent"] == 1
    assert out["blocks"] == [{"reason": "budget_per_hour", "scope": "global"}] * 2
    blocked = [s for s in spans if s["status"] == "blocked"]
    assert sorted(s["kind"] for s in blocked) == ["agent", "llm"]
    blocked_call = next(s for s in blocked if s["kind"] == "llm")
    assert blocked_call["name"] == f"toychat.{MODEL}" and blocked_call["cost_usd"] == 0
    assert blocked_call["attributes"]["breaker.reason"] == "budget_per_hour"
    # The agent stopped at its start is the agent's block (its span named after it), a block of its own.
    blocked_run = next(s for s in blocked if s["kind"] == "agent")
    assert (blocked_run["agent_name"], blocked_run["agent_id"]) == ("writer", "writer")
    assert blocked_run["attributes"]["breaker.block_point"] is True
    assert blocked_call["attributes"]["breaker.block_point"] is True
