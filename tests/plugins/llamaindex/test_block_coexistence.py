"""After a block, every legacy callback handler that heard of the call's start hears its end.

LlamaIndex gives an event's start to each handler in turn, and zero-config adds ours last: a handler before ours
hears of a blocked call's start. It must also hear its end, as LlamaIndex ends a call that raised: ``on_event_end``
with the exception as the ``EXCEPTION`` payload."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core.callbacks import CallbackManager, CBEventType
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.callbacks.schema import EventPayload
from llama_index.core.llms import MockLLM

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch.plugins.llamaindex import AgentWatchCallbackHandler
from tests.plugins.llamaindex.conftest import sending_embedding
from tests.plugins.llamaindex.test_blocking import _call


class OpenEvents(BaseCallbackHandler):
    """A legacy handler that pairs starts with ends, as a tracer does."""

    def __init__(self) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self.open: dict[str, CBEventType] = {}
        self.ended: list[tuple[CBEventType, Any]] = []

    def on_event_start(self, event_type: CBEventType, payload: dict[str, Any] | None = None, event_id: str = "",
                       parent_id: str = "", **kwargs: Any) -> str:
        if event_type is not CBEventType.EXCEPTION:  # LlamaIndex's record of an exception: a start alone
            self.open[event_id] = event_type
        return event_id

    def on_event_end(self, event_type: CBEventType, payload: dict[str, Any] | None = None, event_id: str = "",
                     **kwargs: Any) -> None:
        assert self.open.pop(event_id) is event_type
        self.ended.append((event_type, type((payload or {}).get(EventPayload.EXCEPTION)).__name__))

    def start_trace(self, trace_id: str | None = None) -> None:
        pass

    def end_trace(self, trace_id: str | None = None, trace_map: dict[str, list[str]] | None = None) -> None:
        pass


def _handlers(placement: str, events: OpenEvents) -> list[Any]:
    return [events, AgentWatchCallbackHandler()] if placement == "explicit_last" else [events]


@pytest.mark.parametrize("placement", ["zero_config", "explicit_last"])
@pytest.mark.parametrize("how", ["chat", "stream_chat", "achat", "astream_chat", "complete"])
def test_a_blocked_llm_call_ends_for_every_handler_that_heard_it_start(how: str, placement: str) -> None:
    agentwatch.init(exporters=[], budget_per_hour=0.0, block_on_threshold=True)  # the first call is blocked
    events = OpenEvents()
    llm = MockLLM(callback_manager=CallbackManager(_handlers(placement, events)))
    with pytest.raises(CircuitBreakerException):
        _call(llm, how)
    assert events.open == {}
    assert events.ended == [(CBEventType.LLM, "CircuitBreakerException")]


@pytest.mark.parametrize("placement", ["zero_config", "explicit_last"])
def test_a_blocked_embedding_ends_for_every_handler_that_heard_it_start(placement: str, stub_provider: Any) -> None:
    agentwatch.init(exporters=[], budget_per_hour=0.0, block_on_threshold=True)
    events = OpenEvents()
    # A paid model's (a local one's calls are never blocked).
    embedding = sending_embedding(stub_provider, callback_manager=CallbackManager(_handlers(placement, events)))
    with pytest.raises(CircuitBreakerException):
        asyncio.run(embedding.aget_text_embedding("x")) if placement == "explicit_last" \
            else embedding.get_text_embedding("x")
    assert events.open == {}
    assert events.ended == [(CBEventType.EMBEDDING, "CircuitBreakerException")]
    assert stub_provider.requests == []


def test_a_call_that_is_not_blocked_is_told_nothing_more() -> None:
    agentwatch.init(exporters=[])
    events = OpenEvents()
    llm = MockLLM(callback_manager=CallbackManager([events]))
    assert _call(llm, "chat") is not None
    assert events.open == {} and events.ended  # (MockLLM's chat runs its completion inside: two LLM events)
    assert set(events.ended) == {(CBEventType.LLM, "NoneType")}


def test_shutdown_gives_llamaindex_its_own_event_start_back() -> None:
    original = CallbackManager.on_event_start
    agentwatch.init(exporters=[])
    assert CallbackManager.on_event_start is not original
    agentwatch.shutdown()
    assert CallbackManager.on_event_start is original
