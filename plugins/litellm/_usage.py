"""Usage from LiteLLM's responses and streams, and LiteLLM's own cost map as the fallback price.

LiteLLM turns every provider's usage into the OpenAI shape: ``prompt_tokens`` includes cached tokens
(Anthropic's cache reads and writes are added in), ``prompt_tokens_details.cached_tokens`` is the cache
read, and Anthropic's ``cache_creation_input_tokens`` is kept beside it.
"""

from __future__ import annotations

from typing import Any

from agentwatch.instrumentation import LLMCall, Span

__all__ = ["litellm_price", "read_responses_stream", "read_stream", "read_usage"]


def _fields(value: Any) -> dict[str, Any]:
    """A pydantic model's fields and extras as a dict: ``getattr`` of a missing name on a LiteLLM model
    raises inside pydantic, which costs more than this whole read."""
    fields = getattr(value, "__dict__", None)
    if not isinstance(fields, dict):
        return {}
    extra = getattr(value, "__pydantic_extra__", None)
    return {**fields, **extra} if extra else fields


def _set_usage(call: LLMCall, usage: Any, embedding: bool = False) -> bool:
    fields = _fields(usage) if not isinstance(usage, dict) else usage
    prompt = fields.get("prompt_tokens")
    completion = fields.get("completion_tokens")
    details_name = "prompt_tokens_details"
    if prompt is None and completion is None:  # a Responses API usage
        prompt, completion = fields.get("input_tokens"), fields.get("output_tokens")
        details_name = "input_tokens_details"
    if prompt is None and completion is None:
        return False
    if completion is None and embedding:
        completion = 0
    details = fields.get(details_name)
    cached = (details.get("cached_tokens") if isinstance(details, dict) else _fields(details).get("cached_tokens")
              ) if details is not None else None
    if cached is None:
        cached = fields.get("cache_read_input_tokens")
    call.set_usage(prompt, completion, cached, fields.get("cache_creation_input_tokens"))
    return True


def read_usage(call: LLMCall, result: Any) -> str | None:
    """Usage and output of a whole response; returns its finish reason."""
    usage = getattr(result, "usage", None)
    if usage is None or not _set_usage(call, usage, embedding=call.span.kind == "embedding"):
        if not (call.span.input_tokens or call.span.output_tokens):  # nor did the HTTP layer see any
            call.set_attribute("usage_missing", True)
    choices = getattr(result, "choices", None)
    if not choices:
        return _read_response(call, result)
    first = _fields(choices[0])
    message = first.get("message")
    text = getattr(message, "content", None) if message is not None else first.get("text")
    if text is not None:
        call.set_output(text)
    reason = first.get("finish_reason")
    return str(reason) if reason else None


def _read_response(call: LLMCall, result: Any) -> str | None:
    """A Responses API answer's text and status (its usage is read as a chat answer's)."""
    text = getattr(result, "output_text", None)
    if isinstance(text, str) and text:
        call.set_output(text)
    status = getattr(result, "status", None)
    return str(status) if isinstance(status, str) and status else None


def read_responses_stream(call: LLMCall, stream: Any) -> str | None:
    """Usage of a finished Responses stream: its completed response's (else what the HTTP layer read, which reads
    these streams too). Returns the response's status."""
    response = getattr(getattr(stream, "completed_response", None), "response", None)
    if response is None:
        return None
    return read_usage(call, response)


def read_stream(call: LLMCall, stream: Any) -> str | None:
    """Usage of a finished stream: the provider's (the final chunk, which LiteLLM keeps even when the
    caller did not ask for it), else what the HTTP layer read, else LiteLLM's count of the streamed text,
    flagged ``usage_estimated`` and ``cost_estimated``. Returns the finish reason."""
    chunks = getattr(stream, "chunks", None) or []
    for chunk in reversed(chunks):
        usage = getattr(chunk, "usage", None)
        if usage is not None and (getattr(usage, "prompt_tokens", None) or getattr(usage, "completion_tokens", None)):
            _set_usage(call, usage)
            break
    else:
        if not (call.span.input_tokens or call.span.output_tokens):
            _estimate(call, stream, chunks)
    reason = None
    for chunk in reversed(chunks):
        choices = getattr(chunk, "choices", None)
        if choices and getattr(choices[0], "finish_reason", None):
            reason = str(choices[0].finish_reason)
            break
    if call.span.output is None and chunks:
        text = "".join(
            str(getattr(getattr(choices[0], "delta", None), "content", None) or "")
            for choices in (getattr(chunk, "choices", None) for chunk in chunks) if choices)
        call.set_output(text)
    return reason


def _estimate(call: LLMCall, stream: Any, chunks: list[Any]) -> None:
    """LiteLLM's own rebuild of the streamed response counts the prompt and text with its tokenizers."""
    import litellm

    built = litellm.stream_chunk_builder(chunks=chunks, messages=getattr(stream, "messages", None))
    usage = getattr(built, "usage", None)
    if usage is not None and _set_usage(call, usage):
        call.set_attribute("usage_estimated", True)
        call.set_attribute("cost_estimated", True)


def litellm_price(span: Span) -> float | None:
    """USD from LiteLLM's cost map, or None for a model it does not know either."""
    try:
        import litellm

        prompt_cost, completion_cost = litellm.cost_per_token(
            model=span.model or "", custom_llm_provider=span.provider, prompt_tokens=span.input_tokens,
            completion_tokens=span.output_tokens, cache_read_input_tokens=span.cached_input_tokens,
            cache_creation_input_tokens=span.attributes.get("cache_write_tokens", 0),
            call_type="embedding" if span.kind == "embedding" else "completion")
        return float(prompt_cost) + float(completion_cost)
    except Exception:  # not in LiteLLM's map: the unknown-model default applies
        return None
