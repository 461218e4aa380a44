"""USD cost of an LLM call: user overrides, then genai-prices, then a flagged default rate.

genai-prices takes ~0.3 s to import and ~70 µs per call, so rates are resolved once per
(provider, model), on the first call that needs them (never in ``init()``), and the hot path multiplies floats.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

from ._forking import fork_safe_lock

__all__ = ["Price", "Pricer", "DEFAULT_RATES", "LOCAL_PROVIDERS", "FAKE_MARKERS", "BILLABLE_UNITS", "is_free"]

#: USD per 1M tokens for models no table knows; spans priced with it are flagged ``cost_estimated``.
DEFAULT_RATES = (1.00, 2.00)

_DATE_SUFFIX = r"(-\d{4}-?\d{2}-?\d{2}|-\d{4}|@\d{8}|-latest|-preview)$"

#: What a call is charged for besides tokens, per unit (``LLMCall.set_billable``): the span attribute that records
#: the count -> genai-prices' price key, quoted per that many units. A provider bills these per request made by its
#: own server-side tools, whatever the tokens (Anthropic's and OpenAI's web search: $10 per 1,000).
BILLABLE_UNITS: dict[str, tuple[str, int]] = {
    "web_search_requests": ("web_searches_kcount", 1000),
}


# NamedTuples, not dataclasses: the same immutable records at a fraction of the import cost.
class Price(NamedTuple):
    cost_usd: float
    estimated: bool = False
    source: str = "genai-prices"


class _Rates(NamedTuple):
    """Per-1M-token rates; a tier list applies its price to all tokens once input exceeds ``start``.

    ``cache_write`` is the 5-minute cache write (and any provider's only one); ``cache_write_1h`` Anthropic's 1-hour
    write (None: priced as ``cache_write``). ``per_unit``: USD per one billable unit (``BILLABLE_UNITS``)."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    #: (start, input, output, cache read, cache write, 1-hour cache write)
    tiers: tuple[tuple[int, float, float, float, float, float], ...] = ()
    estimated: bool = False
    source: str = "genai-prices"
    cache_write_1h: float | None = None
    per_unit: tuple[tuple[str, float], ...] = ()

    def cost(self, input_tokens: int, output_tokens: int, cached: int, cache_write: int,
             cache_write_1h: int = 0) -> float:
        """Tokens only (``cache_write_1h``: the part of ``cache_write`` written for one hour)."""
        uncached = input_tokens - cached - cache_write
        if uncached < 0:
            uncached = 0
        if not self.tiers:  # the common case
            cost = (uncached * self.input + cached * self.cache_read + cache_write * self.cache_write
                    + output_tokens * self.output) / 1e6
        else:
            rate_in, rate_out, rate_read, rate_write = self.input, self.output, self.cache_read, self.cache_write
            for start, t_in, t_out, t_read, t_write, _t_write_1h in self.tiers:
                if input_tokens > start:
                    rate_in, rate_out, rate_read, rate_write = t_in, t_out, t_read, t_write
            cost = (uncached * rate_in + cached * rate_read + cache_write * rate_write
                    + output_tokens * rate_out) / 1e6
        if cache_write_1h:
            cost += self.premium_1h(input_tokens, min(cache_write_1h, cache_write))
        return cost

    def premium_1h(self, input_tokens: int, cache_write_1h: int) -> float:
        """What 1-hour cache writes cost beyond the 5-minute write rate ``cost`` charged them at."""
        rate_write, rate_1h = self.cache_write, self.cache_write_1h
        for start, _in, _out, _read, t_write, t_write_1h in self.tiers:
            if input_tokens > start:
                rate_write, rate_1h = t_write, t_write_1h
        return 0.0 if rate_1h is None else cache_write_1h * (rate_1h - rate_write) / 1e6

    def units_cost(self, units: Mapping[str, Any]) -> float:
        """USD for billable units (``BILLABLE_UNITS`` name -> count); a unit without a price costs nothing."""
        cost = 0.0
        for unit, rate in self.per_unit:
            count = units.get(unit)
            if count:
                cost += count * rate
        return cost


def _find_in_table(model: str, provider: str | None) -> Any | None:
    """(provider, model info) from the whole table: the model as given, dated or not, with and without the
    provider."""
    import re

    from genai_prices import data_snapshot

    table = data_snapshot.get_snapshot()
    # A snapshot of the same table with caches of its own, dropped after this lookup: genai-prices' shared snapshot
    # keeps every name it was asked for (a model not found too) for the life of the process, so names made up per
    # call (a proxy's per-request alias) grew it forever; ``Pricer`` keeps the answers, within its bound.
    snapshot = data_snapshot.DataSnapshot(providers=table.providers, from_auto_update=table.from_auto_update)
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
    """genai-prices' rates for the model: from the shipped index when it was built from the installed table
    (no genai-prices import: ~0.1 ms instead of ~150 ms for a process's first priced call), else from the table."""
    indexed = _indexed_rates(model, provider)
    if indexed is not _NOT_INDEXED:
        return indexed  # type: ignore[return-value]
    from datetime import UTC, datetime

    found = _find_in_own_provider(model, provider) or _find_in_table(model, provider)
    if _index_usable:
        _remember(model, provider, found)
    if not found:
        return None
    return _rates_of(found[1].get_prices(datetime.now(tz=UTC)))


def _rates_of(prices: Any) -> _Rates:
    """A genai-prices ``ModelPrice`` as per-1M-token rates, tiers flattened (cache rates default to input)."""
    from decimal import Decimal

    from genai_prices.types import TieredPrices

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

    fields = {name: getattr(prices, name, None) for name in _PRICE_FIELDS}
    rate_in = base(fields["input_mtok"], 0.0)
    rate_out = base(fields["output_mtok"], 0.0)
    rate_read = base(fields["cache_read_mtok"], rate_in)
    rate_write = base(fields["cache_write_mtok"], rate_in)
    rate_write_1h = base(fields["cache_write_1h_mtok"], rate_write)  # as genai-prices: a 1h write is a write
    per_field = {name: tiered(value) for name, value in fields.items()}
    starts = sorted({start for tiers in per_field.values() for start in tiers})
    tiers = []
    current = [rate_in, rate_out, rate_read, rate_write, rate_write_1h]
    for start in starts:
        for index, name in enumerate(_PRICE_FIELDS):
            if start in per_field[name]:
                current[index] = per_field[name][start]
        tiers.append((start, *current))
    per_unit = []
    for unit, (key, per) in BILLABLE_UNITS.items():
        price = base(getattr(prices, key, None), 0.0)
        if price:
            per_unit.append((unit, price / per))
    return _Rates(rate_in, rate_out, rate_read, rate_write, tuple(tiers),  # type: ignore[arg-type]
                  cache_write_1h=rate_write_1h, per_unit=tuple(per_unit))


_PRICE_FIELDS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok")


# ---- the shipped index: genai-prices' own answers, one line per (provider, model) ----------------------------
#
# ``_price_index.py`` (generated by ``python -m agentwatch._pricing``) holds, for every model id of every provider
# of the table, what the lookup below the index (``_find_in_own_provider`` / ``_find_in_table``) answers for that
# id with that provider and with none: the rates of each dated price (a price that starts on a date is chosen
# by today's date, as genai-prices chooses it). It is used only while it matches the installed genai-prices
# (version and data file size) and no custom snapshot is set (``set_custom_snapshot``, ``UpdatePrices``):
# otherwise, and for a name it does not hold (dated aliases, other spellings), the table answers, as before.
# Prices that depend on the time of day (off-peak rates) are not indexed: the table answers them.

_NOT_INDEXED = object()
_index_usable: bool | None = None


def _index_matches_installed() -> bool:
    import importlib.util
    import os

    from . import _price_index

    spec = importlib.util.find_spec("genai_prices")
    if spec is None or not spec.submodule_search_locations:
        return False
    package = next(iter(spec.submodule_search_locations))
    try:
        size = os.stat(os.path.join(package, "data.py")).st_size
    except OSError:
        return False
    dist_info = os.path.join(os.path.dirname(package), f"genai_prices-{_price_index.GENAI_PRICES_VERSION}.dist-info")
    return size == _price_index.DATA_SIZE and os.path.isdir(dist_info)


def _indexed_rates(model: str, provider: str | None) -> _Rates | None | object:
    """The indexed rates (None: genai-prices knows no price), or ``_NOT_INDEXED``: ask the table."""
    global _index_usable
    snapshots = sys.modules.get("genai_prices.data_snapshot")
    if snapshots is not None and getattr(snapshots, "_custom_snapshot", None) is not None:
        return _NOT_INDEXED
    if _index_usable is None:
        try:
            _index_usable = _index_matches_installed()
        except Exception:  # a broken install: the table decides (or fails, and the default rate applies)
            _index_usable = False
    if not _index_usable or "\t" in model or "\n" in model or (provider and ("\t" in provider or "\n" in provider)):
        return _NOT_INDEXED
    from . import _price_index

    key = f"\n{provider or ''}\t{model}\t"
    text = _price_index.INDEX
    at = text.find(key)
    if at == -1:
        text = _remembered()
        at = text.find(key)
        if at == -1:
            return _NOT_INDEXED
    line = text[at + 1:text.find("\n", at + 1)]
    return _parse_indexed(line.split("\t")[2])


# Names the index does not hold (a dated alias such as ``claude-sonnet-4-20250514``, an unknown model) are
# answered by the table once, then remembered in a per-user file next to the spool, keyed like the index by the
# genai-prices version and data size: the next process's first call with that name is as cheap as an indexed one.
_remembered_text: str | None = None


def _remembered_path() -> str:
    import os

    from . import _price_index
    from ._spool import user_cache_dir

    # The format's version first: a file written before 1-hour writes and per-unit prices were indexed is not read.
    name = f"prices-{_INDEX_FORMAT}-{_price_index.GENAI_PRICES_VERSION}-{_price_index.DATA_SIZE}.tsv"
    return os.path.join(user_cache_dir(), name)


def _remembered() -> str:
    global _remembered_text
    if _remembered_text is None:
        try:
            with open(_remembered_path(), encoding="utf-8") as handle:
                _remembered_text = "\n" + handle.read()
        except (OSError, ValueError):  # none yet, or unreadable: the table answers
            _remembered_text = "\n"
    return _remembered_text


def _remember(model: str, provider: str | None, found: Any) -> None:
    global _remembered_text
    try:
        entry = _index_entry(found)
        if entry is None or "\t" in model or "\n" in model or " " in model:
            return
        import os

        line = f"{provider or ''}\t{model}\t{entry}\n"
        path = _remembered_path()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # One short append (O_APPEND): processes remembering at once do not interleave their lines.
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line.encode("utf-8"))
        finally:
            os.close(descriptor)
        _remembered_text = (_remembered_text or "\n") + line
    except Exception:  # a read-only home: nothing remembered, the next process asks the table again
        pass


