"""The model as AgentWatch sees it: each request one LLM call, active while it is sent.

``AgentWatchModel`` wraps the model given to the innermost request helpers only (``_patch``), so capabilities,
``wrap_model_request`` hooks and Pydantic AI's own instrumentation see the user's model unchanged. The call is
active while the request goes out, so the HTTP layer (openai SDK, httpx) adds to it instead of counting the
request again; its usage is Pydantic AI's ``RequestUsage`` of the response.

A ``FallbackModel`` is not one call: each model it tries is (``watched``), with that model's name and provider, so
its spans say which model answered and a hard budget reserves the worst case of the model actually sent to, not of
the composite ``fallback:…`` name (which no price table knows). A block met by one of them is carried past the
``FallbackModel``'s ``fallback_on`` (a ``BlockCarrier``) and raised to the caller: never a fallback.
"""

from __future__ import annotations

import copy
from asyncio import CancelledError
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.models.wrapper import WrapperModel

from agentwatch.instrumentation import (
    BlockCarrier,
    CircuitBreakerException,
    LLMCall,
    capturing,
    estimate_tokens,
    get_client,
    start_llm_call,
    swallow_internal_error,
)

__all__ = ["AgentWatchModel", "FallbacksWatched", "first_model", "read_usage", "watched"]

_ATTRIBUTES = {"framework": "pydantic-ai"}


def read_usage(call: LLMCall, usage: Any) -> None:
    """Pydantic AI's ``RequestUsage``: input includes cache reads and writes, as in the span model."""
    input_tokens = getattr(usage, "input_tokens", 0)
    output_tokens = getattr(usage, "output_tokens", 0)
    if not (input_tokens or output_tokens):  # none sent: what the HTTP layer read or estimated stands
        return
    call.set_usage(input_tokens, output_tokens, getattr(usage, "cache_read_tokens", None) or None,
                   getattr(usage, "cache_write_tokens", None) or None)


def watched(model: Any, retry: int = 0, run: Any = None) -> Any:
    """``model`` as the request helpers are given it: each model a ``FallbackModel`` tries (nested ones too) wrapped
    in an ``AgentWatchModel`` of its own, inside a copy of the ``FallbackModel`` (the user's keeps its models), any
    other model wrapped as a whole."""
    if isinstance(model, FallbackModel):
        return FallbacksWatched(_tries(model, retry, run))
    return AgentWatchModel(model, retry, run)


def _tries(model: FallbackModel, retry: int, run: Any) -> FallbackModel:
    tries = copy.copy(model)
    tries.models = [_tries(inner, retry, run) if isinstance(inner, FallbackModel)  # its blocks carried past both
                    else AgentWatchModel(inner, retry, run, carry_blocks=True) for inner in model.models]
    return tries


def first_model(model: Any) -> Any:
    """The model a request goes to first: a ``FallbackModel``'s first (the one a block before the request names)."""
    for _ in range(8):
        models = getattr(model, "models", None) if isinstance(model, FallbackModel) else None
        if not models:
            break
        model = models[0]
    return model


class FallbacksWatched(WrapperModel):
    """A ``FallbackModel`` whose models are watched (``watched``): the block one of them met is raised to the caller."""

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self.wrapped.request(*args, **kwargs)
        except BlockCarrier as leaving:
            raise leaving.blocked from None

    @asynccontextmanager
    async def request_stream(self, *args: Any, **kwargs: Any) -> AsyncGenerator[Any]:
        try:
            async with self.wrapped.request_stream(*args, **kwargs) as stream:
                yield stream
        except BlockCarrier as leaving:  # only a model's opening carries one: the caller's code raises none
            raise leaving.blocked from None


class AgentWatchModel(WrapperModel):
    """Opens one LLM call per request of ``wrapped`` (limits checked again, with the agent's scope)."""

    def __init__(self, wrapped: Any, retry: int = 0, run: Any = None, carry_blocks: bool = False) -> None:
        super().__init__(wrapped)
        self._retry = retry
        #: The agent run's frame (``_patch._RUNS``): each call goes under its span, in its scope.
        self._run = run
        #: Inside a ``FallbackModel`` (``watched``): a block leaves as a ``BlockCarrier``, past its ``fallback_on``.
        self._carry_blocks = carry_blocks

    def _blocked(self, blocked: CircuitBreakerException) -> BaseException:
        return BlockCarrier(blocked) if self._carry_blocks else blocked

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
        try:
            call = self._open("pydantic_ai.request", messages)
        except CircuitBreakerException as blocked:
            raise self._blocked(blocked) from None
        call.activate()
        try:
            response = await self.wrapped.request(messages, model_settings, model_request_parameters)
        except BaseException as error:
            call.deactivate()
            call.end(error=error)
            if isinstance(error, CircuitBreakerException) and self._carry_blocks:
                raise BlockCarrier(error) from None
            raise
        call.deactivate()
        _finish(call, response)
        return response

    @asynccontextmanager
    async def request_stream(self, messages: Any, model_settings: Any, model_request_parameters: Any,
                             run_context: Any = None) -> AsyncGenerator[Any]:
        try:
            call = self._open("pydantic_ai.request_stream", messages)
        except CircuitBreakerException as blocked:
            raise self._blocked(blocked) from None
        call.activate()  # the request is sent when the stream is opened
        try:
            opened = self.wrapped.request_stream(messages, model_settings, model_request_parameters, run_context)
            stream = await opened.__aenter__()
        except BaseException as failed:
            call.deactivate()
            call.end(error=failed)
            if isinstance(failed, CircuitBreakerException) and self._carry_blocks:
                raise BlockCarrier(failed) from None
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
                if raised is None or isinstance(raised, GeneratorExit | CancelledError):
                    # Read to its end, or left by the program: Pydantic AI stops reading a stream the caller left
                    # (a ``break`` out of ``stream_text``, the run's task cancelled) by cancelling its read (an anyio
                    # cancel scope), or closes it. Ended with what arrived, ``stream_incomplete`` without its finish.
                    _finish(call, stream.get(), streamed=True, messages=messages)
                else:
                    call.end(error=raised)


def _message_dicts(messages: Any) -> list[dict[str, Any]]:
    """The request's message parts as ``{"role", "content"}`` (role: the part's kind, e.g. ``user-prompt``)."""
    return [{"role": str(getattr(part, "part_kind", "part")), "content": getattr(part, "content", None)}
            for message in messages for part in getattr(message, "parts", ())
            if getattr(part, "content", None) is not None]


def _finish(call: LLMCall, response: Any, streamed: bool = False, messages: Any = None) -> None:
    try:
        read_usage(call, getattr(response, "usage", None))
        text = getattr(response, "text", None)
        if streamed and getattr(response, "finish_reason", None) is None:
            call.set_attribute("stream_incomplete", True)
            span = call.span
            if not (span.input_tokens or span.output_tokens) and call.usage_estimate is None:
                # No usage, and the HTTP layer's estimate not in yet: when the program left the stream, asyncio may
                # close the provider's response after this (its generators are closed at loop shutdown, in no order).
                prompt = sum(estimate_tokens(str(part["content"])) for part in _message_dicts(messages or ()))
                call.estimate_usage(prompt, estimate_tokens(text if isinstance(text, str) else ""))
        if isinstance(text, str):
            call.set_output(text)
        reason = getattr(response, "finish_reason", None)
        call.end(finish_reason=str(reason) if reason else None)
    except Exception:
        swallow_internal_error("the pydantic-ai plugin")
        call.end()
