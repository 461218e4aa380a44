"""The OTLP exporter against a real OTLP/HTTP receiver on 127.0.0.1 that decodes the protobuf."""

from __future__ import annotations

import gzip
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

import agentwatch


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.requests: list[ExportTraceServiceRequest] = []
        self.headers_seen: list[dict[str, str]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def spans(self) -> list[tuple[dict[str, Any], Span]]:
        found = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {kv.key: _plain(kv.value) for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope_spans.spans)
        return found


def _plain(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_plain(item) for item in value.array_value.values]
    return getattr(value, which) if which else None


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        assert self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.requests.append(request)
        self.server.headers_seen.append(dict(self.headers))
        payload = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Receiver]:
    server = _Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0ken,x-tenant=acme")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "research-agents")
    yield server
    server.shutdown()
    server.server_close()


def test_spans_arrive_with_genai_conventions(receiver: _Receiver) -> None:
    agentwatch.init(exporters=["otlp"], budget_per_hour=10.0)
    with agentwatch.trace("job"), agentwatch.agent("Researcher", role="Researcher"):
        with agentwatch.llm_call("chat", model="gpt-4o", provider="openai") as call:
            call.set_usage(input_tokens=1000, output_tokens=200, cached_input_tokens=400)
            call.end(finish_reason="stop")
        with pytest.raises(RuntimeError), agentwatch.llm_call("bad", model="gpt-4o-mini", provider="openai"):
            raise RuntimeError("provider down")
    assert agentwatch.flush(5)
    spans = {span.name: (resource, span) for resource, span in receiver.spans()}
    resource, chat = spans["chat gpt-4o"]
    attributes = {kv.key: _plain(kv.value) for kv in chat.attributes}
    assert resource["service.name"] == "research-agents"
    assert chat.kind == Span.SPAN_KIND_CLIENT
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"] == "openai"  # (the name before 1.37)
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.usage.input_tokens"] == 1000
    assert attributes["gen_ai.usage.output_tokens"] == 200
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 400
    assert attributes["gen_ai.agent.name"] == "Researcher"
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["agentwatch.cost_usd"] == pytest.approx((600 * 2.5 + 400 * 1.25 + 200 * 10) / 1e6)
    _, agent = spans["invoke_agent Researcher"]
    assert chat.parent_span_id == agent.span_id and chat.trace_id == agent.trace_id
    _, failed = spans["chat gpt-4o-mini"]
    assert failed.status.code == Status.STATUS_CODE_ERROR and failed.status.message == "provider down"
    failed_attributes = {kv.key: _plain(kv.value) for kv in failed.attributes}
    assert failed_attributes["error.type"] == "RuntimeError"
    assert receiver.headers_seen[0]["authorization"] == "Bearer t0ken"
    assert receiver.headers_seen[0]["x-tenant"] == "acme"


