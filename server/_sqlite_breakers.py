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

__all__ = ["BreakerTables"]

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
