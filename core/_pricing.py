"""USD cost of an LLM call: user overrides, then genai-prices, then a flagged default rate.

genai-prices takes ~0.3 s to import and ~70 µs per call, so rates are resolved once per
(provider, model), on the first call that needs them (never in ``init()``), and the hot path multiplies floats.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["Price", "Pricer", "DEFAULT_RATES", "LOCAL_PROVIDERS", "FAKE_MARKERS", "is_free"]

#: USD per 1M tokens for models no table knows; spans priced with it are flagged ``cost_estimated``.
DEFAULT_RATES = (1.00, 2.00)

_DATE_SUFFIX = r"(-\d{4}-?\d{2}-?\d{2}|-\d{4}|@\d{8}|-latest|-preview)$"


# NamedTuples, not dataclasses: the same immutable records at a fraction of the import cost.
class Price(NamedTuple):
    cost_usd: float
    estimated: bool = False
    source: str = "genai-prices"


class _Rates(NamedTuple):
    """Per-1M-token rates; a tier list applies its price to all tokens once input exceeds ``start``."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    tiers: tuple[tuple[int, float, float, float, float], ...] = ()
    estimated: bool = False
    source: str = "genai-prices"

    def cost(self, input_tokens: int, output_tokens: int, cached: int, cache_write: int) -> float:
        uncached = input_tokens - cached - cache_write
        if uncached < 0:
            uncached = 0
        if not self.tiers:  # the common case
            return (uncached * self.input + cached * self.cache_read + cache_write * self.cache_write
                    + output_tokens * self.output) / 1e6
        rate_in, rate_out, rate_read, rate_write = self.input, self.output, self.cache_read, self.cache_write
        for start, t_in, t_out, t_read, t_write in self.tiers:
            if input_tokens > start:
                rate_in, rate_out, rate_read, rate_write = t_in, t_out, t_read, t_write
        return (uncached * rate_in + cached * rate_read + cache_write * rate_write + output_tokens * rate_out) / 1e6


def _find_in_table(model: str, provider: str | None) -> Any | None:
    """(provider, model info) from the whole table: the model as given, dated or not, with and without the
    provider."""
    import re

    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    candidates = [model]
    stripped = re.sub(_DATE_SUFFIX, "", model)
    if stripped != model:
        candidates.append(stripped)
    if "/" in model:  # "openai/gpt-4o" as CrewAI and LiteLLM write it
        prefix, _, bare = model.partition("/")
        candidates.append(bare)
        provider = provider or prefix
    for ref in candidates:
        for provider_id in ([provider, None] if provider else [None]):
            try:
                return snapshot.find_provider_model(ref, None, provider_id, None)
            except LookupError:
                continue
    return None


def _genai_rates(model: str, provider: str | None) -> _Rates | None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from genai_prices.types import TieredPrices

    found = _find_in_own_provider(model, provider) or _find_in_table(model, provider)
    if not found:
        return None
    _, info = found
    prices = info.get_prices(datetime.now(tz=UTC))

    def base(value: Any, fallback: float) -> float:
        if value is None:
            return fallback
        if isinstance(value, TieredPrices):
            return float(value.base)
        return float(value) if isinstance(value, Decimal | int | float) else fallback

    def tiered(value: Any) -> dict[int, float]:
        if isinstance(value, TieredPrices):
            return {tier.start: float(tier.price) for tier in value.tiers}
        return {}

    fields = {name: getattr(prices, name, None) for name in ("input_mtok", "output_mtok", "cache_read_mtok",
                                                                "cache_write_mtok")}
    rate_in = base(fields["input_mtok"], 0.0)
    rate_out = base(fields["output_mtok"], 0.0)
    rate_read = base(fields["cache_read_mtok"], rate_in)
    rate_write = base(fields["cache_write_mtok"], rate_in)
    per_field = {name: tiered(value) for name, value in fields.items()}
    starts = sorted({start for tiers in per_field.values() for start in tiers})
    tiers = []
    current = [rate_in, rate_out, rate_read, rate_write]
    for start in starts:
        for index, name in enumerate(("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")):
            if start in per_field[name]:
                current[index] = per_field[name][start]
        tiers.append((start, *current))
    return _Rates(rate_in, rate_out, rate_read, rate_write, tuple(tiers))  # type: ignore[arg-type]


