"""OTLP/HTTP in: real OpenTelemetry instrumentors, each in a fresh interpreter, export to a running collector's
``/v1/traces``; the collector's API then shows the right tree, kinds, model, tokens, cost and messages.

Expected costs are written from published gpt-4o rates ($2.50 input, $1.25 cached input, $10 output per
million tokens), not computed by the code under test.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agentwatch.server import ServerHandle, Settings, start_background

ROOT = Path(__file__).resolve().parents[2]
_PROTOBUF = "application/x-protobuf"

_PROGRAM = '''
import os, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from tests.stubs.provider_server import StubProvider, Reply

COLLECTOR = sys.argv[1]
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=COLLECTOR + "/v1/traces")))
trace.set_tracer_provider(provider)
with StubProvider() as stub:
    stub.queue(Reply(content="the answer", input_tokens=100, output_tokens=20, cached_tokens=40))
{body}
provider.force_flush()
'''

_OPENAI_CALL = '''
    import openai
    openai.OpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}])
'''

PROGRAMS = {
    "opentelemetry-instrumentation-openai-v2": '''
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    OpenAIInstrumentor().instrument()
''' + _OPENAI_CALL,
    "openinference-instrumentation-openai": '''
    from openinference.instrumentation.openai import OpenAIInstrumentor
    OpenAIInstrumentor().instrument()
''' + _OPENAI_CALL,
    "openinference-instrumentation-langchain": '''
    from openinference.instrumentation.langchain import LangChainInstrumentor
    LangChainInstrumentor().instrument()
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI
    chain = ChatPromptTemplate.from_messages([("system", "be brief"), ("user", "{question}")]) | ChatOpenAI(
        model="gpt-4o", base_url=stub.openai_base_url, api_key="k", max_retries=0)
    chain.invoke({"question": "hello there"})
''',
}


@pytest.fixture
def collector(settings: Settings) -> Any:
    handle = start_background("127.0.0.1", 0, settings=settings)
    yield handle
    handle.stop()


def _get(handle: ServerHandle, path: str) -> Any:
    with urllib.request.urlopen(f"{handle.url}{path}", timeout=10) as response:
        return json.loads(response.read())


def _spans(handle: ServerHandle) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = []
    for trace in _get(handle, "/api/traces")["traces"]:
        spans.extend(_get(handle, f"/api/traces/{trace['trace_id']}/spans")["spans"])
    return spans


def _run(program: str, handle: ServerHandle) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY",
           "TRACELOOP_METRICS_ENABLED": "false", "TRACELOOP_TELEMETRY": "false", "OTEL_SDK_DISABLED": "false"}
    env = {key: value for key, value in env.items() if not key.startswith("AGENTWATCH_")}
    result = subprocess.run([sys.executable, "-c", _PROGRAM.format(body=program), handle.url], env=env,
                            capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert result.returncode == 0, result.stderr[-3000:]


def _text(value: Any) -> str:
    return json.dumps(value)


@pytest.mark.parametrize("instrumentor", sorted(PROGRAMS))
def test_real_instrumentors_show_kinds_tokens_cost_and_messages(instrumentor: str, collector: ServerHandle) -> None:
    _run(PROGRAMS[instrumentor], collector)
    spans = _spans(collector)
    llms = [span for span in spans if span["kind"] == "llm"]
    assert len(llms) == 1, [(span["name"], span["kind"]) for span in spans]
    llm = llms[0]
    assert (llm["model"], llm["provider"], llm["input_tokens"], llm["output_tokens"]) == ("gpt-4o", "openai", 100, 20)
    if llm["cached_input_tokens"]:  # the instrumentors that report cache reads
        assert llm["cached_input_tokens"] == 40
        assert llm["cost_usd"] == pytest.approx((60 * 2.50 + 40 * 1.25 + 20 * 10.0) / 1e6)
    else:
        assert llm["cost_usd"] == pytest.approx((100 * 2.50 + 20 * 10.0) / 1e6)
    assert "hello there" in _text(llm["input"]) and "the answer" in _text(llm["output"])
    by_id = {span["span_id"]: span for span in spans}
    if instrumentor == "openinference-instrumentation-langchain":
        parent = by_id[llm["parent_span_id"]]
        assert parent["kind"] == "chain" and parent["parent_span_id"] is None
    metrics = _get(collector, "/api/metrics")
    assert metrics["cost_usd"] == pytest.approx(llm["cost_usd"], abs=1e-6)


def test_an_agent_span_of_the_genai_conventions_is_charged_its_calls(collector: ServerHandle) -> None:
    """Found 2026-12-05: an ``invoke_agent`` span (gen_ai.agent.name) over two instrumented chat calls: the trace
    listed the agent and cost $0.007, the costs by agent showed it at $0 in 0 calls. Each span is exported by
    itself here, the calls before their agent's span (they end first)."""
    _run(PROGRAMS["opentelemetry-instrumentation-openai-v2"].split("import openai")[0] + '''
    import openai
    client = openai.OpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0)
    with trace.get_tracer("app").start_as_current_span("invoke_agent Planner", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Planner", "gen_ai.system": "openai"}):
        stub.queue(Reply(input_tokens=1000, output_tokens=100))  # after the program's own reply (100 in, 20 out)
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "plan"}])
''', collector)
    agents = {a["agent_name"]: a for a in _get(collector, "/api/cost/by-agent")["agents"]}
    # gpt-4o: $2.50 in, $10 out per million tokens.
    expected = (100 * 2.50 + 20 * 10.0 + 1000 * 2.50 + 100 * 10.0) / 1e6
    assert (agents["Planner"]["cost_usd"], agents["Planner"]["llm_calls"]) == (pytest.approx(expected), 2)
    # Keyed by the id the SDK would give an agent of that name (one row with AgentWatch's own spans of it).
    assert agents["Planner"]["agent_id"] == "planner"
    assert _get(collector, "/api/traces?agent_id=planner")["traces"][0]["cost_usd"] == pytest.approx(expected)


