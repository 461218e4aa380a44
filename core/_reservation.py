"""The worst-case cost of an LLM request, reserved before it is sent when a scope has a hard budget.

Worst case = input tokens (an upper bound counted from the request) at the input rate (or the cache-write
rate if that is higher) + the request's output cap at the output rate, priced like a finished call
(``Client.price``: overrides, genai-prices, the flagged default rate; tiers by the bounded input).

Input bound: the UTF-8 byte count of every string in the request body, keys included, plus
``_FIXED_OVERHEAD_TOKENS``. Byte-level BPE tokenizers (OpenAI's, Anthropic's, Llama, Qwen, Mistral's
tekken) encode every token as at least one byte of text, so a text never has more tokens than bytes; the
chat template's few special tokens per message (OpenAI: 3-4) are covered by the bytes of the keys around each
message (``"role"`` and ``"content"`` alone are 11) and the fixed overhead. No tokenizer is loaded: tiktoken
needs its encodings downloaded, which an offline host cannot do, and the bound needs none.

Media parts (OpenAI's ``image_url``/``input_image``/``input_audio``/``file``/``input_file``, Anthropic's
``image``/``document``, Gemini's ``inlineData``/``fileData``) count once, each by what it is, not by the bytes
of its payload as text. An image, inline or by URL, counts ``MEDIA_PART_TOKENS``: the provider resizes it and
bills its pixels (at most ~1,600 tokens with Anthropic, ~3,800 with OpenAI's patch models, 258 per tile with
Gemini), whatever the size of its file; OpenAI's ``"detail": "original"`` (up to 10,000 patches) counts
``ORIGINAL_IMAGE_TOKENS``. Other media count their payload's bytes, at least ``MEDIA_PART_TOKENS``: audio
and PDFs inline are far fewer tokens than their base64 bytes; by reference (a URL, a file id, Gemini's
``fileUri``) they cannot be bounded from the body, and the allowance is documented rather than a proof.

Input written to Anthropic's 1-hour cache costs more still: a request asking for it (``cache_control`` with
``"ttl": "1h"``) reserves its input at that rate.

A Responses API call continuing a stored response (``previous_response_id``) or a conversation
(``conversation``) is billed the conversation so far as input, which its body does not carry: that is the
input and output tokens of the last response of it recorded here (``remember_carried_tokens``, in this process).
One recorded nowhere (made by another process, before a restart, or items added through the Conversations API)
cannot be bounded from the body.

Web searches (billed per search): the ``max_uses`` of the request's search tools, at the model's price for them;
and what the provider's search and fetch tools return, billed as input: ``server_tool_input_tokens``.

Output cap: ``max_completion_tokens``, ``max_tokens``, ``max_output_tokens`` (Responses API),
``generationConfig.maxOutputTokens`` (Gemini), times the answers asked for (``n``, ``best_of``, Gemini's
``candidateCount``). Without one, the model's output limit: its family's in ``_OUTPUT_LIMITS`` (longest
matching name prefix), capped by its context window from genai-prices when known; a model of no family there,
its context window (an answer cannot be longer); else its maker's largest limit, else ``DEFAULT_OUTPUT_TOKENS``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ._safe import logger

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["worst_case_usd", "input_token_bound", "output_token_cap", "estimator", "DEFAULT_OUTPUT_TOKENS",
           "MEDIA_PART_TOKENS", "ORIGINAL_IMAGE_TOKENS", "note_settlement", "server_tool_input_tokens",
           "SEARCH_RESULT_TOKENS", "FETCH_CONTENT_TOKENS", "remember_carried_tokens", "carried_tokens"]

#: Output cap for a request without one, of a model this module does not know (tokens).
DEFAULT_OUTPUT_TOKENS: Final = 32_768
#: Allowance for one image, or for media the body refers to without carrying it (audio URL, file id).
MEDIA_PART_TOKENS: Final = 8_192
#: An image sent with OpenAI's ``"detail": "original"``: up to 10,000 patches, unresized.
ORIGINAL_IMAGE_TOKENS: Final = 16_384
_FIXED_OVERHEAD_TOKENS: Final = 64
#: Allowance for the results of one web search by the provider's tool, billed as input (Anthropic returns
#: about 5-10 pages' extracts, a few thousand tokens; reports of "several thousand to tens of thousands").
SEARCH_RESULT_TOKENS: Final = 10_000
#: Allowance for one page fetched by Anthropic's web fetch tool when the request sets no ``max_content_tokens``.
FETCH_CONTENT_TOKENS: Final = 100_000
#: ``type`` of a media part (OpenAI chat and Responses, Anthropic).
_MEDIA_TYPES: Final = frozenset({"image_url", "image", "input_image", "input_audio", "audio", "file", "input_file",
                                 "document"})
_IMAGE_TYPES: Final = frozenset({"image_url", "image", "input_image"})
_MIME_KEYS: Final = ("mimeType", "mime_type", "media_type")
_PAYLOAD_KEYS: Final = ("url", "image_url", "file_data", "data")

#: Published maximum output tokens per model family (longest prefix wins), used when a request sets no cap. A
#: family's entry is its largest member's, so that a newer model of the family is not reserved too little; older
#: members with smaller limits have their own entries. Checked against litellm's model data (max_output_tokens).
_OUTPUT_LIMITS: Final = {
    "gpt-3.5": 4_096, "gpt-4": 8_192, "gpt-4-turbo": 4_096, "gpt-4o": 16_384, "gpt-4o-mini": 16_384,
    "gpt-4.1": 32_768, "gpt-4.5": 16_384, "gpt-5": 128_000, "gpt-5-chat": 16_384, "gpt-5-pro": 272_000,
    "o1": 100_000, "o1-mini": 65_536, "o3": 100_000, "o4-mini": 100_000, "chatgpt-4o": 16_384,
    "claude-3-haiku": 4_096, "claude-3-opus": 4_096, "claude-3-sonnet": 4_096, "claude-3-5": 8_192,
    "claude-3-7": 128_000,  # 64,000, or 128,000 with the output-128k beta header
    "claude-opus-4": 128_000, "claude-opus-4-0": 32_000, "claude-opus-4-1": 32_000, "claude-opus-4-2025": 32_000,
    "claude-opus-4-5": 64_000, "claude-opus-4.0": 32_000, "claude-opus-4.1": 32_000, "claude-opus-4.5": 64_000,
    "claude-sonnet-4": 128_000, "claude-sonnet-4-0": 64_000, "claude-sonnet-4-2025": 64_000,
    "claude-sonnet-4-5": 64_000, "claude-sonnet-4.0": 64_000, "claude-sonnet-4.5": 64_000, "claude-haiku-4": 64_000,
    "gemini-1.5": 8_192, "gemini-2.0": 8_192, "gemini-2.5": 65_536, "gemini-3": 65_536,
}
#: A newer model of a known maker that genai-prices has no context window for: its makers' largest limit yet.
_MAKER_LIMITS: Final = {"gpt-": 128_000, "claude-": 128_000, "gemini-": 65_536}
_output_limit_cache: dict[str, int] = {}


def input_token_bound(body: Any) -> int:
    """An upper bound of the input tokens of a request body (see the module docstring)."""
    return _FIXED_OVERHEAD_TOKENS + _bytes(body)


def _bytes(value: Any) -> int:
    # Iterative, with the common JSON types tested by class first: this runs on every call under a hard budget.
    total = 0
    stack = [value]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        item = pop()
        cls = item.__class__
        if cls is str:
            total += len(item) if item.isascii() else len(item.encode("utf-8", "surrogatepass"))
        elif cls is dict or isinstance(item, dict):
            kind = item.get("type")
            # Gemini's media parts have no "type": a part holds its media under one of these keys.
            if (kind.__class__ is str and kind in _MEDIA_TYPES) or (
                    "inlineData" in item or "fileData" in item or "inline_data" in item or "file_data" in item):
                total += _media_tokens(item, kind)
                continue
            for key, entry in item.items():
                push(key)
                push(entry)
        elif cls is list or cls is tuple or isinstance(item, (list, tuple)):
            extend(item)
        elif item is None or cls is bool:
            total += 5  # "false"
        elif isinstance(item, (bytes, bytearray)):
            total += len(item)
        else:
            total += len(str(item))
    return total


def _media_tokens(part: dict[Any, Any], kind: Any) -> int:
    """The input tokens one media part is counted for (see the module docstring)."""
    if kind in _IMAGE_TYPES or _is_image(part):
        detail = part.get("detail")
        if detail is None and isinstance(part.get("image_url"), dict):
            detail = part["image_url"].get("detail")
        return ORIGINAL_IMAGE_TOKENS if detail == "original" else MEDIA_PART_TOKENS
    return max(MEDIA_PART_TOKENS, _bytes(list(part.values())))


def _is_image(part: dict[Any, Any]) -> bool:
    """Whether a part of a type that may hold anything (a file, a document, Gemini's data) holds an image: by its
    MIME type or its data URL, on the part or one level down (``source``, ``inlineData``, ``file``)."""
    for holder in (part, *(value for value in part.values() if isinstance(value, dict))):
        for key in _MIME_KEYS:
            mime = holder.get(key)
            if isinstance(mime, str):
                return mime.startswith("image/")
        for key in _PAYLOAD_KEYS:
            payload = holder.get(key)
            if isinstance(payload, str) and payload.startswith("data:"):
                return payload.startswith("data:image/")
    return False


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return int(value)


def output_token_cap(body: Any, model: str | None) -> int:
    """The most output tokens the request can produce: its own cap, else the model's limit; per answer it asks for."""
    if not isinstance(body, dict):
        return model_output_limit(model)
    cap = None
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(key)
        if value is not None:  # the usual request sets none: no _positive_int call for each
            cap = _positive_int(value)
            if cap is not None:
                break
    config = body.get("generationConfig") or body.get("generation_config")
    if not isinstance(config, dict):
        config = {}
    if cap is None:
        cap = _positive_int(config.get("maxOutputTokens") or config.get("max_output_tokens"))
    if cap is None:
        cap = model_output_limit(model)
    return cap * _answers(body, config)


def _answers(body: dict[str, Any], config: dict[str, Any]) -> int:
    """How many answers the request has generated, each up to the output cap: OpenAI's ``n`` (and the legacy
    completions' ``best_of``, generated server-side and billed though only the best are returned), Gemini's
    ``generationConfig.candidateCount``."""
    answers = 1
    for count in (body.get("n"), body.get("best_of"), config.get("candidateCount"), config.get("candidate_count")):
        if count is not None:  # the usual request sets none: a loop, not a generator of four _positive_int calls
            answers = max(answers, _positive_int(count) or 1)
    return answers


def model_output_limit(model: str | None) -> int:
    """The most output tokens ``model`` can produce in one answer: its family's published limit, capped by its
    context window from genai-prices; a model of no family here, its context window (it cannot write more);
    else its maker's largest limit (``_MAKER_LIMITS``), else ``DEFAULT_OUTPUT_TOKENS``."""
    if not model:
        return DEFAULT_OUTPUT_TOKENS
    known = _output_limit_cache.get(model)
    if known is not None:
        return known
    name = model.lower().rsplit("/", 1)[-1]
    window = _context_window(name)
    if window is not None and window <= 0:
        window = None
    limit = _family_limit(name, _OUTPUT_LIMITS)
    if limit is not None:
        limit = min(limit, window) if window is not None else limit
    else:
        limit = window or _family_limit(name, _MAKER_LIMITS) or DEFAULT_OUTPUT_TOKENS
    if len(_output_limit_cache) < 4096:
        _output_limit_cache[model] = limit
    return limit


def _family_limit(name: str, limits: dict[str, int]) -> int | None:
    """The limit of the longest family prefix of ``name``, also after a vendor's dotted prefix (Bedrock's
    ``us.anthropic.claude-...``) or a fine-tune's (``ft:gpt-4o-mini:...``)."""
    best: tuple[int, int] | None = None
    starts = [0] + [i + 1 for i, char in enumerate(name) if char in ".:"]
    for start in starts:
        for prefix, limit in limits.items():
            if name.startswith(prefix, start) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), limit)
    return best[1] if best else None


