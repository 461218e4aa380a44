"""Latency histograms with logarithmic bins, and time helpers shared by the store backends.

Percentiles over millions of LLM calls must answer in milliseconds, so stores keep per-hour histograms
instead of sorting raw latencies: bins grow by 5 %, so a percentile is within about 2.5 % of the exact one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._time import iso

__all__ = [
    "COST_DIGITS",
    "usd",
    "HOUR_NS",
    "DAY_NS",
    "latency_bin",
    "bin_value",
    "percentile_from_bins",
    "percentile_exact",
    "hour_of",
    "daily_cost_rows",
    "model_cost_rows",
    "add_by_key",
]

#: Decimal places of every cost the API answers, per span, per trace and in every aggregate alike: a nanodollar
#: keeps the cheapest calls (an embedding of a few tokens costs $1.6e-7) and sums of them apart from zero.
COST_DIGITS = 9

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
_GROWTH = 1.05
_LOG_GROWTH = math.log(_GROWTH)
_MIN_MS = 0.001


def usd(value: Any) -> float:
    """A cost as the API answers it (``COST_DIGITS``): float noise of long sums rounded away, no cent lost."""
    return round(float(value or 0.0), COST_DIGITS)


def add_by_key(sums: dict[tuple[Any, ...], list[Any]], rows: Iterable[Sequence[Any]], width: int) -> None:
    """Add ``rows`` of (key..., sums...) into ``sums``, per key (the first ``width`` columns): a store's whole hours
    from its rollups and the hours a range cuts from its spans make one answer. A NULL sum counts 0."""
    for row in rows:
        key, values = tuple(row[:width]), row[width:]
        current = sums.get(key)
        if current is None:
            sums[key] = [value or 0 for value in values]
        else:
            for index, value in enumerate(values):
                current[index] += value or 0


def daily_cost_rows(by_day: Mapping[int, Sequence[Any]], start_ns: int, end_ns: int) -> list[dict[str, Any]]:
    """One row per UTC day in [start, end), zeros where nothing happened. ``by_day`` maps a day number to
    (day, cost, llm calls, input tokens, output tokens, spans) as each store's query returns them."""
    days = []
    for day in range(start_ns // DAY_NS, -(-end_ns // DAY_NS)):
        row = by_day.get(day, (day, 0.0, 0, 0, 0, 0))
        days.append({"date": (iso(day * DAY_NS) or "")[:10],
                     "cost_usd": usd(row[1]), "llm_calls": int(row[2]), "input_tokens": int(row[3]),
                     "output_tokens": int(row[4]), "spans": int(row[5])})
    return days


def model_cost_rows(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """(model, provider, cost, llm calls, input tokens, output tokens, errors) rows, most expensive first."""
    result = [{"model": row[0], "provider": row[1] or None, "cost_usd": float(row[2]),
               "llm_calls": int(row[3]), "input_tokens": int(row[4]), "output_tokens": int(row[5]),
               "errors": int(row[6])} for row in rows]
    result = _fold_unknown_providers(result)
    for item in result:
        item["cost_usd"] = usd(item["cost_usd"])
    result.sort(key=lambda item: (-item["cost_usd"], item["model"]))
    return result


def _fold_unknown_providers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A model's spans that name no provider (sent by a client that does not know it) join its row when one provider
    serves that model here: two "gpt-4o" rows, one of them without a provider, read as two models."""
    providers: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        if row["provider"] is not None:
            providers.setdefault(row["model"], []).append(row)
    kept = []
    for row in rows:
        known = providers.get(row["model"], []) if row["provider"] is None else []
        if len(known) != 1:
            kept.append(row)
            continue
        into = known[0]
        for key in ("cost_usd", "llm_calls", "input_tokens", "output_tokens", "errors"):
            into[key] += row[key]
    return kept


def hour_of(ns: int) -> int:
    return ns // HOUR_NS


def latency_bin(ms: float) -> int:
    return math.floor(math.log(max(ms, _MIN_MS)) / _LOG_GROWTH)


def bin_value(index: int) -> float:
    """The geometric middle of a bin: the value a percentile falling in it is reported as."""
    return _GROWTH ** (index + 0.5)


def percentile_from_bins(bins: Mapping[int, int], fraction: float) -> float | None:
    total = sum(bins.values())
    if total <= 0:
        return None
    # Nearest-rank definition, the same as percentile_exact, so both agree up to bin width.
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return round(bin_value(index), 3)
    return round(bin_value(max(bins)), 3)


def percentile_exact(values: Iterable[float], fraction: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return round(ordered[rank - 1], 3)
