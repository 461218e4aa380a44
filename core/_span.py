"""The one span model: every LLM call, chain, node, tool, agent scope and breaker transition is a Span."""

from __future__ import annotations

import _random
import os
import time
from typing import Any, Final

from ._forking import after_fork_in_child

__all__ = ["Span", "SpanFields", "WireBatch", "span_fields", "wire_records", "SPAN_KINDS", "STATUSES",
           "REMOTE_PARENT_KEY", "new_trace_id", "new_span_id", "open_span"]

SPAN_KINDS: Final = frozenset(
    {
        "llm", "embedding", "chain", "graph", "node", "agent", "task", "tool", "retriever", "session",
        "trace", "cron", "event", "metric", "alert", "breaker", "http", "error", "process", "span",
    }
)
STATUSES: Final = frozenset({"ok", "error", "blocked"})
#: The attribute of a root span that names its parent outside AgentWatch: the OpenTelemetry span that was current
#: in the program when it opened (an exporter's ``remote_parent()``). Exporters to that backend make it the parent.
REMOTE_PARENT_KEY: Final = "remote_parent_span_id"


# Ids need uniqueness, not secrecy: getrandbits is ~50x cheaper than os.urandom, and holds the GIL (os.urandom's system
# call lets it go: a busy export worker would take it, and this thread wait up to the switch interval, 5 ms, to have it
# back). A private generator, because programs (evals, tests, hypothesis) seed the global one: two runs with
# random.seed(42) would otherwise send the same span ids, and the collector would drop the second run's spans as
# retries. Seeded from the OS, and again in a forked child so that parent and child never share ids. The C generator
# behind ``random.Random`` (``_random``), not the random module: that module and what it imports were ~1.5 ms of
# ``import agentwatch``.
# Drawn ``_ID_POOL`` at a time and handed out from a list: drawn one at a time (``_bits(64).to_bytes(8, "big").hex()``)
# an id costs fewer machine instructions warm (~1,800 against ~2,900 with its share of the slicing), but the program's
# thread opens a span between two calls of its own framework, with the caches cold: there the generator's state and
# three C paths (draw, to bytes, to hex) cost ~6 µs a span against ~2 for a list's pop (median, caches flushed).
_rng = _random.Random(int.from_bytes(os.urandom(16), "big"))
_bits = _rng.getrandbits
_time_ns = time.time_ns
_ID_POOL = 64
_trace_ids: list[str] = []  # 32 hex digits each
_span_ids: list[str] = []  # 16 each
_next_trace_id = _trace_ids.pop  # atomic: threads never get the same id
_next_span_id = _span_ids.pop


def _after_fork() -> None:
    """A forked child draws its own ids: it never continues the parent's generator's sequence, nor hands out the ids
    the parent had drawn and not used yet."""
    _rng.seed(int.from_bytes(os.urandom(16), "big"))
    _trace_ids.clear()
    _span_ids.clear()


after_fork_in_child(_after_fork)


