"""LLM and embedding calls in flight: opened (limits checked) at a legacy callback's start, closed at its end.

The legacy ``on_event_start`` of ``CBEventType.LLM`` / ``EMBEDDING`` is the last point before the request
where a raise reaches the caller with its own type (instrumentation handlers swallow everything). The
instrumentation span around the LLM method (a *frame*, registered by the span handler just before)
tells which class and method is calling, and whether this call is nested in another one of the same
LLM (``MockLLM.chat`` → ``complete``; ``achat`` → ``chat``): a nested event is part of its outer
call, never a second charge.

A ``StructuredLLM`` (``llm.as_structured_llm(Model)``, ``FunctionAgent(output_cls=...)``) is no call of its own: its
methods ask the LLM it wraps (``structured_predict``, through a program), which makes the one request. That inner
call is the one checked, counted and charged, named and priced after the wrapped LLM; the wrapper's event is left
alone.

Registries are module-level dicts shared by every handler instance, so an explicit handler next to
the zero-config one records each event once. dict operations are atomic under the GIL.
"""

from __future__ import annotations

from asyncio import CancelledError
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from llama_index.core.callbacks import EventPayload
from llama_index.core.llms.structured_llm import StructuredLLM

import agentwatch
from agentwatch import LLMCall
from agentwatch.instrumentation import attach, capturing, get_current_span

from ._usage import Usage, estimate_tokens, message_dicts, provider_of, read_response, response_text

__all__ = ["Frame", "Flight", "FRAMES", "FLIGHTS_BY_SPAN", "start_llm", "start_embedding", "chunk_streamed",
           "end_call", "clear", "STREAM_METHODS"]

STREAM_METHODS = frozenset({"stream_chat", "astream_chat", "stream_complete", "astream_complete"})
_UNKNOWN_MODEL = "unknown"  # LlamaIndex's LLMMetadata default
# The payload keys, read from EventPayload once: an Enum member read off its class goes through the slot of
# EnumType.__getattr__ (~900 instructions a read; chat() read five, and the callback two of CBEventType).
_SERIALIZED, _MESSAGES, _PROMPT = EventPayload.SERIALIZED, EventPayload.MESSAGES, EventPayload.PROMPT
_RESPONSE, _COMPLETION = EventPayload.RESPONSE, EventPayload.COMPLETION
_EXCEPTION, _CHUNKS = EventPayload.EXCEPTION, EventPayload.CHUNKS


#: An LLM or embedding method running under an instrumentation span: (the id of the span it runs in, the method's
#: name, the LLM or embedding object), read with the indexes below. A plain tuple, not a class: the span handler makes
#: one per LLM method span (two per chat()), and a slots dataclass's __init__ cost ~1.5k instructions more (callgrind).
Frame = tuple[str | None, str, Any]
_PARENT_ID, _METHOD, _COMPONENT = 0, 1, 2


class Flight:
    """An LLM or embedding call of the legacy callbacks in flight. (A plain class, not a dataclass: making one at import
    compiles its methods from generated source, ~1 ms of ``init()``.)"""

    __slots__ = ("call", "nested", "span_id", "component", "stream", "active", "inner_response", "request",
                 "last_chunk", "chunked")

    def __init__(self, call: LLMCall, nested: bool, span_id: str | None, component: Any = None,
                 stream: bool = False) -> None:
        self.call = call
        self.nested = nested
        self.span_id = span_id  # the instrumentation span of the LLM method, for in-progress events
        self.component = component
        self.stream = stream
        self.active = False
        #: The response of the first nested event to end (``chat`` → ``complete``), read only if this call's own has
        #: no usage: most LLMs pass the inner response's ``raw`` on, so reading both would count the same twice.
        self.inner_response: Any = None
        #: A stream's messages (or prompt) and its last chunk so far: what it cost, if the caller stops reading it
        #: early.
        self.request: Any = None
        self.last_chunk: Any = None
        #: A chunk of this flight's stream came: the call's first token is marked (``mark_first_token`` is not asked
        #: again).
        self.chunked = False

    def __repr__(self) -> str:
        return f"Flight(call={self.call!r}, nested={self.nested!r}, span_id={self.span_id!r})"


#: Instrumentation span id → frame, for LLM and embedding methods (set at span enter, popped at exit).
FRAMES: dict[str, Frame] = {}
#: Legacy event id → flight; instrumentation span id → flight (in-progress events, nesting); the calls we own.
_FLIGHTS: dict[str, Flight] = {}
FLIGHTS_BY_SPAN: dict[str, Flight] = {}
_OWNED: dict[int, Flight] = {}
_active_span_id: ContextVar[str | None] | None = None


def _current_frame() -> tuple[str | None, Frame | None]:
    global _active_span_id
    if _active_span_id is None:
        from llama_index_instrumentation.span import active_span_id

        _active_span_id = active_span_id
    span_id = _active_span_id.get()
    return span_id, (FRAMES.get(span_id) if span_id is not None else None)


