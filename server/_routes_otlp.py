"""``POST /v1/traces``: OTLP/HTTP trace export (protobuf or JSON), so OpenTelemetry-instrumented agents can
point ``OTEL_EXPORTER_OTLP_ENDPOINT`` at the collector. Same API key, size caps, gzip bound, zero data
retention and idempotency on (trace_id, span_id) as ``/api/ingest``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from ._crons import learn_from_spans
from ._ingest import IngestError, check_shape, inflate, without_bom
from ._model import NativeSpan, SpanRecord, to_record
from ._otlp_decode import OtlpDecodeError, OtlpSpan, OtlpTooLargeError, decode_json, decode_protobuf
from ._otlp_semconv import source_attribute, to_native_span
from ._routes_ingest import read_capped_body, run_refusable
from ._span_content import content_problem
from ._state import AppState, app_state
from ._zero_retention import strip_text

__all__ = ["router"]

router = APIRouter()

_PROTOBUF = "application/x-protobuf"
#: Protobuf as OTLP names it, and as some exporters send it (the IANA-registered name): both are one body.
_PROTOBUF_TYPES = (_PROTOBUF, "application/protobuf")


def _records(state: AppState, body: bytes | bytearray, encoding: str | None,
             protobuf: bool) -> tuple[list[SpanRecord], int, str]:
    settings = state.settings
    raw = inflate(body, encoding, settings.max_inflated_bytes)
    try:
        if protobuf:
            spans, undecodable = decode_protobuf(bytes(raw), settings.max_spans_per_request,
                                                 settings.max_json_values)
        else:
            # A UTF-8 byte order mark (Windows tools write one), which json.loads skips but the exact count of a
            # large body (ijson) refuses, as /api/ingest drops it.
            raw = without_bom(raw)
            check_shape(raw, settings.max_spans_per_request, settings.max_json_values)
            spans, undecodable = decode_json(bytes(raw), settings.max_spans_per_request)
    except OtlpDecodeError as error:
        raise IngestError(413 if isinstance(error, OtlpTooLargeError) else 400, str(error)) from None
    records: list[SpanRecord] = []
    rejected, first_error = undecodable.count, undecodable.first
    for span in spans:
        wrong_id = _id_problem(span)
        if wrong_id is not None:
            rejected += 1
            first_error = first_error or f"span {span.span_id or '?'}: {wrong_id}"
            continue
        try:
            record = to_record(NativeSpan.model_validate(to_native_span(span)))
        except (ValidationError, ValueError) as error:
            rejected += 1
            first_error = first_error or f"span {span.span_id or '?'}: {_reason(error, span)}"
            continue
        problem = content_problem(record)
        if problem is None:
            records.append(record)
        else:
            rejected += 1
            first_error = first_error or f"span {span.span_id or '?'}: {problem[0]}: {problem[1]}"
    return records, rejected, first_error


def _reason(error: ValueError, span: OtlpSpan) -> str:
    """What is wrong with a span, for the exporter's log: the attribute it sent (``gen_ai.usage.input_tokens``,
    else the field it became) and pydantic's message (its first line says only "1 validation error for
    NativeSpan")."""
    if isinstance(error, ValidationError):
        first = error.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(part) for part in first["loc"])
        field = source_attribute(span, field) or field
        return f"{field}: {first['msg']}" if field else first["msg"]
    return str(error).splitlines()[0]


def _id_problem(span: OtlpSpan) -> str | None:
    """OTLP's ids are 16 bytes (trace) and 8 bytes (span, parent): any other length is no span of a trace, whatever
    else it holds (a 3-byte trace id was stored as "010101")."""
    if len(span.trace_id) != 32 or span.trace_id == "0" * 32:
        return "trace_id must be 16 bytes, not all zero"
    if len(span.span_id) != 16 or span.span_id == "0" * 16:
        return "span_id must be 8 bytes, not all zero"
    if span.parent_span_id is not None and len(span.parent_span_id) != 16:
        return "parent_span_id must be 8 bytes or empty"
    return None


def _process(state: AppState, body: bytes | bytearray, encoding: str | None, protobuf: bool) -> tuple[int, str]:
    records, rejected, first_error = _records(state, body, encoding, protobuf)
    if state.settings.zero_data_retention:
        for record in records:
            strip_text(record)
    if records:
        result = state.store.ingest(records)
        if result.accepted:
            learn_from_spans(state.store, records)
            state.alerts.notify_ingest()
    return rejected, first_error


def _answer(protobuf: bool, rejected: int, message: str) -> Response:
    if protobuf:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        answer = ExportTraceServiceResponse()
        if rejected:
            answer.partial_success.rejected_spans = rejected
            answer.partial_success.error_message = message
        return Response(answer.SerializeToString(), media_type=_PROTOBUF)
    content: dict[str, Any] = {}
    if rejected:
        content["partialSuccess"] = {"rejectedSpans": str(rejected), "errorMessage": message}
    return JSONResponse(content)


def _refusal(error: IngestError) -> Response:
    # OTLP errors carry a google.rpc.Status; exporters log its message. JSON is what they all can print.
    return JSONResponse({"code": 3, "message": error.message}, status_code=error.status_code)


@router.post(
    "/v1/traces",
    tags=["ingest"],
    openapi_extra={"requestBody": {"required": True, "content": {
        _PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {"type": "object", "description": "OTLP/JSON ExportTraceServiceRequest"}}}}},
    responses={400: {"description": "malformed body"}, 413: {"description": "body too large"},
               415: {"description": "unsupported Content-Type or Content-Encoding"}},
)
async def otlp_traces(request: Request) -> Any:
    """Store an OTLP trace export. Spans from the GenAI semantic conventions, OpenInference, OpenLLMetry and
    Pydantic AI / Logfire become LLM, tool, agent and chain spans with model, tokens, cost and messages;
    a span without a cost is priced from its tokens. Spans that cannot be stored are counted in
    ``partial_success`` while the others are kept."""
    state = app_state(request)
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type not in (*_PROTOBUF_TYPES, "application/json"):
        return _refusal(IngestError(415, "send application/x-protobuf or application/json"))
    protobuf = content_type in _PROTOBUF_TYPES
    try:
        body = await read_capped_body(request, state.settings.max_body_bytes)
    except IngestError as error:
        return _refusal(error)
    outcome = await run_refusable(_process, state, body, request.headers.get("content-encoding"), protobuf)
    del body
    if isinstance(outcome, IngestError):
        return _refusal(outcome)
    return _answer(protobuf, *outcome)
