"""Monthly reports as JSON, CSV and signed PDF; the signed per-trace compliance report; signature check and the
public key to check against."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ._compliance import compliance_report
from ._pdf import render_compliance_pdf, render_monthly_pdf
from ._reports import monthly_csv, monthly_report
from ._routes_query import valid_trace_id
from ._signing import verify_report
from ._state import AppState, app_state

__all__ = ["router", "MAX_VERIFY_BYTES"]

router = APIRouter(tags=["reports"])

MAX_VERIFY_BYTES = 50 * 1024 * 1024
Month = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM (UTC); default this month")]


def _report(state: AppState, month: str | None) -> dict[str, Any]:
    try:
        return monthly_report(state.store, month)
    except ValueError as error:
        raise HTTPException(422, str(error)) from None


@router.get("/api/reports/monthly")
async def report_json(request: Request, month: Month = None) -> dict[str, Any]:
    return await run_in_threadpool(_report, app_state(request), month)


@router.get("/api/reports/monthly/csv", response_class=StreamingResponse)
async def report_csv(request: Request, month: Month = None) -> StreamingResponse:
    """Every trace that started in the month, one row each (spreadsheet formulas are neutralised)."""
    try:
        label, chunks = monthly_csv(app_state(request).store, month)
    except ValueError as error:
        raise HTTPException(422, str(error)) from None
    return StreamingResponse(chunks, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="agentwatch-traces-{label}.csv"'})


def _signed_pdf(state: AppState, month: str | None) -> tuple[str, bytes, bytes]:
    report = _report(state, month)
    signer = state.signer
    signed, signature = signer.sign(render_monthly_pdf(report, signer.fingerprint))
    return report["month"], signed, signature


def _pdf_response(state: AppState, signed: bytes, signature: bytes, filename: str) -> Response:
    return Response(signed, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-AgentWatch-Signature": base64.b64encode(signature).decode(),
        "X-AgentWatch-Signature-Algorithm": "RSA-PSS-SHA256",
        "X-AgentWatch-Key-Fingerprint": state.signer.fingerprint,
    })


@router.get("/api/reports/monthly/pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}})
async def report_pdf(request: Request, month: Month = None) -> Response:
    """The monthly report, signed (RSA-PSS SHA-256): the signature is embedded after the PDF's end and
    repeated in ``X-AgentWatch-Signature``; see ``POST /api/reports/verify``."""
    state = app_state(request)
    label, signed, signature = await run_in_threadpool(_signed_pdf, state, month)
    return _pdf_response(state, signed, signature, f"agentwatch-report-{label}.pdf")


def _signed_compliance_pdf(state: AppState, trace_id: str) -> tuple[bytes, bytes] | None:
    trace = state.store.get_trace(trace_id)
    if trace is None:
        return None
    spans = state.store.trace_spans(trace_id, 100_000)
    report = compliance_report(trace, spans, state.settings.data_retention_days)
    signer = state.signer
    return signer.sign(render_compliance_pdf(report, signer.fingerprint))


@router.get("/api/traces/{trace_id}/compliance-report", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}, 404: {"description": "trace not found"}})
async def compliance_report_pdf(request: Request, trace_id: str) -> Response:
    """One trace's EU AI Act Article 12 compliance report (score with evidence, agents, model calls, risk
    events) as a PDF signed like the monthly report; check it with ``POST /api/reports/verify``."""
    state = app_state(request)
    trace_id = valid_trace_id(trace_id)
    signed = await run_in_threadpool(_signed_compliance_pdf, state, trace_id)
    if signed is None:
        raise HTTPException(404, "trace not found")
    return _pdf_response(state, *signed, f"agentwatch-compliance-{trace_id[:64]}.pdf")


@router.post("/api/reports/verify", openapi_extra={"requestBody": {"required": True, "content": {
    "application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})
async def verify(request: Request) -> dict[str, Any]:
    """Check a signed report sent as the raw request body. ``valid``: unmodified since signing;
    ``trusted``: signed by this server's key. An ``X-AgentWatch-Signature`` header is checked too."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_VERIFY_BYTES:
            raise HTTPException(413, f"report larger than {MAX_VERIFY_BYTES} bytes")
    detached = None
    header = request.headers.get("x-agentwatch-signature")
    if header:
        try:
            detached = base64.b64decode(header, validate=True)
        except binascii.Error:
            raise HTTPException(422, "X-AgentWatch-Signature is not base64") from None
    state = app_state(request)
    result = await run_in_threadpool(verify_report, bytes(body), {state.signer.fingerprint}, detached)
    result["server_key_fingerprint"] = state.signer.fingerprint
    return result


@router.get("/api/reports/public-key", response_class=Response,
            responses={200: {"content": {"application/x-pem-file": {}}}})
async def public_key(request: Request) -> Response:
    """The PEM public key reports are signed with (its fingerprint is in every signed report)."""
    signer = app_state(request).signer
    return Response(signer.public_pem(), media_type="application/x-pem-file",
                    headers={"X-AgentWatch-Key-Fingerprint": signer.fingerprint})
