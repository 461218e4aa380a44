"""``POST /api/ingest``: one span, a list of spans, or either gzip'd; native or ATP format."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from agentwatch._exporters import ROWS_HEADER, ROWS_MEDIA_TYPE, ROWS_VERSION

from ._control import CONTROL_HEADER
from ._crons import learn_from_spans
from ._ingest import IngestError, check_shape, inflate, parse_rows, parse_spans, without_bom
from ._state import AppState, app_state
from ._zero_retention import strip_text

__all__ = ["router", "IngestAnswer", "read_capped_body", "run_refusable"]

router = APIRouter()
T = TypeVar("T")
_VERSION = "\0control"

_SPAN_BODY = {
    "oneOf": [
        {"$ref": "#/components/schemas/NativeSpan"},
        {"$ref": "#/components/schemas/AtpSpan"},
        {"type": "array", "items": {"oneOf": [{"$ref": "#/components/schemas/NativeSpan"},
                                              {"$ref": "#/components/schemas/AtpSpan"}]}},
    ]
}

#: What the SDK sends a collector that answered with ``ROWS_HEADER``: each span as a row (its fields in the order of
#: ``agentwatch._span.span_fields``, then its attributes' keys and their values), no key repeated per span.
_ROWS_BODY = {"type": "array", "items": {"type": "array", "minItems": 21, "maxItems": 21}}


class IngestAnswer(BaseModel):
    accepted: int
    duplicates: int
    rejected: int = 0
    errors: list[dict[str, Any]] = []


def _error(error: IngestError) -> JSONResponse:
    content: dict[str, Any] = {"detail": error.message}
    if error.details:
        content["errors"] = error.details
    return JSONResponse(content, status_code=error.status_code)


def _process(state: AppState, body: bytes | bytearray, encoding: str | None, rows: bool) -> dict[str, Any]:
    settings = state.settings
    raw = without_bom(inflate(body, encoding, settings.max_inflated_bytes))
    check_shape(raw, settings.max_spans_per_request, settings.max_json_values)
    batch = (parse_rows if rows else parse_spans)(raw, settings.max_spans_per_request)
    del raw  # the records hold what is kept; the document's bytes must not stay alive while they are stored
    if not batch.records and batch.rejected:
        raise IngestError(422, "no valid span in the request", batch.errors)
    if settings.zero_data_retention:
        for record in batch.records:
            strip_text(record)
    result = state.store.ingest(batch.records)
    if result.accepted:
        learn_from_spans(state.store, batch.records)
        state.alerts.notify_ingest()
    answer: dict[str, Any] = {"accepted": result.accepted, "duplicates": result.duplicates,
                              "rejected": batch.rejected}
    if batch.errors:
        answer["errors"] = batch.errors
    answer[_VERSION] = state.control.version()  # sent as a header: SDKs learn of operator actions here
    return answer


@router.post(
    "/api/ingest",
    response_model=IngestAnswer,
    status_code=202,
    tags=["ingest"],
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _SPAN_BODY},
                                                                 ROWS_MEDIA_TYPE: {"schema": _ROWS_BODY}}}},
    responses={400: {"description": "malformed body"}, 413: {"description": "body too large"},
               415: {"description": "unsupported Content-Encoding"}, 422: {"description": "no valid span"}},
)
async def ingest(request: Request) -> Any:
    """Store spans. Idempotent on (trace_id, span_id): a retried batch is answered with ``duplicates``.

    Spans that fail validation are reported in ``errors`` (by index) while the valid ones are stored;
    a body that is not JSON, too large, or has no valid span is refused as a whole. The answer is sent
    only after the batch is committed, as ``202 Accepted`` (what ATP clients count as accepted).
    """
    state = app_state(request)
    try:
        body = await read_capped_body(request, state.settings.max_body_bytes)
    except IngestError as error:
        return _error(error)
    if not body:
        return _error(IngestError(400, "empty body: send a span object or a list of spans"))
    rows = _media_type(request.headers.get("content-type")) == ROWS_MEDIA_TYPE
    answer = await run_refusable(_process, state, body, request.headers.get("content-encoding"), rows)
    del body
    if isinstance(answer, IngestError):
        return _error(answer)
    # ROWS_HEADER: SDKs send their next batches as rows, which cost them and this collector less than records.
    return JSONResponse(answer, status_code=202,
                        headers={CONTROL_HEADER: str(answer.pop(_VERSION)), ROWS_HEADER: ROWS_VERSION})


def _media_type(content_type: str | None) -> str:
    return content_type.split(";", 1)[0].strip().lower() if content_type else ""


def _refusable(func: Callable[..., T], *args: Any) -> T | IngestError:
    """``func(*args)``, or the IngestError it raised as a new one that holds nothing of the request."""
    try:
        return func(*args)
    except IngestError as error:
        refusal = IngestError(error.status_code, error.message, error.details)
        cause: BaseException | None = error
        for _ in range(8):  # the error and what it was raised from or during (a ValueError, a JSONDecodeError...)
            if cause is None:
                break
            traceback.clear_frames(cause.__traceback__)
            cause = cause.__context__
    return refusal


async def run_refusable(func: Callable[..., T], *args: Any) -> T | IngestError:
    """Run ``func(*args)`` in a worker thread; an :class:`IngestError` it raises is returned, not raised.

    Raised across the thread, a refusal kept the whole request alive: its traceback holds the frames that held
    the body and its inflated copy, and one of them (anyio's, awaiting the worker's future) holds the future
    that holds the exception. That cycle is freed only by a full garbage collection, which the collector's
    raised threshold (``_app``) makes rare: every refused gzip bomb kept its 24 MiB, every invalid 9 MB body
    17 MB. Here the error that leaves the thread is a fresh one with no traceback, and the frames of the one
    that was raised are cleared (their buffers freed) before it is dropped."""
    return await run_in_threadpool(_refusable, func, *args)


async def read_capped_body(request: Request, limit: int) -> bytearray:
    """The request body, refused with 413 as soon as it is declared or streamed past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise IngestError(413, f"body larger than {limit} bytes; send smaller batches")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                del body  # the refusal's traceback holds this frame until it is answered
                raise IngestError(413, f"body larger than {limit} bytes; send smaller batches")
    except ClientDisconnect:
        # Gone, or disconnected for stalling (_read_timeouts): the answer is never read, but ends the request.
        raise IngestError(400, "the client disconnected before its body arrived") from None
    return body
