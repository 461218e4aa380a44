"""toychat's callbacks → AgentWatch: an agent span and scope per run, an LLM call per request.

Everything here goes through ``agentwatch.instrumentation``: the limits are checked by ``start_llm_call``
before the request is sent, the price comes from AgentWatch's price table when the call ends, and every
callback is wrapped in ``stop_on_exception``, so an error of ours is logged and swallowed while a
``CircuitBreakerException`` reaches the program, on purpose.
"""

from __future__ import annotations

from typing import Any

import toychat

from agentwatch.instrumentation import (
    CircuitBreakerException,
    LLMCall,
    Span,
    attach,
    check_limits,
    detach,
    end_span,
    get_client,
    normalize_anthropic_usage,
    record_blocked,
    start_llm_call,
    stop_on_exception,
)

__all__ = ["AgentWatchHandler"]


class AgentWatchHandler(toychat.Handler):
    def __init__(self) -> None:
        # toychat calls back synchronously, so the request and agent objects identify a call and a run.
        self._calls: dict[int, LLMCall] = {}
        self._runs: dict[int, tuple[Span, Any]] = {}

    @stop_on_exception
    def on_agent_start(self, agent: toychat.Agent, task: str) -> None:
        client = get_client()
        if client is None:
            return
        # One scope per agent name: its limits (init(agents={...})) are checked with every enclosing one.
        scope = client.agent_scope(agent.name, role="toychat agent")
        try:
            check_limits(scopes=(scope,))  # a framework boundary: a spent agent does not even start
        except CircuitBreakerException as blocked:
            record_blocked(blocked, agent.name, kind="agent", scopes=(scope,))  # the agent's blocked run
            raise
        span = client.start_span(agent.name, "agent", agent=scope)
        if client.config.capture_text:
            span.input = task
        # While the agent runs, its span is the parent of its calls and its scope is checked before each.
        self._runs[id(agent)] = (span, attach(span, agent=scope))

    @stop_on_exception
    def on_agent_end(self, agent: toychat.Agent, error: BaseException | None) -> None:
        run = self._runs.pop(id(agent), None)
        if run is not None:
            span, token = run
            detach(token)
            end_span(span, error)  # blocked, error or ok; exported

    @stop_on_exception
    def on_request_start(self, model: toychat.Model, request: dict[str, Any]) -> None:
        # Raises CircuitBreakerException (and records a blocked span) if a limit blocks: toychat then never
        # sends the request. request_body lets a hard budget reserve the request's worst-case cost first.
        call = start_llm_call(f"toychat.{model.name}", model=model.name, provider="anthropic",
                              input=request["messages"], request_body=request,
                              attributes={"framework": "toychat"})
        self._calls[id(request)] = call

    @stop_on_exception
    def on_request_end(self, model: toychat.Model, request: dict[str, Any], response: dict[str, Any]) -> None:
        call = self._calls.pop(id(request), None)
        if call is None:
            return
        usage = response.get("usage") or {}
        # AgentWatch counts input tokens OpenAI's way (cached ones included); toychat reports Anthropic's.
        call.set_usage(**normalize_anthropic_usage(usage.get("input_tokens"), usage.get("output_tokens"),
                                                   usage.get("cache_read_input_tokens", 0),
                                                   usage.get("cache_creation_input_tokens", 0)))
        call.set_output(response.get("text"))
        call.end(finish_reason=response.get("stop_reason"))  # prices the call, records its cost, exports it

    @stop_on_exception
    def on_request_error(self, model: toychat.Model, request: dict[str, Any], error: BaseException) -> None:
        call = self._calls.pop(id(request), None)
        if call is not None:
            call.end(error=error)
