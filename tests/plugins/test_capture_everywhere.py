"""Text capture per plugin, read from the exported spans: off by default, on when asked, never under ZDR.

Each program runs a real framework against the stub provider with a marker in the prompt and another in the
model's answer. ``capture_messages=True`` must record both (so the check can fail); the default and
``zero_data_retention=True`` (even together with ``capture_messages=True``) must leave neither anywhere in
any exported span: names, attributes, events, inputs or outputs.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any

import pytest

import agentwatch
from tests.stubs.provider_server import Reply

for _name, _value in {"CREWAI_DISABLE_TELEMETRY": "true", "OTEL_SDK_DISABLED": "true",
                      "CREWAI_TRACING_ENABLED": "false", "CREWAI_DISABLE_TRACKING": "true",
                      "CREWAI_STORAGE_DIR": "/tmp/agentwatch-crewai-tests"}.items():
    os.environ.setdefault(_name, _value)

PROMPT_MARK = "zebra-prompt-7f3a"
ANSWER_MARK = "quokka-answer-91c2"
MODEL = "gpt-4o-mini"

Program = Callable[[Any], None]


def _openai(stub: Any) -> None:
    import openai

    client = openai.OpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"say {PROMPT_MARK}"}])


def _openai_stream(stub: Any) -> None:
    import openai

    client = openai.OpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0)
    for _ in client.chat.completions.create(model=MODEL, stream=True,
                                            messages=[{"role": "user", "content": f"say {PROMPT_MARK}"}]):
        pass


def _anthropic(stub: Any) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=stub.base_url, api_key="k", max_retries=0)
    client.messages.create(model="claude-3-5-haiku-latest", max_tokens=50,
                           messages=[{"role": "user", "content": f"say {PROMPT_MARK}"}])


def _langchain(stub: Any) -> None:
    from langchain_openai import ChatOpenAI

    ChatOpenAI(model=MODEL, base_url=stub.openai_base_url, api_key="k", max_retries=0).invoke(f"say {PROMPT_MARK}")


def _crewai(stub: Any) -> None:
    from crewai import LLM, Agent, Crew, Task

    llm = LLM(model=f"openai/{MODEL}", base_url=stub.openai_base_url, api_key="k", max_retries=0)
    agent = Agent(role="Writer", goal="Write", backstory="Concise.", llm=llm, verbose=False)
    task = Task(description=f"Write about {PROMPT_MARK}", expected_output="Text", agent=agent)
    Crew(agents=[agent], tasks=[task], verbose=False).kickoff()
    from crewai.events import crewai_event_bus

    crewai_event_bus.flush(timeout=10)


def _autogen(stub: Any) -> None:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    async def main() -> None:
        client = OpenAIChatCompletionClient(model="gpt-4o-mini-2024-07-18", base_url=stub.openai_base_url,
                                            api_key="k", max_retries=0)
        try:
            await AssistantAgent("writer", model_client=client).run(task=f"say {PROMPT_MARK}")
        finally:
            await client.close()

    asyncio.run(main())


def _ag2(stub: Any) -> None:
    from autogen import ConversableAgent

    config = {"config_list": [{"model": "gpt-4o-mini-2024-07-18", "api_key": "k", "base_url": stub.openai_base_url,
                               "max_retries": 0}], "cache_seed": None}
    assistant = ConversableAgent("assistant", llm_config=config, human_input_mode="NEVER")
    assistant.generate_reply(messages=[{"role": "user", "content": f"say {PROMPT_MARK}"}])


def _llamaindex(stub: Any) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai import OpenAI

    llm = OpenAI(model=MODEL, api_key="sk-test", api_base=stub.openai_base_url, max_retries=0)
    llm.chat([ChatMessage(role="user", content=f"say {PROMPT_MARK}")])


def _openai_agents(stub: Any) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, set_trace_processors
    from openai import AsyncOpenAI

    set_trace_processors([])  # no export to OpenAI's trace API (AgentWatch's processor is added by init)
    model = OpenAIResponsesModel(MODEL, AsyncOpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0))
    Runner.run_sync(Agent(name="Helper", instructions="Be brief.", model=model), f"say {PROMPT_MARK}")


def _pydantic_ai(stub: Any) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=stub.openai_base_url, api_key="k"))
    Agent(model, name="Helper").run_sync(f"say {PROMPT_MARK}")


PROGRAMS: dict[str, Program] = {"openai": _openai, "openai-stream": _openai_stream, "anthropic": _anthropic,
                                "langchain": _langchain, "crewai": _crewai, "autogen": _autogen, "ag2": _ag2,
                                "llamaindex": _llamaindex, "openai-agents": _openai_agents,
                                "pydantic-ai": _pydantic_ai}


def _exported_text(program: Program, stub: Any, **settings: Any) -> str:
    memory = agentwatch.InMemoryExporter()
    agentwatch.init(exporters=[memory], **settings)
    stub.queue(*[Reply(content=f"the answer is {ANSWER_MARK}") for _ in range(3)])
    try:
        program(stub)
        assert agentwatch.flush(10)
    finally:
        agentwatch.shutdown()
        stub.clear()
    assert any(span["kind"] == "llm" for span in memory.spans), [span["kind"] for span in memory.spans]
    return json.dumps(memory.spans, default=str)


@pytest.mark.parametrize("framework", sorted(PROGRAMS))
def test_text_is_captured_only_when_asked_and_never_under_zdr(framework: str, stub_provider: Any) -> None:
    program = PROGRAMS[framework]
    captured = _exported_text(program, stub_provider, capture_messages=True)
    assert PROMPT_MARK in captured and ANSWER_MARK in captured, "capture_messages=True recorded no text"
    default = _exported_text(program, stub_provider)
    assert PROMPT_MARK not in default and ANSWER_MARK not in default, "text recorded without capture_messages"
    zdr = _exported_text(program, stub_provider, capture_messages=True, zero_data_retention=True)
    assert PROMPT_MARK not in zdr and ANSWER_MARK not in zdr, "text recorded under zero_data_retention"
