"""Another instrumentation of the openai SDK before or after ``agentwatch.init()``: calls are still seen and limited.

OpenInference's ``OpenAIInstrumentor`` wraps ``OpenAI.request`` and ``AsyncOpenAI.request`` (wrapt), capturing the
SDK's function. Instrumented before ``init()``, its wrapper sat in front of ours on the base class and every call of
those classes went unobserved and unlimited (found 2026-12-05: no span, no block against a stub base URL); the same for
a ``request`` replaced on one client object. Programs in a fresh interpreter: the instrumentations patch the SDK for
the whole process.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _run(program: str, tmp_path: Path, *argv: str, timeout: float = 50) -> subprocess.CompletedProcess[str]:
    """``program`` in a fresh interpreter (the instrumentations patch the SDKs process-wide); it must exit 0."""
    done = subprocess.run([sys.executable, "-c", program, *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=timeout, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0, done.stderr
    return done


PROGRAM = r'''
import asyncio, json, sys
from tests.stubs.provider_server import Reply, StubProvider
import agentwatch, openai
from agentwatch import CircuitBreakerException
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

order, flavour = sys.argv[1], sys.argv[2]
traced = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(traced))
memory = agentwatch.InMemoryExporter()
if order == "instrumented first":
    OpenAIInstrumentor().instrument(tracer_provider=provider)
agentwatch.init(exporters=[memory])
if order == "instrumented after":
    OpenAIInstrumentor().instrument(tracer_provider=provider)
MESSAGES = [{"role": "user", "content": "hi"}]
EXPENSIVE = Reply(content="ok", input_tokens=400_000, output_tokens=100_000)  # ~$0.12 for gpt-4o-mini


def call(client, stream):
    if stream:
        return len(list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                       stream_options={"include_usage": True})))
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content


async def acall(client, stream):
    if stream:
        return len([chunk async for chunk in await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True})])
    return (await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)).choices[0].message.content


outcomes = []
with StubProvider() as stub:
    for stream in (False, True):
        stub.queue(EXPENSIVE)
        with agentwatch.agent(f"writer-{stream}", budget_per_hour=0.05, block_on_threshold=True):
            for _ in range(2):
                try:
                    if flavour == "sync":
                        client = openai.OpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0)
                        outcomes.append(call(client, stream))
                    else:
                        client = openai.AsyncOpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0)
                        outcomes.append(asyncio.run(acall(client, stream)))
                except CircuitBreakerException as blocked:
                    outcomes.append(blocked.reason)
    requests = stub.count()
agentwatch.flush()
spans = [(span["name"], span["status"]) for span in memory.spans if span["kind"] == "llm"]
print(json.dumps({"outcomes": outcomes, "requests": requests, "spans": spans,
                  "traced": [span.status.status_code.name for span in traced.get_finished_spans()]}))
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("order", ["instrumented first", "instrumented after"])
def test_calls_are_seen_and_blocked_beside_openinference(tmp_path: Path, order: str, flavour: str) -> None:
    done = _run(PROGRAM, tmp_path, order, flavour, timeout=100)
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    # Each budget: the first call is sent and costs more than the budget, the second is blocked before sending.
    assert report["outcomes"][0] == "ok" and report["outcomes"][2] > 0  # the stream's chunk count
    assert report["outcomes"][1] == report["outcomes"][3] == "budget_per_hour", report
    assert report["requests"] == 2
    assert report["spans"] == [["openai.chat.completions", "ok"], ["openai.chat.completions", "blocked"]] * 2
    if order == "instrumented first":  # ours runs first: OpenInference hears of the calls that were sent only
        assert report["traced"] == ["OK"] * 2
    else:  # its wrapper is outside ours: a blocked call ends its span with the block as the error
        assert report["traced"] == ["OK", "ERROR"] * 2


def test_a_client_class_whose_request_calls_the_base_classs_is_counted_once(
        memory: Any, stub_provider: Any) -> None:
    """A ``request`` of its own that goes on to the base class's (``super()``): both wrapped, the call counts once."""
    import openai

    import agentwatch

    class Logged(openai.OpenAI):
        def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            return super().request(*args, **kwargs)

    client = agentwatch.init(exporters=[memory])
    assert hasattr(Logged.__dict__["request"], "__wrapped__")  # ours, in front of it
    logged = Logged(base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    logged.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    agentwatch.flush()
    assert [span["name"] for span in memory.spans if span["kind"] == "llm"] == ["openai.chat.completions"]
    assert client.monitor.snapshot()["calls_last_minute"] == 1


REPLACED_ON_THE_CLIENT = r"""
import asyncio, json, sys
from tests.stubs.provider_server import Reply, StubProvider
import agentwatch, anthropic, openai
from agentwatch import CircuitBreakerException

sdk, flavour = sys.argv[1], sys.argv[2]
MESSAGES = [{"role": "user", "content": "hi"}]
EXPENSIVE = Reply(content="ok", input_tokens=400_000, output_tokens=100_000)  # over $0.05 for either model
memory = agentwatch.InMemoryExporter()
outcomes = []
with StubProvider() as stub:
    if sdk == "openai":
        make, base_url, model = (openai.AsyncOpenAI if flavour == "async" else openai.OpenAI), stub.openai_base_url, \
            "gpt-4o-mini"
    else:
        make, base_url, model = (anthropic.AsyncAnthropic if flavour == "async" else anthropic.Anthropic), \
            stub.base_url, "claude-3-5-haiku-latest"
    client = make(base_url=base_url, api_key="k", max_retries=2)
    original = client.request  # as logfire.instrument_openai(client) does, before init()
    client.request = lambda *args, **kwargs: original(*args, **kwargs)
    agentwatch.init(exporters=[memory])

    def create(stream):
        if sdk == "openai":  # a request built past our request() is not asked for a stream's usage: it asks itself
            options = {"stream_options": {"include_usage": True}} if stream else {}
            return client.chat.completions.create(model=model, messages=MESSAGES, stream=stream, **options)
        return client.messages.create(model=model, max_tokens=10, messages=MESSAGES, stream=stream)

    async def call(stream):
        answer = create(stream)
        if flavour == "async":
            answer = await answer
            if stream:
                return len([event async for event in answer])
        elif stream:
            return len(list(answer))
        return answer.choices[0].message.content if sdk == "openai" else answer.content[0].text

    async def main():
        for stream in (False, True):
            stub.queue(EXPENSIVE)
            with agentwatch.agent(f"writer-{stream}", budget_per_hour=0.05, block_on_threshold=True):
                for _ in range(2):
                    try:
                        outcomes.append(await call(stream))
                    except CircuitBreakerException as blocked:
                        outcomes.append(blocked.reason)

    asyncio.run(main())
    requests = stub.count()
agentwatch.flush()
spans = [[span["name"], span["status"], span["input_tokens"]] for span in memory.spans if span["kind"] == "llm"]
print(json.dumps({"outcomes": outcomes, "requests": requests, "spans": spans}))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_a_client_whose_request_was_replaced_before_init_is_seen_and_blocked(
        tmp_path: Path, sdk: str, flavour: str) -> None:
    """Replaced on the client object, ``request`` calls the SDK's function directly, past our wrapper of it (found
    2026-12-05: against a stub base URL nothing was recorded and nothing blocked). The request is opened and checked
    where the SDK builds it, before its retry loop: the block reaches the caller as itself, not retried and not
    turned into a connection error."""
    done = _run(REPLACED_ON_THE_CLIENT, tmp_path, sdk, flavour, timeout=100)
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert report["outcomes"][0] == "ok" and report["outcomes"][2] > 0  # the stream's event count
    assert report["outcomes"][1] == report["outcomes"][3] == "budget_per_hour", report
    assert report["requests"] == 2
    name = "openai.chat.completions" if sdk == "openai" else "anthropic.messages"
    assert report["spans"] == [[name, "ok", 400_000], [name, "blocked", 0]] * 2


def test_a_request_built_outside_our_wrapper_and_never_sent_is_ended_by_the_next(
        memory: Any, stub_provider: Any) -> None:
    """The call opened when a bypassing request was built ends even if something raised before it was sent."""
    import openai
    from openai._base_client import SyncAPIClient

    import agentwatch

    class Failing(openai.OpenAI):
        failures = 1

        def _prepare_request(self, request: Any) -> None:
            if Failing.failures:
                Failing.failures -= 1
                raise RuntimeError("signing failed")

    agentwatch.init(exporters=[memory])
    client = Failing(base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    client.request = functools.partial(SyncAPIClient.request.__wrapped__, client)  # type: ignore[method-assign]
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(RuntimeError, match="signing failed"):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=messages).choices[0].message.content == "ok"
    agentwatch.flush()
    spans = [(span["status"], span["attributes"].get("error.message")) for span in memory.spans
             if span["kind"] == "llm"]
    assert spans == [("error", "the request was not sent"), ("ok", None)]
    assert stub_provider.count() == 1


WRAPPED_BEFORE = r'''
import json, sys
import httpx, openai

if sys.argv[1] == "client class":  # as logfire.instrument_openai() does: a plain function on the client class
    kept = openai.OpenAI.request

    def request(*args, **kwargs):
        kwargs["stream"]  # it reads what the SDK passes
        return kept(*args, **kwargs)

    openai.OpenAI.request = request
else:  # as sentry_sdk's httpx integration does
    real_send = httpx.Client.send

    def send(self, request, **kwargs):
        return real_send(self, request, **kwargs)

    httpx.Client.send = send

from tests.stubs.provider_server import StubProvider
import agentwatch

memory = agentwatch.InMemoryExporter()
agentwatch.init(exporters=[memory])
with StubProvider() as stub:
    client = openai.OpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    answers = [client.chat.completions.create(model="gpt-4o-mini", messages=messages).choices[0].message.content,
               len(list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))),
               httpx.get(f"{stub.base_url}/v1/models", auth=("u", "p")).status_code,
               stub.last.headers.get("authorization")]
agentwatch.flush()
print(json.dumps({"answers": answers, "spans": [span["name"] for span in memory.spans if span["kind"] == "llm"]}))
'''


@pytest.mark.timeout(60)
@pytest.mark.parametrize("wrapped", ["client class", "httpx send"])
def test_a_plain_wrapper_installed_before_init_gets_the_arguments_it_got_before(tmp_path: Path, wrapped: str) -> None:
    """Wrappers spelled ``(*args, **kwargs)`` (no signature to read) get exactly the keywords the caller gave: one
    that reads ``kwargs["stream"]`` still finds it, and httpx's own defaults pass through untouched."""
    done = _run(WRAPPED_BEFORE, tmp_path, wrapped)
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert report["answers"] == ["ok", 3, 404, "Basic dTpw"]
    assert report["spans"] == ["openai.chat.completions"] * 2


