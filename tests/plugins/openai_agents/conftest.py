"""The real OpenAI Agents SDK against the loopback stub provider (Responses and Chat Completions APIs).

The SDK's default trace exporter would post to api.openai.com: every test starts with no trace processor
but ours, and fails if a socket is opened to anything but loopback.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from agents import Agent, OpenAIChatCompletionsModel, OpenAIResponsesModel, function_tool, set_trace_processors
from agents.tracing import set_tracing_disabled
from openai import AsyncOpenAI

from tests.stubs.provider_server import Reply

MODEL = "gpt-4o-mini"
#: Triage hands off to Billing, Billing calls ``add`` and answers: three requests.
HANDOFF_RUN = (Reply(content="", tool_calls=[{"name": "transfer_to_billing", "arguments": {}}]),
               Reply(content="", tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}]),
               Reply(content="the sum is 3"))


@pytest.fixture(autouse=True)
def _sdk_tracing_local_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    set_trace_processors([])  # the default exporter posts to api.openai.com; ours is added by init()
    set_tracing_disabled(False)
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and not str(host).startswith("127."):
            raise AssertionError(f"a connection left loopback: {address!r}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield
    set_trace_processors([])
    set_tracing_disabled(False)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop for a test's async runs (the AsyncOpenAI client's connections belong to one loop)."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


class Team:
    """Triage → Billing (with an ``add`` tool) on one API; ``tool_calls`` counts the tool's real runs."""

    def __init__(self, stub: Any, api: str = "responses") -> None:
        self.client = AsyncOpenAI(base_url=stub.openai_base_url, api_key="test-key", max_retries=0)
        self.tool_calls = 0
        team = self

        @function_tool
        def add(a: int, b: int) -> int:
            """Add two numbers."""
            team.tool_calls += 1
            return a + b

        self.billing = Agent(name="Billing", instructions="Answer billing questions.", model=self.model(api),
                             tools=[add])
        self.triage = Agent(name="Triage", instructions="Route the user.", model=self.model(api),
                            handoffs=[self.billing])

    def model(self, api: str) -> Any:
        if api == "responses":
            return OpenAIResponsesModel(MODEL, self.client)
        return OpenAIChatCompletionsModel(MODEL, self.client)


def llm_spans(memory: Any) -> list[dict[str, Any]]:
    return [span for span in memory.spans if span["kind"] == "llm"]


def by_id(memory: Any) -> dict[str, dict[str, Any]]:
    return {span["span_id"]: span for span in memory.spans}
