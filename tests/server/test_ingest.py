"""POST /api/ingest: formats, idempotency, validation, size limits, zero data retention."""

from __future__ import annotations

import gzip
import json
import time
import zlib
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from agentwatch.server import ServerHandle, Settings, create_app
from tests.server.aw_helpers import SpanFactory, gzip_json, make_trace, new_span_id, new_trace_id

GZIP = {"Content-Encoding": "gzip", "Content-Type": "application/json"}


def spans_of(client: TestClient, trace_id: str) -> list[dict]:
    response = client.get(f"/api/traces/{trace_id}/spans")
    assert response.status_code == 200, response.text
    return response.json()["spans"]


def test_one_span_a_list_and_gzip_are_accepted(client: TestClient, make_span: SpanFactory) -> None:
    single = make_span()
    assert client.post("/api/ingest", json=single).json() == {"accepted": 1, "duplicates": 0, "rejected": 0}
    batch = make_trace(make_span, calls=4)
    assert client.post("/api/ingest", json=batch).json()["accepted"] == 5
    zipped = make_trace(make_span, calls=2)
    answer = client.post("/api/ingest", content=gzip_json(zipped), headers=GZIP)
    assert answer.status_code == 202 and answer.json()["accepted"] == 3
    assert client.get("/api/traces").json()["total"] == 3



ROWS = {"Content-Type": "application/vnd.agentwatch.rows+json"}


def _rows(spans: list[dict]) -> bytes:
    """Spans as the SDK's rows: the record's fields but ``attributes``, input, output, the attributes' keys, values."""
    fields = [key for key in spans[0] if key not in ("attributes", "input", "output")]
    return json.dumps([[*(span[key] for key in fields), span.get("input"), span.get("output"),
                        list(span["attributes"]), list(span["attributes"].values())] for span in spans]).encode()


def test_span_rows_are_stored_as_their_records_and_bad_rows_are_explained(client: TestClient,
                                                                          make_span: SpanFactory) -> None:
    """The rows an SDK sends once the collector's answer said it takes them (``X-AgentWatch-Rows``): stored as the
    same spans sent as records; a row with a bad value is reported by its index and its neighbours kept; a body that
    is no list of rows is refused as a whole with what a row is."""
    answer = client.post("/api/ingest", json=make_span())
    assert answer.status_code == 202 and answer.headers["x-agentwatch-rows"] == "1"
    batch = make_trace(make_span, calls=3)
    batch[1]["input"] = [{"role": "user", "content": "hello"}]
    assert [key for key in batch[0] if key != "input"][:17] == [
        "trace_id", "span_id", "parent_span_id", "name", "kind", "status", "start_time_unix_nano",
        "end_time_unix_nano", "agent_id", "agent_name", "agent_role", "model", "provider", "input_tokens",
        "output_tokens", "cached_input_tokens", "cost_usd"]
    answer = client.post("/api/ingest", content=_rows(batch), headers=ROWS)
    assert answer.status_code == 202 and answer.json() == {"accepted": 4, "duplicates": 0, "rejected": 0}
    stored = {span["span_id"]: span for span in spans_of(client, batch[0]["trace_id"])}
    assert stored[batch[1]["span_id"]]["input"] == [{"role": "user", "content": "hello"}]
    assert stored[batch[2]["span_id"]]["attributes"] == batch[2]["attributes"]
    good, bad = make_span(), make_span(input_tokens=-5)
    answer = client.post("/api/ingest", content=_rows([bad, good]), headers=ROWS)
    assert answer.status_code == 202 and answer.json()["accepted"] == 1 and answer.json()["rejected"] == 1
    assert answer.json()["errors"][0]["index"] == 0 and "input_tokens" in answer.json()["errors"][0]["field"]
    for body in (b'{"trace_id": "x"}', b"[[1, 2, 3]]", json.dumps([[*range(19), ["k"], []]]).encode()):
        answer = client.post("/api/ingest", content=body, headers=ROWS)
        assert answer.status_code == 400 and "row" in answer.json()["detail"], answer.text
    assert client.get("/api/traces").json()["total"] == 3

