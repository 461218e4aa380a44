"""Zero-config and explicit attachment, no double counting, clean shutdown, import after init()."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import agentwatch
from tests.plugins.llamaindex.conftest import llm_spans, openai_llm

ROOT = Path(__file__).resolve().parents[3]


def _ours(registry: list[Any]) -> list[Any]:
    return [handler for handler in registry if type(handler).__module__.startswith("agentwatch.")]


def _chat(llm: Any) -> str:
    from llama_index.core.llms import ChatMessage

    return llm.chat([ChatMessage(role="user", content="hi")]).message.content or ""


def test_sdk_plugin_adds_to_the_llamaindex_call(memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    import openai

    agentwatch.init(exporters=[memory])
    assert {"llamaindex", "openai"} <= set(agentwatch.get_client().instrumented)
    # Control: the same SDK call outside LlamaIndex is recorded by the SDK plugin on its own.
    openai.OpenAI(api_key="sk-test", base_url=stub_provider.openai_base_url, max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    _chat(openai_llm(stub_provider))

    agentwatch.flush()
    assert sorted(span["name"] for span in llm_spans(memory.spans)) == ["OpenAI", "openai.chat.completions"]
    assert stub_provider.count("/chat/completions") == 2


def test_explicit_handler_and_zero_config_count_once(memory: agentwatch.InMemoryExporter,
                                                      stub_provider: Any) -> None:
    from llama_index.core import Settings
    from llama_index.core.callbacks import CallbackManager

    from agentwatch.plugins.llamaindex import AgentWatchCallbackHandler, instrument

    Settings.callback_manager = CallbackManager([AgentWatchCallbackHandler()])
    agentwatch.init(exporters=[memory])
    instrument()  # on top of init(): adds nothing
    explicit = openai_llm(stub_provider, callback_manager=CallbackManager([AgentWatchCallbackHandler()]))
    zero_config = openai_llm(stub_provider)

    _chat(explicit)
    _chat(zero_config)

    async def both_async() -> None:
        from llama_index.core.llms import ChatMessage

        for llm in (explicit, zero_config):
            await llm.achat([ChatMessage(role="user", content="hi")])

    asyncio.run(both_async())

    agentwatch.flush()
    spans = llm_spans(memory.spans)
    assert len(spans) == 4
    assert stub_provider.count("/chat/completions") == 4
    charged = sum(span["cost_usd"] for span in spans)
    assert charged > 0
    assert agentwatch.get_state()["monitors"]["global"]["spend_last_hour"] == pytest.approx(charged)


def test_shutdown_removes_everything_and_init_starts_clean(memory: agentwatch.InMemoryExporter,
                                                          stub_provider: Any) -> None:
    from llama_index.core import Settings
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.instrumentation import get_dispatcher

    dispatcher = get_dispatcher()
    Settings.callback_manager = CallbackManager([])
    llm = openai_llm(stub_provider)
    agentwatch.init(exporters=[memory])
    _chat(llm)
    assert _ours(dispatcher.span_handlers) and _ours(dispatcher.event_handlers)
    assert _ours(llm.callback_manager.handlers) and _ours(Settings.callback_manager.handlers)

    agentwatch.shutdown()

    assert not _ours(dispatcher.span_handlers) and not _ours(dispatcher.event_handlers)
    assert not _ours(llm.callback_manager.handlers) and not _ours(Settings.callback_manager.handlers)
    assert _chat(llm) == "ok"  # LlamaIndex works on without AgentWatch

    second = agentwatch.InMemoryExporter()
    for _ in range(2):
        agentwatch.init(exporters=[second])
        _chat(llm)
        agentwatch.shutdown()
    assert len(llm_spans(second.spans)) == 2
    assert len(_ours(dispatcher.span_handlers)) == 0


def test_mock_llm_chat_is_one_call(memory: agentwatch.InMemoryExporter) -> None:
    from llama_index.core.llms import ChatMessage, MockLLM

    agentwatch.init(exporters=[memory])
    # MockLLM.chat runs complete() inside: one call, not two.
    MockLLM(max_tokens=3).chat([ChatMessage(role="user", content="hi")])

    agentwatch.flush()
    [span] = llm_spans(memory.spans)
    assert span["name"] == "MockLLM" and span["attributes"]["llamaindex.method"] == "chat"


@pytest.mark.parametrize("first_import", ["import llama_index.core",
                                          "from agentwatch.plugins.llamaindex import AgentWatchCallbackHandler"])
def test_llamaindex_imported_after_init(first_import: str) -> None:
    script = textwrap.dedent("""
        import sys
        import agentwatch
        from tests.stubs.provider_server import StubProvider
        mem = agentwatch.InMemoryExporter()
        # Other framework plugins import their frameworks, and some of those import LlamaIndex.
        agentwatch.init(exporters=[mem], budget_per_hour=0.0, block_on_threshold=True,
                        disabled_plugins=["crewai", "langchain", "autogen", "ag2"])
        assert "llama_index.core" not in sys.modules
        FIRST_IMPORT
        from llama_index.core.llms import ChatMessage
        from llama_index.llms.openai import OpenAI
        with StubProvider() as stub:
            llm = OpenAI(model="gpt-4o-mini", api_key="sk-test", api_base=stub.openai_base_url, max_retries=0)
            try:
                llm.chat([ChatMessage(role="user", content="hi")])
            except agentwatch.CircuitBreakerException as blocked:
                blocked.monitor.increase_budget(1.0)
            else:
                raise SystemExit("not blocked")
            assert stub.requests == [], stub.requests
            llm.chat([ChatMessage(role="user", content="hi")])
            assert len(stub.requests) == 1
        agentwatch.flush()
        print(sorted((s["name"], s["status"]) for s in mem.spans if s["kind"] == "llm"))
    """)
    script = script.replace("FIRST_IMPORT", first_import)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[('OpenAI', 'blocked'), ('OpenAI', 'ok')]"


def test_shutdown_puts_the_agents_back() -> None:
    """What AgentWatch wraps in LlamaIndex's agents for a block's way out is LlamaIndex's own again after shutdown."""
    from llama_index.core.agent.workflow import base_agent, multi_agent_workflow

    wrapped = [(owner, name) for owner in (base_agent.BaseWorkflowAgent, multi_agent_workflow.AgentWorkflow)
               for name in ("parse_agent_output", "_call_tool")]
    wrapped += [(module, "generate_structured_response") for module in (base_agent, multi_agent_workflow)]
    originals = [vars(owner)[name] for owner, name in wrapped]

    for _ in range(2):
        agentwatch.init(exporters=[])
        assert not {vars(owner)[name] for owner, name in wrapped} & set(originals)
        agentwatch.shutdown()
        assert [vars(owner)[name] for owner, name in wrapped] == originals
