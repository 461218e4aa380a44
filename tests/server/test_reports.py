"""Monthly report (JSON, CSV, signed PDF), signature checks by API and CLI, the signing key."""

from __future__ import annotations

import base64
import csv
import io
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agentwatch.server import Settings, create_app
from agentwatch.server._cli import main as cli_main
from agentwatch.server._signing import ReportSigner, verify_report
from tests.server.aw_helpers import SpanFactory, make_trace

MONTH = datetime.now(UTC).strftime("%Y-%m")


@pytest.fixture
def reported(client: TestClient, make_span: SpanFactory) -> TestClient:
    start = time.time_ns() - 3_600_000_000_000
    client.post("/api/ingest", json=make_trace(make_span, calls=2, start=start, name="=HYPERLINK(\"http://x\")"))
    client.post("/api/ingest", json=make_trace(make_span, calls=1, start=start + 1, agent="writer",
                                               name="<b>bold</b> & co", cost_usd=0.5))
    client.post("/api/alerts/sdk-alert", json={"type": "transition", "event": "triggered", "from_state": "closed",
                                               "to_state": "open", "scope": "agent", "scope_id": "writer",
                                               "reason": "budget_per_hour", "timestamp_unix_nano": start})
    return client


def test_monthly_json(reported: TestClient) -> None:
    report = reported.get("/api/reports/monthly", params={"month": MONTH}).json()
    assert report["month"] == MONTH
    assert report["totals"]["traces"] == 2 and report["totals"]["llm_calls"] == 3
    assert report["totals"]["cost_usd"] == pytest.approx(0.502)
    assert report["top_traces"][0]["name"] == "<b>bold</b> & co"
    assert {a["agent_id"] for a in report["cost_by_agent"]} == {"researcher", "writer"}
    assert report["circuit_breaker"]["transitions"] == 1
    assert report["circuit_breaker"]["by_event"] == {"triggered": 1}
    assert len(report["daily_cost"]) in (28, 29, 30, 31)
    assert reported.get("/api/reports/monthly", params={"month": "1999-01"}).json()["totals"]["traces"] == 0
    assert reported.get("/api/reports/monthly", params={"month": "2024-13"}).status_code == 422
    assert reported.get("/api/reports/monthly", params={"month": "May"}).status_code == 422


def test_monthly_csv_neutralises_formulas(reported: TestClient) -> None:
    response = reported.get("/api/reports/monthly/csv", params={"month": MONTH})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert f"agentwatch-traces-{MONTH}.csv" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 2
    names = {row["name"] for row in rows}
    assert "'=HYPERLINK(\"http://x\")" in names and "<b>bold</b> & co" in names
    assert {row["agents"] for row in rows} == {"Researcher", "Writer"}
    assert sum(float(row["cost_usd"]) for row in rows) == pytest.approx(0.502)


def test_monthly_csv_neutralises_formulas_in_every_name_of_a_list(client: TestClient, make_span: SpanFactory) -> None:
    """A trace's agents and models are one cell, joined by ";": only the cell's start was neutralised, and a
    spreadsheet in a locale whose list separator is ";" (German, French Excel) opens "Writer;=HYPERLINK(...)" as two
    cells, the second a formula."""
    spans = make_trace(make_span, calls=1, agent="writer")
    spans.append(make_span(trace_id=spans[0]["trace_id"], parent_span_id=spans[0]["span_id"],
                           agent_id="intruder", agent_name='=HYPERLINK("http://x")', model="@SUM(A1)"))
    assert client.post("/api/ingest", json=spans).json()["accepted"] == 3
    (row,) = csv.DictReader(io.StringIO(client.get("/api/reports/monthly/csv", params={"month": MONTH}).text))
    assert sorted(row["agents"].split(";")) == ["'=HYPERLINK(\"http://x\")", "Writer"]
    assert sorted(row["models"].split(";")) == ["'@SUM(A1)", "gpt-4o-mini"]