ASKED_FOR_USAGE = r'''
import asyncio, json, sys
import httpx, openai
from tests.stubs.provider_server import Reply, StubProvider
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

watched, stream_usage, flavour = sys.argv[1] == "watched", sys.argv[2], sys.argv[3]
traced = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(traced))
OpenAIInstrumentor().instrument(tracer_provider=provider)
if watched:
    import agentwatch
    memory = agentwatch.InMemoryExporter()
    agentwatch.init(exporters=[memory], **({} if stream_usage == "auto" else {"stream_usage": stream_usage}))


class ToStub:
    """Requests for api.openai.com go to the stub: "auto" asks there, with no network."""

    def __init__(self, stub, inner):
        self.stub, self.inner = stub, inner

    def redirect(self, request):
        request.url = request.url.copy_with(scheme="http", host=self.stub.host, port=self.stub.port)
        return request


class SyncToStub(ToStub, httpx.BaseTransport):
    def handle_request(self, request):
        return self.inner.handle_request(self.redirect(request))


class AsyncToStub(ToStub, httpx.AsyncBaseTransport):
    async def handle_async_request(self, request):
        return await self.inner.handle_async_request(self.redirect(request))


with StubProvider() as stub:
    stub.queue(Reply(content="one two three", input_tokens=30, output_tokens=90))
    if stream_usage == "auto":  # the default, at OpenAI's own API
        base_url = "https://api.openai.com/v1"
        http_client = httpx.AsyncClient(transport=AsyncToStub(stub, httpx.AsyncHTTPTransport())) \
            if flavour == "async" else httpx.Client(transport=SyncToStub(stub, httpx.HTTPTransport()))
    else:
        base_url, http_client = stub.openai_base_url, None
    options = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    if flavour == "async":
        async def main():
            client = openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0, http_client=http_client)
            stream = await client.chat.completions.create(**options)
            return [chunk.model_dump(exclude={"created"}) async for chunk in stream]
        chunks = asyncio.run(main())
    else:
        client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0, http_client=http_client)
        chunks = [chunk.model_dump(exclude={"created"}) for chunk in client.chat.completions.create(**options)]
    sent = stub.last.json  # chunks without "created": a stub's second differs from one run to the next
[span] = traced.get_finished_spans()
report = {"chunks": chunks, "sent_stream_options": sent.get("stream_options"),
          "input": json.loads(span.attributes["input.value"]),
          "parameters": json.loads(span.attributes["llm.invocation_parameters"])}
if watched:
    agentwatch.flush()
    [llm] = [span for span in memory.spans if span["kind"] == "llm"]
    report["tokens"] = [llm["input_tokens"], llm["output_tokens"], "usage_estimated" in llm["attributes"]]
print(json.dumps(report))
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("stream_usage", ["always", "auto"])
def test_openinference_records_a_stream_we_ask_for_usage_as_the_user_made_it(
        tmp_path: Path, stream_usage: str, flavour: str) -> None:
    """OpenInference instrumented before ``init()`` wraps ``request()`` inside ours and records the options it gets.
    The stream's usage is asked for in the request the SDK builds, not in the caller's options: its span shows the
    call as made (found 2026-12-06: ``stream_options: {include_usage: true}`` in its ``input.value`` and
    ``llm.invocation_parameters``, which the user never set), and the usage is still asked for and charged."""
    without: dict[str, Any] = json.loads(_run(ASKED_FOR_USAGE, tmp_path, "plain", stream_usage, flavour,
                                              timeout=100).stdout.splitlines()[-1])
    watched: dict[str, Any] = json.loads(_run(ASKED_FOR_USAGE, tmp_path, "watched", stream_usage, flavour,
                                              timeout=100).stdout.splitlines()[-1])
    assert without["sent_stream_options"] is None
    assert watched["sent_stream_options"] == {"include_usage": True}  # asked all the same
    assert watched["tokens"] == [30, 90, False]  # charged from the usage the server sent
    assert "stream_options" not in without["parameters"]
    assert watched["parameters"] == without["parameters"]
    assert watched["input"] == without["input"]
    assert watched["chunks"] == without["chunks"]  # and the stream is what it is without AgentWatch
