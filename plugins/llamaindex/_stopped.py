"""A call our handler blocks at its start ends for every legacy handler that heard of the start.

LlamaIndex's ``CallbackManager.on_event_start`` gives the start to each handler in turn, and zero-config adds ours
last: when ours blocks an LLM or embedding call, the handlers before it have heard of its start, and LlamaIndex,
raising out of the start, never ends the event for them (a run left open in a tracer such as Langfuse's or
Phoenix's legacy handler). They get the end LlamaIndex gives a call that raised: ``on_event_end`` with the
exception as the ``EXCEPTION`` payload.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable
from typing import Any, NoReturn

from agentwatch import CircuitBreakerException
from agentwatch.instrumentation import swallow_internal_error

from ._agents import carried

__all__ = ["install", "remove"]

_lock = threading.Lock()
_original: list[Any] = []


def _ends_what_ours_blocked(original: Callable[..., Any]) -> Callable[..., Any]:
    from llama_index.core.callbacks.schema import EventPayload

    from ._callback import AgentWatchCallbackHandler

    @functools.wraps(original)
    def on_event_start(self: Any, event_type: Any, payload: Any = None, event_id: str | None = None,
                       parent_id: str | None = None, **kwargs: Any) -> str:
        event_id = event_id or str(uuid.uuid4())  # drawn here instead of in LlamaIndex: the end names it
        try:
            # ``**kwargs`` passed on only when there are any (LlamaIndex's LLM and embedding starts have none): an empty
            # one costs ~600 instructions a start.
            if kwargs:
                return original(self, event_type, payload, event_id, parent_id, **kwargs)  # type: ignore[no-any-return]
            return original(self, event_type, payload, event_id, parent_id)  # type: ignore[no-any-return]
        except CircuitBreakerException as error:
            heard = []
            for handler in self.handlers:
                if isinstance(handler, AgentWatchCallbackHandler):
                    break
                if event_type not in handler.event_starts_to_ignore and event_type not in handler.event_ends_to_ignore:
                    heard.append(handler)
            else:  # ours is not in the list: the block came from elsewhere
                _raise(error)
            for handler in heard:
                try:
                    handler.on_event_end(event_type, payload={EventPayload.EXCEPTION: error}, event_id=event_id)
                except Exception:  # their error must not replace the block the caller is owed
                    swallow_internal_error("the LlamaIndex plugin (another handler's on_event_end)")
            _raise(error)

    return on_event_start


def _raise(blocked: CircuitBreakerException) -> NoReturn:
    carrier = carried(blocked)
    if carrier is blocked:
        raise blocked
    raise carrier from None


def install() -> None:
    from llama_index.core.callbacks import CallbackManager

    with _lock:
        if not _original:
            original = CallbackManager.__dict__["on_event_start"]
            _original.append(original)
            CallbackManager.on_event_start = _ends_what_ours_blocked(original)  # type: ignore[method-assign]


def remove() -> None:
    from llama_index.core.callbacks import CallbackManager

    with _lock:
        if _original:
            CallbackManager.on_event_start = _original.pop()  # type: ignore[method-assign]
