"""A hard budget's refusal inside CrewAI: the HTTP layer refuses the request body's worst case, below CrewAI.

The before-LLM-call hook admits the call (nothing is spent yet); the openai SDK layer then reserves the body's
worst case and is refused. The caller of ``kickoff()`` gets the block, as from the hook: no retries, no request,
no error counted (nothing was sent), the breaker stays closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from crewai.hooks import HookAborted

import agentwatch
from agentwatch import CircuitBreakerException

from .conftest import make_crew, settle

# gpt-4o-mini's worst case for the crew's first request is about $0.0099: more than the whole budget.
BUDGET = 0.005


@pytest.mark.parametrize(("how", "stream"), [("kickoff", False), ("kickoff", True), ("akickoff", False)])
def test_a_hard_budget_refusal_below_crewai_is_a_block_not_a_retried_error(crew_stub: Any, memory: Any, how: str,
                                                                          stream: bool) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=BUDGET, hard_budget=True, max_error_rate=0.5)
    monitor = agentwatch.get_client().monitor  # type: ignore[union-attr]
    crew = make_crew(crew_stub.openai_base_url, stream=stream)
    with pytest.raises(CircuitBreakerException) as caught:
        crew.kickoff() if how == "kickoff" else asyncio.run(crew.akickoff())
    settle()
    assert crew_stub.count() == 0
    assert caught.value.reason == "hard_budget"
    assert isinstance(caught.value, HookAborted)  # CrewAI's executor does not retry a HookAborted
    assert caught.value.reserved == pytest.approx(2 * BUDGET, rel=0.05) and caught.value.remaining == BUDGET

    llm = [span for span in memory.spans if span["kind"] == "llm"]
    assert [(span["status"], span["agent_name"]) for span in llm] == [("blocked", "Researcher")]  # once
    assert llm[0]["attributes"]["breaker.reason"] == "hard_budget" and "error.message" not in llm[0]["attributes"]
    state = monitor.snapshot()
    assert state["state"] == "CLOSED" and state["errors_in_error_window"] == 0
    assert state["reserved"] == 0  # the refused reservation is not held

    # Nothing was sent, so nothing counts toward max_error_rate: kickoffs after it are refused for their
    # budget, again and again, never for an error rate.
    for _ in range(2):
        with pytest.raises(CircuitBreakerException) as again:
            make_crew(crew_stub.openai_base_url, stream=stream).kickoff()
        assert again.value.reason == "hard_budget"
    assert monitor.snapshot()["state"] == "CLOSED" and crew_stub.count() == 0


@pytest.mark.parametrize("how", ["kickoff", "call", "acall"])
def test_a_hard_budget_refusal_below_litellm_under_crewai_is_the_block(crew_stub: Any, memory: Any, how: str) -> None:
    """Found by a probe: an ``LLM(is_litellm=True)`` sends through LiteLLM, which made the refusal its own
    ``InternalServerError``: ``LLM.call()`` raised that LiteLLM error (a provider's failure, to the program and to
    CrewAI), and with ``num_retries`` LiteLLM re-ran the refused attempt (``on_block`` three times)."""
    blocks: list[Any] = []
    agentwatch.init(exporters=[memory], budget_per_hour=BUDGET, hard_budget=True, on_block=blocks.append)
    crew = make_crew(crew_stub.openai_base_url, is_litellm=True, num_retries=2)
    llm = crew.agents[0].llm
    with pytest.raises(CircuitBreakerException) as caught:
        if how == "kickoff":
            crew.kickoff()
        elif how == "call":
            llm.call("Research bees")
        else:
            asyncio.run(llm.acall("Research bees"))
    settle()
    assert crew_stub.count() == 0 and caught.value.reason == "hard_budget" and isinstance(caught.value, HookAborted)
    assert len(blocks) == 1
    assert [span["status"] for span in memory.spans if span["kind"] == "llm"] == ["blocked"]
    assert agentwatch.get_client().monitor.snapshot()["reserved"] == 0  # type: ignore[union-attr]
