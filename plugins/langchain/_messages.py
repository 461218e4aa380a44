"""Reading LangChain results: usage (also streamed), model, finish reason, text."""

from __future__ import annotations

from typing import Any

from langchain_core.outputs import LLMResult

from agentwatch.instrumentation import Usage

__all__ = ["Usage", "usage_of", "message_dicts", "output_text"]




def usage_of(response: LLMResult) -> Usage:
    """``message.usage_metadata`` first (set when streaming too), then ``llm_output["token_usage"]``.

    LangChain normalises ``usage_metadata`` to include cached tokens in ``input_tokens`` for every
    provider, the same convention as the span model.
    """
    usage = Usage()
    generation = response.generations[0][0] if response.generations and response.generations[0] else None
    message = getattr(generation, "message", None)
    metadata = getattr(message, "usage_metadata", None)
    if metadata:
        usage.input_tokens = metadata.get("input_tokens")
        usage.output_tokens = metadata.get("output_tokens")
        details = metadata.get("input_token_details") or {}
        usage.cached_input_tokens = details.get("cache_read")
        usage.cache_write_tokens = details.get("cache_creation")
    elif response.llm_output and isinstance(response.llm_output.get("token_usage"), dict):
        token_usage = response.llm_output["token_usage"]
        usage.input_tokens = token_usage.get("prompt_tokens")
        usage.output_tokens = token_usage.get("completion_tokens")
        usage.cached_input_tokens = (token_usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    response_metadata = getattr(message, "response_metadata", None) or {}
    generation_info = getattr(generation, "generation_info", None) or {}
    usage.model = (response_metadata.get("model_name") or response_metadata.get("model")
                   or (response.llm_output or {}).get("model_name"))
    usage.finish_reason = (response_metadata.get("finish_reason") or response_metadata.get("stop_reason")
                           or generation_info.get("finish_reason"))
    return usage


def message_dicts(messages: list[list[Any]]) -> list[dict[str, Any]]:
    return [{"role": getattr(message, "type", "unknown"), "content": getattr(message, "content", str(message))}
            for batch in messages for message in batch]


def output_text(response: LLMResult) -> str | None:
    texts = [generation.text for batch in response.generations for generation in batch if generation.text]
    return "\n".join(texts) if texts else None
