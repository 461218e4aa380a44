"""Span dicts → an OTLP ``ExportTraceServiceRequest`` using the GenAI semantic conventions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from agentwatch import __version__
from agentwatch.instrumentation import REMOTE_PARENT_KEY

from ._messages import input_messages, output_messages

__all__ = ["to_otlp_request", "genai_attributes"]

_OPERATION = {"llm": "chat", "embedding": "embeddings", "tool": "execute_tool", "agent": "invoke_agent"}
# What a receiver shows a span as (OpenInference's kinds, which Phoenix and Arize read; GenAI-convention
# receivers read ``gen_ai.operation.name``). Graphs, nodes, crews and tasks are chains, never LLM calls.
_SPAN_KINDS = {"llm": "LLM", "embedding": "EMBEDDING", "tool": "TOOL", "agent": "AGENT", "retriever": "RETRIEVER",
               "reranker": "RERANKER", "graph": "CHAIN", "node": "CHAIN", "chain": "CHAIN", "trace": "CHAIN",
               "crew": "CHAIN", "task": "CHAIN", "workflow": "CHAIN", "span": "CHAIN", "session": "CHAIN",
               "cron": "CHAIN", "breaker": "GUARDRAIL", "alert": "GUARDRAIL"}
# Breaker transitions and alerts are AgentWatch's guard on spend and limits (GUARDRAIL); every other kind (process,
# event, metric, error, http) is no step of an AI application: UNKNOWN said outright, as a span without the attribute
# shows in Phoenix as "unknown" with a blank icon and the attribute is required on OpenInference spans.
_UNKNOWN_KIND = "UNKNOWN"
#: Request settings an LLM span may carry, exported under the convention's ``gen_ai.request.*`` names.
_REQUEST_PARAMETERS = frozenset({"temperature", "max_tokens", "top_p"})
_CLIENT_KINDS = frozenset({"llm", "embedding", "http"})
#: Inference operations: the convention names their spans ``{gen_ai.operation.name} {gen_ai.request.model}``.
_INFERENCE = frozenset({"chat", "embeddings", "text_completion", "generate_content"})
#: AgentWatch's provider ids (genai-prices') → the convention's well-known ``gen_ai.provider.name`` values, which
#: MUST be used where one applies; the rest (together, fireworks, openrouter, ollama, ...) have none and go as they
#: are. ``google`` and ``azure`` are refined by the request's URL (``_provider``).
_PROVIDERS = {"google": "gcp.gemini", "mistral": "mistral_ai", "azure": "azure.ai.openai", "aws": "aws.bedrock",
              "x-ai": "x_ai"}
#: ``error.type`` of blocked spans (README lists them): AgentWatch's block, and a framework's refusal.
_BREAKER_ERROR = "CircuitBreakerException"
_WITHDRAWN_ERROR = "agentwatch.blocked"


def _any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        any_value = AnyValue()
        any_value.array_value.values.extend(AnyValue(string_value=item) for item in value)
        return any_value
    # Nested structures become JSON text: backends index flat attributes far better than kvlists.
    return AnyValue(string_value=json.dumps(value, default=str, ensure_ascii=False))


def _key_values(attributes: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=_any_value(value)) for key, value in attributes.items() if value is not None]


def genai_attributes(span: Mapping[str, Any]) -> dict[str, Any]:
    """The GenAI convention attributes of one span, with AgentWatch extras under ``agentwatch.*``."""
    kind = span["kind"]
    extra = dict(span.get("attributes") or {})
    extra.pop(REMOTE_PARENT_KEY, None)  # the span's parent (``_otlp_span``), not an attribute
    attributes: dict[str, Any] = {"agentwatch.kind": kind, "agentwatch.status": span["status"]}
    url = _url_parts(extra)
    operation = _operation(span, url)
    if operation:
        attributes["gen_ai.operation.name"] = operation
    attributes["openinference.span.kind"] = _SPAN_KINDS.get(kind, _UNKNOWN_KIND)
    finish_reason = extra.get("finish_reason")
    if span.get("provider"):
        # gen_ai.system is the convention's name before 1.37, which receivers not yet on the current one still read.
        attributes["gen_ai.provider.name"] = attributes["gen_ai.system"] = _provider(span["provider"], url)
    if span.get("model"):
        attributes["gen_ai.request.model"] = span["model"]
    if extra.get("response_model"):
        # Only a model that answered: a blocked or failed call got no response, and the request's model name
        # (an alias, "gpt-4o") is not the one that answered ("gpt-4o-2024-08-06").
        attributes["gen_ai.response.model"] = extra["response_model"]
    extra.pop("response_model", None)
    if kind in ("llm", "embedding"):
        attributes["gen_ai.usage.input_tokens"] = span["input_tokens"]
        attributes["gen_ai.usage.output_tokens"] = span["output_tokens"]
        attributes["gen_ai.usage.cache_read.input_tokens"] = span["cached_input_tokens"]
        attributes["agentwatch.cost_usd"] = span["cost_usd"]
    if "cache_write_tokens" in extra:
        # The convention's name for cache writes (Anthropic's cache_creation_input_tokens), counted in
        # gen_ai.usage.input_tokens as the convention asks; the 1-hour part has none and stays agentwatch.*.
        attributes["gen_ai.usage.cache_creation.input_tokens"] = extra.pop("cache_write_tokens")
    for parameter in _REQUEST_PARAMETERS.intersection(extra) if kind in ("llm", "embedding") else ():
        # No plugin records them today; manual instrumentation (``call.set_attribute("temperature", 0.2)``) may.
        attributes[f"gen_ai.request.{parameter}"] = extra.pop(parameter)
    if "finish_reason" in extra:
        attributes["gen_ai.response.finish_reasons"] = [str(extra.pop("finish_reason"))]
    if span.get("agent_name"):
        attributes["gen_ai.agent.name"] = span["agent_name"]
    if span.get("agent_id"):
        attributes["gen_ai.agent.id"] = span["agent_id"]
    if span.get("agent_role"):
        attributes["agentwatch.agent.role"] = span["agent_role"]
    if kind == "tool":
        attributes["gen_ai.tool.name"] = extra.pop("tool.name", span["name"])
    if "error.type" in extra:
        attributes["error.type"] = extra.pop("error.type")
    elif span["status"] == "blocked":
        attributes["error.type"] = _blocked_error_type(extra)
    session = extra.pop("session.id", None)
    if session is not None:
        # OpenInference's name (Phoenix groups sessions by it) and the GenAI conventions' conversation.
        attributes["session.id"] = attributes["gen_ai.conversation.id"] = str(session)
    _text_attributes(span, kind, finish_reason, attributes)
    prefix = "agentwatch.breaker." if kind == "breaker" else "agentwatch."
    for key, value in extra.items():
        name = key if key.startswith(("gen_ai.", "agentwatch.", "langgraph", "http.", "url.", "server.")) \
            else f"{prefix}{key}"
        attributes[name] = value
    return attributes


def _url_parts(attributes: Mapping[str, Any]) -> tuple[str, str]:
    """The host and path of the request an LLM span recorded (``http.url``), or empty strings."""
    url = attributes.get("http.url")
    if not isinstance(url, str):
        return "", ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "", ""
    return (parts.hostname or "").lower(), parts.path


def _provider(provider: str, url: tuple[str, str]) -> str:
    host, path = url
    if provider == "google" and ("aiplatform.googleapis.com" in host or "/publishers/google/" in path):
        return "gcp.vertex_ai"  # Vertex AI's endpoint; generativelanguage.googleapis.com is the Gemini API's
    if provider == "azure" and (host.endswith(".services.ai.azure.com") or host.endswith("inference.ai.azure.com")) \
            and "/openai/" not in path:
        return "azure.ai.inference"  # Azure AI Foundry's model inference API, not an Azure OpenAI deployment
    return _PROVIDERS.get(provider, provider)


def _operation(span: Mapping[str, Any], url: tuple[str, str]) -> str | None:
    """The convention's operation: by kind, and for an LLM call by the API it used (the request's path, else the
    span's name: ``openai.completions``, ``google.generate_content``, ``litellm.text_completion``)."""
    kind = span["kind"]
    operation = _OPERATION.get(kind)
    if operation != "chat":
        return operation
    _, path = url
    if path:
        if ":generateContent" in path or ":streamGenerateContent" in path:
            return "generate_content"
        if path.endswith("/completions") and not path.endswith("/chat/completions") or path.endswith("/api/generate"):
            return "text_completion"  # OpenAI's legacy completions (prompt in, text out), Ollama's generate
        return "chat"
    api = str(span.get("name") or "").rsplit(".", 1)[-1]
    if api == "generate_content":
        return "generate_content"
    if api in ("text_completion", "atext_completion") or api == "completions" \
            and not str(span.get("name")).endswith("chat.completions"):
        return "text_completion"
    return "chat"


