"""Install and remove everything the AG2 plugin puts into the classic ``autogen`` package."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from agentwatch.instrumentation import stop_on_exception
from agentwatch.plugins.autogen._patching import ORIGINAL

from . import _runtime_log
from ._agents import (
    carry_into_ag2_threads,
    forget_open_spans,
    restore_ag2_threads,
    wrap_a_execute_function,
    wrap_a_generate_reply,
    wrap_a_initiate_chat,
    wrap_execute_function,
    wrap_generate_reply,
    wrap_initiate_chat,
    wrap_reflection_with_llm,
    wrap_reflection_with_llm_as_summary,
    wrap_run_async_in_thread,
)
from ._llm import forget_client_classes, set_class_patching, wrap_create

__all__ = ["install", "uninstall"]

_lock = threading.Lock()
_patched: list[tuple[type, str, Callable[..., Any], Callable[..., Any]]] = []


def _patch(cls: type, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = cls.__dict__.get(name)
    if original is None or hasattr(original, ORIGINAL):
        return
    wrapper = wrap(original)
    setattr(wrapper, ORIGINAL, original)
    setattr(cls, name, wrapper)
    _patched.append((cls, name, original, wrapper))


def install() -> None:
    from autogen import ConversableAgent, OpenAIWrapper

    with _lock:
        if _patched:
            return
        _patch(OpenAIWrapper, "create", wrap_create)
        set_class_patching(True)  # each config's client class, when a watched create first meets it
        _patch(ConversableAgent, "generate_reply", wrap_generate_reply)
        _patch(ConversableAgent, "a_generate_reply", wrap_a_generate_reply)
        _patch(ConversableAgent, "initiate_chat", wrap_initiate_chat)
        _patch(ConversableAgent, "a_initiate_chat", wrap_a_initiate_chat)
        _patch(ConversableAgent, "execute_function", wrap_execute_function)
        _patch(ConversableAgent, "a_execute_function", wrap_a_execute_function)
        _patch(ConversableAgent, "_run_async_in_thread", wrap_run_async_in_thread)
        _patch(ConversableAgent, "_reflection_with_llm", wrap_reflection_with_llm)
        _patch(ConversableAgent, "_reflection_with_llm_as_summary", wrap_reflection_with_llm_as_summary)
        _runtime_log.install()
        carry_into_ag2_threads()


def uninstall() -> None:
    with _lock:
        while _patched:
            cls, name, original, wrapper = _patched.pop()
            if cls.__dict__.get(name) is wrapper:
                setattr(cls, name, original)
        set_class_patching(False)
        stop_on_exception(forget_client_classes)()
        stop_on_exception(_runtime_log.uninstall)()
        stop_on_exception(forget_open_spans)()
        stop_on_exception(restore_ag2_threads)()
