"""Spans from other instrumentations → AgentWatch spans: kinds, model, provider, tokens, cost, messages, agents.

Understood conventions, first match wins where they overlap:
- AgentWatch's own OTLP export (``agentwatch.*``);
- OpenTelemetry GenAI semantic conventions (``gen_ai.*``): current ``gen_ai.input.messages`` /
  ``gen_ai.output.messages`` / ``gen_ai.system_instructions`` and the older flattened
  ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` and ``gen_ai.content.prompt`` events;
- OpenInference (``openinference.span.kind``, ``llm.*``, ``input.value`` / ``output.value``);
- OpenLLMetry / Traceloop (``traceloop.span.kind``, ``traceloop.entity.*``, ``llm.request.type``);
- Pydantic AI and Logfire (``agent_name``, ``gen_ai.tool.name``, ``operation.cost``).

Text ends up in the span's ``input``/``output`` (the collector's capture and zero-data-retention rules apply
to it there) and the flattened message attributes it came from are removed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentwatch._agent_ids import agent_id_from_name

from ._model import price_from_tokens
from ._otlp_decode import STATUS_ERROR, OtlpSpan

__all__ = ["to_native_span", "source_attribute"]

_OPENINFERENCE_KINDS = {"LLM": "llm", "EMBEDDING": "embedding", "TOOL": "tool", "AGENT": "agent",
                        "CHAIN": "chain", "RETRIEVER": "retriever", "RERANKER": "reranker",
                        "GUARDRAIL": "guardrail", "EVALUATOR": "evaluator"}
_OPERATIONS = {"chat": "llm", "text_completion": "llm", "generate_content": "llm", "completion": "llm",
               "embeddings": "embedding", "execute_tool": "tool", "invoke_agent": "agent", "create_agent": "agent"}
_TRACELOOP_KINDS = {"workflow": "chain", "task": "chain", "agent": "agent", "tool": "tool"}
_REQUEST_TYPES = {"chat": "llm", "completion": "llm", "embedding": "embedding", "rerank": "reranker"}

# The model asked for first, as the SDK records it (its OTLP export sends both): "gpt-4o", not the dated model that
# answered, which is the price's fallback (``_ANSWERED_KEYS``). OpenInference names the answering one only (the
# embedding's model under its own key).
_MODEL_KEYS = ("gen_ai.request.model", "gen_ai.response.model", "llm.model_name", "embedding.model_name",
               "llm.request.model", "llm.response.model")
_ANSWERED_KEYS = ("gen_ai.response.model", "llm.response.model")
_PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
_INPUT_TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt",
                     "llm.usage.prompt_tokens")
_OUTPUT_TOKEN_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                      "llm.token_count.completion", "llm.usage.completion_tokens")
_CACHED_TOKEN_KEYS = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
                      "llm.token_count.prompt_details.cache_read")
_CACHE_WRITE_KEYS = ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens",
                     "llm.token_count.prompt_details.cache_write")
_COST_KEYS = ("agentwatch.cost_usd", "gen_ai.usage.cost", "llm.cost.total", "operation.cost")
_AGENT_KEYS = ("gen_ai.agent.name", "agent_name", "agent.name")
_AGENT_ID_KEYS = ("gen_ai.agent.id",)
# OpenInference and AgentWatch name the session ``session.id``; the GenAI conventions a conversation, Langfuse its own.
_SESSION_KEYS = ("session.id", "gen_ai.conversation.id", "langfuse.session.id")

_FLAT = re.compile(r"^(gen_ai\.prompt|gen_ai\.completion|llm\.input_messages|llm\.output_messages)\.(\d+)\.(.+)$")


#: Where each field of a native span may come from, for naming it in a refusal as the exporter sent it.
_SOURCES = {"model": _MODEL_KEYS, "provider": _PROVIDER_KEYS, "input_tokens": _INPUT_TOKEN_KEYS,
            "output_tokens": _OUTPUT_TOKEN_KEYS, "cached_input_tokens": _CACHED_TOKEN_KEYS, "cost_usd": _COST_KEYS,
            "agent_name": _AGENT_KEYS, "agent_id": _AGENT_ID_KEYS}


def source_attribute(span: OtlpSpan, field: str) -> str | None:
    """The attribute of ``span`` that a native span's ``field`` was read from, if one was."""
    for key in _SOURCES.get(field, ()):
        value = span.attributes.get(key)
        if value is not None and value != "":
            return key
    return None


