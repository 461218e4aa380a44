"""Wire models for ingest: the SDK's native span, the ATP span, and the normalised ``SpanRecord``.

Both formats are validated by pydantic in one pass (a callable discriminator picks the model per span)
and normalised into the one record that every store backend writes.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from agentwatch._pricing import Pricer

__all__ = [
    "NAME_MAX",
    "price_from_tokens",
    "NativeSpan",
    "AtpSpan",
    "IngestSpan",
    "SpanRecord",
    "SPAN_LIST",
    "SPAN_ONE",
    "NATIVE_LIST",
    "looks_atp",
    "LLM_KINDS",
    "BLOCK_POINT_KEY",
    "BLOCK_POINT_KINDS",
    "to_record",
    "MAX_COST_USD",
    "sdk_records",
]

#: The longest span name stored; a cron is named by its runs' spans, so its routes take names as long.
NAME_MAX: Final = 2000

#: Kinds whose spans are model calls: counted as calls, latency and error rate are computed over them.
LLM_KINDS = frozenset({"llm", "embedding"})
#: A block is counted once, where it happened: the SDK marks that span ``breaker.block_point: true`` (a refused model
#: call, an agent or graph node stopped at its start) and the enclosing spans (graph, trace, agent) the exception ended
#: blocked on its way out ``false``. A blocked span without the attribute (an older SDK, another tracer) counts where
#: blocks used to be: at the kinds below.
BLOCK_POINT_KEY = "breaker.block_point"
BLOCK_POINT_KINDS = LLM_KINDS | {"node"}
_OTEL_KINDS = frozenset({"INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"})
_STATUSES = {"ok": "ok", "error": "error", "blocked": "blocked", "unset": "ok", "": "ok"}

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[0-9A-Za-z_.:\-]+$")]
# The ATP schema's ids (as the aeneas-agentwatch SDK's own ATPSpan model defines them): lower-case hex.
AtpTraceId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
AtpSpanId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
Nanos = Annotated[int, Field(ge=0, le=2**63 - 1)]
#: Tokens per span: 2**40 (10**12) is far beyond any model, and keeps sums over millions of spans (per trace,
#: per hour, per query) inside SQLite's 64-bit integers.
MAX_COUNT = 2**40
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
#: USD per span: a million dollars is far beyond any single call, and keeps every sum finite (two spans of 1e308
#: made totals inf: JSON null and a PDF that could not be drawn).
MAX_COST_USD = 1e6
Cost = Annotated[float, Field(ge=0, le=MAX_COST_USD, allow_inf_nan=False)]
Label = Annotated[str, Field(max_length=512)]


class NativeSpan(BaseModel):
    """``Span.to_dict()`` of the agentwatch SDK. Unknown keys are kept under ``attributes``."""

    model_config = ConfigDict(extra="allow")

    trace_id: Id
    span_id: Id
    # "" is a root, as null is: clients whose strings cannot be null (Go's zero value) send it.
    parent_span_id: Id | Literal[""] | None = None
    name: Annotated[str, Field(max_length=NAME_MAX)] = ""
    kind: Annotated[str, Field(max_length=64)] = "span"
    status: Annotated[str, Field(max_length=32)] = "ok"
    start_time_unix_nano: Nanos
    end_time_unix_nano: Nanos | None = None
    agent_id: Label | None = None
    agent_name: Label | None = None
    agent_role: Label | None = None
    model: Label | None = None
    provider: Label | None = None
    input_tokens: Count = 0
    output_tokens: Count = 0
    cached_input_tokens: Count = 0
    cost_usd: Cost = 0.0
    attributes: dict[str, Any] = Field(default_factory=dict)
    input: Any = None
    output: Any = None


class AtpStatus(BaseModel):
    code: Literal["UNSET", "OK", "ERROR"] = "UNSET"
    message: str | None = None


class AtpModelInference(BaseModel):
    model_name: Label | None = None
    provider: Label | None = None
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    # 10**12 ms is 31 years: anything larger is garbage, and would overflow a nanosecond end time.
    latency_ms: Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)] | None = None


class AtpCostAttribution(BaseModel):
    task_id: Label | None = None
    accumulated_cost_usd: Cost | None = None


class AtpSpan(BaseModel):
    """A span as the ``aeneas-agentwatch`` 0.2 SDK and the product docs send it (ATP)."""

    model_config = ConfigDict(extra="allow")

    trace_id: AtpTraceId
    span_id: AtpSpanId
    parent_span_id: AtpSpanId | Literal[""] | None = None
    name: Annotated[str, Field(max_length=NAME_MAX)] = ""
    kind: Literal["INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"] = "INTERNAL"
    start_time_unix_nano: Nanos
    end_time_unix_nano: Nanos | None = None
    status: AtpStatus = Field(default_factory=AtpStatus)
    agent_id: Label | None = None
    agent_name: Label | None = None
    agent_role: Label | None = None
    decision_reasoning: Any = None
    input: Any = None
    output: Any = None
    tool_calls: list[dict[str, Any]] | None = None
    model_inference: AtpModelInference | None = None
    cost_attribution: AtpCostAttribution | None = None
    compliance_flags: list[str] | None = None
    links: list[dict[str, Any]] | None = None
    events: list[dict[str, Any]] | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


def _format_of(value: Any) -> str:
    if isinstance(value, dict):
        status = value.get("status")
        if isinstance(status, dict) or value.get("kind") in _OTEL_KINDS or "model_inference" in value \
                or "cost_attribution" in value:
            return "atp"
    return "native"


IngestSpan = Annotated[
    Annotated[NativeSpan, Tag("native")] | Annotated[AtpSpan, Tag("atp")],
    Discriminator(_format_of),
]
SPAN_LIST: TypeAdapter[list[Any]] = TypeAdapter(list[IngestSpan])
SPAN_ONE: TypeAdapter[Any] = TypeAdapter(IngestSpan)
# The SDK's own format skips the per-span discriminator call: about a third faster on the hot path.
NATIVE_LIST: TypeAdapter[list[NativeSpan]] = TypeAdapter(list[NativeSpan])


def looks_atp(span: NativeSpan) -> bool:
    """An ATP span that happened to pass as native (no status object); it must be parsed as ATP."""
    if span.kind in _OTEL_KINDS:
        return True
    extra = span.model_extra
    if not extra:
        return False
    return "model_inference" in extra or "cost_attribution" in extra


@dataclasses.dataclass(slots=True)
class SpanRecord:
    """The normalised span every store writes. ``input``/``output`` are None when not captured."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    status: str
    start_ns: int
    end_ns: int
    agent_id: str | None = None
    agent_name: str | None = None
    agent_role: str | None = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float = 0.0
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)
    input: Any = None
    output: Any = None

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def agent_key(self) -> str | None:
        """Agents are grouped by id, falling back to the name for clients that send only a name."""
        return self.agent_id or self.agent_name