def _kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _otlp_json(spans: list[dict[str, Any]]) -> bytes:
    return json.dumps({"resourceSpans": [{"resource": {"attributes": [_kv("service.name", "svc")]},
                                          "scopeSpans": [{"scope": {"name": "hand"}, "spans": spans}]}]}).encode()


def _span(span_id: str, name: str, attributes: dict[str, Any], parent: str | None = None,
          **extra: Any) -> dict[str, Any]:
    span = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": span_id, "name": name, "kind": 3,
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
            "attributes": [_kv(key, value) for key, value in attributes.items()], **extra}
    if parent:
        span["parentSpanId"] = parent
    return span


def _post(handle: ServerHandle, body: bytes, content_type: str = "application/json",
          headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"{handle.url}/v1/traces", data=body, method="POST",
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_older_conventions_events_and_partial_success_over_json(collector: ServerHandle) -> None:
    body = _otlp_json([
        _span("eee1eee1eee1eee1", "agent run", {"agent_name": "planner", "gen_ai.operation.name": "invoke_agent"}),
        _span("aaa1aaa1aaa1aaa1", "chat gpt-4o-mini", {
            "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.prompt_tokens": 1000,
            "gen_ai.usage.completion_tokens": 100, "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "old-style prompt", "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "old-style answer"}, parent="eee1eee1eee1eee1"),
        _span("bbb1bbb1bbb1bbb1", "chat gpt-4o", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                                                   "gen_ai.usage.input_tokens": 10, "agentwatch.cost_usd": 0},
              parent="eee1eee1eee1eee1",
              events=[{"name": "gen_ai.content.prompt", "attributes": [_kv("gen_ai.prompt", "event prompt")]}]),
        _span("not-hex-and-far-too-long-for-an-id" * 5, "broken", {}),
    ])
    status, answer = _post(collector, gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert status == 200
    assert json.loads(answer)["partialSuccess"]["rejectedSpans"] == "1"
    spans = {span["span_id"]: span for span in _spans(collector)}
    assert set(spans) == {"eee1eee1eee1eee1", "aaa1aaa1aaa1aaa1", "bbb1bbb1bbb1bbb1"}
    agent, old, evented = spans["eee1eee1eee1eee1"], spans["aaa1aaa1aaa1aaa1"], spans["bbb1bbb1bbb1bbb1"]
    assert (agent["kind"], agent["agent_name"]) == ("agent", "planner")
    assert (old["kind"], old["provider"], old["input_tokens"], old["output_tokens"]) == ("llm", "openai", 1000, 100)
    assert old["cost_usd"] == pytest.approx((1000 * 0.15 + 100 * 0.60) / 1e6)  # gpt-4o-mini published rates
    assert old["input"] == [{"role": "user", "content": "old-style prompt"}]
    assert old["output"] == [{"role": "assistant", "content": "old-style answer"}]
    assert not any(key.startswith("gen_ai.prompt") for key in old["attributes"])
    assert evented["cost_usd"] == 0 and evented["input"] == ["event prompt"]
    # The same request again: idempotent on (trace_id, span_id).
    assert _post(collector, body)[0] == 200
    assert len(_spans(collector)) == 3


def test_anthropic_cache_writes_are_priced_at_the_write_rate(collector: ServerHandle) -> None:
    """Found 2027-01 (probe p7): the cache writes were priced as plain input ($0.026100, the SDK's pricer $0.029850)."""
    _post(collector, _otlp_json([_span("c0c0c0c0c0c0c0c0", "chat claude", {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-3-5-sonnet-20241022", "gen_ai.usage.input_tokens": 10_000,
        "gen_ai.usage.output_tokens": 100, "gen_ai.usage.cache_read.input_tokens": 2_000,
        "gen_ai.usage.cache_creation.input_tokens": 5_000})]))
    (call,) = _spans(collector)
    # $3 in, $0.30 cache read, $3.75 cache write, $15 out per million tokens.
    assert call["cost_usd"] == pytest.approx((3_000 * 3 + 2_000 * 0.30 + 5_000 * 3.75 + 100 * 15) / 1e6)


def test_openinference_models_of_embeddings_and_of_failed_calls(collector: ServerHandle) -> None:
    """Found 2027-01 (probe p16, p6): an OpenInference embedding names its model under ``embedding.model_name`` and a
    failed call only in ``llm.invocation_parameters``: both were stored without a model, the embedding priced at the
    default rate (50 times text-embedding-3-small's) and missing from the costs by model."""
    _post(collector, _otlp_json([
        _span("e1e1e1e1e1e1e1e1", "CreateEmbeddings", {
            "openinference.span.kind": "EMBEDDING", "embedding.model_name": "text-embedding-3-small",
            "llm.provider": "openai", "llm.token_count.prompt": 50}),
        _span("f1f1f1f1f1f1f1f1", "ChatCompletion", {
            "openinference.span.kind": "LLM", "llm.provider": "openai",
            "llm.invocation_parameters": json.dumps({"model": "gpt-4o", "temperature": 0})}, status={"code": 2})]))
    spans = {span["span_id"]: span for span in _spans(collector)}
    embedding, failed = spans["e1e1e1e1e1e1e1e1"], spans["f1f1f1f1f1f1f1f1"]
    assert embedding["model"] == "text-embedding-3-small"
    assert embedding["cost_usd"] == pytest.approx(50 * 0.02 / 1e6)
    assert "cost_estimated" not in embedding["attributes"]
    assert (failed["model"], failed["status"]) == ("gpt-4o", "error")
    models = {row["model"] for row in _get(collector, "/api/cost/by-model")["models"]}
    assert models == {"text-embedding-3-small", "gpt-4o"}


def test_agentwatch_own_otlp_export_keeps_the_agent_id_and_the_model_asked_for(collector: ServerHandle) -> None:
    """Found 2027-01 (probe p5): the same program exported with ``otlp`` instead of ``http`` stored agent ``Planner``
    instead of ``planner`` and model gpt-4o-2024-08-06 instead of gpt-4o (one gpt-4o row became two by model)."""
    _post(collector, _otlp_json([_span("a4a4a4a4a4a4a4a4", "openai.chat", {
        "agentwatch.kind": "llm", "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.agent.name": "Planner", "gen_ai.agent.id": "planner", "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 100, "agentwatch.cost_usd": 0.0035})]))
    (call,) = _spans(collector)
    assert (call["model"], call["agent_id"], call["agent_name"]) == ("gpt-4o", "planner", "Planner")
    agents = _get(collector, "/api/cost/by-agent")["agents"]
    assert [(row["agent_id"], row["agent_name"]) for row in agents] == [("planner", "Planner")]


def test_spans_with_ids_of_the_wrong_length_are_rejected_by_themselves(collector: ServerHandle) -> None:
    """Found 2026-12-05: an OTLP/protobuf span with a 3-byte trace id was stored (as "010101", start time 0)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for trace_id, span_id, parent, name in ((b"\x01" * 3, b"\x02" * 8, b"", "short trace id"),
                                            (b"\x00" * 16, b"\x02" * 8, b"", "zero trace id"),
                                            (b"\x03" * 16, b"\x04" * 4, b"", "short span id"),
                                            (b"\x03" * 16, b"\x05" * 8, b"\x06" * 5, "short parent id"),
                                            (b"\x07" * 16, b"\x08" * 8, b"", "good")):
        span = spans.add(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name,
                         start_time_unix_nano=1_700_000_000_000_000_000, end_time_unix_nano=1_700_000_001_000_000_000)
        assert span.name == name
    status, answer = _post(collector, request.SerializeToString(), content_type="application/x-protobuf")
    assert status == 200
    assert ExportTraceServiceResponse.FromString(answer).partial_success.rejected_spans == 4
    assert {span["name"] for span in _spans(collector) if span["trace_id"] in ("07" * 16, "010101")} == {"good"}


def test_protobuf_under_its_registered_name_is_taken(collector: ServerHandle) -> None:
    """Found 2026-12-06: a body sent as application/protobuf (the IANA-registered name, which some exporters send) got
    415; OTLP's own application/x-protobuf was the only protobuf taken."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\x0a" * 16, span_id=b"\x0b" * 8, name="sent as application/protobuf",
        start_time_unix_nano=1_700_000_000_000_000_000, end_time_unix_nano=1_700_000_001_000_000_000)
    assert span.name
    status, _ = _post(collector, request.SerializeToString(), content_type="application/protobuf")
    assert status == 200
    assert [span["name"] for span in _spans(collector) if span["trace_id"] == "0a" * 16] == \
        ["sent as application/protobuf"]


def test_a_malformed_json_span_is_rejected_by_itself(collector: ServerHandle) -> None:
    """Found 2026-12-06: over OTLP/JSON one malformed span refused the whole request (400: its good spans lost),
    an event named null or 5 answered 500, and the protobuf JSON mapping's enum names ("SPAN_KIND_CLIENT",
    "STATUS_CODE_ERROR"), which protobuf's own parser accepts, refused the request. Over protobuf a span that cannot
    be decoded was already rejected by itself."""
    good = {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10}
    spans: list[Any] = [
        _span("c0c0c0c0c0c0c0c0", "good before", good),
        _span("c1c1c1c1c1c1c1c1", "bad time", good, startTimeUnixNano="yesterday"),
        {**_span("c2c2c2c2c2c2c2c2", "bad int", {}), "attributes": [{"key": "n", "value": {"intValue": "x"}}]},
        {**_span("c3c3c3c3c3c3c3c3", "bad array", {}), "attributes": [{"key": "a", "value": {"arrayValue": [1]}}]},
        "not a span",
        _span("c4c4c4c4c4c4c4c4", "unnamed events", good, events=[{"name": None}, {"name": 5}]),
        _span("c5c5c5c5c5c5c5c5", "named enums", good, kind="SPAN_KIND_SERVER",
              status={"code": "STATUS_CODE_ERROR", "message": "boom"}),
        _span("c6c6c6c6c6c6c6c6", "good after", good),
    ]
    status, answer = _post(collector, _otlp_json(spans))
    assert status == 200, answer
    partial = json.loads(answer)["partialSuccess"]
    assert partial["rejectedSpans"] == "4"
    assert partial["errorMessage"].startswith("span 1 of the request is not an OTLP/JSON span")
    # A span that decodes but is not valid is named with the attribute the exporter sent, not as "1 validation
    # error for NativeSpan" (nor as the collector's own field, input_tokens: found 2026-12-06, review 3).
    too_many = _span("c7c7c7c7c7c7c7c7", "too many tokens", {**good, "gen_ai.usage.input_tokens": 2**41})
    partial = json.loads(_post(collector, _otlp_json([too_many]))[1])["partialSuccess"]
    assert partial["errorMessage"] == ("span c7c7c7c7c7c7c7c7: gen_ai.usage.input_tokens: Input should be less than "
                                       f"or equal to {2**40}"), partial
    stored = {span["span_id"]: span for span in _spans(collector)}
    assert set(stored) == {"c0c0c0c0c0c0c0c0", "c4c4c4c4c4c4c4c4", "c5c5c5c5c5c5c5c5", "c6c6c6c6c6c6c6c6"}
    assert [event["name"] for event in stored["c4c4c4c4c4c4c4c4"]["attributes"]["otel.events"]] == ["", "5"]
    named = stored["c5c5c5c5c5c5c5c5"]
    assert (named["status"], named["attributes"]["error.message"], named["input_tokens"]) == ("error", "boom", 10)


def test_refusals(collector: ServerHandle) -> None:
    assert _post(collector, b"{}", content_type="text/plain")[0] == 415
    assert _post(collector, b"not json")[0] == 400
    # Found 2026-12-06 (review 3): "spans": "hello" answered 200 with 5 spans rejected (one per character), a dict
    # was read one span per key, and a 20,000-character string answered 413 (too many spans).
    frame = {"resourceSpans": [{"scopeSpans": [{"spans": []}]}]}
    for not_a_list in ("hello", {"a": 1, "b": 2}, "x" * 20_000, 5):
        for body in ({"resourceSpans": not_a_list}, {"resourceSpans": [{"scopeSpans": not_a_list}]},
                     {"resourceSpans": [{"scopeSpans": [{"spans": not_a_list}]}]}):
            status, answer = _post(collector, json.dumps(body).encode())
            assert status == 400 and b"must be a list" in answer, (body, status, answer[:200])
    assert _post(collector, json.dumps(frame).encode()) == (200, b"{}")
    assert _post(collector, b'{"resourceSpans": null}') == (200, b"{}")
    assert _post(collector, b"\x0a\xff\xff", content_type="application/x-protobuf")[0] == 400


def test_api_key_and_zero_data_retention(settings: Settings) -> None:
    handle = start_background("127.0.0.1", 0, settings=settings.replace(api_key="s3cret", zero_data_retention=True))
    try:
        body = _otlp_json([_span("ccc1ccc1ccc1ccc1", "chat", {
            "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5,
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "secret"}]}]),
            "llm.input_messages.0.message.content": "secret too"})])
        assert _post(handle, body)[0] == 401
        assert _post(handle, body, headers={"Authorization": "Bearer s3cret"})[0] == 200
        request = urllib.request.Request(f"{handle.url}/api/traces/5b8efff798038103d269b633813fc60c/spans",
                                         headers={"X-API-Key": "s3cret"})
        with urllib.request.urlopen(request, timeout=10) as response:
            stored = response.read().decode()
        assert "ccc1ccc1ccc1ccc1" in stored and "secret" not in stored
    finally:
        handle.stop()


