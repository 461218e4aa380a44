"""Installing and removing the LlamaIndex instrumentation: the span and event handlers on the root
dispatcher, the zero-config legacy callback handler (``_attach``) that checks limits, the end of a blocked
call for the legacy handlers that heard of its start (``_stopped``), and the way out of an agent's run for a block
(``_agents``).

Idempotent both ways: ``install()`` twice adds nothing; ``remove()`` leaves LlamaIndex as if AgentWatch
had never been there, so a later ``agentwatch.init()`` starts clean.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ._agents import patch_if_loaded as let_agent_blocks_out
from ._agents import unpatch as unpatch_agents
from ._attach import attach_to_settings, detach_all
from ._calls import clear as clear_calls
from ._events import CANCELLED_EVENT_MODULE, AgentWatchEventHandler, hear_cancellations
from ._spans import OPEN, AgentWatchSpanHandler, forget_rules
from ._stopped import install as end_blocked_starts
from ._stopped import remove as keep_blocked_starts

__all__ = ["install", "remove", "installed"]

_lock = threading.Lock()
_handlers: list[Any] = []


def installed() -> bool:
    return bool(_handlers)


def _import_now(module_name: str, callback: Callable[[ModuleType], None]) -> None:
    """``Client.when_imported`` without a client: the module imported now, if it is installed."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return
    callback(module)


def install(when_imported: Callable[[str, Callable[[ModuleType], None]], None] | None = None) -> None:
    """Add the handlers to the root dispatcher (once) and the limit check to ``Settings.callback_manager``; cancelled
    runs and steps are heard once the program imports their event's module (``when_imported``: the client's)."""
    from llama_index.core.instrumentation import get_dispatcher

    (when_imported or _import_now)(CANCELLED_EVENT_MODULE, hear_cancellations)

    with _lock:
        if not _handlers:
            dispatcher = get_dispatcher()
            span_handler, event_handler = AgentWatchSpanHandler(), AgentWatchEventHandler()
            dispatcher.add_span_handler(span_handler)
            dispatcher.add_event_handler(event_handler)
            _handlers.extend((span_handler, event_handler))
            end_blocked_starts()
    let_agent_blocks_out()  # if LlamaIndex's agents are loaded already; else at the first workflow run
    attach_to_settings()


def remove() -> None:
    """Take out every handler ``install()`` and the zero-config attachment added."""
    from llama_index.core.instrumentation import get_dispatcher

    with _lock:
        handlers = list(_handlers)
        _handlers.clear()
    dispatcher = get_dispatcher()
    for handler in handlers:
        # By identity: pydantic equality would also match another instance with equal fields.
        dispatcher.span_handlers[:] = [existing for existing in dispatcher.span_handlers if existing is not handler]
        dispatcher.event_handlers[:] = [existing for existing in dispatcher.event_handlers if existing is not handler]
    detach_all()
    keep_blocked_starts()
    unpatch_agents()
    OPEN.clear()
    clear_calls()
    forget_rules()
