"""Instrumentation event handler: the figures LlamaIndex reports as events, added to the recorded spans.

Retrieval (query, number of nodes), reranking (nodes kept), the streamed chunks of an LLM call (time to
first token; the call stops being current where the caller reads the stream, ``_calls.chunk_streamed``) and the
cancellation of a workflow run or step (which LlamaIndex then ends as if it had returned). Events
carry the id of the instrumentation span they happened in, which maps to the AgentWatch span (``_spans.OPEN``) or
LLM call (``_calls.FLIGHTS_BY_SPAN``) recorded for it.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatInProgressEvent, LLMCompletionInProgressEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent, RetrievalStartEvent

from agentwatch.instrumentation import capturing, swallow_internal_error

from ._calls import chunk_streamed
from ._spans import OPEN

__all__ = ["AgentWatchEventHandler"]


def _retrieval_started(event: Any) -> None:
    opened = OPEN.get(event.span_id)
    if opened is None or not capturing():
        return
    query = event.str_or_query_bundle
    opened.span.input = query if isinstance(query, str) else getattr(query, "query_str", None)


def _retrieval_ended(event: Any) -> None:
    opened = OPEN.get(event.span_id)
    if opened is not None:
        opened.span.attributes["retriever.documents"] = len(event.nodes)


def _reranked(event: Any) -> None:
    opened = OPEN.get(event.span_id)
    if opened is not None:
        opened.span.attributes["rerank.documents"] = len(event.nodes)


def _cancelled(event: Any) -> None:
    opened = OPEN.get(event.span_id)
    if opened is not None:
        opened.cancelled = str(event.reason or "cancelled")


_ACTIONS: dict[type, Callable[[Any], None]] = {
    LLMChatInProgressEvent: chunk_streamed,
    LLMCompletionInProgressEvent: chunk_streamed,
    RetrievalStartEvent: _retrieval_started,
    RetrievalEndEvent: _retrieval_ended,
    ReRankEndEvent: _reranked,
}
#: Where llama-index-workflows (a dependency of llama-index-core, since 2.x) defines the event of a cancelled run or
#: step. Only LlamaIndex's workflows import it: importing it here cost ``init()`` ~15 ms for a program without them.
CANCELLED_EVENT_MODULE = "workflows.runtime.types.step_function"


def hear_cancellations(module: ModuleType) -> None:
    """Handle ``SpanCancelledEvent`` once its module is imported (no event can come before). An older version has none:
    cancelled runs and steps then end ok, as LlamaIndex ends them."""
    cancelled_event = getattr(module, "SpanCancelledEvent", None)
    if cancelled_event is not None:
        _ACTIONS[cancelled_event] = _cancelled


class AgentWatchEventHandler(BaseEventHandler):
    """Adds event figures to AgentWatch spans; added to the root dispatcher by ``agentwatch.init()``."""

    @classmethod
    def class_name(cls) -> str:
        return "AgentWatchEventHandler"

    def handle(self, event: Any, **kwargs: Any) -> None:
        # Every LlamaIndex event comes here and most are not ours: a dict lookup for them. Ours are guarded inline
        # (``swallow_internal_error`` is ``stop_on_exception``'s body): a stream sends one or two per chunk, and the
        # decorator's frame cost ~1k instructions each.
        action = _ACTIONS.get(type(event))
        if action is not None:
            try:
                action(event)
            except Exception:
                swallow_internal_error("AgentWatchEventHandler.handle")
