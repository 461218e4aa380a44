"""A run id the program gives as a UUID's text (``config={"run_id": str(uuid4())}``) is a run like any other.

LangChain passes the id to its handlers as given (its own tracers parse the text), and the runs under it get it as
their ``parent_run_id``. Keying runs by ``UUID.int`` alone made such runs an internal error: no span, no limit checked.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langchain_core.prompts import ChatPromptTemplate
from langgraph.checkpoint.memory import InMemorySaver

import agentwatch
from agentwatch import CircuitBreakerException
from tests.plugins.langchain.fakes import UsageChatModel
from tests.plugins.langchain.graphs import Workflow


def _text_id() -> Any:
    """A run id as its text (``RunnableConfig`` types it ``UUID``; programs pass text too)."""
    return str(uuid.uuid4())


def _spans(memory: agentwatch.InMemoryExporter) -> list[dict[str, Any]]:
    agentwatch.flush()
    return [span for span in memory.spans if span["kind"] != "process"]


def test_a_text_run_id_is_recorded_under_its_chain_and_blocked(memory: agentwatch.InMemoryExporter,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    agentwatch.init(exporters=[memory], max_calls_per_minute=1, block_on_threshold=True)
    model = UsageChatModel()
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | model

    chain.invoke({"q": "hi"}, config={"run_id": _text_id()})
    with pytest.raises(CircuitBreakerException):
        chain.invoke({"q": "again"}, config={"run_id": _text_id()})
    with pytest.raises(CircuitBreakerException):
        model.invoke("a model alone", config={"run_id": _text_id()})

    assert model.calls == 1  # both blocked calls stopped before the model ran
    spans = _spans(memory)
    by_id = {span["span_id"]: span for span in spans}
    llm = [(span["status"], by_id[span["parent_span_id"]]["name"] if span["parent_span_id"] in by_id else None)
           for span in spans if span["kind"] == "llm"]
    assert llm == [("ok", "RunnableSequence"), ("blocked", "RunnableSequence"), ("blocked", None)]
    assert [span["input_tokens"] for span in spans if span["kind"] == "llm"] == [1000, 0, 0]
    assert "internal error" not in caplog.text


def test_a_graph_run_with_a_text_run_id_resumes_after_a_block(memory: agentwatch.InMemoryExporter) -> None:
    workflow = Workflow()
    graph = workflow.build(InMemorySaver())
    config: dict[str, Any] = {"configurable": {"thread_id": "text-id"}}
    # Each call costs $0.0075 (1000 in, 500 out on gpt-4o): the budget is spent after two.
    agentwatch.init(exporters=[memory], budget_per_hour=0.015, block_on_threshold=True)

    with pytest.raises(CircuitBreakerException) as blocked:
        graph.invoke({"log": []}, {**config, "run_id": _text_id()})
    assert workflow.runs == ["planner", "researcher"]
    assert graph.get_state(config).next == ("writer",)

    blocked.value.monitor.increase_budget(1.0)
    graph.invoke(None, {**config, "run_id": _text_id()})
    assert workflow.runs == ["planner", "researcher", "writer"]

    nodes = [(span["name"], span["status"]) for span in _spans(memory) if span["kind"] == "node"]
    assert nodes == [("planner", "ok"), ("researcher", "ok"), ("writer", "blocked"), ("writer", "ok")]