def _empty_values(count: int) -> dict[str, Any]:
    return {"arrayValue": {"values": [{"arrayValue": {}} for _ in range(count)]}}


def _protobuf(body: bytes) -> bytes:
    from google.protobuf.json_format import ParseDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return ParseDict(json.loads(body), ExportTraceServiceRequest()).SerializeToString()


def test_values_are_capped_per_request_in_both_encodings(settings: Settings) -> None:
    handle = start_background("127.0.0.1", 0, settings=settings.replace(max_json_values=2_000))
    try:
        # ids in base64, which both the protobuf JSON mapping and the collector's OTLP/JSON reader take
        span = {"traceId": "W47/95gDgQPSabYzgT/GDA==", "spanId": "qqqqqqqqqqo=", "name": "chat",
                "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000"}
        bomb = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
            {**span, "attributes": [{"key": "x", "value": _empty_values(3_000)}]}]}]}]}).encode()
        for content_type, body in (("application/json", bomb), (_PROTOBUF, _protobuf(bomb))):
            for encoding in ({}, {"Content-Encoding": "gzip"}):
                sent = gzip.compress(body) if encoding else body
                status, answer = _post(handle, sent, content_type, encoding)
                assert status == 413 and b"values in one request" in answer, (content_type, encoding, answer)
        assert _get(handle, "/api/traces")["total"] == 0
        # Within the cap, a body long enough to be counted (a long string is one value) is stored.
        fine = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
            {**span, "attributes": [{"key": "text", "value": {"stringValue": "x" * 20_000}},
                                    {"key": "list", "value": _empty_values(100)}]}]}]}]}).encode()
        assert _post(handle, _protobuf(fine), _PROTOBUF)[0] == 200
        assert _get(handle, "/api/traces")["total"] == 1
    finally:
        handle.stop()