@pytest.mark.parametrize("named_by", ["code", "OTEL_SERVICE_NAME", "none"])
def test_spans_are_the_service_the_program_named(receiver: _Receiver, tmp_path: Path, named_by: str) -> None:
    """A program that names its service in code (its TracerProvider's resource, here installed after ``init()``)
    and not in ``OTEL_SERVICE_NAME``: AgentWatch's spans are that service's, beside its own spans, not a service
    "agentwatch"; the variable, when set, still wins; a program with no name of its own leaves "agentwatch"."""
    program = tmp_path / "service.py"
    program.write_text(textwrap.dedent('''
        import agentwatch
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        agentwatch.init(exporters=["otlp"], spool_dir="")
        trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": "shop-api"})))
        agentwatch.event("work")
        assert agentwatch.flush(10)
    ''' if named_by != "none" else '''
        import agentwatch
        agentwatch.init(exporters=["otlp"], spool_dir="")
        agentwatch.event("work")
        assert agentwatch.flush(10)
    '''))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "AGENTWATCH_"))}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, PYTHONPATH=str(Path(__file__).resolve().parents[3]))
    if named_by == "OTEL_SERVICE_NAME":
        env["OTEL_SERVICE_NAME"] = "from-the-environment"
    done = subprocess.run([sys.executable, str(program)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (resource,) = {resource["service.name"] for resource, _ in receiver.spans()}
    assert resource == {"code": "shop-api", "OTEL_SERVICE_NAME": "from-the-environment", "none": "agentwatch"}[named_by]


def test_the_program_s_tracer_provider_set_after_a_batch_is_its_own(receiver: _Receiver, tmp_path: Path) -> None:
    """Found by review: looking up the program's service name on each batch called get_tracer_provider(), which
    installs a provider itself when OTEL_PYTHON_TRACER_PROVIDER is set; the program's own set_tracer_provider()
    after the first batch was then refused and its spans went to a provider it never configured."""
    program = tmp_path / "late_provider.py"
    program.write_text(textwrap.dedent('''
        import agentwatch
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        agentwatch.init(exporters=["otlp"], spool_dir="")
        agentwatch.event("before")
        assert agentwatch.flush(10)
        mine = TracerProvider(resource=Resource.create({"service.name": "shop-api"}))
        trace.set_tracer_provider(mine)
        assert trace.get_tracer_provider() is mine, "the program's provider was refused"
        agentwatch.event("after")
        assert agentwatch.flush(10)
    '''))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "AGENTWATCH_"))}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, PYTHONPATH=str(Path(__file__).resolve().parents[3]),
               OTEL_PYTHON_TRACER_PROVIDER="sdk_tracer_provider")
    done = subprocess.run([sys.executable, str(program)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Overriding of current TracerProvider is not allowed" not in done.stderr


def test_text_that_is_not_utf8_costs_neither_its_span_nor_its_batch(receiver: _Receiver) -> None:
    agentwatch.init(exporters=["otlp"])
    with agentwatch.trace("job"):
        with agentwatch.agent(os.fsdecode(b"agent-\xe9")):  # a name from a latin-1 file, as os.listdir gives it
            with agentwatch.llm_call("chat", model="gpt-4o", provider="openai") as call:
                call.set_usage(input_tokens=10, output_tokens=2)
    assert agentwatch.flush(5)
    names = {span.name for _, span in receiver.spans()}
    assert {"chat gpt-4o", "invoke_agent agent-\ufffd"} <= names
    assert agentwatch.get_state()["exporter"]["failed"] == 0


def test_breaker_transitions_carry_their_attributes(receiver: _Receiver) -> None:
    agentwatch.init(exporters=["otlp"], budget_per_hour=0.000001, block_on_threshold=True)
    with agentwatch.llm_call("first", model="gpt-4o") as call:
        call.set_usage(1000, 1000)
    with pytest.raises(agentwatch.CircuitBreakerException):
        agentwatch.start_llm_call("second", model="gpt-4o")
    assert agentwatch.flush(5)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    statuses = {}
    for _, span in receiver.spans():
        attributes = {kv.key: _plain(kv.value) for kv in span.attributes}
        by_kind.setdefault(attributes["agentwatch.kind"], []).append(attributes)
        statuses[span.name] = span.status
    triggered = [a for a in by_kind["breaker"] if a["agentwatch.breaker.event"] == "triggered"]
    assert triggered and triggered[0]["agentwatch.breaker.eu_ai_act_art12_relevant"] is True
    assert triggered[0]["agentwatch.breaker.reason"] == "budget_per_hour"
    assert any(a["agentwatch.status"] == "blocked" for a in by_kind["llm"])
    assert statuses["chat gpt-4o"].code in (Status.STATUS_CODE_UNSET, Status.STATUS_CODE_ERROR)


def _attributes(span: Span) -> dict[str, Any]:
    return {kv.key: _plain(kv.value) for kv in span.attributes}


def _check_convention_messages(messages: list[dict[str, Any]], output: bool) -> None:
    """The GenAI convention's message schema: role, typed parts, and a finish_reason on output messages."""
    for message in messages:
        assert message["role"] in ("system", "user", "assistant", "tool"), message
        assert isinstance(message["parts"], list) and message["parts"], message
        for part in message["parts"]:
            assert part["type"] in ("text", "tool_call", "tool_call_response", "reasoning", "uri", "blob"), part
            if part["type"] == "text":
                assert isinstance(part["content"], str)
        assert ("finish_reason" in message) is output


def test_langgraph_messages_follow_the_convention_on_llm_spans_only(receiver: _Receiver) -> None:
    import json

    from langgraph.checkpoint.memory import InMemorySaver

    from tests.plugins.langchain.graphs import Workflow

    agentwatch.init(exporters=["otlp"], capture_messages=True)
    graph = Workflow(nodes=("planner", "writer")).build(InMemorySaver())
    graph.invoke({"log": []}, {"configurable": {"thread_id": "otlp"}})
    assert agentwatch.flush(5)
    spans = [(span, _attributes(span)) for _, span in receiver.spans()]
    llms = [(span, attributes) for span, attributes in spans if attributes["agentwatch.kind"] == "llm"]
    assert len(llms) == 2
    for _span, attributes in llms:
        assert attributes["openinference.span.kind"] == "LLM"
        sent = json.loads(attributes["gen_ai.input.messages"])
        answered = json.loads(attributes["gen_ai.output.messages"])
        _check_convention_messages(sent, output=False)
        _check_convention_messages(answered, output=True)
        assert sent[0]["role"] == "user" and sent[0]["parts"][0]["content"].split(":")[0] in ("planner", "writer")
        assert answered[0]["role"] == "assistant" and answered[0]["parts"][0]["content"].endswith(" done")
    others = [attributes for span, attributes in spans if attributes["agentwatch.kind"] in ("graph", "node")]
    assert {attributes["agentwatch.kind"] for attributes in others} == {"graph", "node"}
    for attributes in others:
        assert attributes["openinference.span.kind"] == "CHAIN"
        assert not any(key.startswith("gen_ai.input") or key.startswith("gen_ai.output") for key in attributes)


def test_provider_messages_with_tools_become_typed_parts() -> None:
    from agentwatch.plugins.otlp._messages import input_messages, output_messages

    sent = input_messages([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"c": 1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ])
    assert sent == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": "weather?"}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "name": "weather", "id": "c1", "arguments": {"c": 1}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "sunny"}]},
    ]
    assert output_messages("It is sunny.", "end_turn") == [
        {"role": "assistant", "parts": [{"type": "text", "content": "It is sunny."}], "finish_reason": "stop"}]
    assert input_messages([{"role": "human", "content": "hi"}])[0]["role"] == "user"


@pytest.mark.parametrize(("setting", "compressed"), [(None, False), ("gzip", True), ("none", False)])
def test_a_receiver_on_this_machine_gets_plain_batches_unless_gzip_is_asked_for(
        receiver: _Receiver, monkeypatch: pytest.MonkeyPatch, setting: str | None, compressed: bool) -> None:
    if setting is not None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", setting)
    agentwatch.init(exporters=["otlp"])
    agentwatch.event("sent")
    assert agentwatch.flush(5)
    assert "sent" in {span.name for _, span in receiver.spans()}
    assert {headers.get("Content-Encoding") for headers in receiver.headers_seen} == {"gzip" if compressed else None}


def test_a_remote_receiver_gets_gzip_by_default() -> None:
    from agentwatch.plugins.otlp import OtlpExporter

    remote = OtlpExporter("https://otel.example.com/v1/traces")
    assert remote._gzip is None and remote._sender.compresses(100)  # decided per batch: gzip for another machine
    assert OtlpExporter("https://otel.example.com/v1/traces", compression="none")._gzip is False



@pytest.mark.parametrize(("variable", "protocol", "warned"), [
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", True), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc", True),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", False), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", False)])
def test_a_grpc_protocol_setting_is_said_to_be_unsupported_at_init(
        receiver: _Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        variable: str, protocol: str, warned: bool) -> None:
    """OTLP/HTTP posted to a gRPC port fails with nothing but "not reachable (BadStatusLine)": the program that asks
    for gRPC is told at init that it does not get it, and what it gets."""
    monkeypatch.setenv(variable, protocol)
    caplog.set_level(logging.WARNING, logger="agentwatch")
    agentwatch.init(exporters=["otlp"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if warned:
        assert len(warnings) == 1 and f"{variable}=grpc is not supported" in warnings[0], warnings
        assert "http/protobuf" in warnings[0] and receiver.endpoint in warnings[0]
    else:
        assert warnings == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _timed_flush() -> tuple[bool, float]:
    started = time.monotonic()
    delivered = agentwatch.flush(5)
    return delivered, time.monotonic() - started


def test_a_receiver_that_is_down_is_spooled_for_and_flushes_do_not_wait_for_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The default HTTP exporter's outage behaviour: a batch the receiver does not answer is retried once, then
    spooled; while the receiver is known down a flush that is refused at once costs one attempt, not a retry
    budget (it was 5 s, the whole flush timeout, on every flush); the spool is delivered once it answers."""
    port = _free_port()  # nothing listens here until the receiver starts below: every connection is refused
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    agentwatch.init(exporters=["otlp"], spool_dir=str(tmp_path))
    agentwatch.event("first")
    delivered, first = _timed_flush()
    assert delivered is False and first < 2.0  # one retry in place (0.25-0.75 s), then the spool
    agentwatch.event("second")
    delivered, second = _timed_flush()
    assert delivered is False and second < 0.5  # known down and refused at once: one attempt
    processor = agentwatch.get_client().processor
    spooled = processor.stats()["spooled"]
    assert spooled >= 2 and len(list(tmp_path.rglob("*.json.*"))) == 2  # a batch a flush (.json.zst: loopback)
    server = _Receiver(port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert agentwatch.flush(5)  # the flush tries the receiver again and delivers what it missed
        assert {"first", "second"} <= {span.name for _, span in server.spans()}
        assert processor.stats()["unspooled"] == spooled and not list(tmp_path.rglob("*.json.*"))
    finally:
        agentwatch.shutdown()
        server.shutdown()
        server.server_close()


def test_a_receiver_configured_for_plain_bodies_gets_its_spooled_batches_plain(tmp_path: Path) -> None:
    from agentwatch.instrumentation import Spool
    from agentwatch.plugins.otlp import OtlpExporter

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}/v1/traces"
    exporter = OtlpExporter(endpoint, compression="none", spool=Spool(tmp_path, endpoint))
    span = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "parent_span_id": None, "name": "kept", "kind": "event",
            "status": "ok", "start_time_unix_nano": 1, "end_time_unix_nano": 2, "attributes": {}}
    assert exporter.export([span]) is False and exporter.spooled == 1
    server = _Receiver(port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        exporter.begin_flush()
        exporter.on_idle()
        assert [s.name for _, s in server.spans()] == ["kept"] and exporter.unspooled == 1
        assert [headers.get("Content-Encoding") for headers in server.headers_seen] == [None]
    finally:
        exporter.shutdown()
        server.shutdown()
        server.server_close()


def test_blocked_and_failed_calls_carry_an_error_type_and_no_response_model(receiver: _Receiver) -> None:
    """A span that ended in error has ``error.type`` (the convention requires it then; low cardinality), and only a
    model that answered is ``gen_ai.response.model``: a blocked or failed call got no response."""
    from agentwatch.instrumentation import start_llm_call

    agentwatch.init(exporters=["otlp"], budget_per_hour=0.000001, block_on_threshold=True)
    with agentwatch.llm_call("answered", model="gpt-4o", provider="openai") as call:
        call.set_attribute("response_model", "gpt-4o-2024-08-06")
        call.set_usage(1000, 1000)
    with pytest.raises(agentwatch.CircuitBreakerException):
        agentwatch.start_llm_call("stopped", model="gpt-4o", provider="openai")
    agentwatch.shutdown()
    agentwatch.init(exporters=["otlp"])
    with pytest.raises(RuntimeError), agentwatch.llm_call("failed", model="gpt-4o-mini", provider="openai"):
        raise RuntimeError("provider down")
    start_llm_call("withdrawn", model="gpt-4o-mini", provider="openai").withdraw("denied by a before_llm_call hook")
    assert agentwatch.flush(5)
    llm = {attributes["gen_ai.request.model"] + "/" + attributes["agentwatch.status"]: (span, attributes)
           for span, attributes in ((span, _attributes(span)) for _, span in receiver.spans())
           if attributes["agentwatch.kind"] == "llm"}
    _, answered = llm["gpt-4o/ok"]
    assert answered["gen_ai.response.model"] == "gpt-4o-2024-08-06" and "error.type" not in answered
    blocked, stopped = llm["gpt-4o/blocked"]
    assert blocked.status.code == Status.STATUS_CODE_ERROR
    assert stopped["error.type"] == "CircuitBreakerException"  # what the caller got, as for a failed call
    assert "gen_ai.response.model" not in stopped
    _, failed = llm["gpt-4o-mini/error"]
    assert failed["error.type"] == "RuntimeError" and "gen_ai.response.model" not in failed
    withdrawn, refused = llm["gpt-4o-mini/blocked"]
    assert withdrawn.status.code == Status.STATUS_CODE_ERROR and refused["error.type"] == "agentwatch.blocked"
    assert "gen_ai.response.model" not in refused
    assert withdrawn.status.message == "blocked: denied by a before_llm_call hook"  # not AgentWatch's breaker


def test_anthropic_cache_writes_and_reads_use_the_convention_usage_attributes(receiver: _Receiver) -> None:
    from agentwatch.instrumentation import normalize_anthropic_usage

    agentwatch.init(exporters=["otlp"])
    with agentwatch.llm_call("cached", model="claude-sonnet-4-5", provider="anthropic") as call:
        call.set_usage(**normalize_anthropic_usage(input_tokens=100, output_tokens=50, cache_read_input_tokens=2_000,
                                                   cache_creation_input_tokens=3_000, ephemeral_1h_input_tokens=1_000))
    assert agentwatch.flush(5)
    [attributes] = [_attributes(span) for _, span in receiver.spans() if span.name == "chat claude-sonnet-4-5"]
    assert attributes["gen_ai.usage.input_tokens"] == 5_100  # the convention counts cache reads and writes in
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 2_000
    assert attributes["gen_ai.usage.cache_creation.input_tokens"] == 3_000
    assert "agentwatch.cache_write_tokens" not in attributes
    assert attributes["agentwatch.cache_write_1h_tokens"] == 1_000  # no convention attribute for the 1-hour part


def test_a_model_that_answered_under_the_name_asked_for_is_the_response_model(
        receiver: _Receiver, stub_provider: Any) -> None:
    """``gen_ai.response.model`` for every call whose response named its model, also when that is the name the request
    asked for (Gemini's ``modelVersion`` usually is; the stub echoes the request's): it was left out then, for the
    Responses API and Gemini as for chat completions."""
    import httpx
    import openai

    from tests.stubs.provider_server import Reply

    base = stub_provider.base_url
    agentwatch.init(exporters=["otlp"], providers={f"{base}/gem": "google"})
    client = openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    stub_provider.queue(Reply(content="a"), Reply(content="b"), Reply(content="c"), Reply(content="d"))
    client.responses.create(model="gpt-4o-mini", input="x")
    list(client.responses.create(model="gpt-4o-mini", input="x", stream=True))
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    httpx.post(f"{base}/gem/v1beta/models/gemini-2.0-flash:generateContent",
               json={"contents": [{"parts": [{"text": "x"}]}]})
    assert agentwatch.flush(5)
    answered = sorted((span.name, _attributes(span).get("gen_ai.response.model")) for _, span in receiver.spans()
                      if _attributes(span)["agentwatch.kind"] == "llm")
    assert answered == [("chat gpt-4o", "gpt-4o"), ("chat gpt-4o-mini", "gpt-4o-mini"),
                        ("chat gpt-4o-mini", "gpt-4o-mini"), ("generate_content gemini-2.0-flash", "gemini-2.0-flash")]


def test_providers_and_operations_use_the_convention_well_known_values(
        receiver: _Receiver, stub_provider: Any) -> None:
    """``gen_ai.provider.name`` / ``gen_ai.operation.name`` take the convention's well-known values where one applies
    (it says they MUST); AgentWatch's own provider ids (genai-prices') stay on the spans it stores."""
    import httpx
    import openai

    base = stub_provider.base_url
    agentwatch.init(exporters=["otlp"], providers={f"{base}/gem": "google"})
    client = openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.NotFoundError):  # the stub has no legacy completions: the failed call is enough
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x")
    httpx.post(f"{base}/gem/v1beta/models/gemini-2.0-flash:generateContent",
               json={"contents": [{"parts": [{"text": "x"}]}]})
    for model, provider, url in (
            ("mistral-large-latest", "mistral", "https://api.mistral.ai/v1/chat/completions"),
            ("gpt-4o-deployment", "azure", "https://acme.openai.azure.com/openai/deployments/d/chat/completions"),
            ("gemini-2.5-pro", "google", "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/"
                                         "europe-west4/publishers/google/models/gemini-2.5-pro:generateContent"),
            ("claude-sonnet-4-5", "anthropic", "https://api.anthropic.com/v1/messages"),
            ("anthropic.claude-3-haiku", "aws", None),
            ("grok-4", "x-ai", None),
            ("llama-3.3-70b", "together", None)):
        with agentwatch.llm_call(f"{provider}.call", model=model, provider=provider) as call:
            if url:
                call.set_attribute("http.url", url)
    assert agentwatch.flush(5)
    found = {attributes["gen_ai.request.model"]: (span.name, attributes["gen_ai.operation.name"],
                                                  attributes["gen_ai.provider.name"])
             for span, attributes in ((span, _attributes(span)) for _, span in receiver.spans())
             if attributes["agentwatch.kind"] in ("llm", "embedding")}
    assert found == {
        "gpt-4o-mini": ("chat gpt-4o-mini", "chat", "openai"),
        "text-embedding-3-small": ("embeddings text-embedding-3-small", "embeddings", "openai"),
        "gpt-3.5-turbo-instruct": ("text_completion gpt-3.5-turbo-instruct", "text_completion", "openai"),
        "gemini-2.0-flash": ("generate_content gemini-2.0-flash", "generate_content", "gcp.gemini"),
        "mistral-large-latest": ("chat mistral-large-latest", "chat", "mistral_ai"),
        "gpt-4o-deployment": ("chat gpt-4o-deployment", "chat", "azure.ai.openai"),
        "gemini-2.5-pro": ("generate_content gemini-2.5-pro", "generate_content", "gcp.vertex_ai"),
        "claude-sonnet-4-5": ("chat claude-sonnet-4-5", "chat", "anthropic"),
        "anthropic.claude-3-haiku": ("chat anthropic.claude-3-haiku", "chat", "aws.bedrock"),
        "grok-4": ("chat grok-4", "chat", "x_ai"),
        "llama-3.3-70b": ("chat llama-3.3-70b", "chat", "together"),  # no well-known value: ours
    }


def test_tool_spans_are_named_after_the_convention(receiver: _Receiver) -> None:
    agentwatch.init(exporters=["otlp"])
    with agentwatch.span("get_weather", kind="tool"):
        pass
    with agentwatch.span("tool-run", kind="tool", **{"tool.name": "search"}):
        pass
    assert agentwatch.flush(5)
    tools = {span.name: _attributes(span) for _, span in receiver.spans()
             if _attributes(span)["agentwatch.kind"] == "tool"}
    assert set(tools) == {"execute_tool get_weather", "execute_tool search"}
    for name, attributes in tools.items():
        assert attributes["gen_ai.operation.name"] == "execute_tool"
        assert name == f"execute_tool {attributes['gen_ai.tool.name']}"


def test_agent_spans_are_named_after_the_convention(receiver: _Receiver) -> None:
    """``invoke_agent {gen_ai.agent.name}``, as the GenAI conventions name agent invocations (they went by the agent's
    bare name); the collector's OTLP ingest takes the agent from ``gen_ai.agent.name``, not from the span's name."""
    agentwatch.init(exporters=["otlp"])
    with agentwatch.agent("Researcher"):
        agentwatch.event("step")
    assert agentwatch.flush(5)
    (agent,) = [span for _, span in receiver.spans() if _attributes(span)["agentwatch.kind"] == "agent"]
    attributes = _attributes(agent)
    assert agent.name == "invoke_agent Researcher"
    assert attributes["gen_ai.operation.name"] == "invoke_agent" and attributes["gen_ai.agent.name"] == "Researcher"


def test_every_span_kind_has_an_openinference_kind(receiver: _Receiver) -> None:
    """Phoenix and Arize show a span without ``openinference.span.kind`` as "unknown" with a blank icon: the breaker
    transitions, alerts, the process span and events carried none."""
    from openinference.semconv.trace import OpenInferenceSpanKindValues

    agentwatch.init(exporters=["otlp"], budget_per_hour=0.000001, block_on_threshold=True)
    with agentwatch.llm_call("first", model="gpt-4o") as call:
        call.set_usage(1000, 1000)
    with pytest.raises(agentwatch.CircuitBreakerException):
        agentwatch.start_llm_call("second", model="gpt-4o")
    agentwatch.event("checkpoint")
    agentwatch.metric("queue.depth", 3)
    agentwatch.alert("spend is high")
    assert agentwatch.flush(5)
    kinds: dict[str, set[str | None]] = {}
    for _, span in receiver.spans():
        attributes = _attributes(span)
        kinds.setdefault(attributes["agentwatch.kind"], set()).add(attributes.get("openinference.span.kind"))
    assert {"breaker", "alert", "event", "metric"} <= set(kinds)
    known = {value.value for value in OpenInferenceSpanKindValues}
    assert all(found <= known for found in kinds.values()), kinds
    assert kinds["breaker"] == kinds["alert"] == {"GUARDRAIL"}  # AgentWatch's guard on spend and limits
    assert kinds["event"] == kinds["metric"] == {"UNKNOWN"}


def test_the_process_span_is_not_sent_to_an_opentelemetry_backend(receiver: _Receiver) -> None:
    """The process span (pid, executable, OS release, every installed package) is the run's record for AgentWatch's
    collector; a third-party backend got it as a trace of its own per process."""
    agentwatch.init(exporters=["otlp"])
    agentwatch.event("work")
    assert agentwatch.flush(5)
    kinds = [_attributes(span)["agentwatch.kind"] for _, span in receiver.spans()]
    assert kinds == ["event"]


def test_recorded_request_parameters_use_the_convention_names(receiver: _Receiver) -> None:
    agentwatch.init(exporters=["otlp"])
    with agentwatch.llm_call("tuned", model="gpt-4o", provider="openai") as call:
        call.set_attribute("temperature", 0.2)
        call.set_attribute("max_tokens", 256)
        call.set_attribute("top_p", 0.9)
    with agentwatch.llm_call("plain", model="gpt-4o-mini", provider="openai"):
        pass
    assert agentwatch.flush(5)
    found = {span.name: _attributes(span) for _, span in receiver.spans()}
    tuned, plain = found["chat gpt-4o"], found["chat gpt-4o-mini"]
    assert tuned["gen_ai.request.temperature"] == 0.2 and tuned["gen_ai.request.top_p"] == 0.9
    assert tuned["gen_ai.request.max_tokens"] == 256
    assert not any(key.startswith("gen_ai.request.") and key != "gen_ai.request.model" for key in plain)
    assert not {"agentwatch.temperature", "agentwatch.max_tokens", "agentwatch.top_p"} & set(tuned)


def test_traces_opened_inside_the_programs_opentelemetry_span_join_its_trace(
        receiver: _Receiver, stub_provider: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A web app traced with OpenTelemetry (its request span current) that runs an agent: AgentWatch's spans belong
    in that request's trace, under its span, as the spans of an OpenTelemetry instrumentation would; outside any
    such span they are traces of their own. The application's own spans are exported by its SDK as before."""
    from opentelemetry import context as otel_context

    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)  # set process-wide by the CrewAI tests' set-up
    # A program that traces itself starts with no span current: an earlier test in this process may have left one.
    fresh = otel_context.attach(otel_context.Context())
    try:
        _join_the_programs_trace(receiver, stub_provider)
    finally:
        otel_context.detach(fresh)


