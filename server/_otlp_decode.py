"""OTLP/HTTP trace requests (protobuf or JSON) → plain spans: hex ids, nanosecond times, flat attributes.

The JSON form is the OTLP specification's: camelCase field names, ids as hex strings, 64-bit integers as
decimal strings, ``AnyValue`` objects (``stringValue``, ``intValue``, ``arrayValue``, ``kvlistValue`` ...).
Both forms come out identical, so the semantic mapping (``_otlp_semconv``) sees one shape.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from ._otlp_wire import WireError, fields_within, length_delimited

__all__ = ["OtlpSpan", "OtlpDecodeError", "OtlpTooLargeError", "Undecodable", "decode_protobuf", "decode_json"]

#: OTLP span status codes: 0 unset, 1 ok, 2 error.
STATUS_ERROR = 2


class OtlpDecodeError(ValueError):
    """The body is not an ``ExportTraceServiceRequest`` in the declared encoding."""


class OtlpTooLargeError(OtlpDecodeError):
    """The request holds more spans or values than one request may."""


@dataclasses.dataclass(slots=True)
class Undecodable:
    """The spans of a request that could not be decoded: how many, and why the first was not (all that
    ``partial_success`` reports; a request of 50,000 bad spans kept 50,000 messages)."""

    count: int = 0
    first: str = ""

    def add(self, problem: str) -> None:
        if not self.count:
            self.first = problem
        self.count += 1


@dataclasses.dataclass(slots=True)
class OtlpSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    status_code: int
    status_message: str
    events: list[dict[str, Any]]


# ---- protobuf ------------------------------------------------------------------------------------------------


def _pb_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_pb_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, which)


def _pb_attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in items}


def decode_protobuf(body: bytes, max_spans: int, max_values: int) -> tuple[list[OtlpSpan], Undecodable]:
    """The request's spans, and why each span that could not be decoded was not (those are rejected by
    themselves: counted in ``partial_success``, their neighbours kept)."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        within = fields_within(body, max_values)
    except WireError as error:
        raise OtlpDecodeError(f"body is not an OTLP ExportTraceServiceRequest: {error}") from None
    if not within:
        raise OtlpTooLargeError(f"more than {max_values} values in one request; send smaller batches")
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError:
        del request
        return _decode_spans_one_by_one(body, max_spans)
    spans: list[OtlpSpan] = []
    for resource_spans in request.resource_spans:
        resource = _pb_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                if len(spans) >= max_spans:
                    raise OtlpTooLargeError(f"at most {max_spans} spans per request")
                spans.append(_pb_span(span, resource, scope))
    return spans, Undecodable()


def _pb_span(span: Any, resource: dict[str, Any], scope: str) -> OtlpSpan:
    return OtlpSpan(
        span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex() or None, span.name, span.kind,
        span.start_time_unix_nano, span.end_time_unix_nano, _pb_attributes(span.attributes), resource, scope,
        span.status.code, span.status.message,
        [{"name": event.name, "time_unix_nano": event.time_unix_nano, "attributes": _pb_attributes(event.attributes)}
         for event in span.events])


#: Fields of ExportTraceServiceRequest, ResourceSpans and ScopeSpans.
_RESOURCE_SPANS = _RESOURCE = _SCOPE = 1
_SCOPE_SPANS = _SPANS = 2
_UNDECODABLE = ("cannot be decoded: nested deeper than protobuf's 100 message levels (about 32 nested kvlists or "
                "49 nested arrays) or not a valid Span")