def _context_window(model: str) -> int | None:
    try:
        from genai_prices import data_snapshot

        found = data_snapshot.get_snapshot().find_provider_model(model, None, None, None)
    except Exception:  # unknown model or no table: no window to cap by
        return None
    window = getattr(found[1], "context_window", None)
    return window if isinstance(window, int) else None


def worst_case_usd(client: Client, model: str | None, provider: str | None, body: Any, *,
                   output: bool = True) -> float:
    """The most this request can cost (USD). ``output=False`` for embeddings (input only).

    A model name the price table does not know (an Azure deployment's own name, a proxy's alias) is priced at the
    default rate, but its call is priced as the model its answer names (``LLMCall._price_as_answered``): once an
    answer named one (``Pricer.answered_by``), the dearest of those models and the default rate is reserved."""
    tokens_in = input_token_bound(body) + server_tool_input_tokens(body) + carried_tokens(body)
    cost, unknown = _worst_case_as(client, model, provider, body, tokens_in, output)
    if unknown and model:
        answered = client.pricer.answered_by(model, provider)
        if not answered:
            _warn_unknown(model, provider)
        for name in answered:
            cost = max(cost, _worst_case_as(client, name, provider, body, tokens_in, output)[0])
    return cost


def _warn_unknown(model: str, provider: str | None) -> None:
    """Once per name: a hard budget cannot bound a call of a model it has no price for."""
    _log_once("unknown", (provider, model),
              "agentwatch: hard budget: model %r (provider %r) is not in the price table; its worst case is reserved "
              "at the default rate until an answer names the model it is, whose price may be higher. Name it in "
              "cost_table_override to reserve it at its own price from the first call", model, provider)