def test_a_protobuf_bomb_is_refused_at_the_default_caps(collector: ServerHandle) -> None:
    """The probe's request: one attribute of 5.5 million empty values, 22 MB inflated from 21 KB of gzip (it was
    stored, at +1 GB of memory)."""

    def field(number: int, payload: bytes) -> bytes:  # a length-delimited protobuf field
        def varint(value: int) -> bytes:
            out = bytearray()
            while value > 0x7F:
                out.append(value & 0x7F | 0x80)
                value >>= 7
            return bytes(out) + bytes([value])

        return varint(number << 3 | 2) + varint(len(payload)) + payload

    empty_array = field(1, field(5, b""))  # ArrayValue.values: an AnyValue holding an empty array
    attribute = field(1, b"k") + field(2, field(5, empty_array * 5_500_000))
    span = field(1, bytes(range(16))) + field(2, bytes(range(8))) + field(5, b"s") + field(9, attribute)
    body = gzip.compress(field(1, field(2, field(2, span))))
    status, answer = _post(collector, body, _PROTOBUF, {"Content-Encoding": "gzip"})
    assert status == 413 and b"values in one request" in answer
    assert _get(collector, "/api/traces")["total"] == 0


def test_a_json_span_with_an_infinite_or_huge_number_is_rejected_by_itself(collector: ServerHandle) -> None:
    """Found 2026-12-06 (review 3): a start time, event time, intValue, kind or status code of Infinity or 1e400
    (which json.loads reads as float infinity) or a doubleValue of a 400-digit integer raised OverflowError: the
    request answered 500 and its good spans were lost."""
    good = {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10}
    spans: list[Any] = [
        _span("d0d0d0d0d0d0d0d0", "good before", good),
        _span("d1d1d1d1d1d1d1d1", "infinite start", good, startTimeUnixNano=float("inf")),
        {**_span("d2d2d2d2d2d2d2d2", "infinite int", {}),
         "attributes": [{"key": "n", "value": {"intValue": float("inf")}}]},
        {**_span("d3d3d3d3d3d3d3d3", "huge double", {}),
         "attributes": [{"key": "n", "value": {"doubleValue": 10**400}}]},
        _span("d4d4d4d4d4d4d4d4", "infinite kind", good, kind=float("inf")),
        _span("d5d5d5d5d5d5d5d5", "infinite status", good, status={"code": float("-inf")}),
        _span("d6d6d6d6d6d6d6d6", "infinite event", good, events=[{"name": "e", "timeUnixNano": float("inf")}]),
        _span("d7d7d7d7d7d7d7d7", "good after", good),
    ]
    body = _otlp_json(spans)
    status, answer = _post(collector, body)
    assert status == 200, answer
    assert json.loads(answer)["partialSuccess"]["rejectedSpans"] == "6"
    assert {span["span_id"] for span in _spans(collector)} == {"d0d0d0d0d0d0d0d0", "d7d7d7d7d7d7d7d7"}
    one_e400 = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"' + b"ab" * 16 + b'","spanId":"' + \
        b"01" * 8 + b'","startTimeUnixNano":1e400}]}]}]}'
    status, answer = _post(collector, one_e400)
    assert (status, json.loads(answer)["partialSuccess"]["rejectedSpans"]) == (200, "1")


