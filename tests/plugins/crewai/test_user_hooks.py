"""A user's own before-LLM-call hook that denies a call AgentWatch's hook (registered first) already admitted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from crewai.hooks import HookAborted, register_before_llm_call_hook, unregister_before_llm_call_hook

import agentwatch

from .conftest import make_crew, settle


@pytest.fixture
def denying_hook(request: pytest.FixtureRequest) -> Iterator[Callable[[Any], bool | None]]:
    """A hook that lets the first call through and denies every later one (the test registers it)."""
    seen: list[Any] = []

    def deny_after_first(context: Any) -> bool | None:
        seen.append(context)
        if len(seen) == 1:
            return None
        if request.param == "false":
            return False  # CrewAI's legacy convention
        raise HookAborted("policy: one call only", source="users_policy")

    yield deny_after_first
    unregister_before_llm_call_hook(deny_after_first)


@pytest.mark.parametrize("denying_hook", ["false", "abort"], indirect=True)
def test_a_call_a_users_hook_denies_is_withdrawn_not_counted_and_its_span_ended(crew_stub: Any, memory: Any,
                                                                                denying_hook: Any) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=1.0, hard_budget=True)
    register_before_llm_call_hook(denying_hook)  # after init(): it runs after AgentWatch's hook admitted the call
    with pytest.raises((HookAborted, ValueError)):  # CrewAI's LLMCallBlockedError for False, after retries
        make_crew(crew_stub.openai_base_url).kickoff()
    settle()
    sent = crew_stub.count()
    assert sent == 1
    state = agentwatch.get_client().monitor.snapshot()  # type: ignore[union-attr]
    # Only the call sent is a call: the denied ones are not counted toward max_calls_per_minute, hold no
    # reservation and are no errors.
    assert (state["calls_last_minute"], state["reserved"], state["errors_in_error_window"]) == (sent, 0.0, 0)
    llm = [span for span in memory.spans if span["kind"] == "llm"]
    assert [span["status"] for span in llm][:1] == ["ok"] and len(llm) >= 2  # every call admitted was ended
    denied = llm[1:]
    assert all(span["status"] == "blocked" and "before_llm_call hook" in span["attributes"]["reason"]
               for span in denied)
    assert all("breaker.reason" not in span["attributes"] for span in denied)  # not AgentWatch's block
    assert agentwatch.current_llm_call() is None  # no dead call left current in the caller's context