def note_settlement(model: str | None, provider: str | None, cost_usd: float, reserved_usd: float) -> None:
    """Once per model: a call cost more than its reservation (a provider that wrote past the request's output cap,
    or billed input the request did not carry), so recorded spend may pass the hard budget; say so."""
    if cost_usd <= reserved_usd * (1 + 1e-9) + 1e-9 or reserved_usd <= 0.0:
        return
    _log_once("overran", (provider, model),
              "agentwatch: hard budget: a call of model %r (provider %r) cost $%.6f, more than the $%.6f reserved "
              "for it: its provider reported more tokens than the request allowed (output past its max_tokens) or "
              "billed input the request does not carry. Such calls can take recorded spend above a hard budget "
              "(logged once per model)", model, provider, cost_usd, reserved_usd)


#: The keys each kind of warning was logged for (``_log_once``); bounded per kind, so endless distinct names can
#: neither grow it nor silence another kind.
_logged: dict[str, set[tuple[str | None, str | None]]] = {}
_MAX_LOGGED_PER_KIND: Final = 1024


def _log_once(kind: str, key: tuple[str | None, str | None], message: str, *args: Any) -> None:
    """A warning of ``kind`` logged once per ``key`` (its first ``_MAX_LOGGED_PER_KIND`` keys)."""
    logged = _logged.setdefault(kind, set())
    if key in logged or len(logged) >= _MAX_LOGGED_PER_KIND:
        return
    logged.add(key)
    logger.warning(message, *args)


