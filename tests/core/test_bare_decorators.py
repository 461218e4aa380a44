"""The structure decorators written without parentheses, as the SDK spec draws them (``@pulse.trace``, ``@pulse.agent``,
``@pulse.task``): each decorates with a scope named after the function or class. Found 2026-12-06: the function was
taken for the scope's name and replaced by a scope object, so ``job(21)`` returned a wrapper function instead of
running the job, silently."""

from __future__ import annotations

import asyncio

import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import StubProvider


@pytest.mark.parametrize("decorator", ["trace", "span", "task", "agent", "agent_fn", "session", "cron"])
def test_a_bare_decorator_runs_the_function_in_a_scope_named_after_it(memory: agentwatch.InMemoryExporter,
                                                                       decorator: str) -> None:
    agentwatch.init(exporters=[memory])
    make = getattr(agentwatch, decorator)

    @make
    def job(x: int) -> int:
        return x * 2

    @make
    async def async_job(x: int) -> int:
        return x + 1

    assert job(21) == 42 and job.__name__ == "job"
    assert asyncio.run(async_job(1)) == 2
    agentwatch.flush()
    # A cron's start marker (kind cron_start) bears the job's name too: the scopes' own spans are counted.
    scoped = [span["name"] for span in memory.spans if span["kind"] not in ("process", "cron_start")]
    assert sorted(scoped) == ["async_job", "job"]


def test_a_bare_agent_on_a_class_is_that_agent_with_its_limits(memory: agentwatch.InMemoryExporter,
                                                               stub_provider: StubProvider) -> None:
    from openai import OpenAI

    ap = agentwatch.init(exporters=[memory], agents={"EmailAgent": {"budget_per_hour": 1e-9}},
                         block_on_threshold=True)
    client = OpenAI(base_url=stub_provider.openai_base_url, api_key="x", max_retries=0)

    @ap.agent
    class EmailAgent:
        @ap.task
        def classify(self, email: str) -> str:
            answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": email}])
            return str(answer.choices[0].message.content)

    bot = EmailAgent()
    assert isinstance(bot, EmailAgent) and bot.classify("hi") == "ok"
    with pytest.raises(CircuitBreakerException) as blocked:
        bot.classify("again")
    assert blocked.value.scope == "agent" and blocked.value.scope_id == "emailagent"
    agentwatch.flush()
    kinds = {(span["name"], span["kind"]) for span in memory.spans}
    assert {("EmailAgent", "agent"), ("classify", "task")} <= kinds