#: genai-prices' table is one Python module of ~50 providers (~1.6 MB; importing it builds ~150k objects that every
#: full GC pass then walks). A model priced with its provider named (the usual case: plugins know it) needs only
#: that provider's entry: its source is cut out of the module and evaluated alone, once per provider.
_PROVIDER_MARK = "\n    Provider(\n"
_provider_lock = threading.Lock()
_provider_sources: dict[str, str] | None = None
_providers: dict[str, Any] = {}


def _split_providers() -> dict[str, str]:
    """Provider id -> the source of its ``Provider(...)`` expression in genai-prices' bundled data module."""
    import importlib.util
    import os
    import re

    spec = importlib.util.find_spec("genai_prices")
    if spec is None or not spec.submodule_search_locations:
        return {}
    with open(os.path.join(next(iter(spec.submodule_search_locations)), "data.py"), encoding="utf-8") as handle:
        text = handle.read()
    starts = []
    at = text.find(_PROVIDER_MARK)
    while at != -1:
        starts.append(at + 1)
        at = text.find(_PROVIDER_MARK, at + 1)
    sources = {}
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else text.rindex("]")
        chunk = text[start:end].rstrip().rstrip(",")
        found = re.match(r"\s*Provider\(\s*id='([^']+)'", chunk)
        if found:
            sources[found.group(1)] = chunk
    return sources


def _provider(provider_id: str) -> Any | None:
    """genai-prices' ``Provider`` of this exact id, built from its own source; None if there is none."""
    global _provider_sources
    with _provider_lock:
        if provider_id in _providers:
            return _providers[provider_id]
        if _provider_sources is None:
            _provider_sources = _split_providers()
        source = _provider_sources.get(provider_id)
        built = None
        if source is not None:
            import datetime
            from decimal import Decimal

            from genai_prices import types

            namespace = {**vars(types), "datetime": datetime, "Decimal": Decimal}
            built = eval(compile(f"({source}\n)", "genai_prices/data.py", "eval"), namespace)  # noqa: S307
        _providers[provider_id] = built
        return built


def _find_in_own_provider(model: str, provider: str | None) -> Any | None:
    """(provider, model info) from the named provider's entry alone; None means: ask the whole table.

    Only the model as given, with the provider as given: the first lookup the whole table would make, and
    made the same way (``find_provider_model`` on a snapshot of that provider and its fallback providers), so
    the answer is the one the whole table gives. A custom snapshot (the user's, or genai-prices' auto-update)
    is always asked whole."""
    from genai_prices import data_snapshot

    if not provider or data_snapshot._custom_snapshot is not None:
        return None
    own = _provider(provider)
    if own is None:
        return None
    related = [own] + [p for p in (_provider(f) for f in own.fallback_model_providers or ()) if p is not None]
    snapshot = data_snapshot.DataSnapshot(providers=related, from_auto_update=False)
    try:
        return snapshot.find_provider_model(model, None, provider, None)
    except LookupError:
        return None


def _override_rates(model: str, table: Mapping[str, Mapping[str, float]]) -> _Rates | None:
    """Exact name first, then the longest override name that the model starts with."""
    entry = table.get(model)
    if entry is None:
        matches = [name for name in table if model.startswith(name)]
        if not matches:
            return None
        entry = table[max(matches, key=len)]
    rate_in = entry["input"]
    return _Rates(rate_in, entry["output"], entry.get("cached_input", rate_in), entry.get("cache_write", rate_in),
                  source="cost_table_override")