def test_a_retried_batch_is_not_counted_twice(client: TestClient, make_span: SpanFactory) -> None:
    batch = make_trace(make_span, calls=5)
    body = gzip_json(batch)
    assert client.post("/api/ingest", content=body, headers=GZIP).json()["accepted"] == 6
    again = client.post("/api/ingest", content=body, headers=GZIP).json()
    assert again == {"accepted": 0, "duplicates": 6, "rejected": 0}
    # A batch mixing known and new spans stores only the new ones.
    extra = make_span(trace_id=batch[0]["trace_id"], parent_span_id=batch[0]["span_id"])
    assert client.post("/api/ingest", json=[batch[1], extra, extra]).json() == {
        "accepted": 1, "duplicates": 2, "rejected": 0}
    trace = client.get(f"/api/traces/{batch[0]['trace_id']}").json()
    assert trace["span_count"] == 7
    assert trace["llm_calls"] == 6
    metrics = client.get("/api/metrics").json()
    assert metrics["spans"] == 7 and metrics["llm_calls"] == 6
    assert metrics["cost_usd"] == pytest.approx(0.006)


def test_a_resent_span_with_another_start_does_not_move_its_trace(client: TestClient,
                                                                   make_span: SpanFactory) -> None:
    """Found 2026-12-05: on ClickHouse a span sent again with an earlier start, in a request with a new span, was not
    stored (right) but moved its trace's counted start to the copy's hour: the trace counts by time range (/api/metrics,
    the traces list's total) counted it in the wrong hours."""
    hour = 3_600_000_000_000
    base = (time.time_ns() // hour - 10) * hour
    span = make_span(start=base + 5 * hour)
    assert client.post("/api/ingest", json=[span]).status_code == 202
    copy = {**span, "start_time_unix_nano": base + hour, "end_time_unix_nano": base + hour + 10**9}
    assert client.post("/api/ingest", json=[copy, make_span(start=base + 7 * hour)]).json() == {
        "accepted": 1, "duplicates": 1, "rejected": 0}
    for low, high, expected in ((base, base + 2 * hour, 0), (base + 4 * hour, base + 6 * hour, 1)):
        window = {"from": str(low), "to": str(high)}
        assert client.get("/api/metrics", params=window).json()["traces"] == expected, window
        assert client.get("/api/traces", params={**window, "limit": "1"}).json()["total"] == expected, window


def test_spans_round_trip_in_the_wire_format(client: TestClient, make_span: SpanFactory) -> None:
    span = make_span(input=[{"role": "user", "content": "hello"}], output="hi there", cached_input_tokens=40,
                     attributes={"error.type": "X", "nested": {"a": [1, 2]}}, status="error",
                     resource={"service.name": "svc"}, brand_new_field=7, kind="some_future_kind")
    client.post("/api/ingest", json=span)
    stored = spans_of(client, span["trace_id"])[0]
    for key in ("trace_id", "span_id", "parent_span_id", "name", "status", "start_time_unix_nano",
                "end_time_unix_nano", "agent_id", "agent_name", "agent_role", "model", "provider", "input_tokens",
                "output_tokens", "cached_input_tokens", "cost_usd", "input", "output"):
        assert stored[key] == span[key], key
    assert stored["kind"] == "some_future_kind"
    assert stored["attributes"]["nested"] == {"a": [1, 2]}
    assert stored["attributes"]["resource"] == {"service.name": "svc"}
    assert stored["attributes"]["brand_new_field"] == 7
    assert stored["duration_ms"] == pytest.approx(100.0)
    # Not captured means absent, not null.
    bare = make_span()
    client.post("/api/ingest", json=bare)
    assert "input" not in spans_of(client, bare["trace_id"])[0]


def test_atp_latency_cannot_overflow_the_end_time(client: TestClient) -> None:
    """Found by schemathesis: an ATP span without an end time and a huge latency made a 500."""
    base = {"trace_id": new_trace_id(), "name": "late", "kind": "CLIENT", "end_time_unix_nano": None,
            "model_inference": {"model_name": "gpt-4o", "latency_ms": 9.9e11}}
    # Start near the largest nanosecond timestamp: the derived end is clamped, not an overflow.
    near_max = {**base, "span_id": new_span_id(), "trace_id": new_trace_id(), "start_time_unix_nano": 2**63 - 10}
    answer = client.post("/api/ingest", json=near_max)
    assert answer.status_code == 202 and answer.json()["accepted"] == 1
    now = time.time_ns()
    slow = {**base, "span_id": new_span_id(), "start_time_unix_nano": now}
    assert client.post("/api/ingest", json=slow).json()["accepted"] == 1
    (stored,) = spans_of(client, base["trace_id"])
    assert stored["end_time_unix_nano"] == now + int(9.9e11 * 1e6)
    absurd = {**base, "span_id": new_span_id(), "start_time_unix_nano": now,
              "model_inference": {"model_name": "gpt-4o", "latency_ms": 1e300}}
    answer = client.post("/api/ingest", json=absurd)
    assert answer.status_code == 422 and "latency_ms" in answer.text
    assert len(spans_of(client, base["trace_id"])) == 1


def test_atp_spans_are_normalised(client: TestClient) -> None:
    now = time.time_ns()
    trace_id, parent, child = new_trace_id(), new_span_id(), new_span_id()
    atp = {
        "trace_id": trace_id, "span_id": child, "parent_span_id": parent, "name": "llm call", "kind": "CLIENT",
        "start_time_unix_nano": now, "end_time_unix_nano": now + 250_000_000,
        "status": {"code": "ERROR", "message": "rate limited"}, "agent_id": "a-1", "agent_name": "Analyst",
        "agent_role": "Researcher", "input": "What is X?", "output": "X is Y.",
        "model_inference": {"model_name": "gpt-4o", "provider": "openai", "prompt_tokens": 12,
                            "completion_tokens": 7, "latency_ms": 250},
        "cost_attribution": {"task_id": "task-9", "accumulated_cost_usd": 0.25},
        "compliance_flags": ["eu_ai_act_art12"], "tool_calls": [{"tool_name": "search", "tool_input": "q"}],
        "links": [{"trace_id": trace_id, "span_id": parent, "link_type": "DELEGATES_TO"}],
        "events": [{"time_unix_nano": now, "name": "agent.reasoning.step"}], "attributes": {"k": "v"},
    }
    root = {**atp, "span_id": parent, "parent_span_id": None, "name": "orchestrate", "kind": "INTERNAL",
            "status": {"code": "OK"}, "model_inference": None, "cost_attribution": None, "links": None}
    answer = client.post("/api/ingest", json=atp, headers={"X-AeneasSoft-API-Key": "ignored in local mode"})
    assert answer.json()["accepted"] == 1
    assert client.post("/api/ingest", json=root).json()["accepted"] == 1
    spans = {s["span_id"]: s for s in spans_of(client, trace_id)}
    call = spans[child]
    assert call["kind"] == "llm" and call["status"] == "error"
    assert (call["model"], call["provider"], call["input_tokens"], call["output_tokens"]) == ("gpt-4o", "openai", 12, 7)
    assert call["cost_usd"] == 0.25
    assert call["agent_role"] == "Researcher" and call["input"] == "What is X?"
    attributes = call["attributes"]
    assert attributes["error.message"] == "rate limited"
    assert attributes["task_id"] == "task-9" and attributes["atp.kind"] == "CLIENT"
    assert attributes["eu_ai_act_art12_relevant"] is True
    assert attributes["tool_calls"][0]["tool_name"] == "search"
    assert spans[parent]["kind"] == "span" and spans[parent]["status"] == "ok"
    trace = client.get(f"/api/traces/{trace_id}").json()
    assert trace["name"] == "orchestrate" and trace["status"] == "error"
    graph = client.get(f"/api/traces/{trace_id}/graph").json()
    assert any(edge["type"] == "delegates_to" for edge in graph["edges"])


def test_bad_spans_are_reported_and_good_neighbours_kept(client: TestClient, make_span: SpanFactory) -> None:
    good = make_span()
    bad_time = make_span(start_time_unix_nano="yesterday")
    no_id = make_span()
    del no_id["span_id"]
    bad_status = make_span(status="exploded")
    answer = client.post("/api/ingest", json=[bad_time, good, no_id, bad_status])
    assert answer.status_code == 202
    body = answer.json()
    assert body["accepted"] == 1 and body["rejected"] == 3
    assert {error["index"] for error in body["errors"]} == {0, 2, 3}
    assert any(error.get("field") == "span_id" for error in body["errors"])
    assert client.get("/api/traces").json()["total"] == 1


def test_a_kind_that_is_not_text_is_reported_and_good_neighbours_kept(client: TestClient,
                                                                     make_span: SpanFactory) -> None:
    """Found 2026-12-08 by the collector's fuzzing: a span whose ``kind`` was a list (or an object) made the ingest
    answer 500, as records and as rows (the check for OpenTelemetry's kinds looked the value up in a set). It is a bad
    span like any other: reported by its index, its neighbours stored."""
    for kind in (["llm"], {"name": "llm"}):
        good, bad = make_span(), make_span(kind=kind)
        for body, headers in ((json.dumps([bad, good]).encode(), {"Content-Type": "application/json"}),
                              (_rows([bad, make_span()]), ROWS)):
            answer = client.post("/api/ingest", content=body, headers=headers)
            assert answer.status_code == 202, answer.text
            assert (answer.json()["accepted"], answer.json()["rejected"]) == (1, 1)
            assert answer.json()["errors"][0]["index"] == 0
    assert client.get("/api/traces").json()["total"] == 4


def test_an_empty_parent_id_is_a_root(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-06: a root span sent with "parent_span_id": "" (a Go client's zero value, a client that writes
    no nulls) was rejected ("String should have at least 1 character"), in the SDK's format and in ATP: every
    trace of such a client lost its root. "" is a root now, as null is."""
    native = make_trace(make_span, calls=1)
    native[0]["parent_span_id"] = ""
    atp_trace = new_trace_id()
    atp = [{"trace_id": atp_trace, "span_id": span_id, "parent_span_id": parent, "name": name, "kind": "INTERNAL",
            "start_time_unix_nano": time.time_ns(), "status": {"code": "OK"}}
           for span_id, parent, name in (("a" * 16, "", "root"), ("b" * 16, "a" * 16, "child"))]
    answer = client.post("/api/ingest", json=native + atp)
    assert answer.status_code == 202 and answer.json()["accepted"] == 4, answer.text
    for trace_id, root in ((native[0]["trace_id"], native[0]["span_id"]), (atp_trace, "a" * 16)):
        parents = {span["span_id"]: span["parent_span_id"] for span in spans_of(client, trace_id)}
        assert parents[root] is None and set(parents.values()) == {None, root}, parents


@pytest.mark.parametrize(("body", "headers", "status"), [
    (b"", {}, 400),
    (b"not json at all", {}, 400),
    (b"[{\"trace_id\": ", {}, 400),
    (b"42", {}, 400),
    (b"[{\"x\": 1}]", {}, 422),
    (b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"}, 400),
    (gzip.compress(b"[]", mtime=0)[:-6], {"Content-Encoding": "gzip"}, 400),
    (b"[]", {"Content-Encoding": "br"}, 415),
])
def test_malformed_bodies_get_a_clear_4xx_and_lose_nothing(client: TestClient, make_span: SpanFactory,
                                                           body: bytes, headers: dict[str, str], status: int) -> None:
    kept = make_trace(make_span)
    client.post("/api/ingest", json=kept)
    answer = client.post("/api/ingest", content=body, headers={"Content-Type": "application/json", **headers})
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"]
    assert client.get("/api/metrics").json()["spans"] == 4


def test_deflate_and_unlabelled_gzip_are_understood(client: TestClient, make_span: SpanFactory) -> None:
    assert client.post("/api/ingest", content=zlib.compress(json.dumps([make_span()]).encode()),
                       headers={"Content-Encoding": "deflate"}).json()["accepted"] == 1
    assert client.post("/api/ingest", content=gzip_json([make_span()])).json()["accepted"] == 1


def test_a_utf8_byte_order_mark_before_the_json_is_ignored(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-06: a body starting with a UTF-8 byte order mark (PowerShell and .NET write one) was refused
    with 400 "body must be a JSON object (one span) or a JSON array of spans", though it is one; the other JSON
    routes (/v1/traces, alerts, control) took it. RFC 8259 lets a parser ignore the mark."""
    bom = b"\xef\xbb\xbf"
    answer = client.post("/api/ingest", content=bom + json.dumps([make_span()]).encode(),
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 202 and answer.json()["accepted"] == 1, answer.text
    assert client.post("/api/ingest", content=gzip.compress(bom + json.dumps(make_span()).encode()),
                       headers={"Content-Encoding": "gzip"}).json()["accepted"] == 1


def test_size_limits_and_gzip_bombs_answer_413(tmp_path: Path, signing_key: Path, make_span: SpanFactory) -> None:
    settings = Settings(db_path=tmp_path / "small.db", signing_key_path=signing_key, max_body_bytes=64 * 1024,
                        max_inflated_bytes=256 * 1024)
    with TestClient(create_app(settings=settings), base_url="http://localhost") as client:
        client.post("/api/ingest", json=make_span())
        too_big = json.dumps([make_span(name="x" * 1000) for _ in range(100)]).encode()
        assert len(too_big) > 64 * 1024
        answer = client.post("/api/ingest", content=too_big, headers={"Content-Type": "application/json"})
        assert answer.status_code == 413 and "smaller batches" in answer.json()["detail"]
        # 50 MB of zeros is 50 kB gzip'd: under the body limit, far over the inflate cap.
        bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]", compresslevel=9)
        assert len(bomb) < 64 * 1024
        answer = client.post("/api/ingest", content=bomb, headers=GZIP)
        assert answer.status_code == 413 and "inflates" in answer.json()["detail"]
        assert client.get("/api/metrics").json()["spans"] == 1


def test_zero_data_retention_strips_text_whatever_the_client_sends(tmp_path: Path, signing_key: Path,
                                                                   make_span: SpanFactory) -> None:
    settings = Settings(db_path=tmp_path / "zdr.db", signing_key_path=signing_key, zero_data_retention=True)
    span = make_span(input="my secret prompt", output="secret answer",
                     attributes={"gen_ai.prompt": "secret", "llm.input_messages": ["secret"], "keep": 1,
                                 "prompt_tokens": 5})
    with TestClient(create_app(settings=settings), base_url="http://localhost") as client:
        assert client.get("/health").json()["zero_data_retention"] is True
        client.post("/api/ingest", json=span)
        stored = client.get(f"/api/traces/{span['trace_id']}/spans").json()["spans"][0]
        assert "input" not in stored and "output" not in stored
        assert "gen_ai.prompt" not in stored["attributes"] and "llm.input_messages" not in stored["attributes"]
        assert stored["attributes"]["keep"] == 1 and stored["attributes"]["prompt_tokens"] == 5
        assert stored["attributes"]["agentwatch.text_stripped"] is True
        raw = (tmp_path / "zdr.db").read_bytes() + (tmp_path / "zdr.db-wal").read_bytes()
        assert b"secret" not in raw


def test_a_native_model_call_sent_without_a_cost_is_priced_from_its_tokens(server: ServerHandle,
                                                                          make_span: SpanFactory) -> None:
    """Found 2026-12-06 (server probe 13): a client writing the SDK's JSON by hand with tokens but no ``cost_usd``
    (a gpt-4o call of 1M tokens in and out) was stored as costing $0 in every figure, while the same call sent
    as ATP or OTLP is priced from its tokens. A cost the client sends (0 for a local model) is kept as sent."""
    trace_id = new_trace_id()
    spans = []
    for kind, model, cost in (("llm", "gpt-4o", None), ("embedding", "gpt-4o", None), ("llm", "gpt-4o", 0.0),
                              ("llm", "a-model-no-price-table-knows", None), ("tool", "gpt-4o", None)):
        span = make_span(trace_id=trace_id, kind=kind, model=model, input_tokens=1_000_000,
                         output_tokens=1_000_000, name=f"{kind} {model} {cost}")
        if cost is None:
            del span["cost_usd"]
        else:
            span["cost_usd"] = cost
        spans.append(span)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for body in (spans[:1], spans[1:]):  # alone (one list of one span), and among others
            assert client.post("/api/ingest", json=body).json()["accepted"] == len(body)
        stored = {span["name"]: span for span in client.get(f"/api/traces/{trace_id}/spans").json()["spans"]}
        trace = client.get(f"/api/traces/{trace_id}").json()
    priced = stored["llm gpt-4o None"]
    assert priced["cost_usd"] > 1.0 and priced["attributes"]["cost_source"] == "collector"
    assert stored["embedding gpt-4o None"]["cost_usd"] == priced["cost_usd"]
    assert stored["llm gpt-4o 0.0"]["cost_usd"] == 0.0 and "cost_source" not in stored["llm gpt-4o 0.0"]["attributes"]
    unknown = stored["llm a-model-no-price-table-knows None"]
    assert unknown["cost_usd"] > 0 and unknown["attributes"]["cost_estimated"] is True
    assert stored["tool gpt-4o None"]["cost_usd"] == 0.0
    assert trace["cost_usd"] == pytest.approx(2 * priced["cost_usd"] + unknown["cost_usd"])


def test_cost_is_bounded_like_token_counts(client: TestClient, make_span: SpanFactory) -> None:
    from agentwatch.server._model import MAX_COST_USD

    for cost in (MAX_COST_USD * 1.0001, 1e308, 2**63):
        span = make_span(cost_usd=cost)
        answer = client.post("/api/ingest", json=span)
        assert answer.status_code == 422, (cost, answer.text)
        assert "cost_usd" in answer.text
    atp = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "name": "x", "start_time_unix_nano": 1, "kind": "CLIENT",
           "cost_attribution": {"accumulated_cost_usd": 1e308}}
    assert client.post("/api/ingest", json=atp).status_code == 422
    assert client.post("/api/ingest", json=[make_span(cost_usd=MAX_COST_USD), make_span(cost_usd=MAX_COST_USD)]
                       ).json()["accepted"] == 2
    assert client.get("/api/metrics").json()["cost_usd"] == 2 * MAX_COST_USD


def test_every_read_route_answers_for_costs_stored_before_the_cap(tmp_path: Path, signing_key: Path) -> None:
    """Spans of 1e308 USD stored by a version without the cap: their sums overflow to inf."""
    from agentwatch.server import SQLiteStore
    from agentwatch.server._model import SpanRecord

    store = SQLiteStore(tmp_path / "legacy.db")
    start = time.time_ns() - 1_000_000_000
    store.ingest([SpanRecord("t1", f"s{i}", None, "x", "llm", "ok", start, start + 1000, "a", "A", None, "gpt-4o",
                             "openai", 1, 1, 0, 1e308) for i in range(2)])
    store.close()
    settings = Settings(db_path=tmp_path / "legacy.db", signing_key_path=signing_key)
    with TestClient(create_app(settings=settings), base_url="http://localhost") as client:
        for path in ("/api/traces", "/api/traces/t1", "/api/traces/t1/spans", "/api/traces/t1/graph",
                     "/api/traces/t1/compliance-score", "/api/metrics", "/api/cost/daily", "/api/cost/by-agent",
                     "/api/cost/by-model", "/api/reports/monthly", "/api/reports/monthly/csv",
                     "/api/reports/monthly/pdf"):
            assert client.get(path).status_code == 200, path
        pdf = client.get("/api/reports/monthly/pdf").content
        assert pdf.startswith(b"%PDF")


def test_values_and_spans_are_counted_exactly_before_parsing(tmp_path: Path, signing_key: Path,
                                                             make_span: SpanFactory) -> None:
    settings = Settings(db_path=tmp_path / "count.db", signing_key_path=signing_key, max_spans_per_request=10,
                        max_json_values=1_000)
    with TestClient(create_app(settings=settings), base_url="http://localhost") as client:
        # Commas and brackets inside text make the quick bound overshoot; the exact count lets it in.
        wordy = make_span(input="a, b, [c], {d}, " * 5_000)
        assert client.post("/api/ingest", json=wordy).json()["accepted"] == 1
        # One span with many keys is one span, not many.
        assert client.post("/api/ingest", json=make_span(attributes={f"k{i}": i for i in range(500)})
                           ).json()["accepted"] == 1
        too_many = client.post("/api/ingest", json=[make_span() for _ in range(11)])
        assert too_many.status_code == 413 and "10 spans" in too_many.json()["detail"]
        nested = client.post("/api/ingest", json=make_span(attributes={"x": [{}] * 2_000}))
        assert nested.status_code == 413 and "JSON values" in nested.json()["detail"]
        gzipped = client.post("/api/ingest", content=gzip_json(make_span(attributes={"x": [[]] * 2_000})),
                              headers=GZIP)
        assert gzipped.status_code == 413
        assert client.get("/api/metrics").json()["spans"] == 2


def test_spans_wrapped_in_an_object_are_told_what_to_send(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-06: {"spans": [...]} and an OTLP/JSON export posted here were told "trace_id: Field required",
    which named no way out; the answer now says what to send, and nothing is stored."""
    wrapped = client.post("/api/ingest", json={"spans": [make_span()]})
    assert wrapped.status_code == 422
    assert "send the list of spans itself as the body" in wrapped.json()["detail"]
    otlp = client.post("/api/ingest", json={"resourceSpans": []})
    assert otlp.status_code == 422 and "POST it to /v1/traces" in otlp.json()["detail"]
    bad_span = client.post("/api/ingest", json={"name": "no ids"})
    assert bad_span.status_code == 422 and bad_span.json()["detail"] == "no valid span in the request"
    assert client.get("/api/traces").json()["total"] == 0
