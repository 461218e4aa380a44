"""OpenAI Agents SDK: a per-agent budget stops "Billing" before its model call; top up and go on from there.

The block carries ``e.resume``: the agent that was about to call its model and that call's whole input
(the user's message, the handoff, the finished tool call and its output). ``Runner.run(agent, input)``
continues the run without repeating a finished turn: the tool does not run again, Triage is not asked again.
``e.resume.run_kwargs`` carries the server-side conversation (``previous_response_id``, ``conversation_id``) of
a run that has one; a run with a ``session=`` gets ``e.resume.input == []`` and is given the same session again
(the session already holds the conversation).

Run: python examples/openai_agents_resume.py   (no API key: a scripted model stands in for gpt-4o-mini)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from agents import Agent, ModelResponse, Runner, Usage, function_tool, set_trace_processors
from agents.models.interface import Model
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

import agentwatch
from agentwatch import CircuitBreakerException


class ScriptedModel(Model):
    """Answers from a script, 1,000 tokens in and 100 out per call (priced as gpt-4o-mini)."""

    model = "gpt-4o-mini"

    def __init__(self, script: list[Any]) -> None:
        self.script = script

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        step = self.script.pop(0)
        if isinstance(step, tuple):  # a tool call: (name, arguments)
            output: list[Any] = [ResponseFunctionToolCall(type="function_call", call_id=f"call_{step[0]}",
                                                          name=step[0], arguments=json.dumps(step[1]))]
        else:
            output = [ResponseOutputMessage(id="msg", type="message", role="assistant", status="completed", content=[
                ResponseOutputText(type="output_text", text=step, annotations=[])])]
        return ModelResponse(output=output, usage=Usage(requests=1, input_tokens=1000, output_tokens=100,
                                                        total_tokens=1100), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("this example runs without streaming")


tool_runs: list[str] = []


@function_tool
def refund(order: str) -> str:
    """Refund an order."""
    tool_runs.append(order)
    return f"order {order} refunded"


set_trace_processors([])  # no export to OpenAI's trace API; AgentWatch adds its own processor
agentwatch.init(exporters=[],
                agents={"Billing": {"budget_per_hour": 0.0002, "block_on_threshold": True}})

script: list[Any] = [("transfer_to_billing", {}), ("refund", {"order": "A-17"}), "Order A-17 is refunded."]
billing = Agent(name="Billing", instructions="Handle refunds.", model=ScriptedModel(script), tools=[refund])
triage = Agent(name="Triage", instructions="Route the user.", model=ScriptedModel(script), handoffs=[billing])

try:
    Runner.run_sync(triage, "Please refund order A-17")
except CircuitBreakerException as blocked:
    print(f"blocked: {blocked.scope_id} {blocked.reason} (${blocked.current:.5f} of ${blocked.threshold:.5f}); "
          f"waiting: {blocked.resume.agent.name} with {len(blocked.resume.input)} input items")
    saved = json.dumps(blocked.resume.input)     # plain data: store it, resume in another process if need be
    blocked.monitor.increase_budget(0.001)       # or .pause(60) / .reset_windows()
    result = Runner.run_sync(blocked.resume.agent, json.loads(saved), **blocked.resume.run_kwargs)
    print(f"resumed: {result.final_output!r}; tool runs: {tool_runs}; model calls left: {len(script)}")
agentwatch.shutdown()
