"""Wire models for ingest: the SDK's native span, the ATP span, and the normalised ``SpanRecord``.

Both formats are validated by pydantic in one pass (a callable discriminator picks the model per span)
and normalised into the one record that every store backend writes.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
import re
from collections.abc import Callable, Iterable
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
    "row_records",
    "rows_as_records",
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
        status, kind = value.get("status"), value.get("kind")
        # A kind that is not text (a list, an object) is the native model's to refuse: a set cannot hold it.
        if isinstance(status, dict) or isinstance(kind, str) and kind in _OTEL_KINDS or "model_inference" in value \
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

#: Ids joined by newlines, each of Id's pattern; fullmatch, as a Rust regex's ^...$
_IDS_MATCH = re.compile(r"[0-9A-Za-z_.:\-]+(?:\n[0-9A-Za-z_.:\-]+)*").fullmatch
_SDK_KEYS = frozenset(NativeSpan.model_fields)
_NANOS_MAX = 2**63 - 1
_COUNT_MAX = MAX_COUNT
# The 18 keys ``Span.to_dict()`` always writes (input and output only when captured): read with one C call.
_WIRE_KEYS = ("trace_id", "span_id", "parent_span_id", "name", "kind", "status", "start_time_unix_nano",
              "end_time_unix_nano", "agent_id", "agent_name", "agent_role", "model", "provider", "input_tokens",
              "output_tokens", "cached_input_tokens", "cost_usd", "attributes")
_wire_values = operator.itemgetter(*_WIRE_KEYS)
_WIRE_KEY_SET = frozenset(_WIRE_KEYS)
_WIRE_SIZE = len(_WIRE_KEYS)
#: A span may leave keys out (NativeSpan's defaults); the ones it must give default to None, which fails their check.
#: ``attributes`` left out is a new empty dict per span.
_WIRE_DEFAULTS = {"trace_id": None, "span_id": None, "parent_span_id": None, "name": "", "kind": "span",
                  "status": "ok", "start_time_unix_nano": None, "end_time_unix_nano": None, "agent_id": None,
                  "agent_name": None, "agent_role": None, "model": None, "provider": None, "input_tokens": 0,
                  "output_tokens": 0, "cached_input_tokens": 0, "cost_usd": 0.0}


def _all_strings(values: set[Any], longest: int) -> bool:
    """Every value is a str of at most ``longest`` characters (an empty set passes)."""
    return not values or (set(map(type, values)) == _STR and max(map(len, values)) <= longest)


def _all_ints(values: tuple[Any, ...], highest: int) -> bool:
    """Every value is an int (not a bool) in [0, highest]."""
    return set(map(type, values)) == _INT and min(values) >= 0 and max(values) <= highest


def _stored_names(values: tuple[Any, ...], limit: int,
                  stored_name: Callable[[str], str | None]) -> tuple[Any, ...] | list[str] | None:
    """``values`` (a kind or a status per span) as stored, ``stored_name`` of each distinct one (None: not valid):
    the column as it is when each value is stored as sent (the SDK's batches), else a new list; None when one is not
    a str of at most ``limit`` characters or has no stored name."""
    stored: dict[str, str] = {}
    for value in set(values):
        if type(value) is not str or len(value) > limit:
            return None
        name = stored_name(value)
        if name is None:
            return None
        stored[value] = name
    if all(value == name for value, name in stored.items()):
        return values
    return list(map(stored.__getitem__, values))


def _stored_kind(kind: str) -> str | None:
    """Lower case, "" as "span"; the ATP (OpenTelemetry) kinds are not the SDK's."""
    return None if kind in _OTEL_KINDS else kind.lower() or "span"


def _stored_status(status: str) -> str | None:
    return _STATUSES.get(status.lower())


_STR = {str}
_INT = {int}
_DICT = {dict}
_NUMBER = {float, int}
_NONE = type(None)
_LIST = {list}
#: A span row: the wire record's first 17 values (``_WIRE_KEYS`` but ``attributes``), input, output, then the
#: attributes' keys and their values (``agentwatch._span.span_fields``).
_ROW_FIELDS = 17
_ROW_SIZE = _ROW_FIELDS + 4
_row_input = operator.itemgetter(_ROW_FIELDS)
_row_output = operator.itemgetter(_ROW_FIELDS + 1)
_row_keys = operator.itemgetter(_ROW_FIELDS + 2)
_row_values = operator.itemgetter(_ROW_FIELDS + 3)
_get_input = operator.methodcaller("get", "input")
_get_output = operator.methodcaller("get", "output")


def sdk_records(items: list[Any]) -> list[SpanRecord] | None:
    """Records for a parsed JSON list in which every span has the SDK's native shape and passes NativeSpan's
    constraints; None as soon as one does not (the caller then validates the batch with pydantic).

    Checked a field at a time over the whole batch, with C-level passes (types, bounds, distinct values) rather
    than a Python step per field of each span: ids, names and labels repeat in a batch, so each distinct one is
    checked once, the ids by one regular expression over all of them. A value of a type no set can hold (a list,
    a dict) raises TypeError when the distinct values are collected, which sends the batch to pydantic like any
    other value this check does not take. ``items`` come from the JSON parser: dicts, lists and scalars."""
    if not items:
        return []
    try:
        rows = list(map(_wire_values, items))
    except (KeyError, TypeError):  # a span that is no dict, or leaves keys out: its defaults, then the same checks
        complete = []
        for item in items:
            if type(item) is not dict:
                return None
            if not _WIRE_KEY_SET.issubset(item):
                if "cost_usd" not in item:
                    return None  # priced from its tokens, perhaps (_native)
                item = {**_WIRE_DEFAULTS, "attributes": {}, **item}
            complete.append(item)
        items = complete
        rows = list(map(_wire_values, items))
    sizes = set(map(len, items))
    if sizes == {_WIRE_SIZE}:  # no span with its text
        return _checked_records(rows, None, None)
    if any(len(item) > _WIRE_SIZE + 2 or not _SDK_KEYS.issuperset(item) for item in items if len(item) != _WIRE_SIZE):
        return None
    return _checked_records(rows, map(_get_input, items), map(_get_output, items))


def row_records(entries: list[Any]) -> list[SpanRecord] | None:
    """Records for a parsed body of span rows (``ROWS_MEDIA_TYPE``: each span as the SDK's export queue holds it,
    ``span_fields``: its 19 fields, then its attributes' keys and their values) when every row has that shape and every
    span passes NativeSpan's constraints, checked as ``sdk_records`` checks records; None as soon as one does not
    (``rows_as_records`` then makes them records for the caller to validate one by one)."""
    if not entries:
        return []
    try:
        if set(map(type, entries)) != _LIST or set(map(len, entries)) != {_ROW_SIZE}:
            return None
        keys = list(map(_row_keys, entries))
        values = list(map(_row_values, entries))
        if set(map(type, keys)) != _LIST or set(map(type, values)) != _LIST:
            return None
        counts = list(map(len, keys))
        if counts != list(map(len, values)) or not set(map(type, itertools.chain.from_iterable(keys))) <= _STR:
            return None
        attributes = list(map(dict, map(zip, keys, values)))
        if list(map(len, attributes)) != counts:  # a key twice: a record could not hold both
            return None
    except TypeError:  # a key no dict can hold (a list)
        return None
    rows = list(map(_wire_row, entries, attributes))
    return _checked_records(rows, map(_row_input, entries), map(_row_output, entries))


def rows_as_records(entries: list[Any]) -> list[dict[str, Any]] | None:
    """The records (``Span.to_dict()``'s shape) of a body of span rows, for the general path to validate and word
    the errors of; None if a row is not in the rows' shape at all (not a list of 21 fields whose last two are lists of
    the same length)."""
    from agentwatch._span import wire_records

    for entry in entries:
        if type(entry) is not list or len(entry) != _ROW_SIZE or type(entry[-2]) is not list \
                or type(entry[-1]) is not list or len(entry[-2]) != len(entry[-1]):
            return None
    try:
        return wire_records(list(entries))
    except TypeError:  # an attribute key no dict can hold
        return None


def _wire_row(entry: list[Any], attributes: dict[str, Any]) -> tuple[Any, ...]:
    return (*entry[:_ROW_FIELDS], attributes)


def _checked_records(rows: list[tuple[Any, ...]], inputs: Iterable[Any] | None,
                     outputs: Iterable[Any] | None) -> list[SpanRecord] | None:
    """``sdk_records`` once each span's 18 wire values are read (``rows``), with its text if any span has some."""
    (trace_ids, span_ids, parents, names, kinds, statuses, starts, ends, agent_ids, agent_names, agent_roles, models,
     providers, tokens_in, tokens_out, cached, costs, attributes) = zip(*rows, strict=True)
    try:
        ids = set(trace_ids)
        ids.update(span_ids)
        parent_ids = set(parents)
        parent_ids.discard(None)
        if "" in parent_ids:  # no parent, as to_record stores it: else the whole batch took pydantic's path
            parent_ids.discard("")
            parents = tuple(parent or None for parent in parents)
        ids |= parent_ids
        if not _all_strings(ids, 128):
            return None
        joined = "\n".join(ids)  # no id holds a newline, if each passes Id's pattern (a newline fails it)
        if joined.count("\n") != len(ids) - 1 or not _IDS_MATCH(joined):
            return None
        labels = set(agent_ids)
        labels.update(agent_names, agent_roles, models, providers)
        labels.discard(None)
        if not _all_strings(set(names), NAME_MAX) or not _all_strings(labels, 512):
            return None
        stored_kinds = _stored_names(kinds, 64, _stored_kind)
        stored_statuses = _stored_names(statuses, 32, _stored_status)
    except TypeError:
        return None
    if stored_kinds is None or stored_statuses is None or not _all_ints(starts, _NANOS_MAX):
        return None
    end_types = set(map(type, ends))
    if _NONE in end_types:  # no end: it ended where it started
        end_types.discard(_NONE)
        ends = tuple(start if end is None else end for start, end in zip(starts, ends, strict=True))
    if end_types and not _all_ints(ends, _NANOS_MAX):
        return None
    if any(map(operator.lt, ends, starts)):  # ended before it started: at its start
        ends = tuple(map(max, starts, ends))
    counts = tokens_in + tokens_out + cached
    if not _all_ints(counts, _COUNT_MAX):
        return None
    if any(map(operator.gt, cached, tokens_in)):  # cached tokens are part of the input, when that is given
        cached = tuple(low if low and high > low else high for high, low in zip(cached, tokens_in, strict=True))
    cost_types = set(map(type, costs))
    # NaN (which the parser never makes) would pass min and max: the sum is NaN then, and refused.
    total = sum(costs) if cost_types <= _NUMBER else None
    if total is None or total != total or min(costs) < 0 or max(costs) > MAX_COST_USD:
        return None
    if int in cost_types:
        costs = tuple(map(float, costs))
    if set(map(type, attributes)) != _DICT:
        return None
    if inputs is None or outputs is None:
        return list(map(SpanRecord, trace_ids, span_ids, parents, names, stored_kinds, stored_statuses, starts, ends,
                        agent_ids, agent_names, agent_roles, models, providers, tokens_in, tokens_out, cached, costs,
                        attributes))
    return list(map(SpanRecord, trace_ids, span_ids, parents, names, stored_kinds, stored_statuses, starts, ends,
                    agent_ids, agent_names, agent_roles, models, providers, tokens_in, tokens_out, cached, costs,
                    attributes, inputs, outputs))
