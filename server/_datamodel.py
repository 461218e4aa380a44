"""The collector's data model, apart from any backend: what counts as a call or a block, how breaker events and
alerts from the SDK are normalised, which fields a rule has, and the dicts the API answers with.

Both stores (``_sqlite*.py``, ``_clickhouse*.py``) read and write through this module and differ only in how
they store and query, as OpenTelemetry keeps its data model apart from its exporters. Row tuples handed to the
``*_dict`` functions are in the order of the matching ``*_COLUMNS`` string, with values already decoded.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal, get_args

from . import _json
from ._model import BLOCK_POINT_KEY, BLOCK_POINT_KINDS, LLM_KINDS, SpanRecord
from ._stats import percentile_exact, percentile_from_bins, usd
from ._time import iso

__all__ = [
    "Condition", "RULE_CONDITIONS", "RULE_FIELDS", "rule_changes", "new_rule",
    "span_flags", "CALL_SQL", "BLOCKED_SQL", "BOOKKEEPING_KINDS", "BOOKKEEPING_SQL",
    "event_payload", "normalize_breaker_event", "normalize_sdk_alert", "breaker_event_row", "sdk_alert_row",
    "rule_alert_row", "scalar", "json_or_none",
    "SPAN_COLUMNS", "span_dict", "trace_dict", "BREAKER_EVENT_COLUMNS", "breaker_event_dict",
    "BREAKER_STATE_COLUMNS", "breaker_state_dict", "ALERT_COLUMNS", "alert_dict", "RULE_COLUMNS", "rule_dict",
    "CRON_COLUMNS", "cron_dict", "CRON_SPAN_COLUMNS", "cron_span_dict",
    "metrics_dict", "window_stats_dict", "agent_cost_rows", "PURGE_KINDS", "OPERATOR_COLUMNS", "operator_action",
]

# ---- rules ----------------------------------------------------------------------------------------------------

#: What an alert rule watches. cron_missed / cron_failed fire once per missed or failed expected run of any cron
#: (threshold is ignored).
Condition = Literal["cost_per_hour", "error_rate", "calls_per_minute", "blocked_calls", "latency_p95",
                    "cron_missed", "cron_failed"]
RULE_CONDITIONS: Final[tuple[str, ...]] = get_args(Condition)
#: The fields a rule is created with and a PATCH may change (column names: never taken from a request).
RULE_FIELDS: Final = ("name", "condition", "threshold", "action_type", "webhook_url", "email", "enabled",
                      "cooldown_seconds", "window_seconds")


def _rule_value(field: str, value: Any) -> Any:
    if field == "enabled":
        return int(value)
    if field == "threshold":
        return float(value)
    return value


def rule_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The stored values of the rule fields in ``changes`` (others are ignored)."""
    return {field: _rule_value(field, changes[field]) for field in RULE_FIELDS if field in changes}


def new_rule(rule: Mapping[str, Any], now_ns: int) -> dict[str, Any]:
    """A rule as stored when created (without its id)."""
    defaults = {"webhook_url": None, "email": None, "enabled": True, "window_seconds": None}
    row = rule_changes({**defaults, **rule})
    return {**row, "created_ns": now_ns, "updated_ns": now_ns, "last_triggered_ns": None}


# ---- spans ----------------------------------------------------------------------------------------------------

def span_flags(kind: str, status: str, attributes: Mapping[str, Any]) -> tuple[bool, bool]:
    """(is a model call, is a block). A block counts once, where it happened (``BLOCK_POINT_KEY``), not on the
    enclosing spans the exception passed through; a blocked call is not a call."""
    blocked = False
    if status == "blocked":
        point = attributes.get(BLOCK_POINT_KEY)
        blocked = point if point.__class__ is bool else kind in BLOCK_POINT_KINDS
    return kind in LLM_KINDS and status != "blocked", blocked


def _kinds(kinds: Iterable[str]) -> str:
    return ", ".join(f"'{kind}'" for kind in sorted(kinds))


#: ``span_flags`` as SQL over the ``kind`` and ``status`` columns (the same text in SQLite and ClickHouse).
CALL_SQL: Final = f"(kind IN ({_kinds(LLM_KINDS)}) AND status != 'blocked')"
# Attributes are stored as compact JSON (``_json.dumps``); LIKE reads the flag in both stores alike.
BLOCKED_SQL: Final = (f"(status = 'blocked' AND (attributes LIKE '%\"{BLOCK_POINT_KEY}\":true%'"
                      f" OR (kind IN ({_kinds(BLOCK_POINT_KINDS)})"
                      f" AND attributes NOT LIKE '%\"{BLOCK_POINT_KEY}\":false%')))")