def _drawn(pool: list[str], digits: int) -> str:
    """Refill ``pool`` with ``_ID_POOL`` ids of ``digits`` hex digits, and take one."""
    block = _bits(4 * digits * _ID_POOL).to_bytes(digits * _ID_POOL // 2, "big").hex()
    pool.extend([block[start:start + digits] for start in range(0, digits * _ID_POOL, digits)])
    return pool.pop()


def new_trace_id() -> str:
    try:
        return _next_trace_id()
    except IndexError:
        return _drawn(_trace_ids, 32)


def new_span_id() -> str:
    try:
        return _next_span_id()
    except IndexError:
        return _drawn(_span_ids, 16)


class Span:
    """A timed unit of work in a trace tree.

    Mutable while open; ``end()`` freezes the end time. ``to_dict()`` is the wire format that every
    exporter and the collector understand.
    """

    __slots__ = (
        "trace_id", "span_id", "parent_span_id", "name", "kind", "status",
        "start_time_unix_nano", "end_time_unix_nano", "agent_id", "agent_name", "agent_role",
        "model", "provider", "input_tokens", "output_tokens", "cached_input_tokens", "cost_usd",
        "input", "output", "attributes", "_ended",
    )

    def __init__(
        self,
        name: str,
        kind: str = "span",
        # Not keyword-only, though meant to be passed by name: CPython fills a missing keyword-only argument
        # from a dict of defaults, one lookup each (~75 ns a span for these eleven).
        trace_id: str | None = None,
        span_id: str | None = None,
        parent_span_id: str | None = None,
        start_time_unix_nano: int | None = None,
        agent_id: str | None = None,
        agent_name: str | None = None,
        agent_role: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        if not trace_id:
            self.trace_id = trace_id = new_trace_id()
            self.span_id = span_id or trace_id[16:]  # a root's span id: as open_span makes it
        else:
            self.trace_id = trace_id
            self.span_id = span_id or new_span_id()
        self.parent_span_id = parent_span_id
        self.name = name
        self.kind = kind
        self.status = "ok"
        self.start_time_unix_nano = start_time_unix_nano or _time_ns()
        self.end_time_unix_nano: int | None = None
        self.agent_id = agent_id
        self.agent_name = agent_name
        self.agent_role = agent_role
        self.model = model
        self.provider = provider
        self.input_tokens = self.output_tokens = self.cached_input_tokens = 0
        self.cost_usd = 0.0
        self.input: Any = None
        self.output: Any = None
        self.attributes: dict[str, Any] = {} if attributes is None else attributes
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def duration_ms(self) -> float | None:
        if self.end_time_unix_nano is None:
            return None
        return (self.end_time_unix_nano - self.start_time_unix_nano) / 1e6

    def record_error(self, error: BaseException | str) -> None:
        from ._capture import clip_error as clip  # here: _capture reads the client, which imports this module

        self.status = "error"
        if isinstance(error, BaseException):
            self.attributes["error.type"] = type(error).__qualname__
            self.attributes["error.message"] = clip(error)
        else:
            self.attributes["error.message"] = clip(error)

    def finish(self, end_time_unix_nano: int | None = None) -> bool:
        """Mark the span ended; returns False if it already was (a span is exported once)."""
        if self._ended:
            return False
        self._ended = True
        self.end_time_unix_nano = end_time_unix_nano or _time_ns()
        return True

    def to_dict(self) -> dict[str, Any]:
        return wire_records([span_fields(self)])[0]

    def __repr__(self) -> str:
        return f"Span({self.kind}:{self.name!r} {self.span_id} status={self.status})"


_new_object = object.__new__


def open_span(name: str, kind: str, trace_id: str | None, parent_span_id: str | None, model: str | None,
              provider: str | None, attributes: dict[str, Any] | None) -> Span:
    """A new open span, as ``Span(name, kind, trace_id, None, parent_span_id, ..., model, provider, attributes)`` makes
    it (the same fields and values: keep the two in step), for the path every span a plugin opens takes
    (``Client._open_span``). Built here rather than by calling the class: CPython 3.11 runs a class's Python
    ``__init__`` through ``type.__call__`` and a fresh interpreter frame; a plain function with ``object.__new__`` costs
    ~700 machine instructions less a span (callgrind)."""
    span = _new_object(Span)
    # new_trace_id() and new_span_id(), inlined: every span opens here. A new trace's root takes one id, not two: its
    # span id is the low half of its trace id (both stay 64+ random bits, and nothing reads one from the other).
    if not trace_id:
        try:
            trace_id = _next_trace_id()
        except IndexError:
            trace_id = _drawn(_trace_ids, 32)
        span.span_id = trace_id[16:]
    else:
        try:
            span.span_id = _next_span_id()
        except IndexError:
            span.span_id = _drawn(_span_ids, 16)
    span.trace_id = trace_id
    span.parent_span_id = parent_span_id
    span.name = name
    span.kind = kind
    span.status = "ok"
    span.start_time_unix_nano = _time_ns()
    span.end_time_unix_nano = None
    span.agent_id = span.agent_name = span.agent_role = None
    span.model = model
    span.provider = provider
    span.input_tokens = span.output_tokens = span.cached_input_tokens = 0
    span.cost_usd = 0.0
    span.input = span.output = None
    span.attributes = {} if attributes is None else attributes
    span._ended = False
    return span


class _WireRecord:
    """``Span.to_dict``'s answer is the ``__dict__`` of one of these: a plain ``dict`` with the same keys, in the same
    order, as a dict display would build, made for a third less (the export worker makes one per span).

    Every record's attributes are set in the same order, so its dict shares the class's table of keys and is filled
    by position (``STORE_ATTR_INSTANCE_VALUE``), where a dict display hashes, probes and inserts each of its 18 keys
    into a table of its own: callgrind, per span with orjson's serialisation, ~13.5k instructions against ~16.7k.
    Made by ``wire_records`` (no ``__init__``: see there)."""


#: A span's fields in the order of the wire record (``span_fields``): what the export queue holds.
SpanFields = tuple[Any, ...]


def span_fields(span: Span) -> SpanFields:
    """The ended span's fields, as the export queue keeps them until the worker makes their wire record: a tuple,
    ending with the attributes' keys and their values, each a tuple.

    Not the span itself: the queue holds a span for up to a batch (512 spans, or ``flush_interval``), long enough for
    CPython's young collections to move it to the oldest generation, and ~25k such moves (with LangChain imported)
    set off a collection of the whole heap: a LangChain chat call with the collector down moved ~0.9 objects a call,
    for a 63-72 ms collection every ~28k calls (~2.5-3.5 µs a call). A collection untracks a tuple (never to be
    moved) when none of its items is a container, a dict included whatever it holds, or a tuple still tracked: the
    two tuples of atoms by the first young collection, this one by the next (the middle generation's, which would
    have moved it). The span object is freed with the call. (The entry costs the program's thread ~0.25 µs a span,
    and the worker ~0.35 µs more to rebuild the attributes than to copy them: LangChain's chat call, callgrind of the
    program's thread, 841.8k instructions against 841.6k with the span queued; its collections' time 2.7 -> 1.2 µs a
    call.)"""
    attributes = span.attributes
    # Keys, then values: each read whole under the GIL. An ended span is written by no other thread; one that removed
    # a key between the two reads would pair the keys after it with the wrong values.
    return (span.trace_id, span.span_id, span.parent_span_id, span.name, span.kind, span.status,
            span.start_time_unix_nano, span.end_time_unix_nano, span.agent_id, span.agent_name, span.agent_role,
            span.model, span.provider, span.input_tokens, span.output_tokens, span.cached_input_tokens,
            span.cost_usd, span.input, span.output, tuple(attributes), tuple(attributes.values()))


class WireBatch(list):  # type: ignore[type-arg]
    """A batch of wire records, as the export worker hands it to the exporters: a list that can be referred to weakly,
    so that an exporter can tell the batch it last finished from a new one without keeping its records alive (see
    ``SpoolingExporter.export``)."""

    __slots__ = ("__weakref__",)


def wire_records(entries: list[Any]) -> list[dict[str, Any]]:
    """``Span.to_dict()`` of each span, from its fields (``span_fields``), in order: what the export worker hands the
    exporters for a batch. Each entry is dropped from ``entries`` (set to None) once its record is made.

    One loop for the batch, each record made with ``object.__new__`` and filled here, rather than a call of the class
    (``type.__call__``, then ``__init__`` in a frame of its own) and of ``to_dict`` per span: callgrind, per span of an
    LLM call (six attributes), ~5.5k instructions -> ~4.8k when each record copied its span's attributes dict; rebuilt
    from the entry's two tuples they cost ~0.35 µs more a span (see ``span_fields``). Each entry is freed as its record
    is made, rather than with the batch: CPython collects when the objects made outnumber those freed by 700, and a
    batch's records and entries alive together (five objects a span) set off a young collection on most batches."""
    records: list[dict[str, Any]] = WireBatch()
    append = records.append
    new = _new_object
    for index, (trace_id, span_id, parent_span_id, name, kind, status, start, end, agent_id, agent_name, agent_role,
                model, provider, input_tokens, output_tokens, cached_input_tokens, cost_usd, input_, output, keys,
                values) in enumerate(entries):
        entries[index] = None
        record: Any = new(_WireRecord)
        record.trace_id = trace_id
        record.span_id = span_id
        record.parent_span_id = parent_span_id
        record.name = name
        record.kind = kind
        record.status = status
        record.start_time_unix_nano = start
        record.end_time_unix_nano = end
        record.agent_id = agent_id
        record.agent_name = agent_name
        record.agent_role = agent_role
        record.model = model
        record.provider = provider
        record.input_tokens = input_tokens
        record.output_tokens = output_tokens
        record.cached_input_tokens = cached_input_tokens
        record.cost_usd = cost_usd
        record.attributes = dict(zip(keys, values))  # noqa: B905 (a keyword argument costs ~150 ns)
        # Text is left out entirely (not null) when it was not captured, so absence is unambiguous.
        if input_ is not None:
            record.input = input_
        if output is not None:
            record.output = output
        append(record.__dict__)
    return records