def test_traces_opened_inside_a_span_the_program_does_not_sample_are_traces_of_their_own(
        receiver: _Receiver, stub_provider: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The program samples its request out (``ParentBased(ALWAYS_OFF)``, a ratio sampler's other requests): its span
    is never exported, so AgentWatch's spans under it would be orphans in the backend; they are roots instead."""
    from opentelemetry import context as otel_context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    fresh = otel_context.attach(otel_context.Context())
    try:
        tracer = TracerProvider(sampler=ParentBased(ALWAYS_OFF)).get_tracer("web-app")
        agentwatch.init(exporters=["otlp"])
        with tracer.start_as_current_span("POST /chat") as request_span:
            assert request_span.get_span_context().is_valid and not request_span.get_span_context().trace_flags.sampled
            with agentwatch.trace("answer"):
                agentwatch.event("step")
        assert agentwatch.flush(5)
    finally:
        otel_context.detach(fresh)
    request_trace = request_span.get_span_context().trace_id.to_bytes(16, "big")
    found = {span.name: span for _, span in receiver.spans()}
    answer, step = found["answer"], found["step"]
    assert answer.trace_id != request_trace and answer.parent_span_id == b""
    assert step.trace_id == answer.trace_id and step.parent_span_id == answer.span_id


def test_the_programs_own_spans_inside_agentwatch_scopes_nest_under_them(
        receiver: _Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """A program with its own tracer provider that opens spans inside ``trace()`` / ``agent()`` / ``span()``, also in
    tasks: in the backend each is the child of the scope it ran in (before: a trace of its own each). A session does
    not take them (its traces are traces of their own), and the program's context is as it was after each scope."""
    import asyncio

    from opentelemetry import context as otel_context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)  # set process-wide by the CrewAI tests' set-up
    fresh = otel_context.attach(otel_context.Context())
    try:
        app_spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(app_spans))
        tracer = provider.get_tracer("research-app")
        agentwatch.init(exporters=["otlp"])

        async def fetch(source: str) -> None:
            with tracer.start_as_current_span(f"fetch {source}"):
                await asyncio.sleep(0)

        async def research() -> None:
            async with agentwatch.agent("Researcher"):
                with tracer.start_as_current_span("retrieve"):
                    with agentwatch.span("rerank"):
                        pass
                await asyncio.gather(fetch("web"), fetch("wiki"))

        with agentwatch.session("chat-1"), tracer.start_as_current_span("in the session"):
            pass
        with agentwatch.trace("answer"):
            asyncio.run(research())
            with tracer.start_as_current_span("format"):
                pass
        outside = tracer.start_span("after")
        outside.end()
        assert agentwatch.flush(5)
    finally:
        otel_context.detach(fresh)
    ours = {span.name: span for _, span in receiver.spans()}
    app = {span.name: span for span in app_spans.get_finished_spans()}
    answer, researcher = ours["answer"], ours["invoke_agent Researcher"]

    def under(name: str, parent: Span) -> bool:
        context, mine = app[name].context, app[name].parent
        return (context.trace_id.to_bytes(16, "big") == parent.trace_id and mine is not None
                and mine.span_id.to_bytes(8, "big") == parent.span_id)

    assert all(under(name, researcher) for name in ("retrieve", "fetch web", "fetch wiki"))
    assert under("format", answer)
    assert app["in the session"].parent is None and app["after"].parent is None
    assert app["after"].context.trace_id.to_bytes(16, "big") != answer.trace_id


def _join_the_programs_trace(receiver: _Receiver, stub_provider: Any) -> None:
    import openai
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tests.stubs.provider_server import Reply

    app_spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(app_spans))
    tracer = provider.get_tracer("web-app")
    agentwatch.init(exporters=["otlp"])
    client = openai.OpenAI(api_key="sk-test", base_url=stub_provider.openai_base_url)
    for _ in range(3):
        stub_provider.queue(Reply(content="hi", input_tokens=12, output_tokens=3))
    with tracer.start_as_current_span("POST /chat") as request_span:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        with agentwatch.trace("answer"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}])
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "outside"}])
    assert agentwatch.flush(5)
    request = request_span.get_span_context()
    request_trace, request_id = request.trace_id.to_bytes(16, "big"), request.span_id.to_bytes(8, "big")
    spans = [span for _, span in receiver.spans() if _attributes(span)["agentwatch.kind"] in ("llm", "trace")]
    assert len(spans) == 4
    inside, answer, nested, outside = sorted(spans, key=lambda span: span.start_time_unix_nano)
    assert answer.name == "answer" and nested.parent_span_id == answer.span_id
    for span in (inside, answer, nested):
        assert span.trace_id == request_trace
    assert inside.parent_span_id == answer.parent_span_id == request_id
    assert outside.trace_id != request_trace and outside.parent_span_id == b""
    assert "agentwatch.remote_parent_span_id" not in _attributes(inside)
    assert [span.name for span in app_spans.get_finished_spans()] == ["POST /chat"]