def _blocked_error_type(attributes: Mapping[str, Any]) -> str:
    """The convention requires ``error.type`` on a span that ended in error, predictable and of low cardinality:
    for AgentWatch's block the exception the caller got (a failed call's is its exception's class name too), for a
    call a framework's own check refused (``LLMCall.withdraw``: no ``breaker.*``) one value of our own."""
    return _BREAKER_ERROR if "breaker.reason" in attributes else _WITHDRAWN_ERROR


def _text_attributes(span: Mapping[str, Any], kind: str, finish_reason: Any, attributes: dict[str, Any]) -> None:
    """Messages in the convention's shape on LLM spans only; other spans' captured text as plain values."""
    captured_input, captured_output = span.get("input"), span.get("output")
    if kind == "llm":
        if captured_input is not None:
            attributes["gen_ai.input.messages"] = input_messages(captured_input)
        if captured_output is not None:
            attributes["gen_ai.output.messages"] = output_messages(captured_output, finish_reason)
        return
    for name, value in (("input", captured_input), ("output", captured_output)):
        if value is None:
            continue
        if isinstance(value, str):
            attributes[f"{name}.value"] = value
        else:
            attributes[f"{name}.value"] = json.dumps(value, default=str, ensure_ascii=False)
            attributes[f"{name}.mime_type"] = "application/json"


