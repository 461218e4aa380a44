"""Entry point: LLM calls made with plain HTTP clients (httpx, httpx2, requests, aiohttp).

Requests to a known provider host (OpenAI, Azure OpenAI, Anthropic, Gemini, Mistral, Groq, Cohere,
Together, Fireworks, DeepSeek, OpenRouter, Ollama) or to a base URL registered with
``agentwatch.init(providers={"http://my-vllm:8000": "openai"})`` become LLM calls, limits checked
before they are sent. Needs no framework: each library is tapped when it is imported.
"""

from __future__ import annotations

from typing import Any

from agentwatch import hookimpl

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument"]

# Any one of httpx, httpx2, requests, aiohttp is enough, so none is required: the taps follow imports.
AGENTWATCH_REQUIRES: tuple[str, ...] = ()

_OWNER = "http"


@hookimpl
def agentwatch_instrument(client: Any) -> None:
    if not client.config.auto_instrument:
        return
    from . import _taps
    from ._settings import settings

    _taps.acquire(_OWNER, client)
    settings.capture_hosts = True


@hookimpl
def agentwatch_uninstrument(client: Any) -> None:
    from . import _taps
    from ._settings import settings

    settings.capture_hosts = False
    _taps.release(_OWNER)