#: Spans the SDK records for its own bookkeeping, not the program's work: a process's start (``process``, a trace of
#: its own), breaker transitions and operator limits (``breaker``, a trace of their own when made outside any), a
#: session's own span (``session``: a session opened outside any trace is a trace holding its span alone when its
#: work runs in ``trace()``s of their own). A trace made of these alone is stored and read by id like any other, but
#: the traces list and every trace count leave it out unless asked (``TraceQuery.include_system``): one LLM call is
#: one trace to its user, not three.
BOOKKEEPING_KINDS: Final = frozenset({"process", "breaker", "session"})
#: A span of ``BOOKKEEPING_KINDS``, as SQL over the ``kind`` column (the same text in SQLite and ClickHouse).
BOOKKEEPING_SQL: Final = f"kind IN ({_kinds(BOOKKEEPING_KINDS)})"


def json_or_none(value: Any) -> str | None:
    return None if value is None else _json.dumps(value)


SPAN_COLUMNS: Final = ("trace_id, span_id, parent_span_id, name, kind, status, start_ns, end_ns, agent_id, agent_name,"
                       " agent_role, model, provider, input_tokens, output_tokens, cached_input_tokens, cost_usd,"
                       " attributes, input, output")


def span_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A span in the SDK's wire format plus ``duration_ms``; ``input``/``output`` only when stored."""
    span = {
        "trace_id": row[0], "span_id": row[1], "parent_span_id": row[2], "name": row[3], "kind": row[4],
        "status": row[5], "start_time_unix_nano": row[6], "end_time_unix_nano": row[7],
        "duration_ms": round((row[7] - row[6]) / 1e6, 3), "agent_id": row[8], "agent_name": row[9],
        "agent_role": row[10], "model": row[11], "provider": row[12], "input_tokens": row[13],
        "output_tokens": row[14], "cached_input_tokens": row[15], "cost_usd": row[16],
        "attributes": _json.loads(row[17]),
    }
    if row[18] is not None:
        span["input"] = _json.loads(row[18])
    if row[19] is not None:
        span["output"] = _json.loads(row[19])
    return span


def trace_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A trace summary from (trace_id, name, has_root, start_ns, end_ns, duration_ms, span_count, llm_calls,
    input_tokens, output_tokens, total_tokens, cost_usd, errors, blocked, status, agents JSON, models JSON, system).
    ``system``: the trace holds bookkeeping spans alone (``BOOKKEEPING_KINDS``)."""
    return {
        "trace_id": row[0], "name": row[1], "has_root": bool(row[2]), "start_time_unix_nano": row[3],
        "end_time_unix_nano": row[4], "start_time": iso(row[3]), "end_time": iso(row[4]),
        "duration_ms": round(row[5], 3), "span_count": row[6], "llm_calls": row[7], "input_tokens": row[8],
        "output_tokens": row[9], "total_tokens": row[10], "cost_usd": usd(row[11]), "errors": row[12],
        "blocked": row[13], "status": row[14],
        "agents": [{"agent_id": agent, "agent_name": name} for agent, name in _json.loads(row[15])],
        "models": _json.loads(row[16]), "system": bool(row[17]),
    }


CRON_COLUMNS: Final = "name, schedule, grace_seconds, since_ns, updated_ns"


def cron_dict(row: Sequence[Any]) -> dict[str, Any]:
    # A cron known only from runs without a schedule is stored with schedule '' (NOT NULL in both schemas).
    return {"name": row[0], "schedule": row[1] or None, "grace_seconds": int(row[2]), "since_ns": int(row[3]),
            "updated_ns": int(row[4])}


CRON_SPAN_COLUMNS: Final = "trace_id, start_ns, end_ns, status, attributes, kind"


def cron_span_dict(row: Sequence[Any]) -> dict[str, Any]:
    return {"trace_id": row[0], "start_ns": int(row[1]), "end_ns": int(row[2]), "status": row[3],
            "attributes": _json.loads(row[4]), "kind": row[5]}


# ---- breaker events and SDK alerts ----------------------------------------------------------------------------

def event_payload(record: SpanRecord) -> dict[str, Any]:
    """What a ``breaker`` or ``alert`` span reports, as the SDK would send it to /api/alerts."""
    return {"timestamp_unix_nano": record.start_ns, **record.attributes}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else _json.dumps(value)


def scalar(value: Any) -> Any:
    """Thresholds and readings are numbers from the SDK; anything else is kept as text."""
    if value is None or isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return _text(value)


def _timestamp(payload: Mapping[str, Any]) -> int:
    raw = payload.get("timestamp_unix_nano")
    return raw if isinstance(raw, int) and raw > 0 else time.time_ns()


def normalize_breaker_event(payload: Mapping[str, Any]) -> dict[str, Any]:
    scope = str(payload.get("scope") or "global")
    return {
        "ts_ns": _timestamp(payload),
        "scope": scope,
        "scope_id": str(payload.get("scope_id") or scope),
        "event": str(payload.get("event") or "transition"),
        "from_state": _text(payload.get("from_state")),
        "to_state": _text(payload.get("to_state")),
        "reason": _text(payload.get("reason")),
        "threshold": scalar(payload.get("threshold")),
        "current": scalar(payload.get("current")),
    }


def breaker_event_row(payload: Mapping[str, Any], source: str, trace_id: str | None,
                      span_id: str | None) -> dict[str, Any]:
    """A ``breaker_events`` row (without its id); a transition is known by (scope, scope_id, ts_ns, event)."""
    return {**normalize_breaker_event(payload), "source": source, "trace_id": trace_id, "span_id": span_id,
            "details": _json.dumps(payload)}


def normalize_sdk_alert(payload: Mapping[str, Any]) -> dict[str, Any]:
    """An alert the SDK forwarded, as both stores keep it (``dedup_key`` makes a resent alert a no-op)."""
    ts = _timestamp(payload)
    scope = str(payload.get("scope") or "global")
    scope_id = str(payload.get("scope_id") or scope)
    reason = _text(payload.get("reason")) or "alert"
    threshold, current = scalar(payload.get("threshold")), scalar(payload.get("current"))
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


_ALERT_ROW: Final = {"rule_id": None, "rule_name": None, "condition": None, "threshold": None, "value": None,
                     "scope": None, "scope_id": None, "state": None, "channel": None, "delivery_status": None,
                     "delivery_error": None, "dedup_key": None}


def sdk_alert_row(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The ``alert_history`` row (without its id) of a normalised SDK alert."""
    return {**_ALERT_ROW, "ts_ns": alert["ts_ns"], "source": "sdk", "condition": alert["reason"],
            "threshold": alert["threshold"], "value": alert["current"], "message": alert["message"],
            "scope": alert["scope"], "scope_id": alert["scope_id"], "state": alert["state"],
            "details": alert["details"], "dedup_key": alert["dedup_key"]}


