"""Reading what a provider's response says about the call: usage, model, finish reason and (if asked) text.

Each wire format is read from its parsed JSON (a whole body or one stream event) or from the object an
SDK built from it (same field names, as attributes), so an SDK's result is read without parsing its body
again. Readings accumulate: a later event's value replaces an earlier one, which is what Anthropic's
``message_start`` then ``message_delta`` and OpenAI's final usage chunk need.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agentwatch.instrumentation import normalize_anthropic_usage

__all__ = ["Reading", "read_into"]


class Reading:
    """What the response said. Token counts are as sent; ``usage()`` converts to the span's convention."""

    __slots__ = ("api", "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "model",
                 "finish_reason", "texts", "capture_text", "web_searches", "cache_write_1h_tokens", "tool_calls",
                 "response_id", "conversation_id")

    def __init__(self, api: str, capture_text: bool = False) -> None:
        self.api = api
        self.input_tokens: Any = None
        self.output_tokens: Any = None
        self.cached_tokens: Any = None
        self.cache_write_tokens: Any = None
        #: Anthropic: the part of the cache writes made for one hour (``usage.cache_creation``), dearer than 5 minutes.
        self.cache_write_1h_tokens: Any = None
        self.model: str | None = None
        self.finish_reason: str | None = None
        self.capture_text = capture_text
        self.texts: list[str] = []
        #: The model's tool calls (only when text is captured): position -> [id, name, argument pieces]. A stream
        #: sends each call's arguments in pieces, under its position (OpenAI's ``index``, Anthropic's block index).
        self.tool_calls: dict[int, list[Any]] | None = None
        #: Web searches the provider's own search tool ran (billed per search): None when it reported none.
        self.web_searches: Any = None
        #: Responses API: the answer's id and its conversation's, which a later call can continue.
        self.response_id: str | None = None
        self.conversation_id: str | None = None

    @property
    def has_usage(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None

    def usage(self) -> dict[str, Any]:
        """Keyword arguments for ``LLMCall.set_usage`` (input includes cached tokens)."""
        if self.api == "messages":  # Anthropic counts cache reads and writes outside input_tokens
            return normalize_anthropic_usage(self.input_tokens, self.output_tokens, self.cached_tokens or 0,
                                             self.cache_write_tokens or 0, self.cache_write_1h_tokens or 0)
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cached_input_tokens": self.cached_tokens, "cache_write_tokens": self.cache_write_tokens}

    @property
    def text(self) -> str | None:
        return "".join(self.texts) if self.texts else None

    def output(self) -> Any:
        """What the span keeps as the model's output: its text; with tool calls, the same shape for every provider:
        ``{"role": "assistant", "content": text or None, "tool_calls": [{"id", "name", "arguments"}]}``, the
        arguments as the JSON text the model wrote (the shape ``otlp`` turns into tool-call parts)."""
        text = self.text
        if not self.tool_calls:
            return text
        calls = [{"id": call[0], "name": call[1], "arguments": "".join(call[2])}
                 for _, call in sorted(self.tool_calls.items())]
        return {"role": "assistant", "content": text or None, "tool_calls": calls}  # a stream opens with ""

    def tool_call(self, position: int, call_id: Any = None, name: Any = None, arguments: Any = None) -> None:
        """Add to the tool call at ``position`` what one response or stream event says of it."""
        calls = self.tool_calls
        if calls is None:
            calls = self.tool_calls = {}
        if not isinstance(position, int):  # a malformed event: a call of its own, not a key the sort would refuse
            position = len(calls)
        call = calls.get(position)
        if call is None:
            call = calls[position] = [None, None, []]
        if isinstance(call_id, str):
            call[0] = call_id
        if isinstance(name, str):
            call[1] = name
        if isinstance(arguments, str):
            call[2].append(arguments)
        elif arguments is not None:  # Anthropic's whole input: an object, written as the JSON it was sent as
            call[2] = [json.dumps(arguments, ensure_ascii=False, default=str)]


def _get(data: Any, name: str) -> Any:
    """A field of a JSON object or of an SDK's (pydantic) model of it; None if absent.

    Model fields are read from ``__dict__``: asking a model for a field it lacks would raise and catch
    an AttributeError, slow on the hot path."""
    if data.__class__ is dict:
        return data.get(name)
    fields = getattr(data, "__dict__", None)
    return fields.get(name) if fields else None


def _get_extra(data: Any, name: str) -> Any:
    """A field the SDK's model does not declare (another provider's addition), from ``__pydantic_extra__``."""
    value = _get(data, name)
    if value is None and data.__class__ is not dict:
        extra = getattr(data, "__pydantic_extra__", None)
        value = extra.get(name) if extra else None
    return value


def _first(items: Any) -> Any:
    return items[0] if isinstance(items, list) and items else None


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _set(reading: Reading, **values: Any) -> None:
    for name, value in values.items():
        if value is not None:
            setattr(reading, name, value)


def _openai_chat(reading: Reading, data: Any) -> None:
    # The per-call path for OpenAI-style results: fields are read from the dict (JSON) or the model's
    # ``__dict__`` directly (as ``_get`` does, without a call per field); the rare shapes (Groq, DeepSeek)
    # are looked for only when the usual field is absent.
    fields = data if data.__class__ is dict else getattr(data, "__dict__", None)
    if not fields:
        return
    usage = fields.get("usage")
    if usage is None:
        usage = _get(_get_extra(data, "x_groq"), "usage")  # Groq streams put usage there
    if usage is not None:
        counts = usage if usage.__class__ is dict else getattr(usage, "__dict__", None)
        if counts:
            value = counts.get("prompt_tokens")
            if value is not None:
                reading.input_tokens = value
            value = counts.get("completion_tokens")
            if value is not None:
                reading.output_tokens = value
            elif reading.api == "embeddings":
                reading.output_tokens = 0
            details = counts.get("prompt_tokens_details")
            if details is not None and details.__class__ is not dict:
                details = getattr(details, "__dict__", None)
            cached = details.get("cached_tokens") if details else None
            if cached is None:
                cached = _get_extra(usage, "prompt_cache_hit_tokens")  # DeepSeek
            if cached is not None:
                reading.cached_tokens = cached
            if details:
                value = details.get("cache_write_tokens")
                if value is not None:
                    reading.cache_write_tokens = value
    value = fields.get("model")
    if value is not None:
        reading.model = value
    choices = fields.get("choices")
    if not (isinstance(choices, list) and choices):
        return
    choice = choices[0]
    value = _get(choice, "finish_reason")
    if value is not None:
        reading.finish_reason = value
    if reading.capture_text:
        message = _get(choice, "message") or _get(choice, "delta")
        text = _get(message, "content")
        if text is None:
            text = _get(choice, "text")  # legacy completions
        if isinstance(text, str):
            reading.texts.append(text)
        calls = _get(message, "tool_calls")
        if calls:
            for position, call in enumerate(_items(calls)):
                index = _get(call, "index")  # a stream's piece names its call; a whole message lists them
                function = _get(call, "function")
                reading.tool_call(index if isinstance(index, int) else position, _get(call, "id"),
                                  _get(function, "name"), _get(function, "arguments"))


def _openai_responses(reading: Reading, data: Any) -> None:
    kind = _get(data, "type")
    if kind == "response.output_text.delta":
        delta = _get(data, "delta")
        if reading.capture_text and isinstance(delta, str):
            reading.texts.append(delta)
        return
    if isinstance(kind, str):  # a stream event: only the final ones carry the whole response
        if kind not in ("response.completed", "response.incomplete", "response.failed"):
            return
        data = _get(data, "response")
    usage = _get(data, "usage")
    if usage is not None:
        _set(reading, input_tokens=_get(usage, "input_tokens"), output_tokens=_get(usage, "output_tokens"),
             cached_tokens=_get(_get(usage, "input_tokens_details"), "cached_tokens"))
    _set(reading, model=_get(data, "model"), finish_reason=_get(data, "status"))
    response_id = _get(data, "id")
    if isinstance(response_id, str):
        reading.response_id = response_id
        conversation = _get(data, "conversation")
        conversation_id = conversation if isinstance(conversation, str) else _get(conversation, "id")
        if isinstance(conversation_id, str):
            reading.conversation_id = conversation_id
    output = _get(data, "output")
    if output.__class__ is list and len(output) > 1:  # a lone item (the usual answer) is no search: not looked at
        # Usage has no count of the search tool's searches (billed per search): one web_search_call item each.
        searches = sum(1 for item in output if _get(item, "type") == "web_search_call")
        if searches:
            reading.web_searches = searches
    if reading.capture_text:
        streamed = bool(reading.texts)  # a stream's text came in deltas: the final response repeats it
        for position, item in enumerate(_items(output)):
            kind = _get(item, "type")
            if kind == "function_call":  # the whole call, in the answer and in a stream's final response
                reading.tool_call(position, _get(item, "call_id"), _get(item, "name"), _get(item, "arguments"))
            elif not streamed:
                for part in _items(_get(item, "content")):
                    text = _get(part, "text")
                    if _get(part, "type") == "output_text" and isinstance(text, str):
                        reading.texts.append(text)


def _anthropic(reading: Reading, data: Any) -> None:
    kind = _get(data, "type")
    if kind == "message_start":
        data = _get(data, "message")
    elif kind == "content_block_delta":
        if reading.capture_text:
            delta = _get(data, "delta")
            text = _get(delta, "text")
            if isinstance(text, str):
                reading.texts.append(text)
            elif _get(delta, "type") == "input_json_delta":  # a piece of a tool call's arguments
                reading.tool_call(_get(data, "index"), arguments=_get(delta, "partial_json"))
        return
    elif kind == "content_block_start":
        block = _get(data, "content_block")
        if reading.capture_text and _get(block, "type") == "tool_use":  # its input streams in the deltas
            reading.tool_call(_get(data, "index"), _get(block, "id"), _get(block, "name"))
        return
    usage = _get(data, "usage")
    if usage is not None:
        _set(reading, input_tokens=_get(usage, "input_tokens"), output_tokens=_get(usage, "output_tokens"),
             cached_tokens=_get(usage, "cache_read_input_tokens"),
             cache_write_tokens=_get(usage, "cache_creation_input_tokens"))
        by_ttl = _get(usage, "cache_creation")  # the writes split by time to live
        if by_ttl is not None:
            _set(reading, cache_write_1h_tokens=_get(by_ttl, "ephemeral_1h_input_tokens"))
        tools = _get(usage, "server_tool_use")  # null or absent unless a server tool ran
        if tools is not None:
            _set(reading, web_searches=_get(tools, "web_search_requests"))
    stop = _get(_get(data, "delta"), "stop_reason") if kind == "message_delta" else _get(data, "stop_reason")
    _set(reading, model=_get(data, "model"), finish_reason=stop)
    if reading.capture_text and kind is not None and kind != "message_delta":
        for position, block in enumerate(_items(_get(data, "content"))):
            block_type = _get(block, "type")
            text = _get(block, "text")
            if block_type == "text" and isinstance(text, str):
                reading.texts.append(text)
            elif block_type == "tool_use":
                reading.tool_call(position, _get(block, "id"), _get(block, "name"), _get(block, "input"))


def _plus(count: Any, extra: Any) -> Any:
    """``count`` with ``extra`` tokens added when there are any; ``count`` as it was (None: not reported) otherwise."""
    if not isinstance(extra, int) or isinstance(extra, bool) or extra <= 0:
        return count
    return (count if isinstance(count, int) and not isinstance(count, bool) else 0) + extra


def _gemini(reading: Reading, data: Any) -> None:
    usage = _get(data, "usageMetadata")
    if usage is not None:
        # Thinking is billed as output but not counted in candidatesTokenCount, which is absent altogether when the
        # thinking used the whole maxOutputTokens (finishReason MAX_TOKENS, no answer); the prompts of the model's
        # own tool use (a grounding search) are billed as input but not counted in promptTokenCount.
        output = _plus(_get(usage, "candidatesTokenCount"), _get(usage, "thoughtsTokenCount"))
        prompt = _plus(_get(usage, "promptTokenCount"), _get(usage, "toolUsePromptTokenCount"))
        _set(reading, input_tokens=prompt, output_tokens=output, cached_tokens=_get(usage, "cachedContentTokenCount"))
    candidate = _first(_get(data, "candidates"))
    _set(reading, model=_get(data, "modelVersion"), finish_reason=_get(candidate, "finishReason"))
    if reading.capture_text:
        for part in _items(_get(_get(candidate, "content"), "parts")):
            text = _get(part, "text")
            if isinstance(text, str):
                reading.texts.append(text)


def _cohere(reading: Reading, data: Any) -> None:
    kind = _get(data, "type")
    if kind == "content-delta":
        text = _get(_get(_get(_get(data, "delta"), "message"), "content"), "text")
        if reading.capture_text and isinstance(text, str):
            reading.texts.append(text)
        return
    if kind == "message-end":
        data = _get(data, "delta")
    usage = _get(data, "usage")
    counts = _get(usage, "billed_units") or _get(usage, "tokens")
    _set(reading, input_tokens=_get(counts, "input_tokens"), output_tokens=_get(counts, "output_tokens"),
         finish_reason=_get(data, "finish_reason"))
    if reading.capture_text and kind is None:
        for part in _items(_get(_get(data, "message"), "content")):
            text = _get(part, "text")
            if isinstance(text, str):
                reading.texts.append(text)


def _ollama(reading: Reading, data: Any) -> None:
    prompt = _get(data, "prompt_eval_count")
    output = _get(data, "eval_count")
    if output is None and prompt is not None:
        output = 0  # embeddings report only the prompt
    _set(reading, input_tokens=prompt, output_tokens=output, model=_get(data, "model"),
         finish_reason=_get(data, "done_reason"))
    if reading.capture_text:
        text = _get(_get(data, "message"), "content") or _get(data, "response")
        if isinstance(text, str):
            reading.texts.append(text)


_READERS: dict[str, Callable[[Reading, Any], None]] = {
    "chat": _openai_chat,
    "embeddings": _openai_chat,
    "responses": _openai_responses,
    "messages": _anthropic,
    "gemini": _gemini,
    "cohere": _cohere,
    "ollama": _ollama,
}


def read_into(reading: Reading, data: Any) -> None:
    """Add what one parsed body, event or SDK result says to ``reading``. Unknown shapes are ignored."""
    if isinstance(data, list):  # Gemini without alt=sse streams a JSON array of responses
        for item in data:
            _READERS[reading.api](reading, item)
    elif data is not None and not isinstance(data, (str, int, float)):
        _READERS[reading.api](reading, data)