def _native(span: NativeSpan) -> SpanRecord:
    status = _STATUSES.get(span.status.lower())
    if status is None:
        raise ValueError(f"status must be one of ok, error, blocked (got {span.status!r})")
    attributes = span.attributes
    if span.model_extra:
        # Keys this version does not know (e.g. "resource") are kept, not dropped, where they fit.
        for key, value in span.model_extra.items():
            attributes.setdefault(key, value)
    start = span.start_time_unix_nano
    end = span.end_time_unix_nano
    kind = span.kind.lower() or "span"
    cached = min(span.cached_input_tokens, span.input_tokens) if span.input_tokens else span.cached_input_tokens
    cost = span.cost_usd
    if "cost_usd" not in span.model_fields_set and kind in _PRICED_KINDS and (span.input_tokens or span.output_tokens):
        # The SDK always sends its cost (0 for a local model); a client that sends none is priced from its tokens,
        # as ATP and OTLP spans are, rather than counted as free.
        cost = price_from_tokens(span.model, span.provider, span.input_tokens, span.output_tokens, attributes,
                                 cached)
    return SpanRecord(
        span.trace_id, span.span_id, span.parent_span_id or None, span.name, kind, status,
        start, end if end is not None and end >= start else start, span.agent_id, span.agent_name,
        span.agent_role, span.model, span.provider, span.input_tokens, span.output_tokens, cached,
        cost, attributes, span.input, span.output,
    )