def rule_alert_row(event: Mapping[str, Any]) -> dict[str, Any]:
    """The ``alert_history`` row (without its id) of an alert a rule raised."""
    return {**_ALERT_ROW, "ts_ns": event["ts_ns"], "source": "rule", "rule_id": event.get("rule_id"),
            "rule_name": event.get("rule_name"), "condition": event.get("condition"),
            "threshold": event.get("threshold"), "value": event.get("value"), "message": event["message"],
            "channel": event.get("channel"), "delivery_status": event.get("delivery_status", "pending"),
            "details": _json.dumps(event.get("details") or {})}


# ---- answers --------------------------------------------------------------------------------------------------

BREAKER_EVENT_COLUMNS: Final = ("id, ts_ns, scope, scope_id, event, from_state, to_state, reason, threshold, current,"
                                " source, trace_id, span_id")


def breaker_event_dict(r: Sequence[Any]) -> dict[str, Any]:
    return {"id": r[0], "timestamp_unix_nano": r[1], "time": iso(r[1]), "scope": r[2], "scope_id": r[3],
            "event": r[4], "from_state": r[5], "to_state": r[6], "reason": r[7], "threshold": r[8],
            "current": r[9], "source": r[10], "trace_id": r[11], "span_id": r[12]}


BREAKER_STATE_COLUMNS: Final = ("scope, scope_id, state, last_event, from_state, reason, threshold, current, ts_ns,"
                                " transitions, alerts, last_alert_reason, last_alert_ns")


def breaker_state_dict(r: Sequence[Any]) -> dict[str, Any]:
    """The live view of one breaker scope: its latest transition and the alerts raised on it."""
    return {"scope": r[0], "scope_id": r[1], "state": r[2], "last_event": r[3], "from_state": r[4],
            "reason": r[5], "threshold": r[6], "current": r[7], "last_transition_unix_nano": r[8],
            "last_transition": iso(r[8]), "transitions": r[9], "alerts": r[10], "last_alert_reason": r[11],
            "last_alert_unix_nano": r[12], "last_alert": iso(r[12])}


ALERT_COLUMNS: Final = ("id, ts_ns, source, rule_id, rule_name, condition, threshold, value, message, scope, scope_id,"
                        " state, channel, delivery_status, delivery_error")


