"""A whole program in a fresh interpreter: nothing leaves loopback (from before LiteLLM is imported), the
entry point stays light, and LiteLLM's outputs are identical with and without AgentWatch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]

PROGRAM = textwrap.dedent("""
    import asyncio, json, os, socket, sys
    connect = socket.socket.connect
    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not str(address[0]).startswith("127."):
            raise SystemExit(f"left loopback: {address!r}")
        return connect(self, address)
    socket.socket.connect = guarded

    import agentwatch
    agentwatch.init(exporters=[memory := agentwatch.InMemoryExporter()])
    light = "litellm" not in sys.modules and "litellm" not in agentwatch.get_client().instrumented
    agentwatch.shutdown()

    import litellm
    litellm.telemetry = False
    from tests.stubs.provider_server import StubProvider

    def run(stub):
        messages = [{"role": "user", "content": "hi"}]
        openai = {"model": "openai/gpt-4o-mini", "messages": messages, "api_base": stub.openai_base_url,
                  "api_key": "k"}
        claude = {"model": "anthropic/claude-3-5-sonnet-20240620", "messages": messages,
                  "api_base": stub.base_url, "api_key": "k"}
        def seen(response):
            return [response.model, [choice.message.content for choice in response.choices],
                    response.usage.prompt_tokens, response.usage.completion_tokens]
        def chunks(stream):
            return [[chunk.choices[0].delta.content if chunk.choices else None,
                     bool(getattr(chunk, "usage", None))] for chunk in stream]
        async def run_async():
            stream = await litellm.acompletion(stream=True, **claude)
            texts = [chunk.choices[0].delta.content async for chunk in stream]
            return [seen(await litellm.acompletion(**openai)), texts]
        router = litellm.Router(model_list=[{"model_name": "m", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": stub.openai_base_url, "api_key": "k"}}])
        return [seen(litellm.completion(**openai)), seen(litellm.completion(**claude)),
                chunks(litellm.completion(stream=True, **openai)),
                chunks(litellm.completion(stream=True, stream_options={"include_usage": True}, **openai)),
                litellm.embedding(model="openai/text-embedding-3-small", input=["a"], api_base=stub.openai_base_url,
                                  api_key="k").data[0]["embedding"],
                asyncio.run(run_async()), seen(router.completion(model="m", messages=messages))]

    with StubProvider() as stub:
        without = run(stub)
        agentwatch.init(exporters=[memory])
        instrumented = "litellm" in agentwatch.get_client().instrumented
        with_agentwatch = run(stub)
        agentwatch.flush()
        requests = stub.count()
    spans = [span for span in memory.spans if span["kind"] in ("llm", "embedding")]
    print(json.dumps({"light": light, "instrumented": instrumented, "without": without, "with": with_agentwatch,
                      "requests": requests, "spans": len(spans)}))
""")


def test_program_outputs_identical_and_loopback_only() -> None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
    env = {key: value for key, value in env.items() if not key.startswith("AGENTWATCH_")}
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["light"] is True and result["instrumented"] is True
    assert result["with"] == result["without"]
    assert result["without"][0][1] == ["ok"]  # the program did run its calls
    assert result["requests"] == 16 and result["spans"] == 8  # one span per request made with AgentWatch


MISSING = textwrap.dedent("""
    import sys

    class NoLiteLLM:  # as if litellm were not installed
        def find_spec(self, name, path=None, target=None):
            if name == "litellm" or name.startswith("litellm."):
                raise ModuleNotFoundError(name)
            return None

    sys.meta_path.insert(0, NoLiteLLM())
    import agentwatch
    agentwatch.init(exporters=[agentwatch.InMemoryExporter()])
    assert "litellm" not in agentwatch.get_client().instrumented, agentwatch.get_client().instrumented
    assert "http" in agentwatch.get_client().instrumented
    agentwatch.shutdown()
    print("skipped")
""")


def test_skipped_quietly_without_litellm() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTWATCH_")}
    done = subprocess.run([sys.executable, "-c", MISSING], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**env, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "skipped" and "litellm" not in done.stderr
