"""Spans charged to an ancestor's agent in the ClickHouse store (``_agent_charge``): a small table appended at ingest,
joined by the costs by agent of the spans themselves (the hours a range cuts) and moved in the cost rollup by
``_clickhouse_costs``, so the answers match the SQLite store's."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Final

from ._agent_charge import Charger, Charges, Owner, StoredSpan
from ._clickhouse_conn import Connection, Params
from ._model import SpanRecord

if TYPE_CHECKING:
    from ._clickhouse import ClickHouseStore

__all__ = ["create_charge_table", "StoredRows", "charge_batch", "purge_charges", "charges_sql"]

# A retried batch may append a span's charge twice: ReplacingMergeTree folds them, and the join reads one per span.
_DDL: Final = """
CREATE TABLE IF NOT EXISTS {db}.span_agents (
    trace_id String,
    span_id String,
    start_ns Int64,
    agent_key String,
    agent_name Nullable(String)
) ENGINE = ReplacingMergeTree
ORDER BY (trace_id, span_id)
"""
_CHUNK = 1000


def create_charge_table(connection: Connection, database: str) -> None:
    # No TTL: the store's purge removes charges with their spans.
    connection.execute(_DDL.format(db=database))


class StoredRows:
    """``_agent_charge.StoredTree`` over the stored spans of the batch's known traces, read once by the ingest's
    duplicate check (``_stored``): (trace, span, parent, agent key, agent name, start) rows, and their charges."""

    def __init__(self, store: ClickHouseStore) -> None:
        self._store = store
        self.spans: dict[tuple[str, str], tuple[str | None, str, str | None, int]] = {}
        self._charged: dict[tuple[str, str], Owner] | None = None
        self._children: dict[tuple[str, str], list[str]] | None = None
        self._traces_waiting: set[str] = set()

    def add(self, rows: Sequence[Sequence[Any]]) -> None:
        for trace_id, span_id, parent, agent_key, agent_name, start in rows:
            self.spans[(trace_id, span_id)] = (parent, agent_key, agent_name, int(start))

    def _charges(self) -> dict[tuple[str, str], Owner]:
        """The stored charges of these traces, read on the first question (most batches ask none)."""
        if self._charged is None:
            self._charged = {}
            trace_ids = sorted({trace_id for trace_id, _ in self.spans})
            for start in range(0, len(trace_ids), _CHUNK):
                p = Params()
                self._charged.update(((row[0], row[1]), (row[2], row[3])) for row in self._store._rows(
                    f"SELECT trace_id, span_id, any(agent_key), any(agent_name) FROM {self._store.database}.span_agents"
                    f" WHERE trace_id IN {p(trace_ids[start:start + _CHUNK], 'Array(String)')}"
                    " GROUP BY trace_id, span_id", p))
        return self._charged

    def span(self, trace_id: str, span_id: str) -> StoredSpan | None:
        found = self.spans.get((trace_id, span_id))
        if found is None:
            return None
        parent, agent_key, agent_name, _ = found
        return StoredSpan(parent, (agent_key, agent_name) if agent_key else self._charges().get((trace_id, span_id)))

    def _parents(self) -> dict[tuple[str, str], list[str]]:
        """(trace, parent) -> its stored children without an agent of their own."""
        if self._children is None:
            self._children = {}
            self._traces_waiting = set()
            for (trace, span_id), (parent, agent_key, _, _) in self.spans.items():
                if parent is not None and not agent_key:
                    self._children.setdefault((trace, parent), []).append(span_id)
                    self._traces_waiting.add(trace)
        return self._children

    def may_wait(self, trace_id: str) -> bool:
        self._parents()
        return trace_id in self._traces_waiting

    def uncharged_children(self, trace_id: str, parent_ids: Collection[str]) -> list[tuple[str, str]]:
        self._children = self._parents()
        charged = self._charges() if any((trace_id, parent) in self._children for parent in parent_ids) else {}
        return [(span_id, parent) for parent in parent_ids for span_id in self._children.get((trace_id, parent), ())
                if (trace_id, span_id) not in charged]


def charge_batch(store: ClickHouseStore, fresh: Sequence[SpanRecord], stored: StoredRows,
                 known_traces: Collection[str]) -> Charges:
    """Under the store's write lock, with the batch's new spans: append the charges they make, and return them."""
    found = Charger(fresh).with_store(stored, known_traces)
    if not found.batch and not found.stored:
        return found
    starts = {(record.trace_id, record.span_id): record.start_ns for record in fresh}
    rows = [{"trace_id": trace_id, "span_id": span_id, "start_ns": starts[(trace_id, span_id)],
             "agent_key": owner[0], "agent_name": owner[1]} for (trace_id, span_id), owner in found.batch.items()]
    rows += [{"trace_id": trace_id, "span_id": span_id, "start_ns": stored.spans[(trace_id, span_id)][3],
              "agent_key": owner[0], "agent_name": owner[1]} for (trace_id, span_id), owner in found.stored.items()]
    store._db_conn.insert("span_agents", rows)
    return found


def charges_sql(database: str, where: str) -> str:
    """A subquery of the charges of spans that started where ``where`` (on ``start_ns``) holds, one row per span."""
    return (f"(SELECT trace_id, span_id, any(agent_key) AS charged_key FROM {database}.span_agents{where}"
            " GROUP BY trace_id, span_id)")


def purge_charges(store: ClickHouseStore, doomed: str, params: Params) -> None:
    """The charges of purged spans (``doomed``: the purge's condition on trace_id and start_ns)."""
    store._execute(f"ALTER TABLE {store.database}.span_agents DELETE WHERE {doomed} SETTINGS mutations_sync = 2",
                   params)
