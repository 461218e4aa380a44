"""Agents and workflows: the run, its steps, LLM calls and tools as one tree; an agent's own limits stop a
run from inside it, with the breaker's exception type, and the monitor it carries lets the next run go."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.plugins.llamaindex.conftest import llm_spans, openai_llm, tree
from tests.stubs.provider_server import Reply


class _ScriptedModel:
    """The fake paid model behind ``MockFunctionCallingLLM``: asks for the ``add`` tool, then answers."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, messages: Any, **kwargs: Any) -> Any:
        from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock

        self.requests += 1
        if messages and messages[-1].role == MessageRole.TOOL:
            return ChatMessage(role="assistant", content=f"the answer is {messages[-1].content}")
        return ChatMessage(role="assistant", blocks=[
            ToolCallBlock(tool_call_id=f"call-{self.requests}", tool_name="add", tool_kwargs={"a": 1, "b": 2})])


def _agent(model: _ScriptedModel, name: str = "calc") -> Any:
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.llms.mock import MockFunctionCallingLLM
    from llama_index.core.tools import FunctionTool

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    llm = MockFunctionCallingLLM(response_generator=model, is_chat_model=True)
    return FunctionAgent(name=name, tools=[FunctionTool.from_defaults(add)], llm=llm, streaming=False)


def _run(agent: Any, question: str = "add 1 and 2") -> str:
    async def main() -> str:
        return str(await agent.run(question))

    return asyncio.run(main())


def _parent_names(spans: list[dict[str, Any]], kind: str) -> list[str]:
    by_id = {span["span_id"]: span for span in spans}
    return [by_id[span["parent_span_id"]]["name"] for span in spans if span["kind"] == kind]


def test_function_agent_run_tree(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    model = _ScriptedModel()

    assert _run(_agent(model)) == "the answer is 3"

    agentwatch.flush()
    shape = tree(memory.spans)
    assert shape[0] == (0, "agent", "calc")
    steps = [name for depth, kind, name in shape if kind == "node"]
    assert all(depth == 1 for depth, kind, _ in shape if kind == "node")
    assert steps.count("run_agent_step") == 2 and "call_tool" in steps
    # Two model requests (MockFunctionCallingLLM.achat runs chat() inside: still one call each).
    assert model.requests == 2 and len(llm_spans(memory.spans)) == 2
    assert _parent_names(memory.spans, "llm") == ["run_agent_step", "run_agent_step"]
    assert _parent_names(memory.spans, "tool") == ["call_tool"]
    [tool] = memory.by_kind("tool")
    assert tool["name"] == "add" and tool["attributes"]["tool.name"] == "add"
    recorded = [span for span in memory.spans if span["kind"] != "process"]
    assert len({span["trace_id"] for span in recorded}) == 1
    assert {span["agent_name"] for span in recorded} == {"calc"}
    state = agentwatch.get_state()["monitors"]
    assert state["agents"]["calc"]["calls_last_minute"] == 2 == state["global"]["calls_last_minute"]


def test_agent_limits_block_inside_the_run_then_recover(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], agents={"calc": {"max_calls_per_minute": 2, "block_on_threshold": True}})
    model = _ScriptedModel()
    agent = _agent(model)
    assert _run(agent) == "the answer is 3"

    with pytest.raises(CircuitBreakerException) as caught:
        _run(agent)

    assert (caught.value.reason, caught.value.scope, caught.value.scope_id) == ("max_calls_per_minute", "agent",
                                                                                 "calc")
    assert model.requests == 2  # the third request never reached the model
    caught.value.monitor.reset_windows()
    assert _run(agent) == "the answer is 3"
    assert model.requests == 4
    agentwatch.flush()
    runs = [span["status"] for span in memory.spans if span["kind"] == "agent"]
    assert runs == ["ok", "blocked", "ok"]
    assert [span["status"] for span in llm_spans(memory.spans)] == ["ok", "ok", "blocked", "ok", "ok"]


def test_custom_workflow_steps_are_nodes(memory: agentwatch.InMemoryExporter) -> None:
    from llama_index.core.llms import MockLLM
    from llama_index.core.workflow import Event, StartEvent, StopEvent, Workflow, step

    class Drafted(Event):
        topic: str

    class Writer(Workflow):
        llm: Any = MockLLM(max_tokens=3)

        @step
        async def plan(self, ev: StartEvent) -> Drafted:
            return Drafted(topic=ev.topic)

        @step
        async def write(self, ev: Drafted) -> StopEvent:
            return StopEvent(result=(await self.llm.acomplete(f"write about {ev.topic}")).text)

    agentwatch.init(exporters=[memory])

    async def main() -> str:
        return str(await Writer(timeout=10).run(topic="bees"))

    assert asyncio.run(main()).strip()
    agentwatch.flush()
    assert tree(memory.spans) == [(0, "graph", "Writer"), (1, "node", "plan"), (1, "node", "write"),
                                  (2, "llm", "MockLLM")]
    [write] = [span for span in memory.spans if span["name"] == "write"]
    assert write["attributes"]["workflow.input_event"] == "Drafted"


@pytest.mark.parametrize("how", ["cancel_run", "timeout"])
def test_a_run_cut_off_while_its_llm_call_is_out_ends_its_spans_as_cut_off(memory: agentwatch.InMemoryExporter,
                                                                          stub_provider: Any, how: str) -> None:
    """Found by a probe: a run cancelled by ``handler.cancel_run()`` (the caller gets ``WorkflowCancelledByUser``) was
    recorded ``ok``, and the step whose LLM call was cut off (cancelled or timed out) ``ok`` while its call was an
    error: LlamaIndex ends both spans as if they returned (result None) and reports the cancellation by an event."""
    from llama_index.core.llms import ChatMessage
    from llama_index.core.workflow import StartEvent, StopEvent, Workflow, step
    from workflows.errors import WorkflowCancelledByUser, WorkflowTimeoutError

    class Slow(Workflow):
        llm: Any = None

        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            answer = await self.llm.achat([ChatMessage(role="user", content="hi")])
            return StopEvent(result=answer.message.content)

    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="late", delay=3))
    workflow = Slow(timeout=0.5 if how == "timeout" else 30)
    workflow.llm = openai_llm(stub_provider)

    async def main() -> None:
        handler = workflow.run()
        if how == "cancel_run":
            await asyncio.sleep(0.5)
            await handler.cancel_run()
        await handler

    with pytest.raises(WorkflowCancelledByUser if how == "cancel_run" else WorkflowTimeoutError):
        asyncio.run(main())
    agentwatch.flush()
    assert tree(memory.spans) == [(0, "graph", "Slow"), (1, "node", "ask"), (2, "llm", "OpenAI")]
    status = {span["name"]: (span["status"], span["attributes"].get("error.type")) for span in memory.spans}
    assert status["OpenAI"] == ("error", "CancelledError")
    assert status["ask"] == ("error", "CancelledError")
    assert status["Slow"] == (("error", "CancelledError") if how == "cancel_run"
                              else ("error", "WorkflowTimeoutError"))
