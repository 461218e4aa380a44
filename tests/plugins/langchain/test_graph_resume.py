"""The core promise: a block stops the graph at a node boundary and the checkpoint resumes it exactly."""

from __future__ import annotations

import asyncio
import operator
import sqlite3
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy, Send

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch.plugins.langchain import AgentWatchHandler
from tests.plugins.langchain.fakes import UsageChatModel, gpt4o_cost
from tests.plugins.langchain.graphs import FanOut, State, Workflow

CALL = gpt4o_cost()
EXPECTED_LOG = ["planner:planner done", "researcher:researcher done", "writer:writer done"]


def _config(thread: str = "t1") -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def _unblocked_final_state() -> dict[str, Any]:
    """The same workflow run once with AgentWatch off: what a resumed run must end with."""
    client = agentwatch.get_client()
    assert client is None, "compute the reference before init()"
    workflow = Workflow()
    return workflow.build(InMemorySaver()).invoke({"log": []}, _config())


UNBLOCKED = _unblocked_final_state()


@pytest.fixture(params=["memory", "sqlite"])
def saver(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        yield InMemorySaver()
        return
    connection = sqlite3.connect(tmp_path / "checkpoints.db", check_same_thread=False)
    yield SqliteSaver(connection)
    connection.close()


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_block_at_next_node_and_resume(memory: agentwatch.InMemoryExporter, saver: Any, mode: str) -> None:
    # 1.5 calls of budget: the researcher's call is admitted and exhausts it; the writer must not start.
    agentwatch.init(exporters=[memory], budget_per_hour=1.5 * CALL, block_on_threshold=True)
    workflow = Workflow()
    graph = workflow.build(saver)
    with pytest.raises(CircuitBreakerException) as caught:
        if mode == "invoke":
            graph.invoke({"log": []}, _config())
        else:
            list(graph.stream({"log": []}, _config()))
    assert isinstance(caught.value, CircuitBreakerException) and caught.value.reason == "budget_per_hour"
    assert workflow.runs == ["planner", "researcher"]
    snapshot = graph.get_state(_config())
    assert snapshot.next == ("writer",)
    assert snapshot.values["log"] == EXPECTED_LOG[:2]

    caught.value.monitor.increase_budget(CALL)
    final = graph.invoke(None, _config())
    assert workflow.runs == ["planner", "researcher", "writer"]  # finished nodes did not run again
    assert final == UNBLOCKED
    agentwatch.flush()
    nodes = [s for s in memory.by_kind("node")]
    blocked = [s for s in nodes if s["status"] == "blocked"]
    assert [s["name"] for s in blocked] == ["writer"]
    assert blocked[0]["attributes"]["langgraph_node"] == "writer"
    assert blocked[0]["attributes"]["thread_id"] == "t1"
    assert {s["name"] for s in nodes if s["status"] == "ok"} == {"planner", "researcher", "writer"}


@pytest.mark.parametrize("mode", ["ainvoke", "astream"])
def test_async_block_and_resume_with_async_sqlite(memory: agentwatch.InMemoryExporter, tmp_path: Path,
                                                  mode: str) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=1.5 * CALL, block_on_threshold=True)
    workflow = Workflow()

    async def run() -> dict[str, Any]:
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "a.db")) as checkpointer:
            graph = workflow.build(checkpointer, use_async=True)
            with pytest.raises(CircuitBreakerException) as caught:
                if mode == "ainvoke":
                    await graph.ainvoke({"log": []}, _config())
                else:
                    async for _ in graph.astream({"log": []}, _config()):
                        pass
            assert (await graph.aget_state(_config())).next == ("writer",)
            caught.value.monitor.reset_windows()
            return await graph.ainvoke(None, _config())

    final = asyncio.run(run())
    assert workflow.runs == ["planner", "researcher", "writer"]
    assert final == UNBLOCKED


