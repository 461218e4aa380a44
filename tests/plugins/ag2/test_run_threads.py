"""``agent.run`` / ``run_iter`` / ``sequential_run``: AG2 runs the chat on a thread it starts itself, which starts with
the AgentWatch values (span, agent scopes, run budgets) of the code that asked for the run."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from autogen import ConversableAgent

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .test_ag2 import chat_requests, spans


def agents(llm_config: dict[str, Any]) -> tuple[Any, Any]:
    assistant = ConversableAgent("assistant", llm_config=llm_config, human_input_mode="NEVER")
    user = ConversableAgent("user", llm_config=False, human_input_mode="NEVER", default_auto_reply="more")
    return assistant, user


def queue_answers(stub: Any, count: int) -> None:
    for index in range(count):
        stub.queue(Reply(content=f"answer {index}", input_tokens=1000, output_tokens=1000))  # $0.00075 each


def test_run_and_process_keep_a_run_budget_and_the_trace(memory, stub_provider, llm_config):
    """Found by a probe: the chat ran on AG2's thread with an empty context, so a ``trace(budget=...)`` around
    ``run()`` held nothing (all 4 requests went out) and the chat was a trace of its own."""
    agentwatch.init(exporters=[memory])
    queue_answers(stub_provider, 4)
    assistant, user = agents(llm_config)

    with pytest.raises(CircuitBreakerException) as blocked, agentwatch.trace("job", budget=0.001):
        response = user.run(assistant, message="hi", max_turns=4, silent=True)
        response.process()

    assert (blocked.value.scope, blocked.value.scope_id, blocked.value.reason) == ("trace", "job", "trace_budget")
    assert chat_requests(stub_provider) == 2  # the second call finds $0.00075 spent, the third $0.0015
    [run] = spans(memory, "trace")
    [chat] = spans(memory, "chain")
    assert (chat["parent_span_id"], chat["trace_id"]) == (run["span_id"], run["trace_id"])
    assert [span["status"] for span in spans(memory, "llm")] == ["ok", "ok", "blocked"]
    assert {span["trace_id"] for span in spans(memory) if span["kind"] != "process"} == {run["trace_id"]}


def test_run_iter_and_sequential_run_keep_an_agent_scope(memory, stub_provider, llm_config):
    agentwatch.init(exporters=[memory])
    queue_answers(stub_provider, 2)
    assistant, user = agents(llm_config)

    with agentwatch.agent("pipeline", budget_per_hour=1.0):
        events = list(user.run_iter(assistant, message="hi", max_turns=1, silent=True))
        [response] = user.sequential_run([{"recipient": assistant, "message": "again", "max_turns": 1,
                                           "silent": True}])
        response.process()

    assert events and chat_requests(stub_provider) == 2
    pipeline = agentwatch.get_client().agent_scope("pipeline").monitor.snapshot()
    assert pipeline["spend_last_hour"] == pytest.approx(2 * 0.00075)
    assert [span["status"] for span in spans(memory, "llm")] == ["ok", "ok"]


def test_a_thread_started_elsewhere_still_starts_empty(memory, stub_provider, llm_config):
    """Only AG2's own threads carry: a ``threading.Thread`` the program starts itself starts empty, as in Python."""
    agentwatch.init(exporters=[memory])
    seen: list[Any] = []
    with agentwatch.trace("job"):
        thread = threading.Thread(target=lambda: seen.append(agentwatch.instrumentation.get_current_span()))
        thread.start()
        thread.join()
    assert seen == [None]
