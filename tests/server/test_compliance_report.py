"""``GET /api/traces/{id}/compliance-report``: a per-trace PDF, signed and checked like the monthly report."""

from __future__ import annotations

import base64
import io
import re
import time

import pdfplumber
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi.testclient import TestClient

from tests.server.aw_helpers import SpanFactory, new_span_id, new_trace_id


def _verify_with_public_key(pem: bytes, pdf: bytes, signature: bytes) -> None:
    """Check as a third party would, with the published key and the documented scheme (no AgentWatch code):
    RSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt, over the bytes before the signature trailer."""
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, rsa.RSAPublicKey)
    match = re.search(rb"%AgentWatch-Signature: v1 alg=RSA-PSS-SHA256 salt=32 signed-bytes=(\d+) ", pdf)
    assert match is not None
    signed = pdf[:int(match.group(1))]
    assert pdf.startswith(b"%PDF-") and signed.rstrip().endswith(b"%%EOF")
    key.verify(signature, signed, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())


def test_compliance_report_is_a_signed_pdf_of_the_trace(client: TestClient, make_span: SpanFactory) -> None:
    trace_id, root = new_trace_id(), new_span_id()
    start = time.time_ns() - 60_000_000_000
    spans = [
        make_span(trace_id=trace_id, span_id=root, name="<b>quarterly</b> run", kind="agent", model=None,
                  start=start, duration_ms=9_000, agent_id="planner", agent_name="Planner", input_tokens=0,
                  output_tokens=0, cost_usd=0.0),
        make_span(trace_id=trace_id, parent_span_id=root, start=start + 1_000, model="gpt-4o", provider="openai",
                  agent_id="planner", agent_name="Planner", input_tokens=1200, output_tokens=300, cost_usd=0.006),
        make_span(trace_id=trace_id, parent_span_id=root, start=start + 2_000, model="claude-sonnet-4",
                  provider="anthropic", agent_id="writer", agent_name="Writer", status="error", cost_usd=0.0,
                  attributes={"error.type": "RateLimitError", "error.message": "429 slow down"}),
        make_span(trace_id=trace_id, parent_span_id=root, start=start + 3_000, kind="breaker",
                  name="breaker.triggered", model=None, agent_id="writer", agent_name="Writer", cost_usd=0.0,
                  attributes={"event": "triggered", "reason": "budget_per_hour", "eu_ai_act_art12_relevant": True}),
    ]
    assert client.post("/api/ingest", json=spans).status_code == 202
    score = client.get(f"/api/traces/{trace_id}/compliance-score").json()

    response = client.get(f"/api/traces/{trace_id}/compliance-report")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert trace_id in response.headers["content-disposition"]
    pdf = response.content

    public = client.get("/api/reports/public-key")
    assert public.headers["x-agentwatch-key-fingerprint"] == response.headers["x-agentwatch-key-fingerprint"]
    signature = base64.b64decode(response.headers["x-agentwatch-signature"])
    _verify_with_public_key(public.content, pdf, signature)
    checked = client.post("/api/reports/verify", content=pdf, headers={"Content-Type": "application/pdf"}).json()
    assert checked["valid"] and checked["trusted"]

    with pdfplumber.open(io.BytesIO(pdf)) as document:
        text = "\n".join(page.extract_text() or "" for page in document.pages)
    assert "AgentWatch compliance report" in text
    assert trace_id in text
    assert "<b>quarterly</b> run" in text  # untrusted names are printed, not interpreted
    assert f"Article 12 readiness: {score['score']} / 100" in text
    for item in score["items"]:
        assert f"{item['points']} / {item['max_points']}" in text
    assert "Planner" in text and "Writer" in text
    assert "gpt-4o" in text and "claude-sonnet-4" in text
    assert "1,200 / 300" in text and "$0.0060" in text
    assert "429 slow down" in text and "breaker.triggered" in text
    assert response.headers["x-agentwatch-key-fingerprint"] in text.replace("\n", "")

    tampered = pdf.replace(b"AgentWatch compliance report", b"AgentWatch compliance rep0rt", 1)
    assert tampered != pdf
    with pytest.raises(InvalidSignature):
        _verify_with_public_key(public.content, tampered, signature)
    assert not client.post("/api/reports/verify", content=tampered).json()["valid"]


def test_compliance_report_of_an_unknown_trace_is_404(client: TestClient) -> None:
    assert client.get(f"/api/traces/{new_trace_id()}/compliance-report").status_code == 404
    assert client.get("/api/traces/bad%20id/compliance-report").status_code == 400
