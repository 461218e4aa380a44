"""Free-form span content (attributes, input, output) that cannot be stored or read back: values nested past the
cap. Such a span is rejected by itself, over HTTP to a running collector; its neighbours are stored and the trace
stays readable."""

from __future__ import annotations

import json
from typing import Any

import httpx

from agentwatch.server import ServerHandle
from agentwatch.server._span_content import MAX_NESTING
from tests.server.aw_helpers import SpanFactory, new_trace_id

JSON = {"Content-Type": "application/json"}
READS = ("", "/spans", "/graph", "/compliance-score", "/compliance-report")


def _lists(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def _otlp(trace_id: str, attributes: list[dict[str, Any]]) -> bytes:
    spans = [{"traceId": trace_id, "spanId": span_id, "name": "chat", "startTimeUnixNano": "1700000000000000000",
              "endTimeUnixNano": "1700000001000000000", "attributes": attributes if span_id.startswith("b") else []}
             for span_id in ("a" * 16, "b" * 16)]
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode()


def _stored_ids(client: httpx.Client, trace_id: str) -> set[str]:
    answer = client.get(f"/api/traces/{trace_id}/spans")
    assert answer.status_code == 200, answer.text
    return {span["span_id"] for span in answer.json()["spans"]}


def test_values_nested_past_the_cap_are_rejected_and_the_trace_stays_readable(server: ServerHandle,
                                                                              make_span: SpanFactory) -> None:
    trace_id = new_trace_id()
    earlier = make_span(trace_id=trace_id)
    # The attributes object is the first level, so its value may nest one level less.
    at_cap = make_span(trace_id=trace_id, attributes={"d": _lists(MAX_NESTING - 1)}, input=_lists(MAX_NESTING),
                       output={"o": _lists(MAX_NESTING - 1)})
    batch = [at_cap,
             make_span(trace_id=trace_id, attributes={"d": _lists(MAX_NESTING)}),
             make_span(trace_id=trace_id, input=_lists(MAX_NESTING + 60))]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/api/ingest", json=[earlier]).json()["accepted"] == 1
        answer = client.post("/api/ingest", content=json.dumps(batch).encode(), headers=JSON)
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert (body["accepted"], body["rejected"]) == (1, 2)
        assert {error["index"] for error in body["errors"]} == {1, 2}
        assert all(f"nested more than {MAX_NESTING} levels" in error["message"] for error in body["errors"])
        assert body["errors"][0]["field"].startswith("attributes.d.0")
        for read in READS:
            assert client.get(f"/api/traces/{trace_id}{read}").status_code == 200, read
        assert _stored_ids(client, trace_id) == {earlier["span_id"], at_cap["span_id"]}

        deep: dict[str, Any] = {"stringValue": "leaf"}
        for _ in range(MAX_NESTING):
            deep = {"arrayValue": {"values": [deep]}}
        otlp_trace = "5b8efff798038103d269b633813fc60f"
        answer = client.post("/v1/traces", content=_otlp(otlp_trace, [{"key": "d", "value": deep}]), headers=JSON)
        assert answer.status_code == 200, answer.text
        partial = answer.json()["partialSuccess"]
        assert partial["rejectedSpans"] == "1" and "levels deep" in partial["errorMessage"]
        for read in READS:
            assert client.get(f"/api/traces/{otlp_trace}{read}").status_code == 200, read