def _worst_case_as(client: Client, model: str | None, provider: str | None, body: Any, tokens_in: int,
                   output: bool) -> tuple[float, bool]:
    """``worst_case_usd`` priced as ``model``; and whether that price is the default rate for an unknown model."""
    tokens_out = output_token_cap(body, model) if output else 0
    searches = search_cap(body)
    # Searches the request allows (billed per search on top of the tokens), at the model's price for them.
    extra = client.pricer.extra_cost(model, provider, tokens_in, 0, {"web_search_requests": searches}) \
        if searches else 0.0
    if client._has_price or not model:  # a pricing plugin decides (or the default rate): ask it both ways
        plain, unknown = client.price(model, provider, tokens_in, tokens_out)
        cached, _ = client.price(model, provider, tokens_in, tokens_out, 0, tokens_in)
        return max(plain, cached) + extra, unknown
    rates = client.pricer.rates(model, provider)
    cost = rates.cost(tokens_in, tokens_out, 0, 0)
    if rates.cache_write > rates.input or rates.tiers:
        # Every input token written to the prompt cache is the dearest case where cache writes cost more.
        cost = max(cost, rates.cost(tokens_in, tokens_out, 0, tokens_in))
    if rates.cache_write_1h is not None and rates.cache_write_1h > rates.cache_write and _asks_hour_cache(body):
        cost = max(cost, rates.cost(tokens_in, tokens_out, 0, tokens_in, tokens_in))  # ... for an hour: dearer still
    return cost + extra, rates.estimated