#: Bumped when an index line's format changes (it names the remembered file).
_INDEX_FORMAT = 2


def _parse_indexed(field: str) -> _Rates | None:
    """``start|in,out,read,write,write_1h|tier;...|unit=usd,...`` per dated price, space-separated (``-``:
    genai-prices has none); a tier is ``start,in,out,read,write,write_1h``."""
    if field == "-":
        return None
    import time

    today = time.strftime("%Y-%m-%d", time.gmtime())
    entries = field.split(" ")
    chosen = entries[0]
    for entry in reversed(entries):  # the last price already in force wins, as in ModelInfo.get_prices
        start = entry.partition("|")[0]
        if not start or today >= start:
            chosen = entry
            break
    _start, rates, tiers, units = chosen.split("|")
    rate_in, rate_out, rate_read, rate_write, rate_write_1h = (float(value) for value in rates.split(","))
    tier_rows = tuple((int(row[0]), *(float(value) for value in row[1:]))
                      for row in (tier.split(",") for tier in tiers.split(";") if tier))
    per_unit = tuple((unit, float(rate)) for unit, _, rate in (pair.partition("=") for pair in units.split(",")
                                                               if pair))
    return _Rates(rate_in, rate_out, rate_read, rate_write, tier_rows,  # type: ignore[arg-type]
                  cache_write_1h=rate_write_1h, per_unit=per_unit)