def test_parallel_branch_keeps_the_finished_sibling(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    fan = FanOut()
    graph = fan.build(InMemorySaver())
    handler = AgentWatchHandler(agents={"right": {"budget_per_hour": 0.0, "block_on_threshold": True}})
    config = {**_config(), "callbacks": [handler]}
    with pytest.raises(CircuitBreakerException) as caught:
        graph.invoke({"log": []}, config)
    assert caught.value.scope_id == "right"
    assert sorted(fan.runs) == ["left", "start"]
    caught.value.monitor.increase_budget(1.0)
    final = graph.invoke(None, config)
    assert sorted(fan.runs) == ["join", "left", "right", "start"]  # left did not run twice
    assert sorted(final["log"]) == ["join", "left", "right", "start"]


def test_retry_policy_does_not_retry_a_block(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=CALL, block_on_threshold=True)
    model = UsageChatModel()
    attempts: list[int] = []

    def twice(state: State) -> dict[str, list[str]]:
        attempts.append(1)
        model.invoke("first")
        model.invoke("second")  # blocked: the budget was reached by the first call
        return {"log": ["done"]}

    graph = StateGraph(State)
    graph.add_node("twice", twice, retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.01))
    graph.add_edge(START, "twice")
    graph.add_edge("twice", END)
    compiled = graph.compile(checkpointer=InMemorySaver())
    with pytest.raises(CircuitBreakerException):
        compiled.invoke({"log": []}, _config())
    assert len(attempts) == 1 and model.calls == 1


def test_retry_policy_would_retry_a_plain_exception() -> None:
    """The trap the block avoids: RetryPolicy retries ordinary exceptions (guards the test above)."""
    attempts: list[int] = []

    class TransientError(Exception):
        pass

    def flaky(state: State) -> dict[str, list[str]]:
        attempts.append(1)
        raise TransientError("transient")

    graph = StateGraph(State)
    graph.add_node("flaky", flaky, retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.01))
    graph.add_edge(START, "flaky")
    compiled = graph.compile()
    with pytest.raises(TransientError):
        compiled.invoke({"log": []})
    assert len(attempts) == 3


def _graph_with_error_handler(node: Any, handled: list[str]) -> Any:
    def fallback(state: State) -> dict[str, list[str]]:
        handled.append("fallback")
        return {"log": ["fallback"]}

    graph = StateGraph(State)
    graph.add_node("work", node, error_handler=fallback)
    graph.add_edge(START, "work")
    graph.add_edge("work", END)
    return graph.compile(checkpointer=InMemorySaver())


def test_error_handler_does_not_swallow_a_block(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.0, block_on_threshold=True)
    handled: list[str] = []
    model = UsageChatModel()
    graph = _graph_with_error_handler(lambda state: {"log": [model.invoke("x").content]}, handled)
    with pytest.raises(CircuitBreakerException):
        graph.invoke({"log": []}, _config())
    assert handled == [] and model.calls == 0


def test_error_handler_would_swallow_a_runtime_error() -> None:
    handled: list[str] = []

    def boom(state: State) -> dict[str, list[str]]:
        raise RuntimeError("boom")

    result = _graph_with_error_handler(boom, handled).invoke({"log": []}, _config())
    assert handled == ["fallback"] and result["log"] == ["fallback"]


def test_interrupt_mode_pauses_for_a_human_and_applies_the_top_up(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=1.5 * CALL, block_on_threshold=True)
    workflow = Workflow()
    graph = workflow.build(InMemorySaver())
    config = {**_config(), "callbacks": [AgentWatchHandler(on_budget="interrupt")]}
    paused = graph.invoke({"log": []}, config)
    (request,) = paused["__interrupt__"]
    assert request.value["type"] == "agentwatch.circuit_breaker" and request.value["reason"] == "budget_per_hour"
    assert request.value["what"] == "LLM call" and "hourly budget reached" in request.value["message"]
    assert graph.get_state(config).next == ("writer",)
    # interrupt() pauses the writer at its model call; on resume LangGraph re-runs the node from its start.
    assert workflow.runs == ["planner", "researcher", "writer"] and workflow.models["writer"].calls == 0
    final = graph.invoke(Command(resume={"increase_budget": 5.0}), config)
    assert workflow.runs == ["planner", "researcher", "writer", "writer"]
    assert workflow.models["writer"].calls == 1
    assert final == UNBLOCKED
    assert agentwatch.get_state()["monitors"]["global"]["limits"]["budget_per_hour"] == pytest.approx(1.5 * CALL + 5)