def test_signed_pdf_verifies_and_detects_tampering(reported: TestClient, tmp_path: Path,
                                                   signing_key: Path) -> None:
    response = reported.get("/api/reports/monthly/pdf", params={"month": MONTH})
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    pdf = response.content
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    fingerprint = response.headers["x-agentwatch-key-fingerprint"]
    assert fingerprint == ReportSigner(signing_key).fingerprint

    checked = reported.post("/api/reports/verify", content=pdf,
                            headers={"Content-Type": "application/pdf",
                                     "X-AgentWatch-Signature": response.headers["x-agentwatch-signature"]}).json()
    assert checked["valid"] and checked["trusted"] and checked["key_fingerprint"] == fingerprint
    # Found 2026-12-06 (server probe 13): `curl --data-binary @report.pdf` sends a form's type, and the 415 told
    # its user to send application/json, which this route does not take as a report.
    refused = reported.post("/api/reports/verify", content=pdf,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert refused.status_code == 415 and "application/pdf" in refused.json()["detail"], refused.text
    assert "application/json" not in refused.json()["detail"]

    position = pdf.index(b"/Title")
    tampered = pdf[:position] + b"/Titlf" + pdf[position + 6:]
    assert not reported.post("/api/reports/verify", content=tampered).json()["valid"]
    appended = pdf + b"% more\n"
    assert not reported.post("/api/reports/verify", content=appended).json()["valid"]
    assert not reported.post("/api/reports/verify", content=b"%PDF-1.4 unsigned").json()["valid"]
    wrong_detached = base64.b64encode(b"\0" * 384).decode()
    assert not reported.post("/api/reports/verify", content=pdf,
                             headers={"X-AgentWatch-Signature": wrong_detached}).json()["valid"]

    # A report signed by another key is intact but not trusted.
    other = ReportSigner(tmp_path / "other.pem")
    forged, _ = other.sign(pdf[:pdf.rindex(b"\n%AgentWatch-Signature: ") + 1])
    result = reported.post("/api/reports/verify", content=forged).json()
    assert result["valid"] and not result["trusted"]

    # The PDF still opens in a PDF library, signature trailer and all.
    import pdfplumber

    with pdfplumber.open(io.BytesIO(pdf)) as document:
        text = "\n".join(page.extract_text() or "" for page in document.pages)
    assert f"AgentWatch monthly report — {MONTH}" in text
    assert "<b>bold</b> & co" in text  # untrusted text printed literally, not as markup

    # The CLI checks the same file, against the public key it is given or the key beside the database.
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    public = tmp_path / "public.pem"
    public.write_bytes(reported.get("/api/reports/public-key").content)
    assert cli_main(["verify", str(path), "--public-key", str(public)]) == 0
    assert cli_main(["verify", str(path)]) == 0  # intact; nothing to compare the signer with
    assert cli_main(["verify", str(path), "--public-key", str(tmp_path / "other.pem")]) == 3
    (tmp_path / "tampered.pdf").write_bytes(tampered)
    assert cli_main(["verify", str(tmp_path / "tampered.pdf"), "--public-key", str(public)]) == 1


def test_a_password_protected_key_is_refused_not_a_server_error(settings: Settings, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A trailer that embeds a password-protected private key made the verify route answer 500 (cryptography raises
    TypeError, not ValueError, for a key that needs a password), and the CLI end in a traceback, for such a trailer
    and for such a key file given as ``--public-key``."""
    from cryptography.hazmat.primitives import serialization

    signer = ReportSigner(tmp_path / "signer.pem")
    signed, _ = signer.sign(b"%PDF-1.4\nhello\n")
    private = serialization.load_pem_private_key((tmp_path / "signer.pem").read_bytes(), password=None)
    locked = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.BestAvailableEncryption(b"secret"))
    embedded = signed.rsplit(b"%AgentWatch-Public-Key: ", 1)[0] + b"%AgentWatch-Public-Key: " + \
        base64.b64encode(locked) + b"\n%%EOF\n"
    with TestClient(create_app(settings=settings), base_url="http://localhost") as client:
        answer = client.post("/api/reports/verify", content=embedded, headers={"Content-Type": "application/pdf"})
    assert answer.status_code == 200 and not answer.json()["valid"], answer.text
    assert "encrypted" in answer.json()["reason"]
    (tmp_path / "report.pdf").write_bytes(embedded)
    (tmp_path / "locked.pem").write_bytes(locked)
    assert cli_main(["verify", str(tmp_path / "report.pdf")]) == 1
    assert cli_main(["verify", str(tmp_path / "report.pdf"), "--public-key", str(tmp_path / "locked.pem")]) == 2
    assert "encrypted" in capsys.readouterr().err


def test_signing_key_is_generated_beside_the_database(tmp_path: Path, make_span: SpanFactory) -> None:
    settings = Settings(db_path=tmp_path / "data" / "aw.db")
    with TestClient(create_app(settings=settings), base_url="http://localhost") as client:
        key = tmp_path / "data" / "aw.signing-key.pem"
        assert key.exists()  # made on first start, not on first report
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        pdf = client.get("/api/reports/monthly/pdf").content
    assert verify_report(pdf, {ReportSigner(key).fingerprint})["trusted"]
    # A restart keeps the key.
    with TestClient(create_app(settings=settings), base_url="http://localhost") as client:
        assert client.get("/api/reports/public-key").headers["x-agentwatch-key-fingerprint"] == \
            ReportSigner(key).fingerprint
    (tmp_path / "r.pdf").write_bytes(pdf)
    assert cli_main(["verify", str(tmp_path / "r.pdf"), "--db", str(tmp_path / "data" / "aw.db")]) == 0


def test_monthly_csv_neutralises_formulas_after_a_semicolon_inside_one_name(client: TestClient,
                                                                           make_span: SpanFactory) -> None:
    """Found 2026-12-06 (review 3): only the names of a list cell were neutralised, so a ";" inside one name (agent
    'Writer;=HYPERLINK(...)', model 'gpt-4o;@SUM(A1)', trace 'job;=1+2') still opened as a live formula in a
    spreadsheet whose separator is ";"."""
    spans = make_trace(make_span, calls=1, name="job;=1+2")
    spans.append(make_span(trace_id=spans[0]["trace_id"], parent_span_id=spans[0]["span_id"], agent_id="w",
                           agent_name='Writer;=HYPERLINK("http://evil")', model="gpt-4o;@SUM(A1)"))
    assert client.post("/api/ingest", json=spans).json()["accepted"] == 3
    (row,) = csv.DictReader(io.StringIO(client.get("/api/reports/monthly/csv", params={"month": MONTH}).text))
    pieces = [piece for column in ("name", "agents", "models") for piece in row[column].split(";")]
    assert "'=1+2" in pieces and "'=HYPERLINK(\"http://evil\")" in pieces and "'@SUM(A1)" in pieces
    assert not [piece for piece in pieces if piece.startswith(("=", "+", "-", "@"))], pieces
