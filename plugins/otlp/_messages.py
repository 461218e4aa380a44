"""Captured text → the GenAI semantic convention's message shape (``gen_ai.input.messages`` / ``.output.messages``).

Spans keep text as each framework gave it: LangChain roles (``human``, ``ai``), OpenAI request messages with
content parts and tool calls, Anthropic content blocks, a bare output string. Receivers (Phoenix, Langfuse,
Datadog) parse only the convention's form: ``[{"role": "user"|"assistant"|"system"|"tool", "parts": [...]}]``
with typed parts, and output messages carrying a ``finish_reason``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["input_messages", "output_messages"]

_ROLES = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant", "model": "assistant",
          "system": "system", "developer": "system", "tool": "tool", "function": "tool",
          "chat": "user", "generic": "user"}
_FINISH = {"stop": "stop", "end_turn": "stop", "stop_sequence": "stop", "length": "length",
           "max_tokens": "length", "tool_calls": "tool_call", "tool_use": "tool_call", "function_call": "tool_call",
           "content_filter": "content_filter", "error": "error"}


def _text(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    nested = call.get("function")
    function: dict[str, Any] = nested if isinstance(nested, dict) else call
    part: dict[str, Any] = {"type": "tool_call", "name": str(function.get("name", ""))}
    if call.get("id") is not None:
        part["id"] = str(call["id"])
    arguments = function.get("arguments", function.get("args", function.get("input")))
    if arguments is not None:
        part["arguments"] = _arguments(arguments)
    return part


def _content_parts(content: Any) -> list[dict[str, Any]]:
    """OpenAI content parts, Anthropic content blocks, LangChain content lists, or plain text."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_text(content)] if content else []
    if not isinstance(content, list):
        return [_text(json.dumps(content, default=str, ensure_ascii=False))]
    parts: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, str):
            parts.append(_text(block))
            continue
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in ("text", "input_text", "output_text") and isinstance(block.get("text"), str):
            parts.append(_text(block["text"]))
        elif kind in ("thinking", "reasoning"):
            parts.append({"type": "reasoning", "content": str(block.get("thinking") or block.get("text") or "")})
        elif kind == "tool_use":
            parts.append(_tool_call(block))
        elif kind == "tool_result":
            parts.append({"type": "tool_call_response", "id": str(block.get("tool_use_id", "")),
                          "response": block.get("content")})
        elif kind in ("image_url", "image", "input_image"):
            url = block.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if isinstance(url, str) and not url.startswith("data:"):
                parts.append({"type": "uri", "modality": "image", "uri": url})
            else:
                parts.append({"type": "blob", "modality": "image"})
        else:
            parts.append({"type": str(kind or "unknown"), "content": json.dumps(block, default=str)})
    return parts


def _message(raw: Any, default_role: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {"role": default_role, "parts": _content_parts(raw if isinstance(raw, str) else str(raw))}
    role = _ROLES.get(str(raw.get("role") or raw.get("type") or default_role).lower(), "user")
    parts = _content_parts(raw.get("content"))
    for call in raw.get("tool_calls") or ():
        if isinstance(call, dict):
            parts.append(_tool_call(call))
    if role == "tool" and raw.get("tool_call_id") is not None:
        parts = [{"type": "tool_call_response", "id": str(raw["tool_call_id"]),
                  "response": raw.get("content")}]
    message: dict[str, Any] = {"role": role, "parts": parts}
    if isinstance(raw.get("name"), str):
        message["name"] = raw["name"]
    return message


def _is_message_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) and ("role" in item or "type" in item)
                                           for item in value)


def input_messages(value: Any) -> list[dict[str, Any]]:
    """The convention's input messages for whatever an LLM span captured as its input."""
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if _is_message_list(value):
        return [_message(item, "user") for item in value]
    if isinstance(value, list):  # completion-style prompts
        return [_message(item, "user") for item in value]
    return [_message(value, "user")]


def output_messages(value: Any, finish_reason: Any = None) -> list[dict[str, Any]]:
    """The convention's output messages, each with a ``finish_reason`` (``stop`` when none was recorded)."""
    finish = _FINISH.get(str(finish_reason).lower(), str(finish_reason)) if finish_reason else "stop"
    raw = value if _is_message_list(value) else [value]
    messages = []
    for item in raw:
        message = _message(item, "assistant")
        if message["role"] == "user":  # a bare output dict without a role is the model's answer
            message["role"] = "assistant"
        message["finish_reason"] = finish
        messages.append(message)
    return messages