def _status(span: Mapping[str, Any]) -> Status:
    if span["status"] == "ok":
        return Status(code=Status.STATUS_CODE_UNSET)
    attributes = span.get("attributes") or {}
    if span["status"] == "blocked" and "breaker.reason" not in attributes:  # refused by a framework's own check
        message = f"blocked: {attributes.get('reason', '')}".strip(": ")
    elif span["status"] == "blocked":
        message = f"blocked by AgentWatch circuit breaker: {attributes.get('breaker.reason', '')}".strip(": ")
    else:
        message = str(attributes.get("error.message", ""))
    return Status(code=Status.STATUS_CODE_ERROR, message=message)


def _otlp_span(span: Mapping[str, Any]) -> Span:
    attributes = genai_attributes(span)
    operation = attributes.get("gen_ai.operation.name")
    # The convention's span names: "{operation} {model}" for inference, "execute_tool {tool name}" for tools,
    # "invoke_agent {agent name}" for agents.
    if operation in _INFERENCE and span.get("model"):
        name = f"{operation} {span['model']}"
    elif operation == "execute_tool" and attributes.get("gen_ai.tool.name"):
        name = f"execute_tool {attributes['gen_ai.tool.name']}"
    elif operation == "invoke_agent" and attributes.get("gen_ai.agent.name"):
        name = f"invoke_agent {attributes['gen_ai.agent.name']}"
    else:
        name = span["name"]
    # A root span opened inside the program's own OpenTelemetry span (a web request's) is that span's child.
    parent = span.get("parent_span_id") or (span.get("attributes") or {}).get(REMOTE_PARENT_KEY)
    return Span(
        trace_id=bytes.fromhex(span["trace_id"]),
        span_id=bytes.fromhex(span["span_id"]),
        parent_span_id=bytes.fromhex(parent) if parent else b"",
        name=name,
        kind=Span.SPAN_KIND_CLIENT if span["kind"] in _CLIENT_KINDS else Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=span["start_time_unix_nano"],
        end_time_unix_nano=span.get("end_time_unix_nano") or span["start_time_unix_nano"],
        attributes=_key_values(attributes),
        status=_status(span),
    )


def to_otlp_request(spans: Iterable[Mapping[str, Any]],
                    resource_attributes: Mapping[str, Any] | Sequence[tuple[str, Any]] = ()) -> bytes:
    resource = Resource(attributes=_key_values(dict(resource_attributes)))
    scope = InstrumentationScope(name="agentwatch", version=__version__)
    request = ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=[_otlp_span(s) for s in spans])])
    ])
    return request.SerializeToString()
