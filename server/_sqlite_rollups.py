"""The SQLite store's hourly rollups: what ingest adds to them, and what a purge takes out of them.

A purge removes whole traces, so a trace that started before the cutoff takes spans of later hours with it: the
rollups of the hours that stay lose exactly those spans' figures (``RollupRemoval``), as the ClickHouse store's
negated rows do, and rows left with nothing in them go.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from . import _json
from ._datamodel import span_flags
from ._sqlite_agents import CHARGED_AGENT_SQL, CHARGED_JOIN_SQL
from ._stats import HOUR_NS, latency_bin

__all__ = ["UPSERT_HOUR", "UPSERT_LATENCY", "UPSERT_AGENT", "UPSERT_MODEL", "AGENT_NAMES_SQL", "RollupRemoval"]

UPSERT_HOUR: Final = """
INSERT INTO rollup_hour (hour, spans, llm_calls, llm_errors, errors, blocked, input_tokens, output_tokens, cost_usd)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour) DO UPDATE SET
    spans = spans + excluded.spans, llm_calls = llm_calls + excluded.llm_calls,
    llm_errors = llm_errors + excluded.llm_errors, errors = errors + excluded.errors,
    blocked = blocked + excluded.blocked, input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens, cost_usd = cost_usd + excluded.cost_usd
"""

UPSERT_LATENCY: Final = """
INSERT INTO rollup_latency (hour, bin, n) VALUES (?, ?, ?)
ON CONFLICT (hour, bin) DO UPDATE SET n = n + excluded.n
"""

# An agent's name in an hour is the one its latest-starting span with a name had (name_ns: that span's start; NULL
# in a row from before the column, or without a name); on a tie, the later stored.
_NEWER_NAME: Final = ("excluded.agent_name IS NOT NULL AND (agent_name IS NULL"
                      " OR excluded.name_ns >= coalesce(name_ns, -9223372036854775808))")

UPSERT_AGENT: Final = f"""
INSERT INTO rollup_agent (hour, agent_id, agent_name, name_ns, spans, llm_calls, errors, blocked, input_tokens,
    output_tokens, cost_usd)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour, agent_id) DO UPDATE SET
    agent_name = CASE WHEN {_NEWER_NAME} THEN excluded.agent_name ELSE agent_name END,
    name_ns = CASE WHEN {_NEWER_NAME} THEN excluded.name_ns ELSE name_ns END, spans = spans + excluded.spans,
    llm_calls = llm_calls + excluded.llm_calls, errors = errors + excluded.errors,
    blocked = blocked + excluded.blocked, input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens, cost_usd = cost_usd + excluded.cost_usd
"""

UPSERT_MODEL: Final = """
INSERT INTO rollup_model (hour, model, provider, llm_calls, errors, input_tokens, output_tokens, cost_usd)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour, model, provider) DO UPDATE SET
    llm_calls = llm_calls + excluded.llm_calls, errors = errors + excluded.errors,
    input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens,
    cost_usd = cost_usd + excluded.cost_usd