def alert_dict(r: Sequence[Any]) -> dict[str, Any]:
    return {"id": r[0], "timestamp_unix_nano": r[1], "time": iso(r[1]), "source": r[2], "rule_id": r[3],
            "rule_name": r[4], "condition": r[5], "threshold": r[6], "value": r[7], "message": r[8],
            "scope": r[9], "scope_id": r[10], "state": r[11], "channel": r[12], "delivery_status": r[13],
            "delivery_error": r[14]}


RULE_COLUMNS: Final = ("id, name, condition, threshold, action_type, webhook_url, email, enabled, cooldown_seconds,"
                       " window_seconds, created_ns, updated_ns, last_triggered_ns")


def rule_dict(r: Sequence[Any]) -> dict[str, Any]:
    return {"id": r[0], "name": r[1], "condition": r[2], "threshold": float(r[3]), "action_type": r[4],
            "webhook_url": r[5], "email": r[6], "enabled": bool(r[7]), "cooldown_seconds": r[8],
            "window_seconds": r[9], "created_at": iso(r[10]), "updated_at": iso(r[11]),
            "last_triggered_unix_nano": r[12], "last_triggered_at": iso(r[12])}


def metrics_dict(start_ns: int | None, end_ns: int | None, traces: int, totals: Sequence[Any],
                 bins: Mapping[int, int]) -> dict[str, Any]:
    """/api/metrics from the totals (spans, calls, call errors, errors, blocked, input tokens, output tokens,
    cost; None for an empty range) and the latency histogram of the calls (``_stats.latency_bin``)."""
    spans, calls, call_errors, errors, blocked, tokens_in, tokens_out, cost = (value or 0 for value in totals)
    calls, call_errors = int(calls), int(call_errors)
    return {
        "from": iso(start_ns), "to": iso(end_ns), "traces": int(traces), "spans": int(spans),
        "llm_calls": calls, "input_tokens": int(tokens_in), "output_tokens": int(tokens_out),
        "total_tokens": int(tokens_in + tokens_out), "cost_usd": usd(cost),
        "latency_p50_ms": percentile_from_bins(bins, 0.50), "latency_p95_ms": percentile_from_bins(bins, 0.95),
        "errors": int(errors), "llm_errors": call_errors,
        "error_rate": round(call_errors / calls, 4) if calls else 0.0, "blocked_calls": int(blocked),
    }


def window_stats_dict(totals: Sequence[Any], durations_ms: list[float]) -> dict[str, Any]:
    """``Store.window_stats`` from (spans, calls, call errors, blocked, cost) and the calls' durations."""
    spans, calls, call_errors, blocked, cost = totals
    return {"spans": int(spans or 0), "llm_calls": int(calls or 0), "llm_errors": int(call_errors or 0),
            "blocked": int(blocked or 0), "cost_usd": float(cost or 0.0),
            "latency_p95_ms": percentile_exact(durations_ms, 0.95)}


def agent_cost_rows(rows: Iterable[Sequence[Any]], names: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """/api/costs/by-agent from (agent key, cost, calls, input tokens, output tokens, spans, errors, blocked) rows
    and the name each key is shown with; most expensive first. A key without spans is left out (SQLite's rollups
    keep a row for no agent whose spans were all charged to an agent later: ``_agent_charge``)."""
    result: list[dict[str, Any]] = [
        {"agent_id": row[0] or None, "agent_name": names.get(row[0]) or (row[0] or None),
         "cost_usd": usd(row[1]), "llm_calls": int(row[2]), "input_tokens": int(row[3]),
         "output_tokens": int(row[4]), "spans": int(row[5]), "errors": int(row[6]), "blocked": int(row[7])}
        for row in rows if row[5]
    ]
    result.sort(key=lambda item: (-item["cost_usd"], item["agent_id"] or ""))
    return result


#: What ``Store.purge`` counts.
PURGE_KINDS: Final = ("traces", "spans", "breaker_events", "alert_history")


#: Columns of an operator action as both stores select them, in ``operator_action``'s order.
OPERATOR_COLUMNS: Final = "id, ts_ns, actor, role, action, scope, scope_id, reason, params"


def operator_action(row: Sequence[Any]) -> dict[str, Any]:
    """One audit record of an operator action, as the API answers it (both stores)."""
    return {"id": int(row[0]), "timestamp_unix_nano": int(row[1]), "time": iso(int(row[1])), "actor": row[2],
            "role": row[3], "action": row[4], "scope": row[5], "scope_id": row[6], "reason": row[7],
            "params": _json.loads(row[8]) if row[8] else {}}
