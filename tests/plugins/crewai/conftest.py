"""A real two-agent CrewAI crew whose ``crewai.LLM`` talks to the stub OpenAI-compatible server.

CrewAI (and LiteLLM, behind ``LLM(is_litellm=True)``) phones home (telemetry, tracing, a cost map) unless told not
to; the switches are set before it is imported so nothing leaves loopback.
"""

from __future__ import annotations

from tests.plugins.offline_frameworks import keep_frameworks_offline

keep_frameworks_offline()

from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from tests.stubs.provider_server import Reply  # noqa: E402

MODEL = "gpt-4o-mini"


def tool_call(query: str = "bees") -> Reply:
    return Reply(content="", tool_calls=[{"name": "lookup", "arguments": {"query": query}}], input_tokens=100,
                 output_tokens=20, cached_tokens=40)


def script(stub: Any) -> None:
    """Researcher: tool call, then answer; Writer: answer. Three requests in all."""
    stub.queue(tool_call(), Reply(content="Bees dance to share where flowers are.", input_tokens=200,
                                  output_tokens=30),
               Reply(content="A short text about bees.", input_tokens=300, output_tokens=50))


def make_crew(base_url: str, *, stream: bool = False, writer_first: bool = False, **llm_options: Any) -> Any:
    """Researcher (with a ``lookup`` tool) and Writer, one task each, both on one ``crewai.LLM`` (``llm_options``:
    more of its arguments, ``is_litellm=True`` for one that sends through LiteLLM)."""
    from crewai import LLM, Agent, Crew, Task
    from crewai.tools import tool

    @tool("lookup")
    def lookup(query: str) -> str:
        """Look up a fact about a subject."""
        return f"fact about {query}: they dance"

    llm = LLM(model=f"openai/{MODEL}", base_url=base_url, api_key="test-key", stream=stream, max_retries=0,
              **llm_options)
    researcher = Agent(role="Researcher", goal="Find facts", backstory="Careful.", llm=llm, tools=[lookup],
                       verbose=False)
    writer = Agent(role="Writer", goal="Write text", backstory="Concise.", llm=llm, verbose=False)
    research = Task(description="Research bees", expected_output="Facts", agent=researcher)
    write = Task(description="Write about bees", expected_output="Text", agent=writer)
    tasks = [write, research] if writer_first else [research, write]
    return Crew(agents=[researcher, writer], tasks=tasks, verbose=False)


@pytest.fixture
def crew_stub(stub_provider: Any) -> Iterator[Any]:
    """The stub server with the crew's three replies queued."""
    script(stub_provider)
    yield stub_provider


def settle() -> None:
    """Wait for CrewAI's handler pool, then for AgentWatch's export queue."""
    from crewai.events import crewai_event_bus

    import agentwatch

    crewai_event_bus.flush(timeout=10)
    agentwatch.flush()