def _first(attributes: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "":
            return value
    return None


def _count(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 0
    return number if number >= 0 else 0


def _kind(span: OtlpSpan, attributes: dict[str, Any]) -> str:
    own = attributes.get("agentwatch.kind")
    if isinstance(own, str) and own:
        return own
    for key, table in (("openinference.span.kind", _OPENINFERENCE_KINDS), ("gen_ai.operation.name", _OPERATIONS),
                       ("traceloop.span.kind", _TRACELOOP_KINDS), ("llm.request.type", _REQUEST_TYPES)):
        value = attributes.get(key)
        if isinstance(value, str):
            found = table.get(value if key == "openinference.span.kind" else value.lower())
            if found:
                return found
    if attributes.get("gen_ai.tool.name") is not None:
        return "tool"
    if _first(attributes, _MODEL_KEYS) and _first(attributes, _INPUT_TOKEN_KEYS + _OUTPUT_TOKEN_KEYS) is not None:
        return "llm"
    if _first(attributes, _AGENT_KEYS):
        return "agent"
    return "span"


def _json_or_text(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _flattened_messages(attributes: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``gen_ai.prompt.0.role`` / ``llm.input_messages.0.message.content`` ... → message lists, keys removed."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for key in [key for key in attributes if _FLAT.match(key)]:
        match = _FLAT.match(key)
        assert match is not None
        family, index, field = match.group(1), int(match.group(2)), match.group(3)
        field = field.removeprefix("message.")
        found.setdefault(family, {}).setdefault(index, {})[field] = _json_or_text(attributes.pop(key))
    messages: dict[str, list[dict[str, Any]]] = {}
    for family, by_index in found.items():
        direction = "input" if family in ("gen_ai.prompt", "llm.input_messages") else "output"
        messages.setdefault(direction, []).extend(by_index[index] for index in sorted(by_index))
    return messages


def _event_messages(events: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The older event form: ``gen_ai.content.prompt`` / ``.completion`` events, and per-message events."""
    messages: dict[str, list[Any]] = {}
    for event in events:
        name, attributes = event.get("name", ""), event.get("attributes") or {}
        if name == "gen_ai.content.prompt" and "gen_ai.prompt" in attributes:
            messages.setdefault("input", []).append(_json_or_text(attributes["gen_ai.prompt"]))
        elif name == "gen_ai.content.completion" and "gen_ai.completion" in attributes:
            messages.setdefault("output", []).append(_json_or_text(attributes["gen_ai.completion"]))
        elif name.startswith("gen_ai.") and name.endswith(".message") and "content" in attributes:
            role = name.removeprefix("gen_ai.").removesuffix(".message")
            messages.setdefault("input", []).append({"role": role, "content": attributes["content"]})
        elif name == "gen_ai.choice" and ("message" in attributes or "content" in attributes):
            choice = attributes.get("message", attributes.get("content"))
            messages.setdefault("output", []).append(_json_or_text(choice))
        else:
            continue
        event["attributes"] = {}
    return messages


def _text(attributes: dict[str, Any], events: list[dict[str, Any]]) -> tuple[Any, Any]:
    captured_input = _json_or_text(attributes.pop("gen_ai.input.messages", None))
    captured_output = _json_or_text(attributes.pop("gen_ai.output.messages", None))
    instructions = _json_or_text(attributes.pop("gen_ai.system_instructions", None))
    flattened = _flattened_messages(attributes)
    from_events = _event_messages(events)
    if captured_input is None:
        captured_input = flattened.get("input") or from_events.get("input")
    if captured_output is None:
        captured_output = flattened.get("output") or from_events.get("output")
    # OpenInference repeats the request and response bodies as input.value/output.value: text either way.
    plain_input, plain_output = attributes.pop("input.value", None), attributes.pop("output.value", None)
    # OpenLLMetry's workflow, task and agent spans carry the decorated function's arguments and result.
    entity_input = attributes.pop("traceloop.entity.input", None)
    entity_output = attributes.pop("traceloop.entity.output", None)
    plain_input = plain_input if plain_input is not None else entity_input
    plain_output = plain_output if plain_output is not None else entity_output
    attributes.pop("input.mime_type", None)
    attributes.pop("output.mime_type", None)
    if captured_input is None and plain_input is not None:
        captured_input = _json_or_text(plain_input)
    if captured_output is None and plain_output is not None:
        captured_output = _json_or_text(plain_output)
    for key in ("gen_ai.prompt", "gen_ai.completion"):  # single-string forms of the oldest convention
        if key in attributes:
            value = _json_or_text(attributes.pop(key))
            if key == "gen_ai.prompt" and captured_input is None:
                captured_input = value
            elif key == "gen_ai.completion" and captured_output is None:
                captured_output = value
    if instructions is not None:
        system = {"role": "system", "parts": instructions if isinstance(instructions, list) else
                  [{"type": "text", "content": str(instructions)}]}
        captured_input = [system, *(captured_input if isinstance(captured_input, list) else
                                    [] if captured_input is None else [captured_input])]
    return captured_input, captured_output


def to_native_span(span: OtlpSpan) -> dict[str, Any]:
    """The span as the SDK's native ingest format; validated by the same model as ``/api/ingest``."""
    attributes = dict(span.attributes)
    events = [dict(event) for event in span.events]
    kind = _kind(span, attributes)
    session = _first(attributes, _SESSION_KEYS)
    if session is not None:
        attributes["session.id"] = str(session)
    captured_input, captured_output = _text(attributes, events)
    model = _first(attributes, _MODEL_KEYS) or _invoked_model(attributes)
    provider = _first(attributes, _PROVIDER_KEYS)
    input_tokens = _count(_first(attributes, _INPUT_TOKEN_KEYS))
    output_tokens = _count(_first(attributes, _OUTPUT_TOKEN_KEYS))
    cached = min(_count(_first(attributes, _CACHED_TOKEN_KEYS)), input_tokens)
    # Cache writes are part of the input tokens (as in the SDK's usage), priced at the write rate.
    cache_write = min(_count(_first(attributes, _CACHE_WRITE_KEYS)), input_tokens - cached)
    cost = _first(attributes, _COST_KEYS)
    try:
        cost_usd = float(cost) if cost is not None else None
    except (TypeError, ValueError):
        cost_usd = None
    if cost_usd is None:
        cost_usd = 0.0
        if kind in ("llm", "embedding") and (input_tokens or output_tokens):
            answered = _first(attributes, _ANSWERED_KEYS)
            cost_usd = price_from_tokens(str(model) if model else None, str(provider) if provider else None,
                                         input_tokens, output_tokens, attributes, cached, cache_write,
                                         str(answered) if answered else None)
    agent = _first(attributes, _AGENT_KEYS)
    if agent is None and kind == "agent":
        agent = attributes.get("traceloop.entity.name") or span.name
    agent_id = _first(attributes, _AGENT_ID_KEYS)
    if agent_id is None and agent is not None:
        # Named as the SDK names an agent's id, so the agent an instrumentation names ("Support") is the one
        # AgentWatch records ("support"): one row in the costs by agent.
        agent_id = agent_id_from_name(str(agent))
    status = "error" if span.status_code == STATUS_ERROR else "ok"
    if attributes.get("agentwatch.status") == "blocked":
        status = "blocked"
    if span.status_message and status != "ok":
        attributes.setdefault("error.message", span.status_message)
    service = span.resource.get("service.name")
    if service is not None:
        attributes.setdefault("service.name", service)
    if span.scope:
        attributes["otel.scope.name"] = span.scope
    kept_events = [event for event in events if event.get("attributes") or not event["name"].startswith("gen_ai.")]
    if kept_events:
        attributes["otel.events"] = kept_events
    native: dict[str, Any] = {
        "trace_id": span.trace_id, "span_id": span.span_id, "parent_span_id": span.parent_span_id,
        "name": span.name, "kind": kind, "status": status, "start_time_unix_nano": span.start_ns,
        "end_time_unix_nano": max(span.end_ns, span.start_ns), "model": str(model)[:512] if model else None,
        "provider": str(provider)[:512] if provider else None, "input_tokens": input_tokens,
        "output_tokens": output_tokens, "cached_input_tokens": cached, "cost_usd": cost_usd,
        "attributes": attributes, "input": captured_input, "output": captured_output,
    }
    if agent is not None:
        native["agent_name"] = str(agent)[:512]
    if agent_id is not None:
        native["agent_id"] = str(agent_id)[:512]
    return native


def _invoked_model(attributes: dict[str, Any]) -> Any:
    """The model in OpenInference's request parameters (JSON text): all a failed call names it by."""
    parameters = attributes.get("llm.invocation_parameters")
    if not isinstance(parameters, str) or '"model"' not in parameters:
        return None
    try:
        decoded = json.loads(parameters)
    except ValueError:
        return None
    return decoded.get("model") if isinstance(decoded, dict) else None
