"""The ClickHouse store's costs by agent and by model: whole hours from ``cost_rollup`` (``_clickhouse_schema``), the
hours a range cuts from the spans, as the SQLite store's rollups and spans answer them.

The rollup's view counts a span under its own agent ('' for none). A span charged to an ancestor's agent
(``_agent_charge``) is moved from '' to that agent by rows the ingest inserts with the charge, as SQLite's rollup_agent
moves it; a purge subtracts the removed spans where they were counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from ._agent_charge import Charges
from ._clickhouse_agents import StoredRows, charges_sql
from ._clickhouse_conn import Params
from ._clickhouse_schema import HOUR_SQL, hour_sql
from ._datamodel import span_flags
from ._model import SpanRecord
from ._stats import HOUR_NS

if TYPE_CHECKING:
    from ._clickhouse import ClickHouseStore

__all__ = ["AGENT_COSTS_SQL", "MODEL_COSTS_SQL", "agent_costs_of_spans_sql", "model_costs_of_spans_sql", "agent_names",
           "move_charges", "move_stored_charges", "subtract_purged"]

#: The rollup's figures as sums over spans ``s``, in the order of the costs by agent's rows after the key.
_SUMS: Final = {"cost_usd": "sum(s.cost_usd)", "calls": "toInt64(sum(s.is_call))",
                "input_tokens": "sum(s.input_tokens)", "output_tokens": "sum(s.output_tokens)",
                "spans": "toInt64(count())", "errors": "toInt64(countIf(s.status = 'error'))",
                "blocked": "toInt64(sum(s.is_blocked))"}
_KEYS: Final = ("hour", "agent_key", "model", "provider")
#: The columns a move or a purge writes (the name's state is left empty: a charge moves figures only).
_MOVED: Final = ", ".join((*_KEYS, *_SUMS))
#: A span's model and provider as the rollup keys them.
_MODEL: Final = "coalesce(s.model, '') AS model, coalesce(s.provider, '') AS provider"
#: The agent a span ``s`` counts under: its own, else the one it is charged to (``c``), else ''.
_CHARGED_KEY: Final = "if(s.agent_key != '', s.agent_key, c.charged_key)"
_JOIN_CHARGES: Final = "AS c ON c.trace_id = s.trace_id AND c.span_id = s.span_id"
_CHUNK = 1000

#: Costs by agent of whole hours (``{where}`` on ``hour``): (key, cost, calls, input, output, spans, errors, blocked).
AGENT_COSTS_SQL: Final = (f"SELECT agent_key, {', '.join(f'sum({column})' for column in _SUMS)}"
                          " FROM {db}.cost_rollup{{where}} GROUP BY agent_key HAVING sum(spans) != 0")
#: Costs by model of whole hours (``{where}`` on ``hour``): (model, provider, cost, calls, input, output, errors).
MODEL_COSTS_SQL: Final = ("SELECT model, provider, sum(cost_usd), sum(calls), sum(input_tokens), sum(output_tokens),"
                          " sum(errors) FROM {db}.cost_rollup{{where}} GROUP BY model, provider"
                          " HAVING model != '' AND sum(spans) != 0")


def agent_costs_of_spans_sql(database: str) -> str:
    """``AGENT_COSTS_SQL``'s rows from the spans themselves (``{where}`` on ``start_ns``: the hours a range cuts),
    each span under its agent or the one it is charged to."""
    return (f"SELECT {_CHARGED_KEY} AS key, {', '.join(_SUMS.values())} FROM {database}.spans AS s"
            f" LEFT JOIN {charges_sql(database, '{where}')} {_JOIN_CHARGES}{{where}} GROUP BY key")


def model_costs_of_spans_sql(database: str) -> str:
    """``MODEL_COSTS_SQL``'s rows from the spans themselves (``{where}`` on ``start_ns``)."""
    return ("SELECT assumeNotNull(model) AS m, coalesce(provider, '') AS p, sum(cost_usd), sum(is_call),"
            f" sum(input_tokens), sum(output_tokens), countIf(status = 'error') FROM {database}.spans{{where}}"
            " GROUP BY m, p")


def agent_names(store: ClickHouseStore, keys: Sequence[str]) -> dict[str, str]:
    """The name each agent of ``keys`` is shown with: that of its latest-starting span with one, from any time."""
    if not keys:
        return {}
    p = Params()
    return {key: name for key, name in store._rows(
        f"SELECT agent_key, argMaxIfMerge(agent_name) FROM {store.database}.cost_rollup"
        f" WHERE agent_key IN {p(list(keys), 'Array(String)')} GROUP BY agent_key", p) if name}