#: Native spans priced from their tokens when they come without a cost: model calls (not their copies).
_PRICED_KINDS = frozenset({"llm", "embedding"})


def _atp(span: AtpSpan) -> SpanRecord:
    attributes = dict(span.attributes)
    attributes["atp.kind"] = span.kind
    status = "error" if span.status.code == "ERROR" else "ok"
    if span.status.message:
        attributes.setdefault("error.message" if status == "error" else "status.message", span.status.message)
    for key in ("decision_reasoning", "tool_calls", "links", "events"):
        value = getattr(span, key)
        if value is not None:
            attributes[key] = value
    flags = span.compliance_flags or []
    if flags:
        attributes["compliance_flags"] = flags
        if any("art12" in flag.lower() or "article_12" in flag.lower() for flag in flags):
            attributes["eu_ai_act_art12_relevant"] = True
    if "blocked" in (flag.lower() for flag in flags) or attributes.get("blocked") is True:
        status = "blocked"
    if span.model_extra:
        for key, value in span.model_extra.items():
            attributes.setdefault(key, value)
    inference = span.model_inference
    model = provider = None
    input_tokens = output_tokens = 0
    start = span.start_time_unix_nano
    end = span.end_time_unix_nano
    if inference is not None:
        model, provider = inference.model_name, inference.provider
        input_tokens = inference.prompt_tokens or 0
        output_tokens = inference.completion_tokens or 0
        if inference.latency_ms is not None:
            attributes["llm.latency_ms"] = inference.latency_ms
            if end is None:
                end = min(start + int(inference.latency_ms * 1e6), _NANOS_MAX)
    sent_cost: float | None = None
    if span.cost_attribution is not None:
        # The 0.2 SDK puts the cost of this call here (the collector sums it per trace).
        sent_cost = span.cost_attribution.accumulated_cost_usd
        if span.cost_attribution.task_id:
            attributes["task_id"] = span.cost_attribution.task_id
    cost = sent_cost or 0.0
    if inference is not None and (model or input_tokens or output_tokens):
        kind = "llm"
        if sent_cost is None and (input_tokens or output_tokens):
            cost = price_from_tokens(model, provider, input_tokens, output_tokens, attributes)
    elif span.tool_calls and span.kind == "CLIENT":
        kind = "tool"
    else:
        kind = {"CLIENT": "http", "PRODUCER": "event", "CONSUMER": "event"}.get(span.kind, "span")
    return SpanRecord(
        span.trace_id, span.span_id, span.parent_span_id or None, span.name, kind, status, start,
        end if end is not None and end >= start else start, span.agent_id, span.agent_name, span.agent_role,
        model, provider, input_tokens, output_tokens, 0, cost, attributes, span.input, span.output,
    )


#: The SDK's own price table (genai-prices, resolved once per model), for clients that send tokens but no cost.
_PRICER = Pricer()


def price_from_tokens(model: str | None, provider: str | None, input_tokens: int, output_tokens: int,
                      attributes: dict[str, Any], cached_input_tokens: int = 0, cache_write_tokens: int = 0,
                      answered_model: str | None = None) -> float:
    """What the SDK would have charged for a call that arrived with tokens but no cost (ATP, OTLP); marked as
    priced here, and as estimated when the model is unknown (priced at the default rate), as the SDK marks
    its own spans. As the SDK, a model the price table does not know is priced as the one that answered
    (``answered_model``, ``priced_as``) if the table knows that one."""
    cost, estimated = _PRICER.cost(model, provider, input_tokens, output_tokens, cached_input_tokens,
                                   cache_write_tokens)
    if estimated and answered_model and answered_model != model:
        answered_cost, answered_estimated = _PRICER.cost(answered_model, provider, input_tokens, output_tokens,
                                                         cached_input_tokens, cache_write_tokens)
        if not answered_estimated:
            cost, estimated = answered_cost, False
            attributes["priced_as"] = answered_model
    attributes["cost_source"] = "collector"
    if estimated:
        attributes["cost_estimated"] = True
    return cost


