"""Reading LangChain results: usage (also streamed), model, finish reason, text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentwatch import LLMCall
from agentwatch.instrumentation import estimate_request_tokens, estimate_tokens

if TYPE_CHECKING:  # not at run time: importing this module must not import LangChain (see _plugin)
    from langchain_core.outputs import LLMResult

__all__ = ["record_result", "message_dicts", "output_text", "estimate_cut_off"]


def record_result(call: LLMCall, response: LLMResult, capture: bool) -> str | None:
    """Put the response's model, usage and (if ``capture``) text on ``call``; return its finish reason.

    Usage: ``message.usage_metadata`` first (set when streaming too), then ``llm_output["token_usage"]``.
    LangChain normalises ``usage_metadata`` to include cached tokens in ``input_tokens`` for every
    provider, the same convention as the span model. Runs once per model call, so it reads each field once.
    """
    generations = response.generations
    generation = generations[0][0] if generations and generations[0] else None
    message = getattr(generation, "message", None)
    llm_output = response.llm_output
    usage = getattr(message, "usage_metadata", None) if message is not None else None
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
    response_metadata = (getattr(message, "response_metadata", None) if message is not None else None) or {}
    model = (response_metadata.get("model_name") or response_metadata.get("model")
             or (llm_output.get("model_name") if llm_output else None))
    if model:
        call.set_model(model)
    if capture:
        call.set_output(output_text(response))
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


def message_dicts(messages: list[list[Any]]) -> list[dict[str, Any]]:
    return [{"role": getattr(message, "type", "unknown"), "content": getattr(message, "content", str(message))}
            for batch in messages for message in batch]


def output_text(response: LLMResult) -> str | None:
    texts = [generation.text for batch in response.generations for generation in batch if generation.text]
    return "\n".join(texts) if texts else None
