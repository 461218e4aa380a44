"""A chat's ``reflection_with_llm`` summary: a block of its LLM call reaches the caller of the chat.

AG2 catches every ``Exception`` of the summary call and, with a ``UserWarning``, makes the summary ``""``: a block
would be swallowed there, and ``initiate_chats`` would start the next chat with an empty carryover. Anything else the
summary call raises is still AG2's to handle.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from autogen import ConversableAgent

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

# The first call costs $0.021 of gpt-4o-mini. A soft budget below that blocks the summary call before it is sent;
# a hard budget of $0.025 leaves $0.004, less than the summary request's worst case (its prompt plus 16,384 output
# tokens, about $0.0099): the HTTP layer refuses it inside the openai SDK.
BIG_REPLY = {"input_tokens": 100_000, "output_tokens": 10_000}
LIMITS = {"soft": {"budget_per_hour": 0.02, "block_on_threshold": True},
          "hard": {"budget_per_hour": 0.025, "hard_budget": True}}


def spans(memory: agentwatch.InMemoryExporter, kind: str) -> list[dict[str, Any]]:
    agentwatch.flush()
    return [span for span in memory.spans if span["kind"] == kind]


def chat_requests(stub: Any) -> int:
    return stub.count("/chat/completions")


def agents(llm_config: dict[str, Any]) -> tuple[ConversableAgent, ConversableAgent, ConversableAgent]:
    user = ConversableAgent("user", llm_config=False, human_input_mode="NEVER")
    writer = ConversableAgent("writer", llm_config=llm_config, human_input_mode="NEVER")
    critic = ConversableAgent("critic", llm_config=llm_config, human_input_mode="NEVER")
    return user, writer, critic


@pytest.fixture
def summary_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _about_summary(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(warning.message) for warning in caught if "summary" in str(warning.message)]


@pytest.mark.parametrize("limit", ["soft", "hard"])
@pytest.mark.parametrize("how", ["initiate_chat", "a_initiate_chat"])
async def test_a_blocked_summary_reaches_the_caller_of_the_chat(memory, stub_provider, llm_config, summary_warnings,
                                                                limit, how):
    agentwatch.init(exporters=[memory], **LIMITS[limit])
    user, writer, _ = agents(llm_config)
    stub_provider.queue(Reply(content="a draft", **BIG_REPLY), Reply(content="the summary"))
    chat = {"message": "Write about water", "max_turns": 1, "summary_method": "reflection_with_llm", "silent": True}

    with pytest.raises(CircuitBreakerException) as blocked:
        if how == "initiate_chat":
            user.initiate_chat(writer, **chat)
        else:
            await user.a_initiate_chat(writer, **chat)

    assert blocked.value.reason == ("hard_budget" if limit == "hard" else "budget_per_hour")
    assert blocked.value.monitor is agentwatch.get_client().monitor
    assert chat_requests(stub_provider) == 1  # the summary was never sent
    assert [span["status"] for span in spans(memory, "llm")] == ["ok", "blocked"]
    assert [span["status"] for span in spans(memory, "chain")] == ["blocked"]
    assert _about_summary(summary_warnings) == []  # no "Using an empty str as summary"

    # The conversation is kept: after raising the budget its summary can be asked for again.
    blocked.value.monitor.increase_budget(1.0)
    summary = user._summarize_chat("reflection_with_llm", {}, writer)
    assert summary == "the summary"


def test_a_blocked_summary_stops_initiate_chats_before_the_next_chat(memory, stub_provider, llm_config,
                                                                     summary_warnings):
    agentwatch.init(exporters=[memory], **LIMITS["soft"])
    user, writer, critic = agents(llm_config)
    stub_provider.queue(Reply(content="a draft", **BIG_REPLY), Reply(content="the summary"),
                        Reply(content="a critique"))

    with pytest.raises(CircuitBreakerException):
        user.initiate_chats([
            {"recipient": writer, "message": "Write about water", "max_turns": 1,
             "summary_method": "reflection_with_llm", "silent": True},
            {"recipient": critic, "message": "Critique it", "max_turns": 1, "silent": True},
        ])

    assert chat_requests(stub_provider) == 1  # neither the summary nor the second chat (on an empty carryover)
    assert critic.chat_messages.get(user, []) == []
    assert _about_summary(summary_warnings) == []


def test_without_a_block_the_summary_is_as_without_agentwatch(memory, stub_provider, llm_config, summary_warnings):
    agentwatch.init(exporters=[memory])
    user, writer, critic = agents(llm_config)
    stub_provider.queue(Reply(content="a draft"), Reply(content="the summary"), Reply(content="a critique"))

    first, second = user.initiate_chats([
        {"recipient": writer, "message": "Write about water", "max_turns": 1,
         "summary_method": "reflection_with_llm", "silent": True},
        {"recipient": critic, "message": "Critique it", "max_turns": 1, "silent": True},
    ])

    assert first.summary == "the summary"
    assert second.chat_history[0]["content"].endswith("the summary")  # the carryover
    assert _about_summary(summary_warnings) == []
    # A provider error of the summary call is still AG2's to handle: a warning and an empty summary.
    stub_provider.queue(Reply(status=400))
    failed = user._summarize_chat("reflection_with_llm", {}, writer)
    assert failed == ""
    assert len(_about_summary(summary_warnings)) == 1


def test_the_summary_call_is_the_agent_whose_llm_answers_it(memory, stub_provider, llm_config):
    # AG2 asks the recipient's LLM client for the summary (and counts its cost there), though it passes the initiator
    # as the calling agent: the writer's own budget covers it, and the span is the writer's.
    writer_limits = {"budget_per_hour": 0.02, "block_on_threshold": True}
    agentwatch.init(exporters=[memory], agents={"writer": writer_limits})
    user, writer, _ = agents(llm_config)
    stub_provider.queue(Reply(content="a draft", **BIG_REPLY), Reply(content="the summary"))

    with pytest.raises(CircuitBreakerException) as blocked:
        user.initiate_chat(writer, message="Write about water", max_turns=1, summary_method="reflection_with_llm",
                           silent=True)

    assert (blocked.value.scope, blocked.value.monitor.name) == ("agent", "writer")
    assert chat_requests(stub_provider) == 1
    assert [(span["agent_name"], span["status"]) for span in spans(memory, "llm")] == [
        ("writer", "ok"), ("writer", "blocked")]

    blocked.value.monitor.increase_budget(1.0)
    assert user._summarize_chat("reflection_with_llm", {}, writer) == "the summary"
    assert [span["agent_name"] for span in spans(memory, "llm")] == ["writer", "writer", "writer"]
