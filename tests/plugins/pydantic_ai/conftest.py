"""Real Pydantic AI agents (``OpenAIChatModel`` and ``OpenAIResponsesModel``) against the loopback stub."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.stubs.provider_server import Reply

MODEL = "gpt-4o-mini"
#: Support asks Billing (a tool that runs the Billing agent), Billing calls ``add``; four requests.
DELEGATION_RUN = (Reply(content="", tool_calls=[{"name": "ask_billing", "arguments": {"question": "1 + 2?"}}]),
                  Reply(content="", tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}]),
                  Reply(content="3"),
                  Reply(content="the sum is 3"))


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and not str(host).startswith("127."):
            raise AssertionError(f"a connection left loopback: {address!r}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


class Team:
    """Support delegates to Billing through a tool; ``tool_calls`` counts real runs of ``add``."""

    def __init__(self, stub: Any, api: str = "chat", **agent_options: Any) -> None:
        provider = OpenAIProvider(base_url=stub.openai_base_url, api_key="test-key")
        self.model: Any = (OpenAIChatModel(MODEL, provider=provider) if api == "chat"
                           else OpenAIResponsesModel(MODEL, provider=provider))
        self.tool_calls = 0
        team = self
        self.billing: Agent[None, str] = Agent(self.model, name="Billing", instructions="Answer billing questions.")
        self.support: Agent[None, str] = Agent(self.model, name="Support", instructions="Help the user.",
                                               **agent_options)

        @self.billing.tool_plain
        def add(a: int, b: int) -> int:
            """Add two numbers."""
            team.tool_calls += 1
            return a + b

        @self.support.tool
        async def ask_billing(ctx: RunContext[None], question: str) -> str:
            """Ask the billing agent."""
            result = await team.billing.run(question, usage=ctx.usage)
            return result.output


def llm_spans(memory: Any) -> list[dict[str, Any]]:
    return [span for span in memory.spans if span["kind"] == "llm"]


def by_id(memory: Any) -> dict[str, dict[str, Any]]:
    return {span["span_id"]: span for span in memory.spans}