class Pricer:
    """Resolves and caches rates per (provider, model); safe to call from many threads."""

    def __init__(self, overrides: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self._overrides = dict(overrides or {})
        self._cache: dict[tuple[str | None, str], _Rates] = {}
        self._lock = threading.Lock()

    def rates(self, model: str, provider: str | None) -> _Rates:
        key = (provider, model)
        rates = self._cache.get(key)
        if rates is None:
            rates = self._resolve(model, provider)
            with self._lock:
                self._cache[key] = rates
        return rates

    def _resolve(self, model: str, provider: str | None) -> _Rates:
        lowered = model.lower()
        override = (_override_rates(model, self._overrides) or _override_rates(lowered, self._overrides)
                    if model else None)
        if override is not None:  # the user's own price wins, even for a local model
            return override
        if is_free(model, provider):
            return _FREE
        rates = None
        if model:
            try:
                rates = _genai_rates(lowered, provider.lower() if provider else None)
            except Exception:  # a broken price table must not break the host's LLM call
                rates = None
        return rates if rates is not None else _DEFAULT

    def cost(self, model: str | None, provider: str | None, input_tokens: int, output_tokens: int,
             cached_input_tokens: int = 0, cache_write_tokens: int = 0) -> tuple[float, bool]:
        """(USD, estimated) without building a ``Price``: the per-call path."""
        if model or provider:
            rates = self._cache.get((provider, model or ""))
            if rates is None:
                rates = self.rates(model or "", provider)
        else:
            rates = _DEFAULT
        if rates.tiers:
            return rates.cost(input_tokens, output_tokens, cached_input_tokens, cache_write_tokens), rates.estimated
        # _Rates.cost without its call, for the usual untiered rates.
        uncached = input_tokens - cached_input_tokens - cache_write_tokens
        if uncached < 0:
            uncached = 0
        return ((uncached * rates.input + cached_input_tokens * rates.cache_read
                 + cache_write_tokens * rates.cache_write + output_tokens * rates.output) / 1e6, rates.estimated)

    def price(self, model: str | None, provider: str | None, input_tokens: int, output_tokens: int,
              cached_input_tokens: int = 0, cache_write_tokens: int = 0) -> Price:
        rates = self.rates(model or "", provider) if model or provider else _DEFAULT
        return Price(rates.cost(input_tokens, output_tokens, cached_input_tokens, cache_write_tokens),
                     estimated=rates.estimated, source=rates.source)


#: Providers that serve models on the user's own hardware: they cost nothing per token. Plugins pass the
#: provider as the framework names it (LangChain's ``ls_provider``: ``ChatOllama`` → "ollama", ``LlamaCpp`` →
#: "llamacpp", ``HuggingFacePipeline`` → "huggingfacepipeline"; LlamaIndex: the integration package).
LOCAL_PROVIDERS = frozenset({
    "ollama", "lmstudio", "llamacpp", "llama_cpp", "llama.cpp", "llamafile", "gpt4all", "mlx", "local",
    "huggingfacepipeline", "huggingface_pipeline", "huggingface_local", "sentence_transformers", "fastembed",
})
#: A provider or model name containing one of these is a test double, not a paid model: LlamaIndex ``MockLLM``
#: and ``MockEmbedding`` (provider "mock"), LangChain ``FakeListChatModel`` / ``GenericFakeChatModel`` /
#: ``FakeListLLM`` (``ls_provider`` "fakelistchatmodel", "genericfakechatmodel", "fakelist", ...).
FAKE_MARKERS = ("fake", "mock")
_FREE = _Rates(0.0, 0.0, 0.0, 0.0, source="local")
_DEFAULT = _Rates(DEFAULT_RATES[0], DEFAULT_RATES[1], DEFAULT_RATES[0], DEFAULT_RATES[0], estimated=True,
                  source="default")


def is_free(model: str | None, provider: str | None) -> bool:
    """Is this a local model or a test double, which costs nothing per token? The one rule every plugin
    relies on: a plugin passes the provider (and model) it knows, never decides this itself."""
    if provider:
        lowered = provider.lower()
        if lowered in LOCAL_PROVIDERS or any(marker in lowered for marker in FAKE_MARKERS):
            return True
    if model:
        lowered = model.lower()
        return lowered.startswith(FAKE_MARKERS)
    return False