def _is_nested(outer: LLMCall | None, frame: Frame | None) -> bool:
    """Is this LLM event part of ``outer``, the call in flight in this context?

    A call of another layer (a manual ``agentwatch.llm_call``) owns everything under it. One of ours owns
    this event if its LLM method called this one directly (``chat`` → ``complete``), or lazily from
    the stream it returned (``CustomLLM.astream_chat`` iterates ``stream_chat``: same LLM object).
    Otherwise ``outer`` is merely still being streamed in this context and this is a call of its own.
    """
    if outer is None or outer.ended:
        return False
    owner = _OWNED.get(id(outer))
    if frame is None or owner is None or owner.call is not outer:
        return True
    # Up the chain of LLM methods only (``MockLLM.achat`` → ``chat`` → ``complete`` is one call); any
    # other component in between means the outer call's code made a call of its own.
    parent_id, hops = frame[_PARENT_ID], 0
    while parent_id is not None and hops < 16:
        if parent_id == owner.span_id:
            return True
        parent = FRAMES.get(parent_id)
        if parent is None:
            break
        parent_id, hops = parent[_PARENT_ID], hops + 1
    return owner.stream and frame[_COMPONENT] is owner.component


def _register(event_id: str, flight: Flight) -> None:
    _FLIGHTS[event_id] = flight
    if flight.span_id is not None:
        FLIGHTS_BY_SPAN[flight.span_id] = flight
    if not flight.nested:
        _OWNED[id(flight.call)] = flight


def _unregister(event_id: str) -> Flight | None:
    flight = _FLIGHTS.pop(event_id, None)
    if flight is None:
        return None
    if flight.span_id is not None and FLIGHTS_BY_SPAN.get(flight.span_id) is flight:
        del FLIGHTS_BY_SPAN[flight.span_id]
    if not flight.nested and _OWNED.get(id(flight.call)) is flight:
        del _OWNED[id(flight.call)]
    return flight


def _names(frame: Frame | None, serialized: Any) -> tuple[str, str | None, str | None]:
    """(span name, model, provider)."""
    model = _get(serialized, "model_name") or _get(serialized, "model")
    model = str(model) if model and model != _UNKNOWN_MODEL else None
    if frame is not None:
        component: type = type(frame[_COMPONENT])
        return component.__name__, model, provider_of(component)
    return str(_get(serialized, "class_name") or "llm"), model, None


def _get(source: Any, key: str) -> Any:
    return source.get(key) if type(source) is dict or isinstance(source, Mapping) else None


def _activate(flight: Flight) -> None:
    # The request goes out in this context (or, for a stream, where the caller iterates it, which
    # inherits it): the HTTP layer finds the call here and adds to it instead of counting it again.
    flight.call.activate()
    flight.active = True


def _deactivate(flight: Flight) -> None:
    """Undo ``activate`` without undoing what an enclosing component restored meanwhile.

    A streamed call ends after the component that started it has returned (and restored its parent as
    the current span); resetting our token then would bring back that finished component.
    """
    if not flight.active:
        return
    flight.active = False
    current = get_current_span()
    flight.call.deactivate()
    if current is not flight.call.span:
        attach(current)  # kept: what the enclosing component restored stays current


def start_llm(event_id: str, payload: Mapping[str, Any] | None) -> None:
    """Check limits and open the LLM span; raises ``CircuitBreakerException`` (nothing is sent)."""
    if event_id in _FLIGHTS or agentwatch.get_client() is None:
        return
    payload = payload or {}
    span_id, frame = _current_frame()
    if frame is not None and isinstance(frame[_COMPONENT], StructuredLLM):
        return  # the LLM it wraps makes the request: that call is the one (the module's docstring)
    outer = agentwatch.current_llm_call()
    if _is_nested(outer, frame):
        assert outer is not None
        # Flights are built with positional arguments (call, nested, span_id, component, stream): a class called with
        # keywords gets them in a dict, ~1.4k instructions more a flight (callgrind).
        _register(event_id, Flight(outer, True, span_id))
        return
    name, model, provider = _names(frame, payload.get(_SERIALIZED))
    attributes: dict[str, Any] = {}
    stream = False
    if frame is not None:
        attributes["llamaindex.method"] = method = frame[_METHOD]
        if method in STREAM_METHODS:
            attributes["streaming"] = stream = True
    prompt = None
    if capturing():
        prompt = message_dicts(payload.get(_MESSAGES)) or payload.get(_PROMPT)
    # By position, as start_llm_call's own comment asks (every LLM call): name, model, provider, parent (the context's
    # current span), scopes (the context's), kind, input, attributes.
    call = agentwatch.start_llm_call(name, model, provider, None, (), "llm", prompt, attributes)
    # A stream's usage is the HTTP layer's business (``init(stream_usage=...)``): it asks where asked to and
    # hides the usage chunk, so LlamaIndex streams exactly the events it would without AgentWatch.
    flight = Flight(call, False, span_id, frame[_COMPONENT] if frame is not None else None, stream)
    if stream:
        flight.request = payload.get(_MESSAGES) or payload.get(_PROMPT)
    _register(event_id, flight)
    _activate(flight)


