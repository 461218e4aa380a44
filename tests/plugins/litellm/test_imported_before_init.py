"""``from litellm import completion`` at the top of a module, ``agentwatch.init()`` later: calls are still limited.

The program then holds LiteLLM's function itself, which replacing ``litellm.completion`` never reaches. Found on
2026-12-05 against the stub: an ``anthropic/`` model went unrecorded and unlimited (the budget ignored, both calls
sent); an ``openai/`` model was blocked in the openai SDK underneath, where LiteLLM turned the block into its
``InternalServerError`` and retried it. A program in a fresh interpreter, as a user's module is imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]

PROGRAM = r'''
import os
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_TELEMETRY"] = "False"
import asyncio, json, sys
from litellm import acompletion, completion  # before init(), as at the top of a user's module
from litellm import main as litellm_main
from tests.stubs.provider_server import Reply, StubProvider
import agentwatch
from agentwatch import CircuitBreakerException

provider, how = sys.argv[1], sys.argv[2]
memory = agentwatch.InMemoryExporter()
agentwatch.init(exporters=[memory])
outcomes = []
with StubProvider() as stub:
    model = {"openai": "openai/gpt-4o-mini", "anthropic": "anthropic/claude-3-5-sonnet-20240620"}[provider]
    base = stub.openai_base_url if provider == "openai" else stub.base_url
    kwargs = {"model": model, "messages": [{"role": "user", "content": "hi"}], "api_base": base,
              "api_key": "test-key", "num_retries": 2}
    stub.queue(Reply(content="spent", input_tokens=1000, output_tokens=100))
    with agentwatch.agent("researcher", budget_per_hour=0.0001, block_on_threshold=True):
        for _ in range(2):
            try:
                if how == "completion":
                    completion(**kwargs)
                elif how == "stream":  # usage asked for (the stub, as OpenAI, sends it only then)
                    "".join(chunk.choices[0].delta.content or "" for chunk in completion(
                        stream=True, stream_options={"include_usage": True}, **kwargs) if chunk.choices)
                else:
                    asyncio.run(acompletion(**kwargs))
                outcomes.append("sent")
            except CircuitBreakerException as blocked:
                outcomes.append(blocked.reason)
            except Exception as error:
                outcomes.append(type(error).__name__)
    requests = stub.count()
agentwatch.flush()
spans = [[span["name"], span["status"]] for span in memory.spans if span["kind"] == "llm"]
agentwatch.shutdown()
# shutdown() leaves LiteLLM as it was: its @client wrapper calls LiteLLM's own function again.
wrapper = litellm_main.completion
restored = wrapper.__closure__[wrapper.__code__.co_freevars.index("original_function")].cell_contents
print(json.dumps({"outcomes": outcomes, "requests": requests, "spans": spans,
                  "restored": restored is wrapper.__wrapped__}))
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["completion", "stream", "acompletion"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_function_imported_before_init_is_limited(tmp_path: Path, provider: str, how: str) -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM, provider, how], cwd=tmp_path, capture_output=True,
                          text=True, timeout=100, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert report["outcomes"] == ["sent", "budget_per_hour"], report  # the block itself, not a LiteLLM error
    assert report["requests"] == 1  # the blocked call was never sent, nor retried
    name = "litellm.acompletion" if how == "acompletion" else "litellm.completion"
    assert report["spans"] == [[name, "ok"], [name, "blocked"]]
    assert report["restored"]
