"""Free-form span content (attributes, input, output) that cannot be stored or read back: a lone UTF-16 surrogate,
values nested past the cap. Such a span is rejected by itself, over HTTP to a running collector; its neighbours are
stored and the trace stays readable."""

from __future__ import annotations

import json
from typing import Any

import httpx

from agentwatch.server import ServerHandle
from agentwatch.server._span_content import MAX_NESTING
from tests.server.aw_helpers import SpanFactory, new_trace_id

JSON = {"Content-Type": "application/json"}
LONE = "x\udc00"  # json.dumps writes it as the escape "x\\udc00": valid JSON, not valid Unicode
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


def test_a_lone_surrogate_rejects_its_span_only(server: ServerHandle, make_span: SpanFactory) -> None:
    trace_id = new_trace_id()
    good = make_span(trace_id=trace_id, attributes={"emoji": "\U0001f600"})  # a valid pair, escaped by json.dumps
    batch = [good,
             make_span(trace_id=trace_id, attributes={"k": LONE}),
             make_span(trace_id=trace_id, attributes={"nested": {LONE: 1}}),
             make_span(trace_id=trace_id, input=[{"role": "user", "content": LONE}]),
             make_span(trace_id=trace_id, output=LONE)]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.post("/api/ingest", content=json.dumps(batch).encode(), headers=JSON)
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert (body["accepted"], body["rejected"]) == (1, 4)
        fields = {error["index"]: error["field"] for error in body["errors"]}
        assert fields == {1: "attributes.k", 2: "attributes.nested", 3: "input.0.content", 4: "output"}
        assert all("surrogate" in error["message"] for error in body["errors"])
        assert _stored_ids(client, trace_id) == {good["span_id"]}

        otlp_trace = "5b8efff798038103d269b633813fc60e"
        otlp = _otlp(otlp_trace, [{"key": "k", "value": {"stringValue": LONE}}])
        answer = client.post("/v1/traces", content=otlp, headers=JSON)
        assert answer.status_code == 200, answer.text
        partial = answer.json()["partialSuccess"]
        assert partial["rejectedSpans"] == "1" and "attributes.k" in partial["errorMessage"]
        assert _stored_ids(client, otlp_trace) == {"a" * 16}


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


def test_other_bodies_with_a_lone_surrogate_get_a_422_not_a_500(server: ServerHandle) -> None:
    alert = {"scope": "agent", "scope_id": "writer", "reason": "budget_per_hour", "threshold": 5, "current": 7.5,
             "blocked": True, "timestamp": 1_700_000_000.0}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        # Free-form alert details are stored as JSON, as span attributes are.
        answer = client.post("/api/alerts/sdk-alert", content=json.dumps({**alert, "details": {"k": LONE}}),
                             headers=JSON)
        assert answer.status_code == 422 and "details.k" in answer.text, answer.text
        # A typed field: pydantic refuses it, and the error that quotes it can still be sent.
        answer = client.post("/api/alerts/sdk-alert", content=json.dumps({**alert, "scope": LONE}), headers=JSON)
        assert answer.status_code == 422 and answer.json()["detail"][0]["input"] == LONE
        assert client.post("/api/alerts/sdk-alert", json=alert).status_code == 202
        assert len(client.get("/api/alerts/history").json()["history"]) == 1


def test_other_bodies_with_nan_or_infinity_get_a_422_not_a_500(server: ServerHandle) -> None:
    """Found 2026-12-06: Python's json.dumps writes NaN and Infinity, which Python's parser reads; any API body that
    failed validation with one in it (a NaN threshold, an SDK alert short of a field with an Infinity in it) answered
    500 (the connection dropped), as the 422 that quotes the input could not be written as JSON."""
    rule = {"name": "spend", "condition": "cost_per_hour", "threshold": float("nan"), "action_type": "webhook",
            "webhook_url": "http://127.0.0.1:9/hook"}
    alert = {"type": "transition", "scope": "agent", "scope_id": "writer", "current": float("inf")}
    cron = {"schedule": "0 * * * *", "grace_seconds": float("-inf")}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answers = [client.request(method, path, content=json.dumps(body), headers=JSON) for method, path, body in (
            ("POST", "/api/alerts", rule), ("POST", "/api/alerts/sdk-alert", alert), ("PUT", "/api/crons/n", cron))]
        assert [answer.status_code for answer in answers] == [422, 422, 422], [answer.text for answer in answers]
        # The input is quoted with the words that spelled it.
        quoted = [answer.json()["detail"][0]["input"] for answer in answers]
        assert quoted == ["NaN", {**alert, "current": "Infinity"}, "-Infinity"]
        assert client.post("/api/alerts", json={**rule, "threshold": 5}).status_code == 201


