"""SQLite tables for circuit-breaker transitions, live breaker state, alert rules and alert history."""

from __future__ import annotations

import sqlite3
from typing import Any

from ._datamodel import (
    ALERT_COLUMNS,
    BREAKER_EVENT_COLUMNS,
    BREAKER_STATE_COLUMNS,
    RULE_COLUMNS,
    alert_dict,
    breaker_event_dict,
    breaker_event_row,
    breaker_state_dict,
    normalize_sdk_alert,
    rule_alert_row,
    rule_dict,
    sdk_alert_row,
)
from ._sqlite_queries import time_window

__all__ = ["BreakerTables", "derive_breaker_state_once"]

_STATE_COLUMNS = ("state", "last_event", "from_state", "reason", "threshold", "current")

# Each field only moves forward in time: a transition that arrives late must not overwrite a newer state.
_NEWER = "CASE WHEN excluded.ts_ns >= coalesce(breaker_state.ts_ns, 0) THEN excluded.{0} ELSE breaker_state.{0} END"
_UPSERT_STATE = f"""
INSERT INTO breaker_state (scope, scope_id, state, last_event, from_state, reason, threshold, current, ts_ns,
    transitions)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
ON CONFLICT (scope, scope_id) DO UPDATE SET
    {", ".join(f"{column} = {_NEWER.format(column)}" for column in _STATE_COLUMNS)},
    ts_ns = max(coalesce(breaker_state.ts_ns, 0), excluded.ts_ns),
    transitions = breaker_state.transitions + 1
"""

_UPSERT_ALERT_STATE = """
INSERT INTO breaker_state (scope, scope_id, state, reason, threshold, current, alerts, last_alert_reason,
    last_alert_ns)
VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)
ON CONFLICT (scope, scope_id) DO UPDATE SET
    alerts = breaker_state.alerts + 1,
    state = coalesce(breaker_state.state, excluded.state),
    last_alert_reason = CASE WHEN excluded.last_alert_ns >= coalesce(breaker_state.last_alert_ns, 0)
                             THEN excluded.last_alert_reason ELSE breaker_state.last_alert_reason END,
    last_alert_ns = max(coalesce(breaker_state.last_alert_ns, 0), excluded.last_alert_ns)
"""

# A scope's status derived anew from the transitions and SDK alerts it still has, as ClickHouse derives it from its
# event log: the first alert gives the state (the first that names one), reason and figures; the newest transition
# (the last stored on a tie) replaces them.
_STATE_FROM_ALERTS = """
INSERT INTO breaker_state (scope, scope_id, state, reason, threshold, current, alerts, last_alert_reason,
    last_alert_ns)
SELECT scope, scope_id,
    (SELECT a.state FROM alert_history a WHERE a.source = 'sdk' AND a.scope = g.scope AND a.scope_id = g.scope_id
     AND a.state IS NOT NULL ORDER BY a.id LIMIT 1),
    first_reason, first_threshold, first_value, alerts, last_reason, last_ns
FROM (SELECT scope, scope_id, count(*) OVER scope_rows AS alerts,
          first_value(condition) OVER by_id AS first_reason, first_value(threshold) OVER by_id AS first_threshold,
          first_value(value) OVER by_id AS first_value, first_value(condition) OVER newest AS last_reason,
          max(ts_ns) OVER scope_rows AS last_ns,
          row_number() OVER by_id AS n
      FROM alert_history
      WHERE source = 'sdk' AND (scope, scope_id) IN (SELECT scope, scope_id FROM temp.purged_scopes)
      WINDOW scope_rows AS (PARTITION BY scope, scope_id),
             by_id AS (PARTITION BY scope, scope_id ORDER BY id),
             newest AS (PARTITION BY scope, scope_id ORDER BY ts_ns DESC, id DESC)) AS g
WHERE n = 1
"""

_STATE_FROM_TRANSITIONS = f"""
INSERT INTO breaker_state (scope, scope_id, state, last_event, from_state, reason, threshold, current, ts_ns,
    transitions)
SELECT scope, scope_id, to_state, event, from_state, reason, threshold, current, ts_ns, transitions
FROM (SELECT *, count(*) OVER (PARTITION BY scope, scope_id) AS transitions,
          row_number() OVER (PARTITION BY scope, scope_id ORDER BY ts_ns DESC, id DESC) AS n
      FROM breaker_events WHERE (scope, scope_id) IN (SELECT scope, scope_id FROM temp.purged_scopes))
WHERE n = 1
ON CONFLICT (scope, scope_id) DO UPDATE SET
    {", ".join(f"{column} = excluded.{column}" for column in _STATE_COLUMNS)},
    ts_ns = excluded.ts_ns, transitions = excluded.transitions
"""

_INSERT_ALERT = """
{verb} INTO alert_history (ts_ns, source, rule_id, rule_name, condition, threshold, value, message, scope, scope_id,
    state, channel, delivery_status, delivery_error, details, dedup_key)
VALUES (:ts_ns, :source, :rule_id, :rule_name, :condition, :threshold, :value, :message, :scope, :scope_id, :state,
    :channel, :delivery_status, :delivery_error, :details, :dedup_key)
"""


