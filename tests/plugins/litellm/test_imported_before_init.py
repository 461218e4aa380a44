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

provider, how, limit = sys.argv[1], sys.argv[2], sys.argv[3]
memory = agentwatch.InMemoryExporter()
blocks = []
if limit == "hard_budget":  # no max_tokens: the worst case (gpt-4o's 16k, Claude's 8k output tokens) does not fit
    agentwatch.init(exporters=[memory], budget_per_hour=0.05, hard_budget=True, on_block=blocks.append)
    budget = agentwatch.agent("researcher")
else:
    agentwatch.init(exporters=[memory], on_block=blocks.append)
    budget = agentwatch.agent("researcher", budget_per_hour=0.0001, block_on_threshold=True)
outcomes = []
with StubProvider() as stub:
    openai_model = "openai/gpt-4o" if limit == "hard_budget" else "openai/gpt-4o-mini"
    model = {"openai": openai_model, "anthropic": "anthropic/claude-3-5-sonnet-20240620"}[provider]
    base = stub.openai_base_url if provider == "openai" else stub.base_url
    kwargs = {"model": model, "messages": [{"role": "user", "content": "hi"}], "api_base": base,
              "api_key": "test-key", "num_retries": 2}
    stub.queue(Reply(content="spent", input_tokens=1000, output_tokens=100))
    with budget:
        for _ in range(2 if limit != "hard_budget" else 1):
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
print(json.dumps({"outcomes": outcomes, "requests": requests, "spans": spans, "on_block": len(blocks),
                  "restored": restored is wrapper.__wrapped__}))
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["completion", "stream", "acompletion"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_function_imported_before_init_is_limited(tmp_path: Path, provider: str, how: str) -> None:
    report = _run(tmp_path, provider, how, "budget_per_hour")
    assert report["outcomes"] == ["sent", "budget_per_hour"], report  # the block itself, not a LiteLLM error
    assert report["requests"] == 1  # the blocked call was never sent, nor retried
    name = "litellm.acompletion" if how == "acompletion" else "litellm.completion"
    assert report["spans"] == [[name, "ok"], [name, "blocked"]]
    assert report["on_block"] == 1
    assert report["restored"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["completion", "acompletion"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_hard_budgets_refusal_of_a_function_imported_before_init_is_not_retried(tmp_path: Path, provider: str,
                                                                                  how: str) -> None:
    """The refusal, raised below LiteLLM's ``@client`` wrapper (the HTTP layer's reservation of the worst case), was
    re-run by ``acompletion``'s ``num_retries=2``: three blocked spans, ``on_block`` three times (found by a probe)."""
    report = _run(tmp_path, provider, how, "hard_budget")
    assert report["outcomes"] == ["hard_budget"] and report["requests"] == 0, report
    name = "litellm.acompletion" if how == "acompletion" else "litellm.completion"
    assert report["spans"] == [[name, "blocked"]] and report["on_block"] == 1


ROUTER_PROGRAM = r'''
import os
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_TELEMETRY"] = "False"
import json, sys
import litellm  # before init(), as a program that uses LiteLLM imports it at the top
from tests.stubs.provider_server import Reply, StubProvider
import agentwatch
from agentwatch import CircuitBreakerException

memory = agentwatch.InMemoryExporter()
blocks = []
agentwatch.init(exporters=[memory], budget_per_hour=0.0001, block_on_threshold=True, on_block=blocks.append)
core_at_init = "litellm.router_rust.core" in sys.modules
outcomes = []
with StubProvider() as stub:
    router = litellm.Router(model_list=[
        {"model_name": "main", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": stub.openai_base_url,
                                                  "api_key": "k"}},
        {"model_name": "backup", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20240620",
                                                    "api_base": stub.base_url, "api_key": "k"}}],
        fallbacks=[{"main": ["backup"]}], num_retries=2)
    stub.queue(Reply(content="spent", input_tokens=1000, output_tokens=100))
    for _ in range(2):
        try:
            router.completion(model="main", messages=[{"role": "user", "content": "hi"}])
            outcomes.append("sent")
        except CircuitBreakerException as blocked:
            outcomes.append(blocked.reason)
        except Exception as error:
            outcomes.append(type(error).__name__)
    requests = stub.count()
agentwatch.flush()
spans = [span["status"] for span in memory.spans if span["kind"] == "llm"]
print(json.dumps({"core_at_init": core_at_init, "outcomes": outcomes, "requests": requests, "spans": spans,
                  "on_block": len(blocks)}))
'''


@pytest.mark.timeout(120)
def test_a_router_used_after_init_of_a_litellm_imported_before_is_limited_before_its_retries(tmp_path: Path) -> None:
    """Recent LiteLLMs load the Router's members (``litellm.router_rust.core``, ~110 ms) on its first use: ``init()``
    no longer loads them to patch the Router's endpoints, which are patched when LiteLLM imports that module. Left
    unpatched, the block met inside the Router's attempts was retried and sent to the fallback: six blocked spans and
    six ``on_block`` calls for one refused request."""
    done = subprocess.run([sys.executable, "-c", ROUTER_PROGRAM], cwd=tmp_path, capture_output=True, text=True,
                          timeout=100, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["core_at_init"] is False, report
    assert report["outcomes"] == ["sent", "budget_per_hour"] and report["requests"] == 1, report
    assert report["spans"] == ["ok", "blocked"] and report["on_block"] == 1, report


def _run(tmp_path: Path, provider: str, how: str, limit: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", PROGRAM, provider, how, limit], cwd=tmp_path, capture_output=True,
                          text=True, timeout=100, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]
