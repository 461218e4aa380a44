"""The observing layer: autogen-core's event logger, read while a model client's call is in flight.

Model clients log ``LLMCallEvent`` (after a call: the raw response with the served model and cached
tokens), ``LLMStreamStartEvent`` (first chunk) and ``LLMStreamEndEvent`` (usage) on
``autogen_core.EVENT_LOGGER_NAME`` at INFO. Each event is added to the LLM call that the client wrapper
made current, so nothing is counted twice.

The tap is a filter on that logger rather than a handler: the logger has to be enabled at INFO for
the events to exist at all, and the filter then drops what the application's own level would have
dropped, so its handlers (and the root logger's) see exactly what they saw before.
"""

from __future__ import annotations

import logging
from typing import Any

from agentwatch._llm import LLMCall, current_llm_call, normalize_anthropic_usage
from agentwatch._safe import stop_on_exception

__all__ = ["EventTap"]


def _first_choice(response: dict[str, Any]) -> dict[str, Any]:
    choices = response.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def _apply_usage(call: LLMCall, usage: Any, prompt_tokens: Any, completion_tokens: Any) -> None:
    if isinstance(usage, dict) and "prompt_tokens" in usage:
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        call.set_usage(input_tokens=usage.get("prompt_tokens"), output_tokens=usage.get("completion_tokens"),
                       cached_input_tokens=cached)
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


class EventTap(logging.Filter):
    """Installed on the event logger by ``install()``; ``uninstall()`` restores the logger."""

    def __init__(self, event_logger_name: str) -> None:
        super().__init__()
        from autogen_core.logging import LLMCallEvent, LLMStreamEndEvent, LLMStreamStartEvent

        self._logger = logging.getLogger(event_logger_name)
        self._kinds: dict[type, Any] = {LLMCallEvent: _on_llm_call, LLMStreamEndEvent: _on_stream_end,
                                        LLMStreamStartEvent: None}
        self._own_level = logging.NOTSET
        self._raised_level = False

    def install(self) -> None:
        event_logger = self._logger
        self._own_level = event_logger.level
        if event_logger.getEffectiveLevel() > logging.INFO:
            event_logger.setLevel(logging.INFO)
            self._raised_level = True
        event_logger.addFilter(self)

    def uninstall(self) -> None:
        event_logger = self._logger
        event_logger.removeFilter(self)
        if self._raised_level and event_logger.level == logging.INFO:
            event_logger.setLevel(self._own_level)
        self._raised_level = False

    def _application_level(self) -> int:
        if not self._raised_level:
            return logging.NOTSET
        if self._own_level != logging.NOTSET:
            return self._own_level
        parent = self._logger.parent
        return parent.getEffectiveLevel() if parent is not None else logging.WARNING

    def filter(self, record: logging.LogRecord) -> bool:
        kind = type(record.msg)
        if kind in self._kinds:
            self._observe(kind, record.msg)
        return record.levelno >= self._application_level()

    @stop_on_exception
    def _observe(self, kind: type, event: Any) -> None:
        call = current_llm_call()
        if call is None or call.ended:
            return  # no wrapped call in flight: whoever made this call counts it, or nobody can
        handler = self._kinds[kind]
        if handler is None:
            call.mark_first_token()
        else:
            handler(call, getattr(event, "kwargs", {}))
