"""SQLite tables for circuit-breaker transitions, live breaker state, alert rules and alert history."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from . import _json
from ._time import iso as _iso

__all__ = ["BreakerTables", "normalize_breaker_event", "OPERATOR_COLUMNS", "operator_action"]

#: Columns of an operator action as both stores select them, in ``operator_action``'s order.
OPERATOR_COLUMNS = "id, ts_ns, actor, role, action, scope, scope_id, reason, params"


def operator_action(row: Any) -> dict[str, Any]:
    """One audit record of an operator action, as the API answers it (both stores)."""
    return {"id": int(row[0]), "timestamp_unix_nano": int(row[1]), "time": _iso(int(row[1])), "actor": row[2],
            "role": row[3], "action": row[4], "scope": row[5], "scope_id": row[6], "reason": row[7],
            "params": _json.loads(row[8]) if row[8] else {}}

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


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else _json.dumps(value)


def _scalar(value: Any) -> Any:
    """Thresholds and readings are numbers from the SDK; anything else is kept as text."""
    if value is None or isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return _text(value)


def _timestamp(payload: dict[str, Any]) -> int:
    raw = payload.get("timestamp_unix_nano")
    return raw if isinstance(raw, int) and raw > 0 else time.time_ns()


def normalize_breaker_event(payload: dict[str, Any]) -> dict[str, Any]:
    scope = str(payload.get("scope") or "global")
    return {
        "ts_ns": _timestamp(payload),
        "scope": scope,
        "scope_id": str(payload.get("scope_id") or scope),
        "event": str(payload.get("event") or "transition"),
        "from_state": _text(payload.get("from_state")),
        "to_state": _text(payload.get("to_state")),
        "reason": _text(payload.get("reason")),
        "threshold": _scalar(payload.get("threshold")),
        "current": _scalar(payload.get("current")),
    }


def normalize_sdk_alert(payload: dict[str, Any]) -> dict[str, Any]:
    """An alert the SDK forwarded, as both stores keep it (``dedup_key`` makes a resent alert a no-op)."""
    ts = _timestamp(payload)
    scope = str(payload.get("scope") or "global")
    scope_id = str(payload.get("scope_id") or scope)
    reason = _text(payload.get("reason")) or "alert"
    threshold, current = _scalar(payload.get("threshold")), _scalar(payload.get("current"))
    state = payload.get("state")
    state_text = state if isinstance(state, str) else None
    if isinstance(state, dict) and isinstance(state.get("state"), str):
        state_text = state["state"]
    message = payload.get("message")
    if not isinstance(message, str) or not message:
        message = f"{reason} on {scope}/{scope_id}: current {current} over threshold {threshold}"
    return {"ts_ns": ts, "scope": scope, "scope_id": scope_id, "reason": reason, "threshold": threshold,
            "current": current, "state": state_text, "message": message[:2000], "details": _json.dumps(payload),
            "dedup_key": f"sdk:{ts}:{scope}:{scope_id}:{reason}"}


def _window(start_ns: int | None, end_ns: int | None, column: str) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if start_ns is not None:
        clauses.append(f"{column} >= ?")
        params.append(start_ns)
    if end_ns is not None:
        clauses.append(f"{column} < ?")
        params.append(end_ns)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class BreakerTables:
    """Statements over the breaker and alert tables; the caller owns connections and transactions."""

    def add_event(self, cursor: sqlite3.Cursor, payload: dict[str, Any], source: str, trace_id: str | None,
                  span_id: str | None) -> bool:
        event = normalize_breaker_event(payload)
        cursor.execute(
            "INSERT OR IGNORE INTO breaker_events (ts_ns, scope, scope_id, event, from_state, to_state, reason,"
            " threshold, current, source, trace_id, span_id, details) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (event["ts_ns"], event["scope"], event["scope_id"], event["event"], event["from_state"],
             event["to_state"], event["reason"], event["threshold"], event["current"], source, trace_id, span_id,
             _json.dumps(payload)))
        if cursor.rowcount == 0:
            return False
        cursor.execute(_UPSERT_STATE, (event["scope"], event["scope_id"], event["to_state"], event["event"],
                                       event["from_state"], event["reason"], event["threshold"], event["current"],
                                       event["ts_ns"]))
        return True

    def add_sdk_alert(self, cursor: sqlite3.Cursor, payload: dict[str, Any]) -> bool:
        alert = normalize_sdk_alert(payload)
        cursor.execute(
            "INSERT OR IGNORE INTO alert_history (ts_ns, source, condition, threshold, value, message, scope,"
            " scope_id, state, details, dedup_key) VALUES (?, 'sdk', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (alert["ts_ns"], alert["reason"], alert["threshold"], alert["current"], alert["message"], alert["scope"],
             alert["scope_id"], alert["state"], alert["details"], alert["dedup_key"]))
        if cursor.rowcount == 0:
            return False
        cursor.execute(_UPSERT_ALERT_STATE, (alert["scope"], alert["scope_id"], alert["state"], alert["reason"],
                                             alert["threshold"], alert["current"], alert["reason"], alert["ts_ns"]))
        return True

    def add_alert_event(self, cursor: sqlite3.Cursor, event: dict[str, Any]) -> int:
        cursor.execute(
            "INSERT INTO alert_history (ts_ns, source, rule_id, rule_name, condition, threshold, value, message,"
            " channel, delivery_status, details) VALUES (?, 'rule', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event["ts_ns"], event.get("rule_id"), event.get("rule_name"), event.get("condition"),
             event.get("threshold"), event.get("value"), event["message"], event.get("channel"),
             event.get("delivery_status", "pending"), _json.dumps(event.get("details") or {})))
        return int(cursor.lastrowid or 0)

    def status(self, connection: sqlite3.Connection) -> list[dict[str, Any]]:
        rows = connection.execute(
            "SELECT scope, scope_id, state, last_event, from_state, reason, threshold, current, ts_ns, transitions,"
            " alerts, last_alert_reason, last_alert_ns FROM breaker_state ORDER BY coalesce(ts_ns, last_alert_ns)"
            " DESC").fetchall()
        return [
            {"scope": r[0], "scope_id": r[1], "state": r[2], "last_event": r[3], "from_state": r[4],
             "reason": r[5], "threshold": r[6], "current": r[7], "last_transition_unix_nano": r[8],
             "last_transition": _iso(r[8]), "transitions": r[9], "alerts": r[10], "last_alert_reason": r[11],
             "last_alert_unix_nano": r[12], "last_alert": _iso(r[12])}
            for r in rows
        ]

    def history(self, connection: sqlite3.Connection, limit: int, offset: int, start_ns: int | None,
                end_ns: int | None) -> list[dict[str, Any]]:
        where, params = _window(start_ns, end_ns, "ts_ns")
        rows = connection.execute(
            "SELECT id, ts_ns, scope, scope_id, event, from_state, to_state, reason, threshold, current, source,"
            f" trace_id, span_id FROM breaker_events{where} ORDER BY ts_ns DESC, id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset)).fetchall()
        return [
            {"id": r[0], "timestamp_unix_nano": r[1], "time": _iso(r[1]), "scope": r[2], "scope_id": r[3],
             "event": r[4], "from_state": r[5], "to_state": r[6], "reason": r[7], "threshold": r[8],
             "current": r[9], "source": r[10], "trace_id": r[11], "span_id": r[12]}
            for r in rows
        ]

    def alert_history(self, connection: sqlite3.Connection, limit: int, offset: int, start_ns: int | None,
                      end_ns: int | None) -> list[dict[str, Any]]:
        where, params = _window(start_ns, end_ns, "ts_ns")
        rows = connection.execute(
            "SELECT id, ts_ns, source, rule_id, rule_name, condition, threshold, value, message, scope, scope_id,"
            f" state, channel, delivery_status, delivery_error FROM alert_history{where}"
            " ORDER BY ts_ns DESC, id DESC LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()
        return [
            {"id": r[0], "timestamp_unix_nano": r[1], "time": _iso(r[1]), "source": r[2], "rule_id": r[3],
             "rule_name": r[4], "condition": r[5], "threshold": r[6], "value": r[7], "message": r[8],
             "scope": r[9], "scope_id": r[10], "state": r[11], "channel": r[12], "delivery_status": r[13],
             "delivery_error": r[14]}
            for r in rows
        ]

    def rules(self, connection: sqlite3.Connection, rule_id: int | None) -> list[dict[str, Any]]:
        sql = ("SELECT id, name, condition, threshold, action_type, webhook_url, email, enabled, cooldown_seconds,"
               " window_seconds, created_ns, updated_ns, last_triggered_ns FROM alert_rules")
        rows = (connection.execute(sql + " WHERE id = ?", (rule_id,)) if rule_id is not None
                else connection.execute(sql + " ORDER BY id")).fetchall()
        return [
            {"id": r[0], "name": r[1], "condition": r[2], "threshold": r[3], "action_type": r[4],
             "webhook_url": r[5], "email": r[6], "enabled": bool(r[7]), "cooldown_seconds": r[8],
             "window_seconds": r[9], "created_at": _iso(r[10]), "updated_at": _iso(r[11]),
             "last_triggered_unix_nano": r[12], "last_triggered_at": _iso(r[12])}
            for r in rows
        ]