def test_per_node_agents_and_graph_span_tree(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    workflow = Workflow()
    handler = AgentWatchHandler(agents={"researcher": {"budget_per_hour": 2.0}, "writer": {"role": "Writer"}})
    workflow.build(InMemorySaver()).invoke({"log": []}, {**_config("tree"), "callbacks": [handler]})
    agentwatch.flush()
    spans = {s["span_id"]: s for s in memory.spans}
    (graph,) = memory.by_kind("graph")
    assert graph["name"] == "LangGraph" and graph["parent_span_id"] is None
    nodes = {s["name"]: s for s in memory.by_kind("node")}
    assert set(nodes) == {"planner", "researcher", "writer"}
    for name, node in nodes.items():
        assert node["parent_span_id"] == graph["span_id"]
        assert node["attributes"]["langgraph_node"] == name and node["attributes"]["thread_id"] == "tree"
        assert isinstance(node["attributes"]["langgraph_step"], int)
    for llm in memory.by_kind("llm"):
        assert spans[llm["parent_span_id"]]["kind"] == "node"
    by_node = {spans[s["parent_span_id"]]["name"]: s for s in memory.by_kind("llm")}
    assert by_node["researcher"]["agent_name"] == "researcher"
    assert by_node["writer"]["agent_role"] == "Writer"
    assert by_node["planner"]["agent_name"] is None
    state = agentwatch.get_state()["monitors"]["agents"]
    assert state["researcher"]["spend_last_hour"] == pytest.approx(CALL)


def test_nodes_in_a_subgraph_carry_their_own_checkpoint_ns(memory: agentwatch.InMemoryExporter) -> None:
    """Found 2026-12-12: a subgraph's nodes carried the subgraph's namespace (``review:<id>``, LangGraph's
    ``checkpoint_ns`` metadata there), not their own (``review:<id>|draft:<id>``): they could not be told apart."""
    agentwatch.init(exporters=[memory])
    inner = StateGraph(State)
    inner.add_node("draft", lambda state: {"log": ["draft"]})
    inner.add_node("critique", lambda state: {"log": ["critique"]})
    inner.add_edge(START, "draft")
    inner.add_edge("draft", "critique")
    inner.add_edge("critique", END)
    outer = StateGraph(State)
    outer.add_node("review", inner.compile())
    outer.add_edge(START, "review")
    outer.add_edge("review", END)
    outer.compile().invoke({"log": []})
    agentwatch.flush()
    namespaces = {span["name"]: span["attributes"]["checkpoint_ns"] for span in memory.by_kind("node")}
    review = namespaces["review"]
    assert review.startswith("review:") and "|" not in review
    for name in ("draft", "critique"):
        parent, _, own = namespaces[name].partition("|")
        assert parent == review and own.startswith(f"{name}:")


def test_one_pause_is_one_blocked_span(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=1.5 * CALL, block_on_threshold=True)
    graph = Workflow().build(InMemorySaver())
    config = {**_config("one-pause"), "callbacks": [AgentWatchHandler(on_budget="interrupt")]}
    assert graph.invoke({"log": []}, config)["__interrupt__"]
    assert graph.invoke(Command(resume={"increase_budget": 5.0}), config) == UNBLOCKED
    agentwatch.flush()
    assert [s["name"] for s in memory.by_kind("llm") if s["status"] == "blocked"] == ["UsageChatModel"]
    # The answer was applied once, and only to the monitor that paused.
    assert agentwatch.get_state()["monitors"]["global"]["limits"]["budget_per_hour"] == pytest.approx(1.5 * CALL + 5)


class Fan(TypedDict, total=False):
    plan: str
    found: Annotated[list[str], operator.add]


def test_parallel_branches_paused_together_are_answered_once(memory: agentwatch.InMemoryExporter) -> None:
    """Each branch of a ``Send`` fan-out blocked by one limit pauses; answered by interrupt id (LangGraph needs ids
    when several interrupts are pending), the top-up is applied once. Found 2026-12-05: three answers of $1 raised
    the budget by $3."""
    agentwatch.init(exporters=[memory], budget_per_hour=0.5 * CALL, block_on_threshold=True)
    model = UsageChatModel()
    builder = StateGraph(Fan)
    builder.add_node("plan", lambda state: {"plan": str(model.invoke("plan").content)})
    builder.add_node("research", lambda state: {"found": [str(model.invoke(state["plan"]).content)]})
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", lambda state: [Send("research", state) for _ in range(3)], ["research"])
    builder.add_edge("research", END)
    graph = builder.compile(checkpointer=InMemorySaver())
    config = {**_config("fan-out"), "callbacks": [AgentWatchHandler(on_budget="interrupt")]}
    paused = graph.invoke({}, config)["__interrupt__"]
    assert len(paused) == 3 and model.calls == 1
    final = graph.invoke(Command(resume={pause.id: {"increase_budget": 1.0} for pause in paused}), config)
    assert final == {"plan": "ok", "found": ["ok", "ok", "ok"]} and model.calls == 4
    assert agentwatch.get_state()["monitors"]["global"]["limits"]["budget_per_hour"] == pytest.approx(0.5 * CALL + 1)


def test_resume_in_another_process_applies_the_top_up_there(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]

    def run(step: str) -> dict[str, Any]:
        result = subprocess.run([sys.executable, "-m", "tests.plugins.langchain.interrupt_program", step,
                                 str(tmp_path / "checkpoints.db")], cwd=root, capture_output=True, text=True,
                                timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    paused = run("pause")
    (request,) = paused["interrupt"]
    assert request["type"] == "agentwatch.circuit_breaker" and paused["next"] == ["writer"]
    assert paused["blocked"] == ["UsageChatModel"] and paused["model_calls"]["writer"] == 0
    resumed = run("resume")
    assert resumed["final"] == UNBLOCKED and resumed["next"] == []
    assert resumed["runs"] == ["writer"] and resumed["model_calls"]["writer"] == 1
    assert resumed["blocked"] == []  # the pause was recorded once, by the process that paused
    assert resumed["budget"] == pytest.approx(1.5 * CALL + 5)  # the answer applies where the graph resumes


@pytest.mark.parametrize("use_async", [False, True])
def test_our_pause_after_the_users_own_interrupt_in_one_node(memory: agentwatch.InMemoryExporter,
                                                             use_async: bool) -> None:
    # LangGraph matches resume values to interrupt() calls by position in the node: the user's approval
    # comes first, our pause second; every re-run of the node must hand each answer to its own interrupt.
    from langgraph.types import interrupt

    agentwatch.init(exporters=[memory], budget_per_hour=0.5 * CALL, block_on_threshold=True)
    model = UsageChatModel(reply="done")
    answers: list[Any] = []

    def prep(state: State) -> dict[str, list[str]]:
        model.invoke("prep")  # admitted; exhausts the budget
        return {"log": ["prep"]}

    def ask(state: State) -> dict[str, list[str]]:
        answers.append(interrupt("approve?"))
        first, second = model.invoke("one"), model.invoke("two")
        return {"log": [f"ask:{first.content}:{second.content}"]}

    async def aask(state: State) -> dict[str, list[str]]:
        answers.append(interrupt("approve?"))
        first, second = await model.ainvoke("one"), await model.ainvoke("two")
        return {"log": [f"ask:{first.content}:{second.content}"]}

    graph = StateGraph(State)
    graph.add_node("prep", prep)
    graph.add_node("ask", aask if use_async else ask)
    graph.add_edge(START, "prep")
    graph.add_edge("prep", "ask")
    graph.add_edge("ask", END)
    app = graph.compile(checkpointer=InMemorySaver())
    config: Any = {**_config("positions"), "callbacks": [AgentWatchHandler(on_budget="interrupt")]}

    def run(value: Any) -> Any:
        return asyncio.run(app.ainvoke(value, config)) if use_async else app.invoke(value, config)

    (first,) = run({"log": []})["__interrupt__"]
    assert first.value == "approve?"
    (second,) = run(Command(resume="yes"))["__interrupt__"]
    assert second.value["type"] == "agentwatch.circuit_breaker"
    final = run(Command(resume={"increase_budget": 5.0}))
    assert final["log"] == ["prep", "ask:done:done"]
    assert answers == ["yes", "yes"]  # the user's interrupt got the user's answer on both re-runs
    assert model.calls == 3
    agentwatch.flush()
    assert len([s for s in memory.by_kind("llm") if s["status"] == "blocked"]) == 1
    assert agentwatch.get_state()["monitors"]["global"]["limits"]["budget_per_hour"] == pytest.approx(0.5 * CALL + 5)
