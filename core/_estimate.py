"""Token counts estimated without a tokenizer, for calls whose provider reported no usage.

A streamed OpenAI-compatible call sends no usage unless asked, and a stream cut short may end before its
usage arrives; such a call is still charged, from an estimate of its input (the request body) and its
output (the streamed text). Spans so charged carry ``usage_estimated`` and ``cost_estimated``.

No tokenizer is assumed (tiktoken needs its encodings downloaded, and every provider tokenizes
differently): one token per 4 bytes of UTF-8, the usual rule of thumb for English with OpenAI's and
Anthropic's tokenizers. Non-ASCII text counts more per character (2-4 bytes), as it does in real
tokenizers. Images and files in a request count a fixed amount, not their base64 size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["estimate_tokens", "estimate_text_bytes", "estimate_request_tokens", "BYTES_PER_TOKEN"]

BYTES_PER_TOKEN = 4
#: Per chat message: its role and the separators around it (OpenAI documents 3-4).
_MESSAGE_TOKENS = 4
#: Per request: the priming of the reply.
_REQUEST_TOKENS = 3
#: An image or file part: a 1024x1024 image at high detail is 765 tokens with OpenAI, ~1,400 with Anthropic.
_MEDIA_TOKENS = 1024
#: Parts of a request that are text the model reads. Sampling settings, ids and the like are not.
_INPUT_KEYS = frozenset({"messages", "input", "instructions", "system", "prompt", "contents", "systemInstruction",
                         "system_instruction", "tools", "functions", "tool_choice", "response_format", "text",
                         "preamble", "documents"})
_MESSAGE_LISTS = frozenset({"messages", "input", "contents"})
_MEDIA_TYPES = frozenset({"image", "image_url", "input_image", "input_file", "file", "document", "input_audio",
                          "audio", "inlineData", "inline_data", "fileData", "file_data"})
#: Keys holding a media payload (a data URL, base64 bytes): counted as one media part, never by size.
_MEDIA_KEYS = frozenset({"image_url", "inlineData", "inline_data", "fileData", "file_data", "input_audio"})
_MAX_DEPTH = 32


def estimate_text_bytes(size: int) -> int:
    """Tokens for ``size`` bytes of UTF-8 text."""
    return -(-size // BYTES_PER_TOKEN) if size > 0 else 0


def estimate_tokens(text: str) -> int:
    """Tokens in ``text``, estimated."""
    if not text:
        return 0
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return estimate_text_bytes(size)


def estimate_request_tokens(body: Any) -> int:
    """Input tokens of a request body (OpenAI chat/completions/responses, Anthropic messages, Gemini,
    Cohere, Ollama shapes), estimated from its text; 0 for a body that is not a JSON object."""
    if body.__class__ is not dict and not isinstance(body, Mapping):  # a dict's class first: no ABC check
        return 0
    tokens = 0
    # The body's own keys (a handful) looked up among the input keys, not each of the 15 input keys in the body.
    for key, value in body.items():
        if value is None or key not in _INPUT_KEYS:
            continue
        if key in _MESSAGE_LISTS and isinstance(value, list):
            tokens += _MESSAGE_TOKENS * len(value)
        tokens += _walk(value, 0)
    return tokens + _REQUEST_TOKENS if tokens else 0


def _walk(value: Any, depth: int) -> int:
    cls = value.__class__
    if cls is str or isinstance(value, str):
        if value.startswith("data:") and len(value) > 256:  # a data URL: a media part, whatever its size
            return _MEDIA_TOKENS
        return estimate_tokens(value)
    if depth >= _MAX_DEPTH:
        return 0
    if cls is dict or isinstance(value, Mapping):  # a dict's class first: no ABC check
        if value.get("type") in _MEDIA_TYPES:
            text = value.get("text")  # a caption, not the payload
            return _MEDIA_TOKENS + (estimate_tokens(text) if isinstance(text, str) else 0)
        return sum(_MEDIA_TOKENS if key in _MEDIA_KEYS else _walk(item, depth + 1) for key, item in value.items())
    if cls is list or isinstance(value, list | tuple):
        return sum(_walk(item, depth + 1) for item in value)
    return 0  # numbers, booleans, None: settings, not text the model reads as such