def to_record(span: NativeSpan | AtpSpan) -> SpanRecord:
    """Normalise a validated span; raises ValueError for values pydantic's types let through."""
    return _atp(span) if isinstance(span, AtpSpan) else _native(span)


# ---- the fast path for batches in the SDK's own shape ----------------------------------------------------------
# Validating with pydantic and turning the models into records was ~40 % of the collector's CPU per span. A batch
# as ``Span.to_dict()`` makes it is checked here by hand instead, against exactly the constraints of NativeSpan:
# anything this check does not accept outright (another format, unknown keys, a value pydantic would coerce or
# refuse) goes to pydantic, which decides and words the errors. So it never accepts what pydantic refuses, nor
# stores anything differently (tests/server/test_ingest_fast_path.py compares the two on fuzzed bodies).

_ID_MATCH = re.compile(r"[0-9A-Za-z_.:\-]+").fullmatch  # the Id pattern; fullmatch, as a Rust regex's ^...$
_SDK_KEYS = frozenset(NativeSpan.model_fields)
_NANOS_MAX = 2**63 - 1
_COUNT_MAX = MAX_COUNT
# The 18 keys ``Span.to_dict()`` always writes (input and output only when captured): read with one C call.
_WIRE_KEYS = ("trace_id", "span_id", "parent_span_id", "name", "kind", "status", "start_time_unix_nano",
              "end_time_unix_nano", "agent_id", "agent_name", "agent_role", "model", "provider", "input_tokens",
              "output_tokens", "cached_input_tokens", "cost_usd", "attributes")
_wire_values = operator.itemgetter(*_WIRE_KEYS)
_WIRE_SIZE = len(_WIRE_KEYS)
#: A span may leave keys out (NativeSpan's defaults); the ones it must give default to None, which fails their check.
#: ``attributes`` left out is a new empty dict per span.
_WIRE_DEFAULTS = {"trace_id": None, "span_id": None, "parent_span_id": None, "name": "", "kind": "span",
                  "status": "ok", "start_time_unix_nano": None, "end_time_unix_nano": None, "agent_id": None,
                  "agent_name": None, "agent_role": None, "model": None, "provider": None, "input_tokens": 0,
                  "output_tokens": 0, "cached_input_tokens": 0, "cost_usd": 0.0}


def _checked_cost(cost: Any) -> float | None:
    """A span's USD cost as a float, or None if it is not a number in [0, MAX_COST_USD] (NaN and inf too)."""
    if type(cost) is float:
        return cost if 0 <= cost <= MAX_COST_USD else None
    if type(cost) is int and 0 <= cost <= MAX_COST_USD:
        return float(cost)
    return None


def _valid_ids(ids: set[str], values: tuple[Any, ...]) -> bool:
    """Ids not seen yet in the batch: Id's constraints, remembered once passed."""
    for value in values:
        if value in ids:
            continue
        if type(value) is not str or len(value) > 128 or not _ID_MATCH(value):
            return False
        ids.add(value)
    return True


def _valid_labels(labels: set[str], values: tuple[Any, ...]) -> bool:
    for value in values:
        if value is None or value in labels:
            continue
        if type(value) is not str or len(value) > 512:
            return False
        labels.add(value)
    return True


def _stored_kind(kinds: dict[str, str], kind: Any) -> str | None:
    if type(kind) is not str or len(kind) > 64 or kind in _OTEL_KINDS:
        return None
    stored = kinds[kind] = kind.lower() or "span"
    return stored