class BreakerTables:
    """Statements over the breaker and alert tables; the caller owns connections and transactions."""

    def add_event(self, cursor: sqlite3.Cursor, payload: dict[str, Any], source: str, trace_id: str | None,
                  span_id: str | None) -> bool:
        event = breaker_event_row(payload, source, trace_id, span_id)
        cursor.execute(
            "INSERT OR IGNORE INTO breaker_events (ts_ns, scope, scope_id, event, from_state, to_state, reason,"
            " threshold, current, source, trace_id, span_id, details) VALUES (:ts_ns, :scope, :scope_id, :event,"
            " :from_state, :to_state, :reason, :threshold, :current, :source, :trace_id, :span_id, :details)", event)
        if cursor.rowcount == 0:
            return False
        cursor.execute(_UPSERT_STATE, (event["scope"], event["scope_id"], event["to_state"], event["event"],
                                       event["from_state"], event["reason"], event["threshold"], event["current"],
                                       event["ts_ns"]))
        return True

    def add_sdk_alert(self, cursor: sqlite3.Cursor, payload: dict[str, Any]) -> bool:
        alert = normalize_sdk_alert(payload)
        cursor.execute(_INSERT_ALERT.format(verb="INSERT OR IGNORE"), sdk_alert_row(alert))
        if cursor.rowcount == 0:
            return False
        cursor.execute(_UPSERT_ALERT_STATE, (alert["scope"], alert["scope_id"], alert["state"], alert["reason"],
                                             alert["threshold"], alert["current"], alert["reason"], alert["ts_ns"]))
        return True

    def add_alert_event(self, cursor: sqlite3.Cursor, event: dict[str, Any]) -> int:
        cursor.execute(_INSERT_ALERT.format(verb="INSERT"), rule_alert_row(event))
        return int(cursor.lastrowid or 0)

    def purge(self, cursor: sqlite3.Cursor, before_ns: int) -> tuple[int, int]:
        """Deletes the transitions and alerts before ``before_ns`` (counts of each); the status of the scopes they
        were about no longer counts them, and a scope with none left is no longer listed."""
        _mark_scopes(cursor, "SELECT scope, scope_id FROM breaker_events WHERE ts_ns < ?", (before_ns,))
        _mark_scopes(cursor, "SELECT scope, scope_id FROM alert_history WHERE ts_ns < ? AND source = 'sdk'",
                     (before_ns,))
        cursor.execute("DELETE FROM breaker_events WHERE ts_ns < ?", (before_ns,))
        events = cursor.rowcount
        cursor.execute("DELETE FROM alert_history WHERE ts_ns < ?", (before_ns,))
        alerts = cursor.rowcount
        _derive_marked_scopes(cursor)
        return events, alerts

    def status(self, connection: sqlite3.Connection) -> list[dict[str, Any]]:
        rows = connection.execute(
            f"SELECT {BREAKER_STATE_COLUMNS} FROM breaker_state ORDER BY coalesce(ts_ns, last_alert_ns) DESC")
        return [breaker_state_dict(r) for r in rows]

    def history(self, connection: sqlite3.Connection, limit: int, offset: int, start_ns: int | None,
                end_ns: int | None) -> list[dict[str, Any]]:
        where, params = time_window(start_ns, end_ns, "ts_ns")
        rows = connection.execute(
            f"SELECT {BREAKER_EVENT_COLUMNS} FROM breaker_events{where} ORDER BY ts_ns DESC, id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset))
        return [breaker_event_dict(r) for r in rows]

    def alert_history(self, connection: sqlite3.Connection, limit: int, offset: int, start_ns: int | None,
                      end_ns: int | None) -> list[dict[str, Any]]:
        where, params = time_window(start_ns, end_ns, "ts_ns")
        rows = connection.execute(
            f"SELECT {ALERT_COLUMNS} FROM alert_history{where} ORDER BY ts_ns DESC, id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset))
        return [alert_dict(r) for r in rows]

    def rules(self, connection: sqlite3.Connection, rule_id: int | None) -> list[dict[str, Any]]:
        sql = f"SELECT {RULE_COLUMNS} FROM alert_rules"
        rows = (connection.execute(sql + " WHERE id = ?", (rule_id,)) if rule_id is not None
                else connection.execute(sql + " ORDER BY id"))
        return [rule_dict(r) for r in rows]


def _mark_scopes(cursor: sqlite3.Cursor, select: str, params: tuple[Any, ...] = ()) -> None:
    cursor.execute("CREATE TEMP TABLE IF NOT EXISTS purged_scopes (scope TEXT NOT NULL, scope_id TEXT NOT NULL,"
                   " PRIMARY KEY (scope, scope_id)) WITHOUT ROWID")
    cursor.execute(f"INSERT OR IGNORE INTO temp.purged_scopes SELECT * FROM ({select})"
                   " WHERE scope IS NOT NULL AND scope_id IS NOT NULL", params)


def _derive_marked_scopes(cursor: sqlite3.Cursor) -> None:
    cursor.execute("DELETE FROM breaker_state WHERE (scope, scope_id) IN (SELECT scope, scope_id"
                   " FROM temp.purged_scopes)")
    cursor.execute(_STATE_FROM_ALERTS)
    cursor.execute(_STATE_FROM_TRANSITIONS)
    cursor.execute("DELETE FROM temp.purged_scopes")


def derive_breaker_state_once(connection: sqlite3.Connection) -> None:
    """A file whose purges ran before they took their transitions and alerts out of the breaker status: every
    scope's status is derived once from what is kept (a scope with nothing kept is no longer listed)."""
    done = "SELECT 1 FROM meta WHERE key = 'breaker_state_derived'"
    if connection.execute(done).fetchone():
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        if not connection.execute(done).fetchone():  # another server process sharing the file was first
            cursor = connection.cursor()
            _mark_scopes(cursor, "SELECT scope, scope_id FROM breaker_state")
            _derive_marked_scopes(cursor)
            cursor.execute("INSERT INTO meta (key, value) VALUES ('breaker_state_derived', '1')")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