def _index_entry(found: Any) -> str | None:
    """The index field of one (provider, model info); None if its prices depend on the time of day."""
    from genai_prices.types import ModelPrice, StartDateConstraint

    if found is None:
        return "-"
    prices = found[1].prices
    dated = [(None, prices)] if isinstance(prices, ModelPrice) else [(c.constraint, c.prices) for c in prices]
    entries = []
    for constraint, price in dated:
        if constraint is not None and not isinstance(constraint, StartDateConstraint):
            return None
        rates = _rates_of(price)
        start = constraint.start_date.isoformat() if constraint is not None else ""
        tiers = ";".join(",".join(repr(value) for value in tier) for tier in rates.tiers)
        units = ",".join(f"{unit}={rate!r}" for unit, rate in rates.per_unit)
        entries.append(f"{start}|{rates.input!r},{rates.output!r},{rates.cache_read!r},{rates.cache_write!r},"
                       f"{rates.cache_write_1h!r}|{tiers}|{units}")
    return " ".join(entries)


def build_index() -> str:
    """The source of ``_price_index.py`` for the installed genai-prices."""
    import importlib.metadata
    import importlib.util
    import os

    from genai_prices import data_snapshot

    lines = []
    seen = set()
    for provider in data_snapshot.get_snapshot().providers:
        for info in provider.models:
            model = info.id.lower()
            for provider_id in (provider.id, None):
                key = (provider_id or "", model)
                if key in seen or "\t" in model or " " in model:
                    continue
                seen.add(key)
                found = _find_in_own_provider(model, provider_id) or _find_in_table(model, provider_id)
                entry = _index_entry(found)
                if entry is not None:
                    lines.append(f"{key[0]}\t{model}\t{entry}")
    spec = importlib.util.find_spec("genai_prices")
    assert spec is not None and spec.submodule_search_locations
    size = os.stat(os.path.join(next(iter(spec.submodule_search_locations)), "data.py")).st_size
    body = "\n".join(sorted(lines))
    return (f'"""genai-prices\' answers per (provider, model), generated by ``python -m agentwatch._pricing`` from\n'
            f'genai-prices {importlib.metadata.version("genai-prices")}: see ``_pricing`` (do not edit)."""\n'
            "# ruff: noqa: E501\n\n"
            f'GENAI_PRICES_VERSION = "{importlib.metadata.version("genai-prices")}"\n'
            f"DATA_SIZE = {size}\n"
            f'INDEX = """\n{body}\n"""\n')