def chunk_streamed(event: Any) -> None:
    """A stream of an LLM method yields a chunk: LlamaIndex's in-progress event (``LLMChatInProgressEvent``,
    ``LLMCompletionInProgressEvent``), sent in the stream's code just before the caller gets ``event.response``,
    with the id of the method's instrumentation span (None outside any span: no flight has that key)."""
    flight = FLIGHTS_BY_SPAN.get(event.span_id)
    if flight is None:
        return
    # The first chunk only: for the others mark_first_token would find the time there (a method call a chunk, two
    # chunks an event for a chat streamed by a completion).
    if not flight.chunked:
        flight.chunked = True
        flight.call.mark_first_token()
    if flight.nested:
        return
    flight.last_chunk = event.response
    # The request is out: the call stops being current where the caller reads the stream. Between chunks the
    # caller's own calls (to this LLM too, or the openai SDK's) are calls of their own, checked and charged.
    if flight.active:  # until the first chunk only: no call for the others
        _deactivate(flight)


def start_embedding(event_id: str, payload: Mapping[str, Any] | None) -> None:
    """Check limits and open the embedding span; raises ``CircuitBreakerException`` (nothing is sent)."""
    if event_id in _FLIGHTS or agentwatch.get_client() is None:
        return
    span_id, frame = _current_frame()
    name, model, provider = _names(frame, (payload or {}).get(_SERIALIZED))
    attributes = {"llamaindex.method": frame[_METHOD]} if frame is not None else None
    # A local embedding model (MockEmbedding, a local runtime's) costs nothing and sends no request: an index built in
    # many batches is no loop, and a breaker opened by paid calls is no reason to stop it. Counted if it sends one.
    call = agentwatch.start_llm_call(name, model=model, provider=provider, kind="embedding",
                                     attributes=attributes, count_local=False)
    flight = Flight(call, nested=False, span_id=span_id)
    _register(event_id, flight)
    _activate(flight)


def end_call(event_id: str, payload: Mapping[str, Any] | None) -> None:
    flight = _unregister(event_id)
    if flight is None:
        return
    payload = payload or {}
    call = flight.call
    if flight.nested:
        owner = _OWNED.get(id(call))
        if owner is None or owner.call is not call:  # another layer's call (a manual ``llm_call``)
            _add_usage_if_missing(call, _response_of(payload))
        elif owner.inner_response is None:
            owner.inner_response = _response_of(payload)
        return
    _deactivate(flight)
    error = payload.get(_EXCEPTION)
    # The caller stopped reading a stream (not a failure), or its task was cancelled (recorded, not counted as one).
    stopped = flight.stream and isinstance(error, GeneratorExit | CancelledError)
    if stopped:
        call.set_attribute("stream_incomplete", True)
        if isinstance(error, GeneratorExit):
            error = None
    if call.span.kind == "embedding":
        _finish_embedding(call, payload.get(_CHUNKS))
        call.end(error=error)
        return
    response = _response_of(payload)
    if response is None and stopped:
        response = flight.last_chunk  # what the caller got: LlamaIndex reports only the exit
    usage = read_response(response)
    if usage.model:
        call.set_model(usage.model)
    if usage.found:
        _set_usage(call, usage)
    else:
        if flight.inner_response is not None:
            _add_usage_if_missing(call, flight.inner_response)
        if (error is None or stopped) and not (call.span.input_tokens or call.span.output_tokens):
            call.set_attribute("usage_missing", True)
            if stopped:  # its provider's usage (the stream's last event) never came: charged from an estimate
                _estimate_stopped(call, flight.request, response)
    if response is not None and capturing():
        call.set_output(response_text(response))
    call.end(error=error, finish_reason=usage.finish_reason)


def _estimate_stopped(call: LLMCall, request: Any, response: Any) -> None:
    """The tokens of a stream read in part, counted with LlamaIndex's tokenizer: the request's and the text so far."""
    messages = message_dicts(request)
    texts = [message["content"] for message in messages] if messages is not None else [request]
    call.estimate_usage(estimate_tokens(texts) or 0, estimate_tokens([response_text(response)]) or 0)


def _add_usage_if_missing(call: LLMCall, response: Any) -> None:
    """A nested event's figures count for the outer call only if that one has none of its own."""
    if response is None or call.ended or call.span.input_tokens or call.span.output_tokens:
        return
    usage = read_response(response)
    if usage.found:
        _set_usage(call, usage)


def _set_usage(call: LLMCall, usage: Usage) -> None:
    call.set_usage(usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
                   usage.cache_write_tokens)


def _response_of(payload: Mapping[str, Any]) -> Any:
    return payload.get(_RESPONSE) or payload.get(_COMPLETION)


def _finish_embedding(call: LLMCall, chunks: Any) -> None:
    if not isinstance(chunks, list | tuple):
        return
    call.set_attribute("embedding.texts", len(chunks))
    if call.span.input_tokens:  # the provider's own count, added by the HTTP layer
        return
    tokens = estimate_tokens(chunks)
    if tokens:
        call.set_usage(input_tokens=tokens, output_tokens=0)
        call.set_attribute("usage_estimated", True)


def clear() -> None:
    FRAMES.clear()
    _FLIGHTS.clear()
    FLIGHTS_BY_SPAN.clear()
    _OWNED.clear()