def _stored_status(status: Any) -> str | None:
    if type(status) is not str or len(status) > 32:
        return None
    return _STATUSES.get(status.lower())


def sdk_records(items: list[Any]) -> list[SpanRecord] | None:
    """Records for a parsed JSON list in which every span has the SDK's native shape and passes NativeSpan's
    constraints; None as soon as one does not (the caller then validates the batch with pydantic).

    One pass of plain type checks per span. A batch repeats its ids, names, kinds and labels, so each distinct
    string is checked once and then found in a set; a value of a type no set can hold (a list, a dict) raises
    TypeError on lookup, which sends the batch to pydantic like any other value this check does not take."""
    records: list[SpanRecord] = []
    append = records.append
    ids: set[str] = set()
    names: set[str] = set()
    labels: set[str] = set()
    kinds: dict[str, str] = {}
    try:
        for item in items:
            if type(item) is not dict:
                return None
            try:
                values = _wire_values(item)
            except KeyError:  # keys left out: their defaults, then the same checks
                if "cost_usd" not in item:
                    return None  # priced from its tokens, perhaps (_native)
                item = {**_WIRE_DEFAULTS, "attributes": {}, **item}
                values = _wire_values(item)
            (trace_id, span_id, parent, name, kind, status, start, end, agent_id, agent_name, agent_role, model,
             provider, tokens_in, tokens_out, cached, cost, attributes) = values
            size = len(item)
            if size != _WIRE_SIZE and (size > _WIRE_SIZE + 2 or not _SDK_KEYS.issuperset(item)):
                return None
            if parent == "":  # no parent, as to_record stores it: else the whole batch took pydantic's path
                parent = None
            # A span's own id is new (checked here, and remembered for its children); its trace's and parent's
            # ids were mostly seen already.
            if span_id not in ids:
                if type(span_id) is not str or len(span_id) > 128 or not _ID_MATCH(span_id):
                    return None
                ids.add(span_id)
            if (trace_id not in ids or (parent is not None and parent not in ids)) \
                    and not _valid_ids(ids, (trace_id,) if parent is None else (trace_id, parent)):
                return None
            if name not in names:
                if type(name) is not str or len(name) > 2000:
                    return None
                names.add(name)
            stored_kind = kinds.get(kind) or _stored_kind(kinds, kind)
            normal = _STATUSES.get(status) or _stored_status(status)
            if stored_kind is None or normal is None:
                return None
            if type(start) is not int or not 0 <= start <= _NANOS_MAX:
                return None
            if end is None:
                end = start
            elif type(end) is not int or not 0 <= end <= _NANOS_MAX:
                return None
            elif end < start:
                end = start
            if ((agent_id is not None and agent_id not in labels) or (agent_name is not None and agent_name not in
                    labels) or (agent_role is not None and agent_role not in labels) or (model is not None and model
                    not in labels) or (provider is not None and provider not in labels)) \
                    and not _valid_labels(labels, (agent_id, agent_name, agent_role, model, provider)):
                return None
            if type(tokens_in) is not int or type(tokens_out) is not int or type(cached) is not int \
                    or not (0 <= tokens_in <= _COUNT_MAX and 0 <= tokens_out <= _COUNT_MAX
                            and 0 <= cached <= _COUNT_MAX):
                return None
            cost = _checked_cost(cost)
            if cost is None:
                return None
            if type(attributes) is not dict:
                return None
            if tokens_in and cached > tokens_in:
                cached = tokens_in
            if size == _WIRE_SIZE:
                append(SpanRecord(trace_id, span_id, parent, name, stored_kind, normal, start, end, agent_id,
                                  agent_name, agent_role, model, provider, tokens_in, tokens_out, cached, cost,
                                  attributes))
            else:
                append(SpanRecord(trace_id, span_id, parent, name, stored_kind, normal, start, end, agent_id,
                                  agent_name, agent_role, model, provider, tokens_in, tokens_out, cached, cost,
                                  attributes, item.get("input"), item.get("output")))
    except TypeError:
        return None
    return records
