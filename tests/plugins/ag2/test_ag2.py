"""Classic AG2: span trees, figures, blocking before the request, recovery, explicit watch, clean removal."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from autogen import ConversableAgent, OpenAIWrapper, runtime_logging
from autogen.agentchat import conversable_agent
from autogen.oai.client import OpenAIClient
from genai_prices import Usage, calc_price

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch.plugins.ag2 import unwatch, watch
from agentwatch.plugins.autogen._patching import ORIGINAL
from tests.stubs.provider_server import Reply

from .conftest import MODEL


def spans(memory: agentwatch.InMemoryExporter, kind: str | None = None) -> list[dict[str, Any]]:
    agentwatch.flush()
    return [span for span in memory.spans if kind is None or span["kind"] == kind]


def chat_requests(stub: Any) -> int:
    return stub.count("/chat/completions")


def tool_then_answer(stub: Any) -> None:
    call_add = [{"name": "add", "arguments": {"a": 2, "b": 3}}]
    stub.queue(Reply(content="", tool_calls=call_add, input_tokens=150, output_tokens=18, cached_tokens=128),
               Reply(content="The sum is 5.", input_tokens=190, output_tokens=7))


def test_pair_chat_tree_figures_and_tool(memory, stub_provider, pair):
    agentwatch.init(exporters=[memory], capture_messages=True)
    assistant, user = pair
    tool_then_answer(stub_provider)

    result = user.initiate_chat(assistant, message="What is 2 + 3?", max_turns=2, silent=True)

    assert result.chat_history[-1]["content"] == "The sum is 5."
    tree = {span["span_id"]: span for span in spans(memory)}
    [chat] = spans(memory, "chain")
    assert (chat["name"], chat["parent_span_id"]) == ("chat user -> assistant", None)
    agents = spans(memory, "agent")
    assert [(span["name"], span["parent_span_id"]) for span in agents] == [
        ("assistant", chat["span_id"]), ("user", chat["span_id"]), ("assistant", chat["span_id"])]
    llm_spans = spans(memory, "llm")
    assert len(llm_spans) == chat_requests(stub_provider) == 2
    assert [tree[span["parent_span_id"]]["name"] for span in llm_spans] == ["assistant", "assistant"]
    first, second = llm_spans
    assert (first["model"], first["input_tokens"], first["output_tokens"], first["cached_input_tokens"]) == (
        MODEL, 150, 18, 128)
    usage = Usage(input_tokens=150, cache_read_tokens=128, output_tokens=18)
    price = calc_price(usage, MODEL, provider_id="openai").total_price
    assert first["cost_usd"] == pytest.approx(float(price))
    assert first["attributes"]["tool_calls"] == ["add"]
    assert first["attributes"]["finish_reason"] == "tool_calls"
    assert first["attributes"]["ag2.cost_usd"] > 0  # AG2's own figure, seen through its runtime log
    assert (second["input_tokens"], second["output_tokens"], second["agent_name"]) == (190, 7, "assistant")
    [tool] = spans(memory, "tool")
    assert (tool["name"], json.loads(tool["input"]), tool["output"]) == ("add", {"a": 2, "b": 3}, "5")
    assert tree[tool["parent_span_id"]]["name"] == "user"


def test_block_sends_nothing_and_recovers_after_increase_budget(memory, stub_provider, pair):
    agentwatch.init(exporters=[memory], budget_per_hour=1e-6, block_on_threshold=True)
    assistant, user = pair
    tool_then_answer(stub_provider)

    with pytest.raises(CircuitBreakerException) as blocked:
        user.initiate_chat(assistant, message="What is 2 + 3?", max_turns=2, silent=True)

    assert chat_requests(stub_provider) == 1  # the tool-call answer; the second call was never sent
    assert blocked.value.reason == "budget_per_hour"
    assert [span["status"] for span in spans(memory, "llm")] == ["ok", "blocked"]
    assert spans(memory, "chain")[0]["status"] == "blocked"

    blocked.value.monitor.increase_budget(1.0)
    # Run the blocked turn again: the assistant answers from the conversation so far.
    reply = assistant.generate_reply(messages=assistant.chat_messages[user], sender=user)
    assert reply == "The sum is 5."
    assert chat_requests(stub_provider) == 2
    assert [span["status"] for span in spans(memory, "llm")] == ["ok", "blocked", "ok"]


def test_per_agent_budget_blocks_only_that_agent(memory, stub_provider, llm_config):
    critic_limits = {"budget_per_hour": 1e-6, "block_on_threshold": True}
    agentwatch.init(exporters=[memory], agents={"critic": critic_limits})
    writer = ConversableAgent("writer", llm_config=llm_config, human_input_mode="NEVER")
    critic = ConversableAgent("critic", llm_config=llm_config, human_input_mode="NEVER")

    with pytest.raises(CircuitBreakerException) as blocked:
        writer.initiate_chat(critic, message="Review this", max_turns=3, silent=True)

    # critic, writer, critic (blocked: over its own budget after its first call)
    assert (blocked.value.scope, blocked.value.monitor.name) == ("agent", "critic")
    assert chat_requests(stub_provider) == 2
    assert [(span["agent_name"], span["status"]) for span in spans(memory, "llm")] == [
        ("critic", "ok"), ("writer", "ok"), ("critic", "blocked")]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_streamed_config_is_charged_marked_and_blocked_like_a_plain_one(memory, stub_provider, llm_config, stream):
    """``"stream": True`` in a config: AG2 streams each reply (asking for the usage itself). Found by a probe: the
    streamed call was charged and blocked, but its span did not say it streamed (AgentChat's spans do)."""
    agentwatch.init(exporters=[memory], agents={"critic": {"budget_per_hour": 0.01, "block_on_threshold": True}})
    config = {**llm_config, "config_list": [{**llm_config["config_list"][0], "stream": stream}]}
    writer = ConversableAgent("writer", llm_config=config, human_input_mode="NEVER")
    critic = ConversableAgent("critic", llm_config=config, human_input_mode="NEVER")
    stub_provider.queue(Reply(content="too long a review", input_tokens=100_000, output_tokens=10_000),
                        Reply(content="thanks"))

    with pytest.raises(CircuitBreakerException):
        writer.initiate_chat(critic, message="Review this", max_turns=3, silent=True)

    assert chat_requests(stub_provider) == 2  # critic, writer; critic's next request was never sent
    first, second, third = spans(memory, "llm")
    assert (first["input_tokens"], first["output_tokens"]) == (100_000, 10_000)
    assert [span["status"] for span in (first, second, third)] == ["ok", "ok", "blocked"]
    assert [span["attributes"]["streaming"] for span in (first, second, third)] == [stream] * 3


async def test_async_chat_keeps_agent_scope_and_parent_off_the_executor_thread(memory, stub_provider,
                                                                              llm_config):
    agentwatch.init(exporters=[memory])
    assistant = ConversableAgent("assistant", llm_config=llm_config, human_input_mode="NEVER")
    user = ConversableAgent("user", llm_config=False, human_input_mode="NEVER")

    await user.a_initiate_chat(assistant, message="Hello", max_turns=1, silent=True)

    [llm] = spans(memory, "llm")
    [agent] = [span for span in spans(memory, "agent") if span["name"] == "assistant"]
    assert (llm["agent_name"], llm["parent_span_id"], llm["trace_id"]) == (
        "assistant", agent["span_id"], agent["trace_id"])


def test_zero_config_plus_explicit_watch_counts_once(memory, stub_provider, pair):
    agentwatch.init(exporters=[memory])
    assistant, user = pair
    assert watch(assistant) is assistant and watch(assistant) is assistant
    tool_then_answer(stub_provider)

    user.initiate_chat(assistant, message="What is 2 + 3?", max_turns=2, silent=True)

    assert len(spans(memory, "llm")) == chat_requests(stub_provider) == 2
    assert not [span for span in spans(memory) if span["kind"] == "http"]
    unwatch(assistant)
    assert "create" not in assistant.client.__dict__


def test_explicit_watch_with_the_plugin_disabled_blocks_and_records(memory, stub_provider, llm_config):
    agentwatch.init(exporters=[memory], disabled_plugins=["ag2", "http", "openai"], max_calls_per_minute=1,
                    block_on_threshold=True)
    wrapper = OpenAIWrapper(**llm_config)
    wrapper.create(messages=[{"role": "user", "content": "unwatched"}])
    assert spans(memory, "llm") == []  # the plugin is really off: only watch() can record

    watch(wrapper)
    stub_provider.queue(Reply(input_tokens=9, output_tokens=2, cached_tokens=4))
    wrapper.create(messages=[{"role": "user", "content": "watched"}])
    with pytest.raises(CircuitBreakerException):
        wrapper.create(messages=[{"role": "user", "content": "one too many"}])

    assert chat_requests(stub_provider) == 2
    recorded = [(span["status"], span["input_tokens"], span["cached_input_tokens"])
                for span in spans(memory, "llm")]
    assert recorded == [("ok", 9, 4), ("blocked", 0, 0)]


def test_application_runtime_logger_keeps_receiving_and_is_restored(memory, stub_provider, pair, tmp_path):
    log_file = tmp_path / "runtime.log"
    runtime_logging.start(logger_type="file", config={"filename": str(log_file)})
    theirs = runtime_logging.autogen_logger
    try:
        agentwatch.init(exporters=[memory])
        assistant, user = pair
        tool_then_answer(stub_provider)
        user.initiate_chat(assistant, message="What is 2 + 3?", max_turns=2, silent=True)
        agentwatch.shutdown()

        assert runtime_logging.autogen_logger is theirs and runtime_logging.logging_enabled()
        assert spans(memory, "llm")[0]["input_tokens"] == 150
        assert log_file.read_text().count('"is_cached": 0') == 2  # their log got both completions
    finally:
        runtime_logging.stop()


def test_shutdown_removes_patches_and_runtime_logger(memory, stub_provider, pair):
    assert not runtime_logging.logging_enabled()
    agentwatch.init(exporters=[memory])
    assistant, user = pair
    tool_then_answer(stub_provider)
    user.initiate_chat(assistant, message="What is 2 + 3?", max_turns=2, silent=True)
    assert len(spans(memory, "tool")) == 1
    # The agents' own hook lists are never touched (tools are seen by wrapping execute_function).
    assert user.hook_lists["safeguard_tool_inputs"] == [] and user.hook_lists["safeguard_tool_outputs"] == []

    agentwatch.shutdown()

    assert not hasattr(OpenAIWrapper.__dict__["create"], ORIGINAL)
    assert not hasattr(OpenAIClient.__dict__["create"], ORIGINAL)  # each config's client sends unwatched again
    assert conversable_agent.threading is threading  # AG2's own threads start as without AgentWatch again
    assert not any(hasattr(ConversableAgent.__dict__[name], ORIGINAL)
                   for name in ("generate_reply", "a_generate_reply", "initiate_chat", "a_initiate_chat",
                                "execute_function", "a_execute_function", "_run_async_in_thread",
                                "_reflection_with_llm", "_reflection_with_llm_as_summary"))
    assert isinstance(ConversableAgent.__dict__["_reflection_with_llm_as_summary"], staticmethod)
    assert not runtime_logging.logging_enabled()

    second = agentwatch.InMemoryExporter()
    agentwatch.init(exporters=[second])
    tool_then_answer(stub_provider)
    user.initiate_chat(assistant, message="What is 2 + 3?", max_turns=2, silent=True)
    assert len(spans(second, "llm")) == 2 and len(spans(second, "tool")) == 1
