"""Reading LangChain results: usage (also streamed), model, finish reason, text and tool calls.

Captured messages take the shape the HTTP layer gives the same calls made with a provider's SDK (``plugins/http``),
which the otlp exporter turns into the convention's tool-call parts: a model's tool calls as ``"tool_calls": [{"id",
"name", "arguments"}]`` with the arguments as JSON text, a tool's result with its ``tool_call_id``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from agentwatch import LLMCall
from agentwatch.instrumentation import clip, estimate_request_tokens, estimate_tokens

if TYPE_CHECKING:  # not at run time: importing this module must not import LangChain (see _plugin)
    from langchain_core.outputs import LLMResult

__all__ = ["record_result", "message_dicts", "output_text", "output_message", "estimate_cut_off"]


def record_result(call: LLMCall, response: LLMResult, capture: bool) -> str | None:
    """Put the response's model, usage and (if ``capture``) text on ``call``; return its finish reason.

    Usage: ``message.usage_metadata`` first (set when streaming too), then ``llm_output["token_usage"]``.
    LangChain normalises ``usage_metadata`` to include cached tokens in ``input_tokens`` for every
    provider, the same convention as the span model. Runs once per model call, so it reads each field once.
    """
    generations = response.generations
    generation = generations[0][0] if generations and generations[0] else None
    # Plain attribute reads, not getattr(..., None) (a builtin call each, ~0.5k machine instructions a chat call): a
    # chat model's message has both fields; a completion model's Generation (or none) pays one AttributeError.
    try:
        message = generation.message  # type: ignore[union-attr]
    except AttributeError:
        message = usage = response_metadata = None
    else:
        try:
            usage = message.usage_metadata
            response_metadata = message.response_metadata
        except AttributeError:  # a message of another kind: what getattr() gives
            usage = getattr(message, "usage_metadata", None)
            response_metadata = getattr(message, "response_metadata", None)
    llm_output = response.llm_output
    if usage:
        input_tokens, output_tokens = usage.get("input_tokens"), usage.get("output_tokens")
        details = usage.get("input_token_details")
        call.set_usage(input_tokens, output_tokens, details.get("cache_read") if details else None,
                       details.get("cache_creation") if details else None)
    elif llm_output and isinstance(llm_output.get("token_usage"), dict):
        token_usage = llm_output["token_usage"]
        input_tokens, output_tokens = token_usage.get("prompt_tokens"), token_usage.get("completion_tokens")
        call.set_usage(input_tokens, output_tokens,
                       (token_usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
    else:
        input_tokens = output_tokens = None
    if input_tokens is None and output_tokens is None:
        call.set_attribute("usage_missing", True)
    response_metadata = response_metadata or {}
    model = (response_metadata.get("model_name") or response_metadata.get("model")
             or (llm_output.get("model_name") if llm_output else None))
    if model:
        call.set_model(model)
    if capture:
        output = output_message(response)
        if output is not None:  # else what the HTTP layer may have read of this call's response stays
            call.set_output(output)
    finish_reason = response_metadata.get("finish_reason") or response_metadata.get("stop_reason")
    if not finish_reason and generation is not None and generation.generation_info:
        finish_reason = generation.generation_info.get("finish_reason")
    return finish_reason  # type: ignore[no-any-return]


def estimate_cut_off(call: LLMCall, request: Any, response: Any) -> None:
    """Charge a call cut off before any usage came from an estimate: its messages (``list[list[message]]``) or prompts,
    and the text LangChain had streamed by then (``response``, the chunks merged)."""
    if request and isinstance(request[0], list):
        body: dict[str, Any] = {"messages": message_dicts(request)}
    else:
        body = {"prompt": list(request or ())}
    text = output_text(response) if getattr(response, "generations", None) is not None else None
    call.set_attribute("stream_incomplete", True)
    call.estimate_usage(estimate_request_tokens(body), estimate_tokens(text or ""))


_MISSING = object()
#: Content blocks that are themselves a tool call (Anthropic's replies keep theirs in ``content``).
_CALL_BLOCKS = frozenset({"tool_use", "tool_call", "function_call"})


def message_dicts(messages: list[list[Any]]) -> list[dict[str, Any]]:
    return [_message_dict(message) for batch in messages for message in batch]


def _message_dict(message: Any) -> dict[str, Any]:
    """One message of a model's input: its LangChain role and content, and the tool calls it made (an AI message) or
    answers (a tool message), which LangChain keeps beside the content, not in it."""
    content = getattr(message, "content", _MISSING)
    role = getattr(message, "type", "unknown")
    entry: dict[str, Any] = {"role": role, "content": str(message) if content is _MISSING else content}
    if role == "human" or role == "system":  # most of a history: neither calls nor answers a tool
        return entry
    calls = _tool_calls(message)
    if calls:
        if content.__class__ is list:  # not twice: a call already among the content blocks is kept there only
            written = {block.get("id") for block in content
                       if isinstance(block, dict) and block.get("type") in _CALL_BLOCKS}
            calls = [call for call in calls if call["id"] is None or call["id"] not in written]
        if calls:
            entry["tool_calls"] = calls
    tool_call_id = getattr(message, "tool_call_id", None)
    if tool_call_id is not None:
        entry["tool_call_id"] = tool_call_id
    return entry


def _tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    if arguments is None:
        arguments = ""
    elif arguments.__class__ is not str:  # parsed by LangChain: written back as JSON text, as the model sends it
        arguments = json.dumps(arguments, ensure_ascii=False, default=str)
    return {"id": call_id, "name": name, "arguments": clip(arguments)}


def _tool_calls(message: Any) -> list[dict[str, Any]]:
    """The tool calls of an AI message (none for any other), each ``{"id", "name", "arguments"}``."""
    chunks = getattr(message, "tool_call_chunks", None)
    if chunks:  # a streamed reply, merged: each call's arguments as the model wrote them, valid JSON or not
        return [_tool_call(chunk.get("id"), chunk.get("name"), chunk.get("args")) for chunk in chunks]
    parsed = getattr(message, "tool_calls", None)
    invalid = getattr(message, "invalid_tool_calls", None)
    if parsed or invalid:  # invalid ones keep the text that did not parse: the model still called
        return [_tool_call(call.get("id"), call.get("name"), call.get("args"))
                for call in (*(parsed or ()), *(invalid or ()))]
    extra = getattr(message, "additional_kwargs", None)
    if not extra or not isinstance(extra, dict):
        return []
    raw = extra.get("tool_calls")  # integrations that keep the provider's own (OpenAI's) form only
    if isinstance(raw, list) and raw:
        calls = []
        for call in raw:
            if isinstance(call, dict):
                function = call.get("function")
                function = function if isinstance(function, dict) else call
                calls.append(_tool_call(call.get("id"), function.get("name"), function.get("arguments")))
        return calls
    legacy = extra.get("function_call")  # OpenAI's older single function call, which has no id
    if isinstance(legacy, dict):
        return [_tool_call(None, legacy.get("name"), legacy.get("arguments"))]
    return []


def output_text(response: LLMResult) -> str | None:
    texts = [generation.text for batch in response.generations for generation in batch if generation.text]
    return "\n".join(texts) if texts else None


def output_message(response: LLMResult) -> str | dict[str, Any] | None:
    """The captured output: the text, or where the model called tools ``{"role": "assistant", "content": text or
    None, "tool_calls": [...]}``, as the HTTP layer captures a provider's answer."""
    text = output_text(response)
    calls = [call for batch in response.generations for generation in batch
             for call in _tool_calls(getattr(generation, "message", None))]
    if not calls:
        return text
    return {"role": "assistant", "content": text, "tool_calls": calls}