def test_a_byte_order_mark_before_a_large_json_body_is_skipped(settings: Settings) -> None:
    """Found 2026-12-06 (review 3): a UTF-8 BOM before an OTLP/JSON body large enough to have its values counted
    exactly (ijson) answered 400, where a small body with one, and /api/ingest, were stored."""
    handle = start_background("127.0.0.1", 0, settings=settings.replace(max_json_values=200))
    try:
        # Commas inside a string: the cheap bound counts them, so the exact count runs (20 values in all).
        body = _otlp_json([_span("b0b0b0b0b0b0b0b0", "chat gpt-4o", {"gen_ai.request.model": "gpt-4o",
                                                                    "note": "a, " * 500})])
        for sent, encoding in ((b"\xef\xbb\xbf" + body, {}), (gzip.compress(b"\xef\xbb\xbf" + body),
                                                             {"Content-Encoding": "gzip"})):
            status, answer = _post(handle, sent, headers=encoding)
            assert status == 200 and b"partialSuccess" not in answer, answer
        assert [span["span_id"] for span in _spans(handle)] == ["b0b0b0b0b0b0b0b0"]
    finally:
        handle.stop()


def test_the_decoder_keeps_only_the_count_and_the_first_problem() -> None:
    """Found 2026-12-06 (review 3): decode_json kept a message for every undecodable span, though partial_success
    reports only their count and the first (a request of 50,000 bad spans held 50,000 strings)."""
    from agentwatch.server._otlp_decode import Undecodable, decode_json

    bad = [_span(f"e{index}e{index}e{index}e{index}e{index}e{index}e{index}e{index}", "bad", {},
                 startTimeUnixNano="never") for index in range(5)]
    spans, undecodable = decode_json(_otlp_json([*bad, _span("f0f0f0f0f0f0f0f0", "good", {})]), 100)
    assert [span.span_id for span in spans] == ["f0f0f0f0f0f0f0f0"]
    assert undecodable == Undecodable(5, undecodable.first)
    assert undecodable.first.startswith("span 0 of the request is not an OTLP/JSON span")