def move_charges(store: ClickHouseStore, fresh: Sequence[SpanRecord], charges: Charges, stored: StoredRows) -> None:
    """Under the write lock, after the batch ``fresh`` and its ``charges`` were stored: each charged span's figures
    moved from no agent to the agent charged (the view counted it under '')."""
    if not charges.batch and not charges.stored:
        return
    by_key = {(record.trace_id, record.span_id): record for record in fresh}
    moves: dict[tuple[Any, ...], list[Any]] = {}
    for key, owner in charges.batch.items():
        record = by_key[key]
        call, blocked = span_flags(record.kind, record.status, record.attributes)
        _move(moves, owner[0], (record.start_ns, record.model or "", record.provider or "", record.cost_usd, int(call),
                                record.input_tokens, record.output_tokens, int(record.status == "error"), int(blocked)))
    if charges.stored:
        figures = _stored_figures(store, stored, list(charges.stored))
        for key, owner in charges.stored.items():
            _move(moves, owner[0], figures[key])
    store._db_conn.insert("cost_rollup", [dict(zip((*_KEYS, *_SUMS), (*key, *sums), strict=True))
                                          for key, sums in moves.items()])


def _move(moves: dict[tuple[Any, ...], list[Any]], agent: str, figures: Sequence[Any]) -> None:
    """One span's move from no agent to ``agent``: ``figures`` are its start, model, provider and ``_SUMS`` but the
    span count."""
    start, model, provider, cost, calls, tokens_in, tokens_out, errors, blocked = figures
    hour = start // HOUR_NS  # floor, as HOUR_SQL
    for key, sign in ((agent, 1), ("", -1)):
        sums = moves.setdefault((hour, key, model, provider), [0.0, 0, 0, 0, 0, 0, 0])
        for index, value in enumerate((cost, calls, tokens_in, tokens_out, 1, errors, blocked)):
            sums[index] += sign * value


def _stored_figures(store: ClickHouseStore, stored: StoredRows, keys: Sequence[tuple[str, str]]
                    ) -> dict[tuple[str, str], tuple[Any, ...]]:
    """``_move``'s figures of stored spans charged now (stored before their agent's span arrived: a batch's few),
    read in the hours they started in."""
    figures: dict[tuple[str, str], tuple[Any, ...]] = {}
    for first in range(0, len(keys), _CHUNK):
        chunk = keys[first:first + _CHUNK]
        starts = [stored.spans[key][3] for key in chunk]
        p = Params()
        hours = f"{p(min(starts) // HOUR_NS, 'Int64')} AND {p(max(starts) // HOUR_NS, 'Int64')}"
        for row in store._rows(
                f"SELECT trace_id, span_id, start_ns, {_MODEL}, cost_usd, is_call, input_tokens, output_tokens,"
                f" status = 'error', is_blocked FROM {store.database}.spans AS s WHERE {HOUR_SQL} BETWEEN {hours}"
                f" AND trace_id IN {p(sorted({key[0] for key in chunk}), 'Array(String)')}"
                f" AND has({p([f'{trace} {span}' for trace, span in chunk], 'Array(String)')},"
                " concat(trace_id, ' ', span_id)) LIMIT 1 BY trace_id, span_id", p):
            figures[(row[0], row[1])] = (int(row[2]), row[3], row[4], float(row[5]), *(int(value) for value in row[6:]))
    return figures


def move_stored_charges(store: ClickHouseStore) -> None:
    """When ``cost_rollup`` is made for a database that has charges already: their spans' figures moved from no
    agent to the agent charged, as the ingest moves them from then on."""
    db = store.database
    for agent, sign in (("c.charged_key", ""), ("''", "-")):
        store._execute(
            f"INSERT INTO {db}.cost_rollup ({_MOVED}) SELECT {hour_sql('s.start_ns')} AS hour, {agent} AS key,"
            f" {_MODEL}, {', '.join(sign + column for column in _SUMS.values())} FROM {db}.spans AS s"
            f" INNER JOIN {charges_sql(db, '')} {_JOIN_CHARGES} WHERE s.agent_key = ''"
            " GROUP BY hour, key, model, provider")


def subtract_purged(store: ClickHouseStore, removed: str, doomed: str, params: Params) -> None:
    """Before a purge deletes them: the figures of the removed spans (``removed``, a subquery of the spans ``doomed``
    selects) taken out of ``cost_rollup`` where they were counted, under their agent or the one charged."""
    db = store.database
    store._execute(
        f"INSERT INTO {db}.cost_rollup ({_MOVED}) SELECT {hour_sql('s.start_ns')} AS hour, {_CHARGED_KEY} AS key,"
        f" {_MODEL}, {', '.join(f'-{column}' for column in _SUMS.values())} FROM {removed} AS s"
        f" LEFT JOIN {charges_sql(db, f' WHERE {doomed}')} {_JOIN_CHARGES} GROUP BY hour, key, model, provider", params)
