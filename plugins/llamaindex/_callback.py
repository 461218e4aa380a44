"""``AgentWatchCallbackHandler``: the legacy LlamaIndex callback that checks limits before each LLM and
embedding request and records the call.

LlamaIndex calls a legacy handler's ``on_event_start`` without catching what it raises, right before
the LLM method runs: ``CircuitBreakerException`` raised there reaches the caller and nothing is sent.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.callbacks import CBEventType
from llama_index.core.callbacks.base_handler import BaseCallbackHandler

from agentwatch.instrumentation import swallow_internal_error

from ._calls import end_call, start_embedding, start_llm

__all__ = ["AgentWatchCallbackHandler"]

# Read from CBEventType once: an Enum member read off its class goes through EnumType.__getattr__'s slot.
_LLM, _EMBEDDING = CBEventType.LLM, CBEventType.EMBEDDING
_WATCHED = (_LLM, _EMBEDDING)
_IGNORED = frozenset(event_type for event_type in CBEventType if event_type not in _WATCHED)


class AgentWatchCallbackHandler(BaseCallbackHandler):
    """Checks AgentWatch limits before every LLM and embedding call and records each call as a span.

    Added automatically by ``agentwatch.init()``; to attach it yourself::

        llm = OpenAI(model="gpt-4o-mini", callback_manager=CallbackManager([AgentWatchCallbackHandler()]))

    Any number of these handlers record each call once.
    """

    def __init__(self) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        # A set, not the base class's tuple: CallbackManager asks ``event_type not in`` these for every start and end,
        # and for an LLM or embedding event (in neither) a tuple of the other event types is compared member by member
        # (CBEventType is a str: ~1.5k instructions a scan, four per chat()).
        self.event_starts_to_ignore = self.event_ends_to_ignore = _IGNORED  # type: ignore[assignment]

    # Per-call callbacks guard themselves inline (``swallow_internal_error`` is ``stop_on_exception``'s body):
    # the decorator's frame and argument repacking cost ~6 µs per chat() in situ, twice each per call.
    def on_event_start(self, event_type: CBEventType, payload: dict[str, Any] | None = None,
                       event_id: str = "", parent_id: str = "", **kwargs: Any) -> str:
        try:
            if event_type == _LLM:
                start_llm(event_id, payload)
            elif event_type == _EMBEDDING:
                start_embedding(event_id, payload)
        except Exception:
            swallow_internal_error("AgentWatchCallbackHandler.on_event_start")
        return event_id

    def on_event_end(self, event_type: CBEventType, payload: dict[str, Any] | None = None, event_id: str = "",
                     **kwargs: Any) -> None:
        try:
            if event_type in _WATCHED:
                end_call(event_id, payload)
        except Exception:
            swallow_internal_error("AgentWatchCallbackHandler.on_event_end")

    def start_trace(self, trace_id: str | None = None) -> None:
        """Traces come from the instrumentation spans; the legacy trace map is not needed."""

    def end_trace(self, trace_id: str | None = None, trace_map: dict[str, list[str]] | None = None) -> None:
        """See ``start_trace``."""
