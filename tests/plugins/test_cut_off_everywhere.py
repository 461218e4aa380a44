"""A framework's model call cut off by its program after the request went out is charged for its prompt, once.

The provider bills a request it received even if nobody reads the answer. Each program runs a real framework's async
model call against the stub provider, whose answer is slow; the task is cancelled once the request has arrived (as
``asyncio.wait_for`` around a slow provider does, or the Agents SDK when an input guardrail trips). The framework's
call must be charged an estimate of the prompt it sent (close to the estimate of the request body the stub received,
not twice it) and counted in the budget, its hard-budget reservation released; a cancellation is no provider error
(``max_error_rate`` is not fed).

Found 2026-12-07: the HTTP layer estimated such a call only when it had opened it itself (a direct openai SDK call);
a framework's call it joined (the Agents SDK, LlamaIndex, AutoGen, Pydantic AI, LiteLLM) was charged $0. A CrewAI
``LLM.acall`` cut off never ended its call at all (CrewAI emits no event for a cancellation): no span, and a hard
budget's reservation held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import agentwatch
from agentwatch.instrumentation import estimate_request_tokens
from tests.plugins.offline_frameworks import keep_frameworks_offline
from tests.stubs.provider_server import Reply

keep_frameworks_offline()

MODEL = "gpt-4o-mini"
PROMPT = "summarise this report please " * 150

Program = Callable[[Any, str], Awaitable[Any]]


async def _langchain(stub: Any, prompt: str) -> None:
    from langchain_openai import ChatOpenAI

    await ChatOpenAI(model=MODEL, base_url=stub.openai_base_url, api_key="k", max_retries=0).ainvoke(prompt)


async def _llamaindex(stub: Any, prompt: str) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai import OpenAI

    llm = OpenAI(model=MODEL, api_key="k", api_base=stub.openai_base_url, max_retries=0)
    await llm.achat([ChatMessage(role="user", content=prompt)])


async def _autogen(stub: Any, prompt: str) -> None:
    from autogen_core.models import UserMessage
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    client = OpenAIChatCompletionClient(model=f"{MODEL}-2024-07-18", base_url=stub.openai_base_url, api_key="k",
                                        max_retries=0)
    await client.create([UserMessage(content=prompt, source="user")])


async def _pydantic_ai(stub: Any, prompt: str) -> None:
    from openai import AsyncOpenAI
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    client = AsyncOpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0)
    await Agent(OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))).run(prompt)


async def _litellm(stub: Any, prompt: str) -> None:
    import litellm

    litellm.telemetry = False
    await litellm.acompletion(model=f"openai/{MODEL}", api_base=stub.openai_base_url, api_key="k", max_retries=0,
                              messages=[{"role": "user", "content": prompt}])


async def _crewai(stub: Any, prompt: str) -> None:
    from crewai import LLM

    await LLM(model=f"openai/{MODEL}", base_url=stub.openai_base_url, api_key="k", max_retries=0).acall(prompt)


async def _openai_agents(stub: Any, prompt: str) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, set_trace_processors
    from openai import AsyncOpenAI

    set_trace_processors([])  # no export to OpenAI's trace API (AgentWatch's processor is added by init)
    model = OpenAIResponsesModel(MODEL, AsyncOpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0))
    await Runner.run(Agent(name="Helper", instructions="Be brief.", model=model), prompt)


PROGRAMS: dict[str, Program] = {"langchain": _langchain, "llamaindex": _llamaindex, "autogen": _autogen,
                                "pydantic-ai": _pydantic_ai, "litellm": _litellm, "openai-agents": _openai_agents,
                                "crewai": _crewai}


async def _cut_off(program: Program, stub: Any) -> None:
    """Run ``program`` once answered (imports and connections out of the way), then cut it off once its request
    has reached the stub."""
    stub.queue(Reply(content="warm"))
    await program(stub, "hi")
    stub.clear()
    stub.queue(Reply(content="late", delay=2.0))
    task = asyncio.create_task(program(stub, PROMPT))
    await stub.until_received(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("framework", sorted(PROGRAMS))
def test_a_call_cut_off_after_its_request_went_out_is_charged_for_its_prompt_once(framework: str,
                                                                                   stub_provider: Any) -> None:
    memory = agentwatch.InMemoryExporter()
    client = agentwatch.init(exporters=[memory], budget_per_hour=100.0, hard_budget=True, max_error_rate=0.5)
    asyncio.run(_cut_off(PROGRAMS[framework], stub_provider))
    assert agentwatch.flush(10)
    calls = [span for span in memory.spans if span["kind"] == "llm"]
    cut = calls[-1]
    sent = estimate_request_tokens(stub_provider.last.json)
    assert sent > 900
    assert cut["attributes"].get("usage_estimated") is True, cut
    assert sent * 0.9 <= cut["input_tokens"] <= sent * 1.1 and cut["output_tokens"] == 0
    assert cut["cost_usd"] > 0
    snapshot = client.monitor.snapshot()
    assert snapshot["spend_last_hour"] == pytest.approx(sum(span["cost_usd"] for span in calls))
    assert snapshot["errors_in_error_window"] == 0 and snapshot["reserved"] == 0
