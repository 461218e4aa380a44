"""gzip bodies of several members (legal gzip: ``cat a.gz b.gz``), sent over HTTP to a running collector."""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentwatch.server import ServerHandle, Settings, start_background
from agentwatch.server._ingest import MAX_GZIP_MEMBERS
from tests.server.aw_helpers import SpanFactory, new_trace_id

GZIP = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
# Larger than the collector's inflate step (256 KiB), so a member ends in the middle of a later step.
PAST_ONE_STEP = 300 * 1024


def _two_members(document: bytes) -> bytes:
    """``document`` gzip'd as two members, the first inflating to more than one inflate step."""
    cut = document.index(b",")
    first = document[:cut] + b" " * PAST_ONE_STEP
    return gzip.compress(first) + gzip.compress(document[cut:])


def test_every_member_of_a_gzip_body_is_inflated(server: ServerHandle, make_span: SpanFactory) -> None:
    trace_id = new_trace_id()
    spans = [make_span(trace_id=trace_id), make_span(trace_id=trace_id)]
    otlp_trace = "5b8efff798038103d269b633813fc60d"
    otlp = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": otlp_trace, "spanId": f"{index:016x}", "name": "chat", "startTimeUnixNano": "1700000000000000000",
         "endTimeUnixNano": "1700000001000000000"} for index in (1, 2)]}]}]}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        answer = client.post("/api/ingest", content=_two_members(json.dumps(spans).encode()), headers=GZIP)
        assert answer.status_code == 202 and answer.json()["accepted"] == 2, answer.text
        answer = client.post("/v1/traces", content=_two_members(json.dumps(otlp).encode()), headers=GZIP)
        assert answer.status_code == 200, answer.text
        # The probe's body: two members of blanks, 668 bytes. Not JSON, and said so at once.
        blanks = gzip.compress(b" " * PAST_ONE_STEP) * 2
        for path in ("/api/ingest", "/v1/traces"):
            assert client.post(path, content=blanks, headers=GZIP).status_code == 400, path
        assert len(client.get(f"/api/traces/{trace_id}/spans").json()["spans"]) == 2
        assert len(client.get(f"/api/traces/{otlp_trace}/spans").json()["spans"]) == 2


@pytest.fixture
def small_inflate_cap(tmp_path: Path, signing_key: Path) -> Iterator[ServerHandle]:
    settings = Settings(db_path=tmp_path / "cap.db", signing_key_path=signing_key, max_inflated_bytes=512 * 1024,
                        alert_interval_seconds=3600, alert_min_interval_seconds=3600)
    handle = start_background(settings=settings)
    yield handle
    handle.stop()


def test_the_inflate_cap_counts_all_members_together(small_inflate_cap: ServerHandle, make_span: SpanFactory) -> None:
    member = gzip.compress(b" " * PAST_ONE_STEP)  # each under the 512 KiB cap, two of them over it
    with httpx.Client(base_url=small_inflate_cap.url, timeout=10) as client:
        for path in ("/api/ingest", "/v1/traces"):
            answer = client.post(path, content=b"".join([gzip.compress(b"[")] + [member] * 2), headers=GZIP)
            assert answer.status_code == 413, (path, answer.text)
        assert client.post("/api/ingest", json=[make_span()]).json()["accepted"] == 1


def test_many_members_cost_time_linear_in_the_body(server: ServerHandle) -> None:
    """Each member's end used to copy the rest of the body: 9,000 tiny members before a 9 MiB one took 8 s of
    CPU (tens of seconds under load), and 40 such bodies held every worker thread. Now about 50 ms."""
    incompressible = gzip.compress(os.urandom(9 * 1024 * 1024), compresslevel=1)
    body = gzip.compress(b" ") * 9_000 + incompressible
    with httpx.Client(base_url=server.url, timeout=120) as client:
        started = time.monotonic()
        answer = client.post("/api/ingest", content=body, headers=GZIP)
        elapsed = time.monotonic() - started
        assert answer.status_code == 400, answer.text  # inflated, then found not to be JSON
        assert elapsed < 3, f"{elapsed:.1f} s"


def test_the_number_of_members_is_bounded(server: ServerHandle, make_span: SpanFactory) -> None:
    trace_id = new_trace_id()
    document = json.dumps([make_span(trace_id=trace_id)]).encode()
    pieces = [document[:1], *([b" "] * (MAX_GZIP_MEMBERS - 2)), document[1:]]
    members = [gzip.compress(piece) for piece in pieces]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path in ("/api/ingest", "/v1/traces"):
            answer = client.post(path, content=b"".join(members + [gzip.compress(b" ")]), headers=GZIP)
            assert answer.status_code == 413 and "members" in answer.text, (path, answer.text)
        answer = client.post("/api/ingest", content=b"".join(members), headers=GZIP)
        assert answer.status_code == 202 and answer.json()["accepted"] == 1, answer.text
