"""A block raised while the SDK's retry loop runs (a retry after a failed attempt, a hard budget's refusal as the
request is sent) leaves the loop at once: the ``ModelRetrySettings`` policy is not asked about it, no backoff is
slept, and the SDK logs no model error for it. Found 2026-12-06: the block was handed to the policy as any error
and retried with backoff (a hard-budget refusal four times, 2.3 s), and the SDK logged "Error getting response"."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from agents import ModelSettings
from agents.retry import ModelRetryBackoffSettings, ModelRetrySettings

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import Team, llm_spans
from .test_blocking import _run

DELAY = 3.0  # each backoff the SDK would sleep: one is enough to tell


def _retrying(team: Team, asked: list[str]) -> None:
    """Triage retries every error 4 times, DELAY apart, and notes what its policy was asked about."""

    def policy(context: Any) -> bool:
        asked.append(type(context.error).__name__)
        return True

    backoff = ModelRetryBackoffSettings(initial_delay=DELAY, max_delay=DELAY, jitter=False)
    team.triage.model_settings = ModelSettings(retry=ModelRetrySettings(max_retries=4, backoff=backoff,
                                                                        policy=policy))


def _model_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name.startswith("openai.agents") and record.levelno >= logging.ERROR]


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("how", ["run", "run_streamed"])
def test_a_hard_budget_refusal_is_not_handed_to_the_retry_policy(stub_provider: Any, memory: Any, how: str, api: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    # gpt-4o-mini's worst case (its output limit at $0.60/M) is far above $0.005: refused as the request is sent.
    agentwatch.init(exporters=[memory], budget_per_hour=0.005, hard_budget=True, stream_usage="always")
    team = Team(stub_provider, api)
    asked: list[str] = []
    _retrying(team, asked)
    loop = asyncio.new_event_loop()
    started = time.monotonic()
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(CircuitBreakerException) as caught:
            _run(how, team.triage, "hi", loop)
    finally:
        loop.close()
    assert type(caught.value) is CircuitBreakerException and caught.value.reason == "hard_budget"
    assert asked == [] and time.monotonic() - started < DELAY  # no policy asked, no backoff slept
    assert stub_provider.count() == 0 and _model_errors(caplog) == []
    assert caught.value.resume.agent is team.triage
    agentwatch.flush()
    assert [(span["agent_name"], span["status"]) for span in llm_spans(memory)] == [("Triage", "blocked")]


@pytest.mark.parametrize("how", ["run", "run_streamed"])
def test_a_retry_blocked_by_the_error_rate_leaves_the_loop_at_once(stub_provider: Any, memory: Any, how: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    # Nine good calls, then the run's first attempt fails: 1 of 10 is over 5%, and the SDK's retry of it is
    # blocked before it is sent (the rate is judged from 10 finished calls on).
    agentwatch.init(exporters=[memory], max_error_rate=0.05, block_on_threshold=True)
    for _ in range(9):
        with agentwatch.llm_call(model="gpt-4o-mini") as fine:
            fine.set_usage(10, 5)
    team = Team(stub_provider)
    asked: list[str] = []
    _retrying(team, asked)
    stub_provider.queue(Reply(status=500), Reply(content="never sent"))
    loop = asyncio.new_event_loop()
    started = time.monotonic()
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(CircuitBreakerException) as caught:
            _run(how, team.triage, "hi", loop)
    finally:
        loop.close()
    assert caught.value.reason == "max_error_rate" and stub_provider.count() == 1
    assert asked == ["InternalServerError"]  # the 500 went to the policy; the block did not
    assert time.monotonic() - started < 2 * DELAY  # one backoff (for the 500), none for the block
    assert caught.value.resume.agent is team.triage
    agentwatch.flush()
    assert [span["status"] for span in llm_spans(memory)][9:] == ["error", "blocked"]


@pytest.mark.parametrize("how", ["run", "run_streamed"])
def test_a_retry_blocked_by_a_budget_spent_meanwhile_is_not_retried(stub_provider: Any, memory: Any, how: str) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.01, block_on_threshold=True)
    team = Team(stub_provider)
    asked: list[str] = []

    def policy(context: Any) -> bool:  # while the SDK waits to retry, another call spends the hour's budget
        asked.append(type(context.error).__name__)
        with agentwatch.llm_call(model="gpt-4o-mini") as spent:
            spent.set_usage(100_000, 10_000)
        return True

    team.triage.model_settings = ModelSettings(retry=ModelRetrySettings(max_retries=4, policy=policy))
    stub_provider.queue(Reply(status=500), Reply(content="never sent"))
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(CircuitBreakerException) as caught:
            _run(how, team.triage, "hi", loop)
    finally:
        loop.close()
    assert caught.value.reason == "budget_per_hour" and stub_provider.count() == 1
    assert asked == ["InternalServerError"]
