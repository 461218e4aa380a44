"""One model call, two spans: the program's own OpenTelemetry LLM span and AgentWatch's, counted once.

A program traced by OpenTelemetry as well (Pydantic AI's instrumentation, OpenInference, opentelemetry-instrumentation-
openai-v2) sends the collector its own span of every model call through ``/v1/traces``, beside AgentWatch's. The SDK
names on its LLM span the OpenTelemetry span current when the call started (``otel.current_span``,
``agentwatch.otel.current_span`` through AgentWatch's OTLP exporter): either the other instrumentation's span of the
call itself (it wraps the call AgentWatch hooks), or the span both calls run under (AgentWatch's hook wraps the other's:
that span's LLM child which started during AgentWatch's call).

That other span is a copy: it stays in its trace's tree (the figures it came with under ``copy_uncounted``) with a kind
that is no model call (``llm_copy``, ``embedding_copy``), no model, tokens or cost, so calls, tokens and costs (KPIs,
by model, by agent, sessions, alert rules) count AgentWatch's span alone. The stores keep the names
(``Naming``) to find a copy that arrives after AgentWatch's span; one that arrived first is turned into a copy then.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from typing import Any, Final

from ._model import LLM_KINDS, SpanRecord

__all__ = ["Naming", "StoredCall", "COPY_KINDS", "naming", "is_foreign_call", "is_copy_of", "stored_call", "copies_in",
           "Candidates", "copy_candidates", "make_copy", "copy_columns"]

#: Where the SDK names the OpenTelemetry span (its own export, its OTLP export).
_NAMED_KEYS: Final = ("otel.current_span", "agentwatch.otel.current_span")
_NAMED = re.compile(r"([0-9a-f]{32})-([0-9a-f]{16})")
#: The kind a copy takes: no model call (``LLM_KINDS``), so no store counts it as one.
COPY_KINDS: Final = {"llm": "llm_copy", "embedding": "embedding_copy"}
#: Attributes of a span from an OpenTelemetry instrumentation (``_otlp_semconv``); AgentWatch's own OTLP export
#: carries ``agentwatch.kind``.
_SCOPE_KEY: Final = "otel.scope.name"
_OWN_KEY: Final = "agentwatch.kind"


@dataclasses.dataclass(frozen=True, slots=True)
class Naming:
    """AgentWatch's LLM span (``trace_id``, ``span_id``, its kind and time) and the OpenTelemetry span it names."""

    otel_trace_id: str
    otel_span_id: str
    kind: str
    start_ns: int
    end_ns: int
    trace_id: str
    span_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class StoredCall:
    """What matching needs of another instrumentation's LLM span."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    start_ns: int


def naming(record: SpanRecord) -> Naming | None:
    """The OpenTelemetry span AgentWatch's LLM span ``record`` names, if it names one."""
    if record.kind not in LLM_KINDS:
        return None
    for key in _NAMED_KEYS:
        value = record.attributes.get(key)
        if isinstance(value, str):
            match = _NAMED.fullmatch(value)
            if match:
                return Naming(match.group(1), match.group(2), record.kind, record.start_ns, record.end_ns,
                              record.trace_id, record.span_id)
    return None


def is_foreign_call(kind: str, attributes: Mapping[str, Any]) -> bool:
    """An LLM span from another OpenTelemetry instrumentation (not AgentWatch's own, in either export)."""
    return kind in LLM_KINDS and _SCOPE_KEY in attributes and _OWN_KEY not in attributes \
        and not any(key in attributes for key in _NAMED_KEYS)


#: A batch's namings and its model calls from other instrumentations (``copy_candidates``).
Candidates = tuple[list[Naming], list[StoredCall]]
#: The attribute keys without which a span is neither a naming nor another instrumentation's model call.
_CANDIDATE_KEYS: Final = frozenset((*_NAMED_KEYS, _SCOPE_KEY))
_attributes_of = operator.attrgetter("attributes")


def copy_candidates(records: Sequence[SpanRecord]) -> Candidates:
    """The namings among ``records`` and their model calls from other instrumentations: what a store settles copies
    from. Each needs one of a few attribute keys; a batch whose spans hold none (the usual one) is told by one
    C-level pass over its attributes' keys, without a step per span."""
    if _CANDIDATE_KEYS.isdisjoint(chain.from_iterable(map(_attributes_of, records))):
        return [], []
    namings = [named for named in map(naming, records) if named is not None]
    foreign = [stored_call(record) for record in records if is_foreign_call(record.kind, record.attributes)]
    return namings, foreign


def is_copy_of(call: StoredCall, named: Naming) -> bool:
    """Whether ``call`` is the span of the model call ``named`` made: the named span itself, or an LLM child of it of
    the same kind that started during AgentWatch's call (the other hook ran inside AgentWatch's)."""
    if call.trace_id != named.otel_trace_id:
        return False
    if call.span_id == named.otel_span_id:
        return True
    return call.parent_span_id == named.otel_span_id and call.kind == named.kind \
        and named.start_ns <= call.start_ns <= named.end_ns


def stored_call(record: SpanRecord) -> StoredCall:
    return StoredCall(record.trace_id, record.span_id, record.parent_span_id, record.kind, record.start_ns)


def copies_in(calls: Iterable[StoredCall], namings: Iterable[Naming]) -> dict[tuple[str, str], Naming]:
    """The calls among ``calls`` that are copies, each with the naming it copies."""
    by_span: dict[tuple[str, str], list[Naming]] = {}
    for named in namings:
        by_span.setdefault((named.otel_trace_id, named.otel_span_id), []).append(named)
    found: dict[tuple[str, str], Naming] = {}
    for call in calls:
        for span_id in (call.span_id, call.parent_span_id):
            for named in by_span.get((call.trace_id, span_id or ""), ()):
                if is_copy_of(call, named):
                    found[(call.trace_id, call.span_id)] = named
                    break
            if (call.trace_id, call.span_id) in found:
                break
    return found


def copy_columns(kind: str, model: str | None, input_tokens: int, output_tokens: int, cached_input_tokens: int,
                 cost_usd: float, attributes: dict[str, Any], of: tuple[str, str]) -> tuple[str, dict[str, Any]]:
    """(kind, attributes) of a span made a copy of the span ``of`` (trace id, span id); its model, tokens and cost
    become None, 0 and 0.0 (kept in the attributes)."""
    attributes["copy_of"] = {"trace_id": of[0], "span_id": of[1]}
    attributes["copy_uncounted"] = {"kind": kind, "model": model, "input_tokens": input_tokens,
                                    "output_tokens": output_tokens, "cached_input_tokens": cached_input_tokens,
                                    "cost_usd": cost_usd}
    return COPY_KINDS.get(kind, kind), attributes


def make_copy(record: SpanRecord, of: tuple[str, str]) -> None:
    """Make ``record`` (not stored yet) a copy of the span ``of``."""
    record.kind, record.attributes = copy_columns(record.kind, record.model, record.input_tokens,
                                                  record.output_tokens, record.cached_input_tokens, record.cost_usd,
                                                  record.attributes, of)
    record.model = None
    record.input_tokens = record.output_tokens = record.cached_input_tokens = 0
    record.cost_usd = 0.0
