"""The one rule naming an LLM call's provider from the URL it is sent to.

A base URL registered with ``init(providers={"http://my-vllm:8000": "vllm"})`` wins (longest base first),
then a known provider host, then whatever the caller says the client speaks (``fallback``: "openai" for an
OpenAI client at a host nobody registered). Every plugin that knows a request's URL or a client's base URL
(the HTTP taps, the OpenAI and Anthropic SDKs, AutoGen, AG2, LiteLLM, LlamaIndex) asks ``provider_for_url``.
Provider ids are genai-prices' ids, so the core prices calls with the right table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from . import _client as _client_module

if TYPE_CHECKING:
    from ._client import Client
    from ._llm import LLMCall

__all__ = ["ProviderTable", "provider_for_host", "provider_for_url", "providers_of", "normalise_base",
           "adopt_registered"]

_HOSTS: Final[dict[str, str]] = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "google",
    "api.mistral.ai": "mistral",
    "api.groq.com": "groq",
    "api.cohere.com": "cohere",
    "api.cohere.ai": "cohere",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.fireworks.ai": "fireworks",
    "api.deepseek.com": "deepseek",
    "openrouter.ai": "openrouter",
}
_HOST_SUFFIXES: Final[tuple[tuple[str, str], ...]] = (
    (".openai.azure.com", "azure"),
    (".cognitiveservices.azure.com", "azure"),
    (".services.ai.azure.com", "azure"),
    ("-aiplatform.googleapis.com", "google"),
)
_OLLAMA_PORT: Final = 11434
_URLS_MAX: Final = 256


def provider_for_host(host: str, port: int | None) -> str | None:
    """The provider a known host belongs to (Ollama by its default port on any host)."""
    host = host.lower()
    found = _HOSTS.get(host)
    if found is not None:
        return found
    for suffix, provider in _HOST_SUFFIXES:
        if host.endswith(suffix):
            return provider
    if port == _OLLAMA_PORT:
        return "ollama"
    return None


def normalise_base(url: str) -> str:
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "http").lower()
    host = (parts.hostname or "").lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    netloc = host if parts.port in (None, default_port) else f"{host}:{parts.port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


class ProviderTable:
    """Known hosts plus registered base URLs: ``init(providers={"http://vllm:8000": "openai"})``."""

    __slots__ = ("_registered", "_urls", "has_registered")

    def __init__(self, registered: Mapping[str, str] | None = None) -> None:
        # Longest base first, so "http://h/v2" wins over "http://h" for a URL under both.
        bases = [(normalise_base(url), provider) for url, provider in (registered or {}).items()]
        self._registered = tuple(sorted(bases, key=lambda item: len(item[0]), reverse=True))
        #: A plain attribute, read on every request a framework's call makes (the common case: False).
        self.has_registered = bool(self._registered)
        #: Answers by URL for callers that pass a whole URL: a process talks to few base URLs.
        self._urls: dict[str, str | None] = {}

    def registered_for(self, url: str) -> str | None:
        """The provider registered for the longest base ``url`` is under, if any."""
        lowered = url.strip().lower()
        for base, provider in self._registered:
            if lowered.startswith(base) and (len(lowered) == len(base) or lowered[len(base)] in "/?"):
                return provider
        return None

    def provider_for(self, url: str, host: str, port: int | None) -> str | None:
        if self._registered:
            registered = self.registered_for(url)
            if registered is not None:
                return registered
        return provider_for_host(host, port)

    def provider_for_url(self, url: str) -> str | None:
        known = self._urls.get(url, _MISSING)
        if known is not _MISSING:
            return known  # type: ignore[return-value]  # a str or None, never the marker
        try:
            parts = urlsplit(url.strip())
            found = self.provider_for(url.strip(), parts.hostname or "", parts.port)
        except ValueError:  # a malformed URL (bad port) names no provider
            found = None
        if len(self._urls) >= _URLS_MAX:
            self._urls.clear()
        self._urls[url] = found
        return found


_MISSING: Final = object()
_EMPTY: Final = ProviderTable()
#: The table of the last configuration asked for (the registered URLs are parsed once per ``init()``).
_last: tuple[Mapping[str, str], ProviderTable] = ({}, _EMPTY)


def providers_of(client: Client | None) -> ProviderTable:
    """The provider table of ``client``'s configuration (known hosts only without a client)."""
    global _last
    if client is None:
        return _EMPTY
    registered = client.config.providers
    last = _last
    if last[0] is registered:
        return last[1]
    table = ProviderTable(registered) if registered else _EMPTY
    _last = (registered, table)
    return table


def adopt_registered(call: LLMCall, url: Any, table: ProviderTable) -> None:
    """A framework opened ``call`` under its own provider name; the request goes to a base URL the user
    registered with ``init(providers=...)``, and the user's name wins (a transport layer calls this)."""
    if table.has_registered:
        registered = table.registered_for(str(url))
        if registered is not None and registered != call.span.provider:
            call.set_model(None, provider=registered)


def provider_for_url(url: str | None, fallback: str | None = None, client: Client | None = None) -> str | None:
    """The provider of a request to ``url`` (a full URL or a base URL): a registered base, a known host,
    else ``fallback`` (also for no URL: a client's default host is its own provider's)."""
    if url is None:
        return fallback
    if client is None:
        client = _client_module._active
    return providers_of(client).provider_for_url(str(url)) or fallback
