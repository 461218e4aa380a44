"""Which HTTP requests are LLM calls: the API by URL path; the provider by host or a registered base URL is
the core rule (``agentwatch.instrumentation.provider_for_url``), re-exported here for the taps."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agentwatch.instrumentation import ProviderTable, normalise_base, provider_for_host

__all__ = ["Endpoint", "endpoint_for_path", "provider_for_host", "ProviderTable", "safe_url", "normalise_base"]


class Endpoint:
    """An LLM API: ``api`` names its wire format (how usage is read), ``kind`` the span kind. One object per API (the
    constants below), never changed. (A plain class, not a frozen dataclass: making one at import compiles its methods
    from generated source, ~0.9 ms of ``init()``.)"""

    __slots__ = ("api", "kind", "name")

    def __init__(self, api: str, kind: str, name: str) -> None:
        self.api = api  # "chat", "responses", "embeddings", "messages", "gemini", "cohere", "ollama"
        self.kind = kind  # "llm" or "embedding"
        self.name = name  # operation part of the span name, e.g. "chat.completions"

    def __repr__(self) -> str:
        return f"Endpoint({self.api!r}, {self.kind!r}, {self.name!r})"


CHAT = Endpoint("chat", "llm", "chat.completions")
COMPLETIONS = Endpoint("chat", "llm", "completions")
RESPONSES = Endpoint("responses", "llm", "responses")
#: ``responses.compact()``: the model condenses a conversation, billed as a response (openai-agents' compaction
#: session calls it between turns). Its siblings ``/responses/input_tokens`` and ``/responses/<id>/cancel`` are free.
RESPONSES_COMPACT = Endpoint("responses", "llm", "responses.compact")
EMBEDDINGS = Endpoint("embeddings", "embedding", "embeddings")
MESSAGES = Endpoint("messages", "llm", "messages")
GEMINI = Endpoint("gemini", "llm", "generate_content")
COHERE = Endpoint("cohere", "llm", "chat")
OLLAMA_CHAT = Endpoint("ollama", "llm", "chat")
OLLAMA_GENERATE = Endpoint("ollama", "llm", "generate")
OLLAMA_EMBED = Endpoint("ollama", "embedding", "embed")

# Suffixes are specific enough that a non-LLM route does not match: OpenAI's assistants API has
# ``/threads/<id>/messages``, which is why Anthropic's route is matched with its version prefix.
_SUFFIXES: tuple[tuple[str, Endpoint], ...] = (
    ("/chat/completions", CHAT),
    ("/v1/messages", MESSAGES),
    ("/responses", RESPONSES),
    ("/responses/compact", RESPONSES_COMPACT),
    ("/embeddings", EMBEDDINGS),
    ("/completions", COMPLETIONS),
    ("/api/chat", OLLAMA_CHAT),
    ("/api/generate", OLLAMA_GENERATE),
    ("/api/embed", OLLAMA_EMBED),
    ("/v2/chat", COHERE),
    ("/v1/chat", COHERE),
)


_MISSING = object()
#: Answers by path: a process talks to few distinct paths, and this runs on every request.
_known_paths: dict[str, Endpoint | None] = {}
_KNOWN_PATHS_MAX = 4096  # paths with ids in them (/threads/<id>/messages) must not grow it forever


def endpoint_for_path(path: str) -> Endpoint | None:
    """The LLM endpoint a URL path (a query string is ignored) addresses, or None for any other request
    (files, models, auth, ...)."""
    known = _known_paths.get(path, _MISSING)
    if known is not _MISSING:
        return known  # type: ignore[return-value]
    found = _endpoint(path.split("?", 1)[0].rstrip("/"))
    if len(_known_paths) < _KNOWN_PATHS_MAX:
        _known_paths[path] = found
    return found


def _endpoint(path: str) -> Endpoint | None:
    for suffix, endpoint in _SUFFIXES:
        if path.endswith(suffix):
            return endpoint
    if ":generateContent" in path or ":streamGenerateContent" in path:
        return GEMINI
    return None


#: Query parameters known to carry no secret: their values are recorded. Every other parameter keeps its
#: name with its value redacted, since credentials travel under many names (``key``, ``x-goog-api-key``,
#: ``subscription-key``, ``X-Amz-Signature``, ``client_secret``, ``access-token``, ``sig``, ...).
_HARMLESS_PARAMS = frozenset({"api-version", "api_version", "alt", "beta", "stream", "model", "version",
                              "deployment", "deployment-id", "format", "include", "limit", "order", "after",
                              "before", "timeout", "region", "location"})
REDACTED = "REDACTED"


def safe_url(url: str) -> str:
    """The URL without user info or fragment, and with the value of every query parameter not known to
    be harmless redacted."""
    if "?" not in url and "@" not in url and "#" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urlencode([(key, value if key.lower() in _HARMLESS_PARAMS else REDACTED)
                       for key, value in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
