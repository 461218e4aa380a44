"""Monthly report data (JSON) and the monthly traces export (CSV)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from typing import Any

from ._store import Store
from ._time import iso, month_range, now_ns

__all__ = ["monthly_report", "monthly_csv", "CSV_COLUMNS"]

CSV_COLUMNS = ("trace_id", "name", "start_time", "end_time", "duration_ms", "status", "span_count", "llm_calls",
               "input_tokens", "output_tokens", "total_tokens", "cost_usd", "errors", "blocked", "agents",
               "models")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_HISTORY_LIMIT = 100_000


def monthly_report(store: Store, month: str | None) -> dict[str, Any]:
    label, start, end = month_range(month)
    transitions = store.breaker_history(_HISTORY_LIMIT, 0, start, end)
    alerts = store.alert_history(_HISTORY_LIMIT, 0, start, end)
    actions = store.operator_actions(_HISTORY_LIMIT, 0, start, end)
    return {
        "month": label,
        "from": iso(start),
        "to": iso(end),
        "generated_at": iso(now_ns()),
        "totals": store.metrics(start, end),
        "daily_cost": store.cost_daily(start, end),
        "cost_by_agent": store.cost_by_agent(start, end),
        "cost_by_model": store.cost_by_model(start, end),
        "top_traces": store.top_traces(start, end, 10),
        "circuit_breaker": {
            "transitions": len(transitions),
            "by_event": dict(Counter(str(t["event"]) for t in transitions)),
            "recent": transitions[:50],
            # Human oversight of the running agents (who, when, what, why): pause, kill, budget, limits.
            "operator_actions": len(actions),
            "recent_operator_actions": actions[:50],
        },
        "alerts": {
            "total": len(alerts),
            "by_source": dict(Counter(str(a["source"]) for a in alerts)),
            "recent": alerts[:50],
        },
    }


def _cell(value: Any) -> Any:
    """Names, agents and models are untrusted text; a leading = or + would run as a formula in a spreadsheet. Each
    ";"-separated piece is neutralised: a spreadsheet in a locale whose separator is ";" (German, French Excel)
    opens "Writer;=HYPERLINK(...)" as two cells, the second a formula, whether the ";" joined a list cell's names
    or was inside one name."""
    if not isinstance(value, str):
        return value
    return ";".join("'" + piece if piece.startswith(_FORMULA_START) else piece for piece in value.split(";"))


def monthly_csv(store: Store, month: str | None) -> tuple[str, Iterator[str]]:
    """(month label, CSV text chunks) for all traces that started in the month, oldest first."""
    label, start, end = month_range(month)

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for count, trace in enumerate(store.iter_traces(start, end), 1):
            agents = ";".join(str(a.get("agent_name") or a.get("agent_id")) for a in trace["agents"])
            row = {**trace, "agents": agents, "models": ";".join(trace["models"])}
            writer.writerow([_cell(row[column]) for column in CSV_COLUMNS])
            if count % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return label, rows()
