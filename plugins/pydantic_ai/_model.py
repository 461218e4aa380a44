"""The model as AgentWatch sees it: each request one LLM call, active while it is sent.

``AgentWatchModel`` wraps the model given to the innermost request helpers only (``_patch``), so capabilities,
``wrap_model_request`` hooks and Pydantic AI's own instrumentation see the user's model unchanged. The call is
active while the request goes out, so the HTTP layer (openai SDK, httpx) adds to it instead of counting the
request again; its usage is Pydantic AI's ``RequestUsage`` of the response.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

from pydantic_ai.models.wrapper import WrapperModel

from agentwatch.instrumentation import LLMCall, capturing, get_client, start_llm_call, swallow_internal_error

__all__ = ["AgentWatchModel", "read_usage"]

_ATTRIBUTES = {"framework": "pydantic-ai"}


def read_usage(call: LLMCall, usage: Any) -> None:
    """Pydantic AI's ``RequestUsage``: input includes cache reads and writes, as in the span model."""
    input_tokens = getattr(usage, "input_tokens", 0)
    output_tokens = getattr(usage, "output_tokens", 0)
    if not (input_tokens or output_tokens):  # none sent: what the HTTP layer read or estimated stands
        return
    call.set_usage(input_tokens, output_tokens, getattr(usage, "cache_read_tokens", None) or None,
                   getattr(usage, "cache_write_tokens", None) or None)


class AgentWatchModel(WrapperModel):
    """Opens one LLM call per request of ``wrapped`` (limits checked again, with the agent's scope)."""

    def __init__(self, wrapped: Any, retry: int = 0, run: Any = None) -> None:
        super().__init__(wrapped)
        self._retry = retry
        #: The agent run's frame (``_patch._RUNS``): each call goes under its span, in its scope.
        self._run = run

    def _open(self, name: str, messages: Any = None) -> LLMCall:
        wrapped = self.wrapped
        run = self._run
        call = start_llm_call(name, model=wrapped.model_name, provider=wrapped.system, attributes=dict(_ATTRIBUTES),
                              parent=run.span if run is not None else None,
                              scopes=(run.scope,) if run is not None and run.scope is not None else ())
        if self._retry:
            call.set_attribute("retry", self._retry)
        client = get_client()
        if messages and capturing(client):  # built only when text is captured
            call.set_input(_message_dicts(messages))
        return call

    async def request(self, messages: Any, model_settings: Any, model_request_parameters: Any) -> Any:
        call = self._open("pydantic_ai.request", messages)
        call.activate()
        try:
            response = await self.wrapped.request(messages, model_settings, model_request_parameters)
        except BaseException as error:
            call.deactivate()
            call.end(error=error)
            raise
        call.deactivate()
        _finish(call, response)
        return response

    @asynccontextmanager
    async def request_stream(self, messages: Any, model_settings: Any, model_request_parameters: Any,
                             run_context: Any = None) -> AsyncGenerator[Any]:
        call = self._open("pydantic_ai.request_stream", messages)
        call.activate()  # the request is sent when the stream is opened
        try:
            opened = self.wrapped.request_stream(messages, model_settings, model_request_parameters, run_context)
            stream = await opened.__aenter__()
        except BaseException as failed:
            call.deactivate()
            call.end(error=failed)
            raise
        call.deactivate()
        raised: BaseException | None = None
        try:
            yield stream
        except BaseException as error:
            raised = error
            raise
        finally:
            try:
                await opened.__aexit__(type(raised) if raised else None, raised,
                                       raised.__traceback__ if raised else None)
            finally:
                if raised is None or isinstance(raised, GeneratorExit):
                    _finish(call, stream.get(), streamed=True)
                else:
                    call.end(error=raised)


def _message_dicts(messages: Any) -> list[dict[str, Any]]:
    """The request's message parts as ``{"role", "content"}`` (role: the part's kind, e.g. ``user-prompt``)."""
    return [{"role": str(getattr(part, "part_kind", "part")), "content": getattr(part, "content", None)}
            for message in messages for part in getattr(message, "parts", ())
            if getattr(part, "content", None) is not None]


def _finish(call: LLMCall, response: Any, streamed: bool = False) -> None:
    try:
        read_usage(call, getattr(response, "usage", None))
        if streamed and getattr(response, "finish_reason", None) is None:
            call.set_attribute("stream_incomplete", True)
        text = getattr(response, "text", None)
        if isinstance(text, str):
            call.set_output(text)
        reason = getattr(response, "finish_reason", None)
        call.end(finish_reason=str(reason) if reason else None)
    except Exception:
        swallow_internal_error("the pydantic-ai plugin")
        call.end()