#: genai-prices' table is one Python module of ~50 providers (~1.6 MB; importing it builds ~150k objects that every
#: full GC pass then walks). A model priced with its provider named (the usual case: plugins know it) needs only
#: that provider's entry: its source is cut out of the module and evaluated alone, once per provider.
_PROVIDER_MARK = "\n    Provider(\n"
_provider_lock = fork_safe_lock(sys.modules[__name__], "_provider_lock")
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
    units = tuple((unit, entry[unit] / per) for unit, (_key, per) in BILLABLE_UNITS.items() if unit in entry)
    return _Rates(rate_in, entry["output"], entry.get("cached_input", rate_in), entry.get("cache_write", rate_in),
                  source="cost_table_override", cache_write_1h=entry.get("cache_write_1h"), per_unit=units)


#: Bounds of ``Pricer.note_answered``: names remembered, and models per name (a deployment moved to another model).
_ANSWERED_NAMES_MAX = 1024
#: Models whose rates ``Pricer`` keeps resolved: far more than a program calls; names made up per call (a proxy's
#: per-request alias) start the caches afresh rather than grow them forever.
_CACHED_MODELS_MAX = 4096
_ANSWERS_PER_NAME = 8


class Pricer:
    """Resolves and caches rates per (provider, model); safe to call from many threads."""

    def __init__(self, overrides: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self._overrides = dict(overrides or {})
        self._cache: dict[tuple[str | None, str], _Rates] = {}
        #: ``cost``'s copy of the untiered rates of ``_cache``: (input, output, cache read, cache write, estimated) as a
        #: plain tuple, unpacked in one step (each field of a NamedTuple read by name is a descriptor call).
        self._token_rates: dict[tuple[str | None, str], tuple[float, float, float, float, bool]] = {}
        #: (provider, a model name the table does not know) -> the known models its answers named (``note_answered``).
        self._answered: dict[tuple[str | None, str], tuple[str, ...]] = {}
        self._lock = fork_safe_lock(self)

    def rates(self, model: str, provider: str | None) -> _Rates:
        key = (provider, model)
        rates = self._cache.get(key)
        if rates is None:
            rates = self._resolve(model, provider)
            with self._lock:
                if len(self._cache) >= _CACHED_MODELS_MAX:
                    self._cache.clear()
                self._cache[key] = rates
        return rates

    def note_answered(self, model: str, provider: str | None, answered: str) -> None:
        """A call asking for ``model``, a name the table does not know (an Azure deployment's, a proxy's alias), was
        answered by ``answered``, a model it knows, and priced as that: a hard budget reserves the next calls of
        ``model`` at that model's price too (``answered_by``), not at the default rate."""
        key = (provider, model)
        known = self._answered.get(key, ())
        if answered in known:
            return
        with self._lock:
            if key not in self._answered and len(self._answered) >= _ANSWERED_NAMES_MAX:
                self._answered.clear()  # names made up per call must not grow it forever
            self._answered[key] = (*self._answered.get(key, ()), answered)[-_ANSWERS_PER_NAME:]

    def answered_by(self, model: str, provider: str | None) -> tuple[str, ...]:
        """The known models that answered calls asking for ``model`` (``note_answered``), oldest first."""
        return self._answered.get((provider, model), ())

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
        key = (provider, model or "")
        token_rates = self._token_rates.get(key)
        if token_rates is None:
            rates = self.rates(model or "", provider) if model or provider else _DEFAULT
            if rates.tiers:
                return rates.cost(input_tokens, output_tokens, cached_input_tokens, cache_write_tokens), rates.estimated
            if len(self._token_rates) >= _CACHED_MODELS_MAX:
                self._token_rates.clear()
            token_rates = self._token_rates[key] = (rates.input, rates.output, rates.cache_read, rates.cache_write,
                                                    rates.estimated)
        # _Rates.cost without its call, for the usual untiered rates.
        rate_in, rate_out, rate_read, rate_write, estimated = token_rates
        uncached = input_tokens - cached_input_tokens - cache_write_tokens
        if uncached < 0:
            uncached = 0
        if cached_input_tokens or cache_write_tokens:
            return ((uncached * rate_in + cached_input_tokens * rate_read + cache_write_tokens * rate_write
                     + output_tokens * rate_out) / 1e6, estimated)
        # The same sum without its two zero terms (adding 0.0 changes no float): most calls cache nothing.
        return (uncached * rate_in + output_tokens * rate_out) / 1e6, estimated

    def extra_cost(self, model: str | None, provider: str | None, input_tokens: int, cache_write_1h_tokens: int,
                   units: Mapping[str, Any] | None) -> float:
        """What ``cost`` leaves out: the 1-hour cache writes' premium over the write rate, and billable units.
        Asked only for a call that has either (``LLMCall.end``), so the usual call pays nothing for them."""
        rates = self.rates(model or "", provider) if model or provider else _DEFAULT
        extra = rates.premium_1h(input_tokens, cache_write_1h_tokens) if cache_write_1h_tokens else 0.0
        return extra + rates.units_cost(units) if units else extra

    def price(self, model: str | None, provider: str | None, input_tokens: int, output_tokens: int,
              cached_input_tokens: int = 0, cache_write_tokens: int = 0, *, cache_write_1h_tokens: int = 0,
              units: Mapping[str, Any] | None = None) -> Price:
        rates = self.rates(model or "", provider) if model or provider else _DEFAULT
        cost = rates.cost(input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens)
        if units:
            cost += rates.units_cost(units)
        return Price(cost, estimated=rates.estimated, source=rates.source)


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


if __name__ == "__main__":  # python -m agentwatch._pricing: regenerate the index for the installed genai-prices
    import os as _os

    with open(_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "_price_index.py"), "w",
              encoding="utf-8") as _handle:
        _handle.write(build_index())