"""

#: (agent key, name) of every agent: the name its latest-starting span with a name had (a row from before name_ns
#: counts as named at its hour's start). SQLite takes the other columns from the row max() picks.
AGENT_NAMES_SQL: Final = (f"SELECT agent_id, agent_name, max(coalesce(name_ns, hour * {HOUR_NS})) FROM rollup_agent"
                          " WHERE agent_name IS NOT NULL GROUP BY agent_id")

# A span's figures as the rollups count it: its agent the one the costs by agent count it under (its own, else the
# one it is charged to), its provider '' when it names none.
_FIGURES: Final = (f"SELECT s.kind, s.status, s.start_ns, s.end_ns, {CHARGED_AGENT_SQL}, s.model,"
                   " coalesce(s.provider, ''), s.input_tokens, s.output_tokens, s.cost_usd,"
                   " CASE WHEN s.status = 'blocked' THEN s.attributes END"  # where a block counts: span_flags
                   f" FROM spans s {CHARGED_JOIN_SQL}")


class RollupRemoval:
    """The figures of spans a purge deletes, taken out of the rollups of the hours the purge keeps (from
    ``first_hour`` on; the older hours' rows are deleted whole).

    ``take`` reads the spans before they are deleted, in the same transaction; ``finish`` (after the delete) drops
    the rows nothing is left in."""

    def __init__(self, first_hour: int) -> None:
        self._first_ns = first_hour * HOUR_NS
        self._hours: set[int] = set()
        self._agents: set[tuple[int, str]] = set()
        self._models: set[tuple[int, str, str]] = set()

    def take(self, cursor: sqlite3.Cursor, where: str, params: Sequence[Any], sign: int = -1) -> None:
        """Subtract the figures of the spans ``s`` that ``where`` selects (and that started in a kept hour); with
        ``sign`` 1, add them (a span changed in place: its old figures taken out, its new ones put in)."""
        hours: dict[int, list[Any]] = {}
        latency: dict[tuple[int, int], int] = {}
        agents: dict[tuple[int, str], list[Any]] = {}
        models: dict[tuple[int, str, str], list[Any]] = {}
        for kind, status, start, end, agent, model, provider, tokens_in, tokens_out, cost, attributes in cursor.execute(
                f"{_FIGURES} WHERE ({where}) AND s.start_ns >= ?", (*params, self._first_ns)).fetchall():
            call, blocked = span_flags(kind, status, _json.loads(attributes) if attributes else {})
            is_call, is_blocked, is_error = int(call), int(blocked), int(status == "error")
            hour = start // HOUR_NS
            _add(hours, hour, (1, is_call, is_call & is_error, is_error, is_blocked, tokens_in, tokens_out, cost))
            if is_call:
                key = (hour, latency_bin((end - start) / 1e6))
                latency[key] = latency.get(key, 0) + 1
            _add(agents, (hour, agent), (1, is_call, is_error, is_blocked, tokens_in, tokens_out, cost))
            if model:
                _add(models, (hour, model, provider), (is_call, is_error, tokens_in, tokens_out, cost))
        cursor.executemany(UPSERT_HOUR, [(hour, *_signed(values, sign)) for hour, values in hours.items()])
        cursor.executemany(UPSERT_LATENCY, [(hour, index, sign * n) for (hour, index), n in latency.items()])
        cursor.executemany(UPSERT_AGENT, [(hour, agent, None, None, *_signed(values, sign))
                                          for (hour, agent), values in agents.items()])
        cursor.executemany(UPSERT_MODEL, [(*key, *_signed(values, sign)) for key, values in models.items()])
        self._hours.update(hours)
        self._agents.update(agents)
        self._models.update(models)

    def finish(self, cursor: sqlite3.Cursor) -> None:
        """Drop the rows the removal emptied: no span left in them (a model's row: none of that model left in its
        hour), so the answers do not list an agent or a model with nothing, nor keep float dust."""
        hours = [(hour,) for hour in self._hours]
        cursor.executemany("DELETE FROM rollup_hour WHERE hour = ? AND spans <= 0", hours)
        cursor.executemany("DELETE FROM rollup_latency WHERE hour = ? AND n <= 0", hours)
        cursor.executemany("DELETE FROM rollup_agent WHERE hour = ? AND agent_id = ? AND spans <= 0",
                           list(self._agents))
        for hour, model, provider in self._models:
            # A model's row has no span count: its spans in that hour are looked for (by the start index), and
            # only for a row whose figures are all gone.
            emptied = cursor.execute(
                "SELECT 1 FROM rollup_model WHERE hour = ? AND model = ? AND provider = ? AND llm_calls <= 0"
                " AND errors <= 0 AND input_tokens <= 0 AND output_tokens <= 0", (hour, model, provider)).fetchone()
            if emptied and not cursor.execute(
                    "SELECT 1 FROM spans WHERE start_ns >= ? AND start_ns < ? AND model = ?"
                    " AND coalesce(provider, '') = ? LIMIT 1",
                    (hour * HOUR_NS, (hour + 1) * HOUR_NS, model, provider)).fetchone():
                cursor.execute("DELETE FROM rollup_model WHERE hour = ? AND model = ? AND provider = ?",
                               (hour, model, provider))
        self._hours.clear()
        self._agents.clear()
        self._models.clear()


def _add(sums: dict[Any, list[Any]], key: Any, values: tuple[Any, ...]) -> None:
    current = sums.get(key)
    if current is None:
        sums[key] = list(values)
    else:
        for index, value in enumerate(values):
            current[index] += value


def _signed(values: Sequence[Any], sign: int) -> list[Any]:
    return [sign * value for value in values]