def _asks_hour_cache(body: Any, depth: int = 0) -> bool:
    """Whether the request marks anything for Anthropic's 1-hour cache (``cache_control: {"ttl": "1h"}``, on the
    request or on a block of its system prompt, messages or tools)."""
    if depth > 6:
        return False
    if isinstance(body, dict):
        control = body.get("cache_control")
        if isinstance(control, dict) and control.get("ttl") == "1h":
            return True
        items: Any = [body[key] for key in ("system", "messages", "tools", "content") if key in body]
    elif isinstance(body, list):
        items = body
    else:
        return False
    return any(_asks_hour_cache(item, depth + 1) for item in items if isinstance(item, dict | list))


def search_cap(body: Any) -> int:
    """The web searches a request allows: the ``max_uses`` of its search tools (Anthropic's ``web_search_*``).
    A search tool without one (OpenAI's has none) is not bounded by the request: nothing is reserved for it."""
    tools = body.get("tools") if isinstance(body, dict) else None
    if not isinstance(tools, list):
        return 0
    cap = 0
    for tool in tools:
        if isinstance(tool, dict) and str(tool.get("type", "")).startswith("web_search"):
            uses = tool.get("max_uses")
            if isinstance(uses, int) and not isinstance(uses, bool) and 0 < uses <= 10_000:
                cap += uses
    return cap


def server_tool_input_tokens(body: Any) -> int:
    """Input tokens the provider's own tools can add to a request (Anthropic's ``web_search_*`` and
    ``web_fetch_*`` with a ``max_uses``): what each use returns is billed as input on every later sampling
    iteration of the call, so with N uses the k-th use's content is read up to N - k + 1 times. A search's results
    count ``SEARCH_RESULT_TOKENS``, a fetch its ``max_content_tokens`` or ``FETCH_CONTENT_TOKENS``; the largest
    first, the most an order of uses can bill. Both are allowances: a provider's results have no bound it states."""
    tools = body.get("tools") if isinstance(body, dict) else None
    if not isinstance(tools, list):
        return 0
    contents: list[int] = []
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        kind = str(tool.get("type", ""))
        uses = _positive_int(tool.get("max_uses"))
        if uses is None or uses > 10_000:
            continue
        if kind.startswith("web_search"):
            contents.extend([SEARCH_RESULT_TOKENS] * uses)
        elif kind.startswith("web_fetch"):
            contents.extend([_positive_int(tool.get("max_content_tokens")) or FETCH_CONTENT_TOKENS] * uses)
    contents.sort(reverse=True)
    return sum(content * (len(contents) - index) for index, content in enumerate(contents))


#: Responses and conversations remembered for the calls that continue them: the most recent ones.
CARRIED_MAX: Final = 4096
_carried: dict[str, int] = {}
_carried_lock = threading.Lock()


def remember_carried_tokens(response_id: str | None, conversation_id: str | None, tokens: int) -> None:
    """A Responses API answer was recorded: a later call naming it (``previous_response_id``) or its conversation
    is billed ``tokens`` (its input and output) on top of its own body."""
    with _carried_lock:
        for key in (response_id, conversation_id):
            if key:
                _carried.pop(key, None)  # re-inserted last: the oldest entries are forgotten first
                _carried[key] = tokens
        while len(_carried) > CARRIED_MAX:
            del _carried[next(iter(_carried))]


def carried_tokens(body: Any) -> int:
    """The tokens of a stored conversation a request continues, as recorded here (0 if none or unknown)."""
    if not isinstance(body, dict):
        return 0
    conversation = body.get("conversation")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    carried = 0
    for key in (body.get("previous_response_id"), conversation):
        if isinstance(key, str):
            carried = max(carried, _carried.get(key, 0))
    return carried


def estimator(client: Client, model: str | None, provider: str | None, body: Any,
              kind: str = "llm") -> Callable[[], float]:
    """A deferred ``worst_case_usd``: admission computes it only when a scope has a hard budget."""

    def estimate() -> float:
        try:
            return worst_case_usd(client, model, provider, body, output=kind != "embedding")
        except Exception:  # never break the host's call; the budget is still checked without it
            logger.exception("agentwatch: could not estimate the worst-case cost (reserving nothing)")
            return 0.0

    return estimate
