"""Reading LlamaIndex responses: token usage (also streamed), model, finish reason, text; provider names.

LlamaIndex LLM integrations keep the provider's own response in ``response.raw`` and some copy the
counts into ``response.additional_kwargs``. The reader knows the usage shapes of the common providers;
everything is normalised to the OpenAI convention (input includes cached tokens).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agentwatch.instrumentation import Usage, normalize_anthropic_usage

__all__ = ["Usage", "read_response", "response_text", "provider_of", "estimate_tokens", "message_dicts"]

#: ``llama_index.llms.<package>`` / ``llama_index.embeddings.<package>`` → provider id for pricing (genai-prices
#: ids; local runtimes by the names the core price table prices at $0).
_PROVIDERS = {
    "openai": "openai", "azure_openai": "azure", "anthropic": "anthropic", "gemini": "google",
    "google_genai": "google", "vertex": "google", "mistralai": "mistral", "groq": "groq", "cohere": "cohere",
    "deepseek": "deepseek", "bedrock": "aws", "bedrock_converse": "aws", "fireworks": "fireworks",
    "together": "together", "openrouter": "openrouter", "perplexity": "perplexity", "cerebras": "cerebras",
    "voyageai": "voyageai",
    # Served on the user's own hardware (``huggingface`` is the local transformers / sentence-transformers
    # integration; the paid Inference API is ``huggingface_api``).
    "ollama": "ollama", "llama_cpp": "llamacpp", "lmstudio": "lmstudio", "llamafile": "llamafile",
    "mlx": "mlx", "huggingface": "huggingface_local", "fastembed": "fastembed",
}
#: LlamaIndex's own test doubles (``MockLLM``, ``MockFunctionCallingLLM``, ``MockEmbedding``).
_MOCK_MODULES = frozenset({"llama_index.core.llms.mock", "llama_index.core.embeddings.mock_embed_model"})


def _get(source: Any, key: str) -> Any:
    if source is None:
        return None
    if type(source) is dict:  # the common case first: an ABC isinstance check costs more than the lookup
        return source.get(key)
    if isinstance(source, Mapping):
        return source.get(key)
    return getattr(source, key, None)


def _reader(source: Any) -> Callable[[str], Any]:
    """``_get`` for a source read several times: its type is checked once, and a dict's (or mapping's) own ``get``
    reads with no frame of ours (a response's usage is up to nine reads, ~2.5k instructions fewer per chat())."""
    if type(source) is dict:
        return source.get
    if source is None:
        return _absent
    if isinstance(source, Mapping):
        return source.get
    return lambda key: getattr(source, key, None)


def _absent(key: str) -> None:
    return None


def _read_counts(counts: Any, usage: Usage) -> None:
    """One provider usage object (or dict) into ``usage``; leaves it unset if the shape is unknown."""
    get = _reader(counts)
    if get("prompt_tokens") is not None or get("completion_tokens") is not None:
        # OpenAI chat/completions and everything OpenAI-compatible.
        usage.input_tokens = get("prompt_tokens")
        usage.output_tokens = get("completion_tokens")
        usage.cached_input_tokens = _get(get("prompt_tokens_details"), "cached_tokens")
    elif get("cache_read_input_tokens") is not None or get("cache_creation_input_tokens") is not None:
        # Anthropic: input_tokens excludes cache reads and writes.
        normalized = normalize_anthropic_usage(get("input_tokens"), get("output_tokens"),
                                               get("cache_read_input_tokens") or 0,
                                               get("cache_creation_input_tokens") or 0)
        usage.input_tokens = normalized["input_tokens"]
        usage.output_tokens = normalized["output_tokens"]
        usage.cached_input_tokens = normalized["cached_input_tokens"]
        usage.cache_write_tokens = normalized["cache_write_tokens"]
    elif get("input_tokens") is not None or get("output_tokens") is not None:
        # OpenAI Responses API (input includes cached) and Anthropic without cache fields.
        usage.input_tokens = get("input_tokens")
        usage.output_tokens = get("output_tokens")
        usage.cached_input_tokens = _get(get("input_tokens_details"), "cached_tokens")
    elif get("prompt_token_count") is not None:
        # Gemini usage_metadata.
        usage.input_tokens = get("prompt_token_count")
        usage.output_tokens = get("candidates_token_count")
        usage.cached_input_tokens = get("cached_content_token_count")
    elif get("prompt_eval_count") is not None:
        # Ollama puts its counts at the top level of the raw response.
        usage.input_tokens = get("prompt_eval_count")
        usage.output_tokens = get("eval_count")


def read_response(response: Any) -> Usage:
    """Usage, model and finish reason of a ``ChatResponse`` / ``CompletionResponse`` (the last one of a
    stream: OpenAI sends the usage in the final chunk when the request asked for it)."""
    usage = Usage()
    if response is None:
        return usage
    raw = getattr(response, "raw", None)
    if raw is not None:
        get = _reader(raw)
        _read_counts(get("usage") or get("usage_metadata") or raw, usage)
        model = get("model")
        if isinstance(model, str) and model:
            usage.model = model
        choices = get("choices")
        if isinstance(choices, list | tuple) and choices:
            reason = _get(choices[0], "finish_reason")
            usage.finish_reason = reason if isinstance(reason, str) else None
        else:
            reason = get("stop_reason")
            usage.finish_reason = reason if isinstance(reason, str) else None
    if not usage.found:
        extra = getattr(response, "additional_kwargs", None)
        if isinstance(extra, Mapping) and extra:
            _read_counts(extra, usage)
    return usage


def response_text(response: Any) -> str | None:
    message = getattr(response, "message", None)
    if message is not None:
        content = getattr(message, "content", None)
        return content if isinstance(content, str) else None
    text = getattr(response, "text", None)
    return text if isinstance(text, str) else None


def message_dicts(messages: Any) -> list[dict[str, Any]] | None:
    if not isinstance(messages, list | tuple):
        return None
    return [{"role": _role(message), "content": getattr(message, "content", str(message))}
            for message in messages]


def _role(message: Any) -> str:
    role = getattr(message, "role", "unknown")
    return str(getattr(role, "value", role))


@functools.cache
def provider_of(component: type) -> str | None:
    """The provider of an LLM or embedding class, from its integration package name: of the class itself or,
    for the application's own subclass (a scripted ``MockLLM`` in a test), of the LlamaIndex class it extends."""
    for cls in component.__mro__:
        module = cls.__module__
        if not module.startswith("llama_index."):
            continue
        if module in _MOCK_MODULES:
            return "mock"
        parts = module.split(".")
        if len(parts) >= 3 and parts[1] in ("llms", "embeddings"):
            return _PROVIDERS.get(parts[2])
        return None
    return None


def estimate_tokens(texts: Iterable[Any]) -> int | None:
    """Token count of embedded texts with LlamaIndex's own tokenizer (tiktoken, bundled encoding).

    Embedding integrations drop the provider's usage; this is the figure LlamaIndex's own
    ``TokenCountingHandler`` reports for them.
    """
    from llama_index.core import Settings

    tokenizer = Settings.tokenizer
    total = 0
    for text in texts:
        if isinstance(text, str):
            total += len(tokenizer(text))
    return total
