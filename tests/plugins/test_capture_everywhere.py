"""Text capture per plugin, read from the exported spans: off by default, on when asked, never under ZDR.

Each program runs a real framework against the stub provider with a marker in the prompt and another in the
model's answer. ``capture_messages=True`` must record both (so the check can fail); the default and
``zero_data_retention=True`` (even together with ``capture_messages=True``) must leave neither anywhere in
any exported span: names, attributes, events, inputs or outputs. The tool programs do the same for a tool's
arguments and result (the model asks for the tool, the framework runs it), and every plugin keeps the same
length of a long text (the core's ``TEXT_LIMIT``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

import agentwatch
from agentwatch._capture import TEXT_LIMIT
from tests.plugins.offline_frameworks import keep_frameworks_offline
from tests.stubs.provider_server import Reply

keep_frameworks_offline()

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


def _litellm(stub: Any) -> None:
    import litellm

    litellm.telemetry = False
    litellm.completion(model=f"openai/{MODEL}", api_base=stub.openai_base_url, api_key="k", max_retries=0,
                       messages=[{"role": "user", "content": f"say {PROMPT_MARK}"}])


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
                                "llamaindex": _llamaindex, "litellm": _litellm, "openai-agents": _openai_agents,
                                "pydantic-ai": _pydantic_ai}


def _exported(program: Program, stub: Any, replies: list[Reply] | None = None,
              **settings: Any) -> list[dict[str, Any]]:
    memory = agentwatch.InMemoryExporter()
    agentwatch.init(exporters=[memory], **settings)
    stub.queue(*(replies or [Reply(content=f"the answer is {ANSWER_MARK}") for _ in range(3)]))
    try:
        program(stub)
        assert agentwatch.flush(10)
    finally:
        agentwatch.shutdown()
        stub.clear()
    assert any(span["kind"] == "llm" for span in memory.spans), [span["kind"] for span in memory.spans]
    return memory.spans


def _exported_text(program: Program, stub: Any, replies: list[Reply] | None = None, **settings: Any) -> str:
    return json.dumps(_exported(program, stub, replies, **settings), default=str)


@pytest.mark.parametrize("framework", sorted(PROGRAMS))
def test_text_is_captured_only_when_asked_and_never_under_zdr(framework: str, stub_provider: Any) -> None:
    program = PROGRAMS[framework]
    captured = _exported_text(program, stub_provider, capture_messages=True)
    assert PROMPT_MARK in captured and ANSWER_MARK in captured, "capture_messages=True recorded no text"
    default = _exported_text(program, stub_provider)
    assert PROMPT_MARK not in default and ANSWER_MARK not in default, "text recorded without capture_messages"
    zdr = _exported_text(program, stub_provider, capture_messages=True, zero_data_retention=True)
    assert PROMPT_MARK not in zdr and ANSWER_MARK not in zdr, "text recorded under zero_data_retention"


# ---- tools: the model asks for a tool with a marked argument; the framework runs it, its result is marked --

TOOL_ARG_MARK = "ibex-argument-5d1e"
TOOL_RESULT_MARK = "okapi-result-28b7"


TOOL_RESULT = f"{TOOL_RESULT_MARK} " + "Z" * (TEXT_LIMIT * 3)  # long: kept to TEXT_LIMIT like any text


def lookup(subject: str) -> str:
    """Look up a fact about a subject."""
    return TOOL_RESULT


def _tool_replies(name: str = "lookup") -> list[Reply]:
    ask = Reply(content="", tool_calls=[{"name": name, "arguments": {"subject": TOOL_ARG_MARK}}])
    return [ask, Reply(content=f"the answer is {ANSWER_MARK}"), Reply(content=f"the answer is {ANSWER_MARK}")]


def _langchain_tools(stub: Any) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import create_react_agent

    llm = ChatOpenAI(model=MODEL, base_url=stub.openai_base_url, api_key="k", max_retries=0)
    create_react_agent(llm, [tool(lookup)]).invoke({"messages": [("user", f"look up {PROMPT_MARK}")]})


def _crewai_tools(stub: Any) -> None:
    from crewai import LLM, Agent, Crew, Task
    from crewai.events import crewai_event_bus
    from crewai.tools import tool

    llm = LLM(model=f"openai/{MODEL}", base_url=stub.openai_base_url, api_key="k", max_retries=0)
    agent = Agent(role="Researcher", goal="Find facts", backstory="Careful.", llm=llm, verbose=False,
                  tools=[tool("lookup")(lookup)])
    task = Task(description=f"Look up {PROMPT_MARK}", expected_output="Facts", agent=agent)
    Crew(agents=[agent], tasks=[task], verbose=False).kickoff()
    crewai_event_bus.flush(timeout=10)


def _autogen_tools(stub: Any) -> None:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    async def main() -> None:
        client = OpenAIChatCompletionClient(model="gpt-4o-mini-2024-07-18", base_url=stub.openai_base_url,
                                            api_key="k", max_retries=0)
        try:
            agent = AssistantAgent("researcher", model_client=client, tools=[lookup], reflect_on_tool_use=True)
            await agent.run(task=f"look up {PROMPT_MARK}")
        finally:
            await client.close()

    asyncio.run(main())


def _ag2_tools(stub: Any) -> None:
    from autogen import ConversableAgent

    config = {"config_list": [{"model": "gpt-4o-mini-2024-07-18", "api_key": "k", "base_url": stub.openai_base_url,
                               "max_retries": 0}], "cache_seed": None}
    assistant = ConversableAgent("assistant", llm_config=config, human_input_mode="NEVER")
    user = ConversableAgent("user", llm_config=False, human_input_mode="NEVER")
    assistant.register_for_llm(name="lookup", description="Look up a fact.")(lookup)
    user.register_for_execution(name="lookup")(lookup)
    user.initiate_chat(assistant, message=f"look up {PROMPT_MARK}", max_turns=2, silent=True)


def _llamaindex_tools(stub: Any) -> None:
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.llms.openai import OpenAI

    llm = OpenAI(model=MODEL, api_key="sk-test", api_base=stub.openai_base_url, max_retries=0)
    agent = FunctionAgent(name="researcher", description="Finds facts.", tools=[lookup], llm=llm)

    async def main() -> None:
        await agent.run(user_msg=f"look up {PROMPT_MARK}")

    asyncio.run(main())


TOOL_PROGRAMS: dict[str, Program] = {"langchain": _langchain_tools, "crewai": _crewai_tools,
                                     "autogen": _autogen_tools, "ag2": _ag2_tools, "llamaindex": _llamaindex_tools}


@pytest.mark.parametrize("framework", sorted(TOOL_PROGRAMS))
def test_tool_text_is_captured_only_when_asked_and_never_under_zdr(framework: str, stub_provider: Any) -> None:
    program = TOOL_PROGRAMS[framework]
    spans = _exported(program, stub_provider, _tool_replies(), capture_messages=True)
    tools = [span for span in spans if span["kind"] == "tool"]
    assert tools, f"{framework}: no tool span"
    tool_text = json.dumps(tools, default=str)
    assert TOOL_ARG_MARK in tool_text and TOOL_RESULT_MARK in tool_text, "the tool span kept no text"
    kept = {len(run) for run in re.findall("Z+", tool_text)}
    assert kept == {TEXT_LIMIT - len(TOOL_RESULT_MARK) - 1}, f"{framework}: tool result kept as {kept}"
    for settings in ({}, {"capture_messages": True, "zero_data_retention": True}):
        text = _exported_text(program, stub_provider, _tool_replies(), **settings)
        leaked = [mark for mark in (PROMPT_MARK, TOOL_ARG_MARK, TOOL_RESULT_MARK, ANSWER_MARK) if mark in text]
        assert not leaked, f"{framework} with {settings}: {leaked} exported"


# ---- one length: a long answer is kept to the core's TEXT_LIMIT by every plugin ------------------------------


@pytest.mark.parametrize("framework", sorted(PROGRAMS))
def test_long_text_is_kept_to_one_length_everywhere(framework: str, stub_provider: Any) -> None:
    long_answer = "Q" * (TEXT_LIMIT * 3)
    replies = [Reply(content=long_answer) for _ in range(3)]
    text = _exported_text(PROGRAMS[framework], stub_provider, replies, capture_messages=True)
    runs = {len(run) for run in re.findall("Q+", text)}
    assert runs == {TEXT_LIMIT}, f"{framework}: kept {sorted(runs)} of {len(long_answer)} characters"
