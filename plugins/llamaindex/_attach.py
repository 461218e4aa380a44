"""Where the zero-config ``AgentWatchCallbackHandler`` is attached, so ``shutdown()`` can take it back out.

``Settings.callback_manager`` gets it at ``init()`` when the application has one. An LLM or embedding
model with its own callback manager (built before ``init()``, or given an explicit one) gets it the
first time one of its methods runs: the instrumentation span of that method starts just before the
legacy callback that checks the limits, so even the first call is checked.

``Settings.callback_manager`` is not created when the application has none: once set, LlamaIndex
assigns it over the callback manager of ``Settings.llm`` and ``Settings.embed_model``, which would
change the application's own callbacks.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from llama_index.core.callbacks import CallbackManager

from ._callback import AgentWatchCallbackHandler

__all__ = ["ZERO_CONFIG_HANDLER", "attach_to", "attach_to_settings", "detach_all"]

ZERO_CONFIG_HANDLER = AgentWatchCallbackHandler()

_lock = threading.Lock()
_managers: weakref.WeakSet[CallbackManager] = weakref.WeakSet()


def _has_handler(manager: CallbackManager) -> bool:
    for handler in manager.handlers:
        if isinstance(handler, AgentWatchCallbackHandler):
            return True
    return False


def _attach(manager: CallbackManager) -> None:
    with _lock:
        if not _has_handler(manager):
            # In place: managers built with no handlers share Settings' list, and get it too.
            manager.handlers.append(ZERO_CONFIG_HANDLER)
            _managers.add(manager)


def attach_to(component: Any) -> None:
    """Make sure an LLM's or embedding model's own callback manager checks limits (hot path: one scan)."""
    manager = getattr(component, "callback_manager", None)
    if isinstance(manager, CallbackManager):
        # The zero-config handler found by identity first: a C scan, no frame of ours, for the common case.
        if ZERO_CONFIG_HANDLER not in manager.handlers and not _has_handler(manager):
            _attach(manager)
    elif manager is None:
        # LlamaIndex would build an empty one for this call anyway; build it here with the handler in it.
        manager = CallbackManager([])
        _attach(manager)
        component.callback_manager = manager


def attach_to_settings() -> None:
    from llama_index.core import Settings

    manager = Settings._callback_manager  # the public getter would create one
    if isinstance(manager, CallbackManager):
        _attach(manager)


def detach_all() -> None:
    with _lock:
        managers = list(_managers)
        _managers.clear()
    for manager in managers:
        handlers = manager.handlers
        while ZERO_CONFIG_HANDLER in handlers:
            handlers.remove(ZERO_CONFIG_HANDLER)