def _decode_spans_one_by_one(body: bytes, max_spans: int) -> tuple[list[OtlpSpan], Undecodable]:
    """A request the parser refused as a whole, its spans parsed one at a time: protobuf refuses a message nested
    deeper than 100 levels, which one span nesting 32 kvlists passes in a request (three levels down), and the
    whole request was refused with its valid spans. Here a span that cannot be decoded is rejected by itself;
    the request is refused only if its frame (resource spans, resources, scopes) cannot be."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    spans: list[OtlpSpan] = []
    problems = Undecodable()
    try:
        for number, start, end in length_delimited(body, 0, len(body)):
            if number != _RESOURCE_SPANS:
                continue
            fields = length_delimited(body, start, end)
            resource: dict[str, Any] = {}
            for number, start, end in fields:
                if number == _RESOURCE:
                    resource = _pb_attributes(Resource.FromString(body[start:end]).attributes)
            for number, start, end in fields:
                if number != _SCOPE_SPANS:
                    continue
                scope_fields = length_delimited(body, start, end)
                scope = ""
                for number, start, end in scope_fields:
                    if number == _SCOPE:
                        scope = InstrumentationScope.FromString(body[start:end]).name
                for number, start, end in scope_fields:
                    if number != _SPANS:
                        continue
                    if len(spans) + problems.count >= max_spans:
                        raise OtlpTooLargeError(f"at most {max_spans} spans per request")
                    try:
                        span = Span.FromString(body[start:end])
                    except DecodeError:
                        problems.add(f"span {len(spans) + problems.count} of the request {_UNDECODABLE}")
                        continue
                    spans.append(_pb_span(span, resource, scope))
    except (WireError, DecodeError) as error:
        raise OtlpDecodeError(f"body is not an OTLP ExportTraceServiceRequest: {error}") from None
    return spans, problems


# ---- JSON ----------------------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if not isinstance(value, dict) or not value:
        return None
    kind, raw = next(iter(value.items()))
    if kind == "intValue":
        return int(raw)
    if kind == "doubleValue":
        return float(raw)
    if kind == "arrayValue":
        return [_json_value(item) for item in (raw or {}).get("values", [])]
    if kind == "kvlistValue":
        return _json_attributes((raw or {}).get("values", []))
    return raw  # stringValue, boolValue, bytesValue (already base64 text)


def _json_attributes(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {item["key"]: _json_value(item.get("value")) for item in items
            if isinstance(item, dict) and isinstance(item.get("key"), str)}


def _json_id(value: Any, length: int) -> str | None:
    """OTLP/JSON ids are hex; some exporters send base64 (the protobuf JSON mapping's default) instead."""
    if not value:
        return None
    text = str(value)
    if len(text) == length * 2:
        return text.lower()
    try:
        decoded = base64.b64decode(text, validate=True)
    except ValueError:
        return text
    return decoded.hex() if len(decoded) == length else text


# OTLP/JSON sends enums as integers; the protobuf JSON mapping (``MessageToJson``, which some exporters use) as
# their names, which protobuf's own JSON parser accepts as well.
_SPAN_KINDS = {"SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2, "SPAN_KIND_CLIENT": 3,
               "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5}
_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": STATUS_ERROR}


def _json_enum(value: Any, names: dict[str, int]) -> int:
    if isinstance(value, str) and value in names:
        return names[value]
    return int(value or 0)


def _json_span(span: Any, resource: dict[str, Any], scope: str) -> OtlpSpan:
    status = span.get("status") or {}
    return OtlpSpan(
        _json_id(span.get("traceId"), 16) or "", _json_id(span.get("spanId"), 8) or "",
        _json_id(span.get("parentSpanId"), 8), str(span.get("name") or ""), _json_enum(span.get("kind"), _SPAN_KINDS),
        int(span.get("startTimeUnixNano", 0)), int(span.get("endTimeUnixNano", 0)),
        _json_attributes(span.get("attributes")), resource, scope, _json_enum(status.get("code"), _STATUS_CODES),
        str(status.get("message") or ""),
        [{"name": str(event.get("name") or ""), "time_unix_nano": int(event.get("timeUnixNano", 0)),
          "attributes": _json_attributes(event.get("attributes"))}
         for event in span.get("events") or [] if isinstance(event, dict)])


def _json_list(container: Any, key: str) -> list[Any]:
    """A request's list of resource spans, scope spans or spans: absent or null is none, anything else that is
    no list is no OTLP request (a string was read one span per character, a dict one per key)."""
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpDecodeError(f"not an OTLP/JSON trace request: {key} must be a list")
    return value


def decode_json(body: bytes, max_spans: int) -> tuple[list[OtlpSpan], Undecodable]:
    """The request's spans, and why each span that could not be decoded was not: as over protobuf, a malformed
    span is rejected by itself (its neighbours kept), and only a request whose frame is malformed is refused."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise OtlpDecodeError(f"body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise OtlpDecodeError("body must be an OTLP ExportTraceServiceRequest object")
    spans: list[OtlpSpan] = []
    problems = Undecodable()
    try:
        for resource_spans in _json_list(document, "resourceSpans"):
            resource = _json_attributes((resource_spans.get("resource") or {}).get("attributes"))
            for scope_spans in _json_list(resource_spans, "scopeSpans"):
                scope = str((scope_spans.get("scope") or {}).get("name", ""))
                for span in _json_list(scope_spans, "spans"):
                    if len(spans) + problems.count >= max_spans:
                        raise OtlpTooLargeError(f"at most {max_spans} spans per request")
                    try:
                        spans.append(_json_span(span, resource, scope))
                    # OverflowError: a time, enum or intValue of Infinity or 1e400 (json.loads reads both as
                    # float infinity, which int() refuses so), a doubleValue of a 400-digit integer.
                    except (AttributeError, TypeError, ValueError, OverflowError) as error:
                        problems.add(f"span {len(spans) + problems.count} of the request is not an OTLP/JSON "
                                        f"span: {error}")
    except (AttributeError, TypeError, ValueError, OverflowError) as error:
        if isinstance(error, OtlpDecodeError):
            raise
        raise OtlpDecodeError(f"not an OTLP/JSON trace request: {error}") from None
    return spans, problems
