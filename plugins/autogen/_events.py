"""The observing layer: autogen-core's model-client events, read while a model client's call is in flight.

Model clients log ``LLMCallEvent`` (after a call: the raw response with the served model and cached
tokens), ``LLMStreamStartEvent`` (first chunk) and ``LLMStreamEndEvent`` (usage) on
``autogen_core.EVENT_LOGGER_NAME`` at INFO. Each event is added to the LLM call that the client wrapper
made current, so nothing is counted twice.

The tap reads each event where it is made (its ``__init__``), not from the logger: a client builds the
event before ``logger.info`` decides whether to log it, so the tap sees every event whatever the
logging configuration, and the logger (its level, handlers, filters, the effective level its children
inherit) stays exactly as the application set it, before or after ``init()``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from agentwatch.instrumentation import (
    LLMCall,
    get_current_llm_call,
    normalize_anthropic_usage,
    normalize_openai_usage,
    stop_on_exception,
)

from ._patching import ORIGINAL

__all__ = ["EventTap"]


def _first_choice(response: dict[str, Any]) -> dict[str, Any]:
    choices = response.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def _apply_usage(call: LLMCall, usage: Any, prompt_tokens: Any, completion_tokens: Any) -> None:
    if isinstance(usage, dict) and "prompt_tokens" in usage:
        call.set_usage(**normalize_openai_usage(usage))
    elif isinstance(usage, dict) and "input_tokens" in usage and "cache_read_input_tokens" in usage:
        call.set_usage(**normalize_anthropic_usage(usage.get("input_tokens"), usage.get("output_tokens"),
                                                   usage.get("cache_read_input_tokens") or 0,
                                                   usage.get("cache_creation_input_tokens") or 0))
    else:
        call.set_usage(input_tokens=prompt_tokens, output_tokens=completion_tokens)


def _on_llm_call(call: LLMCall, event: dict[str, Any]) -> None:
    response = event.get("response")
    response = response if isinstance(response, dict) else {}
    model = response.get("model")
    if isinstance(model, str) and model:
        if call.span.model is None:
            call.set_model(model)
        elif model != call.span.model:
            call.set_attribute("response_model", model)
    _apply_usage(call, response.get("usage"), event.get("prompt_tokens"), event.get("completion_tokens"))
    finish_reason = _first_choice(response).get("finish_reason")
    if finish_reason:
        call.set_attribute("finish_reason", finish_reason)


def _on_stream_end(call: LLMCall, event: dict[str, Any]) -> None:
    response = event.get("response")
    usage = response.get("usage") if isinstance(response, dict) else None
    prompt, completion = event.get("prompt_tokens"), event.get("completion_tokens")
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens", prompt), usage.get("completion_tokens", completion)
    if not prompt and not completion:
        # The provider sent no usage chunk: keep what a lower layer may have recorded, and say so.
        call.set_attribute("usage_missing", True)
        return
    call.set_usage(input_tokens=prompt, output_tokens=completion)


Handler = Callable[[LLMCall, dict[str, Any]], None] | None


@stop_on_exception
def _observe(handler: Handler, event: Any) -> None:
    call = get_current_llm_call()
    if call is None or call.ended:
        return  # no wrapped call in flight: whoever made this call counts it, or nobody can
    if handler is None:
        call.mark_first_token()
    else:
        handler(call, getattr(event, "kwargs", {}))


def _observing(original: Callable[..., None], handler: Handler) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - replaces the constructor
        original(self, *args, **kwargs)
        _observe(handler, self)

    return __init__


class EventTap:
    """Wraps the event classes' constructors on ``install()``; ``uninstall()`` puts the originals back."""

    def __init__(self) -> None:
        from autogen_core.logging import LLMCallEvent, LLMStreamEndEvent, LLMStreamStartEvent

        self._kinds: dict[type, Handler] = {LLMCallEvent: _on_llm_call, LLMStreamEndEvent: _on_stream_end,
                                            LLMStreamStartEvent: None}
        self._patched: list[tuple[type, Callable[..., None], Callable[..., None]]] = []

    def install(self) -> None:
        for kind, handler in self._kinds.items():
            original = kind.__dict__["__init__"]
            if hasattr(original, ORIGINAL):
                continue  # already read: a second tap would only see the same events again
            wrapper = _observing(original, handler)
            setattr(wrapper, ORIGINAL, original)
            kind.__init__ = wrapper  # type: ignore[misc]
            self._patched.append((kind, original, wrapper))

    def uninstall(self) -> None:
        while self._patched:
            kind, original, wrapper = self._patched.pop()
            if kind.__dict__.get("__init__") is wrapper:  # someone who wrapped it after us keeps theirs
                kind.__init__ = original  # type: ignore[misc]
