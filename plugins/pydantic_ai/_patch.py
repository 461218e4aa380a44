"""The patches: an agent run is an agent scope, each model request is checked before Pydantic AI's request
hooks run, and each request and tool call is a span.

- ``Agent.iter`` (``run``, ``run_sync``, ``run_stream`` and ``run_stream_events`` all go through it): the run is an
  agent span and scope of ``agent.name``, and every request and tool of the run counts in that scope
  (``init(agents={"Support": {...}})``) and hangs from its span. The scope is current only while the run's own code
  runs (each step of the run, ``AgentRun.__anext__``/``next``; a request's preparation and call; a tool): the
  caller's code in an ``async with agent.run_stream(...)`` or ``agent.iter(...)`` block is not the agent's (its own
  LLM calls, another agent it runs there).
- ``ModelRequestNode._prepare_request``: after Pydantic AI's own ``UsageLimits.check_before_request`` and its
  ``before_model_request`` hooks, our limits are checked. A block is raised there, before
  ``wrap_model_request`` and ``on_model_request_error``, so no capability or retry sees it: it reaches the
  caller of ``run``/``run_sync``/``run_stream``/``iter`` as ``CircuitBreakerException``.
- ``_agent_graph.model_request`` / ``model_request_stream``: the innermost helpers get the model wrapped
  (``AgentWatchModel``), one LLM call per request; each model of a ``FallbackModel`` wrapped on its own (``watched``),
  one LLM call per model tried.
- ``ToolManager.execute_tool_call``: one ``tool`` span per call; a ``ModelRetry`` ends it as an error with
  ``tool.retry`` set, and the next request carries ``retry``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import agentwatch
from agentwatch.instrumentation import (
    CircuitBreakerException,
    Frame,
    capturing,
    check_limits,
    get_client,
    open_frame,
    record_blocked,
    stop_on_exception,
)
from agentwatch.plugins.http._patching import Patcher

from ._model import AgentWatchModel, FallbacksWatched, first_model, watched

__all__ = ["install", "uninstall"]

_patcher = Patcher()


def install() -> None:
    from pydantic_ai import _agent_graph
    from pydantic_ai.agent import Agent
    from pydantic_ai.run import AgentRun
    from pydantic_ai.tool_manager import ToolManager

    _patcher.replace(Agent, "iter", _iter)
    _patcher.replace(AgentRun, "__anext__", _stepped)
    _patcher.replace(AgentRun, "next", _stepped)
    _patcher.replace(_agent_graph.ModelRequestNode, "_prepare_request", _prepare_request)
    _patcher.replace(_agent_graph, "model_request", _model_request)
    _patcher.replace(_agent_graph, "model_request_stream", _model_request_stream)
    _patcher.replace(ToolManager, "execute_tool_call", _execute_tool_call)


def uninstall() -> None:
    _patcher.restore()


#: The agent frame (span and scope) of each run in progress, by its run id (the graph's state, and the run context of
#: its requests and tools, carry it; not its ``RunUsage``, which an agent delegated to in a tool shares).
_RUNS: dict[str, Frame] = {}


def _run_frame(run_id: Any) -> Frame | None:
    return _RUNS.get(run_id) if run_id is not None else None


def _iter(original: Callable[..., Any]) -> Callable[..., Any]:
    @asynccontextmanager
    async def iter(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:  # noqa: A001 - the SDK's name
        async with original(self, *args, **kwargs) as run:
            client = get_client()
            # Opened after the SDK's own entry: a run started with iter() has its inferred name by now.
            frame = _open_run(client, str(self.name or "agent")) if client is not None else None
            if frame is None:
                yield run
                return
            key = run.run_id
            _RUNS[key] = frame
            error: BaseException | None = None
            try:
                yield run
            except BaseException as raised:
                error = raised
                raise
            finally:
                _RUNS.pop(key, None)
                frame.close(error)

    return iter


# Each step of a run (a node: its instructions, history processors, request, tools, output validators and functions)
# runs inside the run's frame; the caller's own code between steps does not.

def _stepped(original: Callable[..., Any]) -> Callable[..., Any]:
    """``AgentRun.__anext__`` and ``AgentRun.next(node)``."""
    @functools.wraps(original)
    async def step(self: Any, *args: Any, **kwargs: Any) -> Any:
        frame = _run_frame(self.run_id)
        if frame is None:
            return await original(self, *args, **kwargs)
        tokens = frame.enter()
        try:
            return await original(self, *args, **kwargs)
        finally:
            Frame.exit(tokens)

    return step


@stop_on_exception(default=None)
def _open_run(client: Any, name: str) -> Frame | None:
    return open_frame(name, "agent", scope=client.agent_scope(name), attributes={"framework": "pydantic-ai"})


def _prepare_request(original: Callable[..., Any]) -> Callable[..., Any]:
    async def _prepare_request(self: Any, ctx: Any, *args: Any, **kwargs: Any) -> Any:
        if get_client() is None:
            return await original(self, ctx, *args, **kwargs)
        # Inside the run's frame: the request hooks too (a history processor running a summarising agent), where
        # run_stream prepares its request outside a step.
        frame = _run_frame(getattr(getattr(ctx, "state", None), "run_id", None))
        tokens = frame.enter() if frame is not None else ()
        try:
            prepared = await original(self, ctx, *args, **kwargs)
            try:
                check_limits(scopes=())  # a boundary: the request itself is checked (and counted) when sent
            except CircuitBreakerException as blocked:
                model = first_model(prepared[0])
                record_blocked(blocked, "pydantic_ai.request", model=getattr(model, "model_name", None),
                               provider=getattr(model, "system", None), attributes={"framework": "pydantic-ai"})
                raise
        finally:
            Frame.exit(tokens)
        return prepared

    return _prepare_request


def _wrapped(model: Any, run_context: Any) -> Any:
    if get_client() is None or isinstance(model, (AgentWatchModel, FallbacksWatched)):
        return model
    return watched(model, retry=getattr(run_context, "retry", 0) or 0,
                   run=_run_frame(getattr(run_context, "run_id", None)))


def _model_request(original: Callable[..., Any]) -> Callable[..., Any]:
    async def model_request(model: Any, *args: Any, **kwargs: Any) -> Any:
        return await original(_wrapped(model, kwargs.get("run_context")), *args, **kwargs)

    return model_request


def _model_request_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    def model_request_stream(model: Any, *args: Any, **kwargs: Any) -> Any:
        return original(_wrapped(model, kwargs.get("run_context")), *args, **kwargs)

    return model_request_stream


def _execute_tool_call(original: Callable[..., Any]) -> Callable[..., Any]:
    async def execute_tool_call(self: Any, validated: Any, *args: Any, **kwargs: Any) -> Any:
        client = get_client()
        if client is None:
            return await original(self, validated, *args, **kwargs)
        call = validated.call
        frame = _run_frame(getattr(self.ctx, "run_id", None))
        tokens = frame.enter() if frame is not None else ()  # the tool runs in its agent's span and scope
        try:
            async with agentwatch.span(str(call.tool_name), "tool", framework="pydantic-ai") as scope:
                span = scope.span
                if span is not None and capturing(client):
                    span.input = validated.validated_args if validated.validated_args is not None else call.args
                try:
                    result = await original(self, validated, *args, **kwargs)
                except Exception as error:
                    if span is not None and type(error).__name__ == "ToolRetryError":
                        span.attributes["tool.retry"] = True
                    raise
                if span is not None and capturing(client):
                    span.output = result
                return result
        finally:
            Frame.exit(tokens)

    return execute_tool_call