def test_a_span_too_deep_to_parse_is_rejected_by_itself(server: ServerHandle, make_span: SpanFactory) -> None:
    """A span nested 1,000 levels or more made the parser recurse too deep: the whole batch was refused (400
    "maximum recursion depth exceeded") with its valid neighbours. Now that span alone is rejected, as one nested
    201 levels is; a body that is one such span has no valid span (422)."""
    trace_id = new_trace_id()
    good = make_span(trace_id=trace_id)
    later = make_span(trace_id=trace_id, attributes={"text": "] } [ { \" , ]"})
    deep = {"x": "placeholder"}
    for depth in (1000, 100_000):
        batch = json.dumps([good, make_span(trace_id=trace_id, attributes=deep), later])
        body = batch.replace('"placeholder"', "[" * depth + "]" * depth).encode()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            answer = client.post("/api/ingest", content=body, headers=JSON)
            assert answer.status_code == 202, answer.text
            result = answer.json()
            assert (result["accepted"] + result["duplicates"], result["rejected"]) == (2, 1), result
            assert result["errors"] == [{"index": 1, "message": f"nested more than {MAX_NESTING} levels deep"}]
            assert _stored_ids(client, trace_id) == {good["span_id"], later["span_id"]}
            single = json.dumps(make_span(trace_id=trace_id, input=[])).replace("[]", "[" * depth + "]" * depth)
            answer = client.post("/api/ingest", content=single.encode(), headers=JSON)
            assert answer.status_code == 422, answer.text
            assert answer.json()["errors"][0]["message"] == f"nested more than {MAX_NESTING} levels deep"
        # Still a JSON body: a batch cut short inside its deep span is refused as a whole, as any invalid body.
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.post("/api/ingest", content=body[: len(body) // 2], headers=JSON).status_code == 400


def _nested_kvlists(levels: int) -> Any:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    value = AnyValue(string_value="leaf")
    for _ in range(levels):
        outer = AnyValue()
        item = outer.kvlist_value.values.add()
        item.key = "k"
        item.value.CopyFrom(value)
        value = outer
    return value


def test_an_otlp_protobuf_span_too_deep_to_decode_is_rejected_by_itself(server: ServerHandle) -> None:
    """protobuf refuses a message nested more than 100 levels, counted from the request: one span nesting 32
    kvlists (three levels down in the request) made the whole export a 400, its valid spans lost. Now a span
    that cannot be decoded is counted in partial_success and its neighbours are stored; one within protobuf's
    levels counted from the span itself (32 kvlists) is stored."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    trace_id = new_trace_id()
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    item = resource_spans.resource.attributes.add()
    item.key, item.value.string_value = "service.name", "deep-svc"
    scope_spans = resource_spans.scope_spans.add()
    names = {}
    for index, levels in enumerate((0, 32, 40, 400, 0)):
        span = scope_spans.spans.add()
        span.trace_id, span.span_id = bytes.fromhex(trace_id), bytes([index + 1]) * 8
        span.name = f"levels-{levels}"
        span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_001_000_000_000
        names[span.span_id.hex()] = levels
        if levels:
            attribute = span.attributes.add()
            attribute.key = "nested"
            attribute.value.CopyFrom(_nested_kvlists(levels))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.post("/v1/traces", content=request.SerializeToString(),
                             headers={"Content-Type": "application/x-protobuf"})
        assert answer.status_code == 200, answer.text
        partial = ExportTraceServiceResponse.FromString(answer.content).partial_success
        assert partial.rejected_spans == 2
        assert partial.error_message.startswith("span 2 of the request cannot be decoded: nested deeper")
        stored = _stored_ids(client, trace_id)
        assert {names[span_id] for span_id in stored} == {0, 32} and len(stored) == 3
        spans = client.get(f"/api/traces/{trace_id}/spans").json()["spans"]
        assert all(span["attributes"].get("service.name") == "deep-svc" for span in spans)
        # A body that is not protobuf is still refused as a whole.
        broken = client.post("/v1/traces", content=b"\x0a\x05ab", headers={"Content-Type": "application/x-protobuf"})
        assert broken.status_code == 400


def test_a_deeply_nested_invalid_body_gets_a_422_not_a_500(server: ServerHandle) -> None:
    """Found 2026-12-06 (review 3): quoting NaN in a 422 recursed two frames per level, so a control body nesting
    500 lists (which the parser reads) answered 500 where it had answered 422."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for depth in (500, 900):
            body = '{"x":' + "[" * depth + "]" * depth + "}"
            answer = client.post("/api/control", content=body, headers=JSON)
            assert answer.status_code == 422, (depth, answer.text[:200])
        nested_nan = '{"x":' + "[" * 500 + "NaN" + "]" * 500 + "}"
        answer = client.post("/api/control", content=nested_nan, headers=JSON)
        assert answer.status_code == 422, answer.text[:200]
