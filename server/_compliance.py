"""EU AI Act Article 12 (record-keeping) readiness score of one trace, 0-100, item by item.

This measures whether the logs of a trace would let an operator meet the logging duties; it is an
engineering aid, not legal advice. Each item names the provision it is derived from and shows its
evidence, so a low score says exactly what is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._model import LLM_KINDS
from ._time import iso, now_ns

__all__ = ["compliance_score", "compliance_report", "RUBRIC"]

_OVERSIGHT_EVENTS = frozenset({"paused", "budget_increased", "reset", "half_open", "recovered", "manual", "killed",
                               "resumed"})
_USER_KEYS = ("user.id", "enduser.id", "user_id", "operator", "reviewer", "human.reviewer")

Check = Callable[[dict[str, Any], list[dict[str, Any]], int], tuple[float, str]]


def _share(good: int, total: int) -> float:
    return 1.0 if total == 0 else good / total


def _recording(trace: dict[str, Any], spans: list[dict[str, Any]], retention: int) -> tuple[float, str]:
    if not spans:
        return 0.0, "no spans recorded for this trace"
    roots = [s for s in spans if not s.get("parent_span_id")]
    closed = sum(1 for s in spans if s["end_time_unix_nano"] >= s["start_time_unix_nano"])
    text = (f"{len(spans)} spans recorded automatically by the SDK, {closed} with start and end times; "
            f"{'root span present' if roots else 'root span missing (trace incomplete)'}")
    return (1.0 if roots else 0.5) * _share(closed, len(spans)), text


def _period(trace: dict[str, Any], spans: list[dict[str, Any]], retention: int) -> tuple[float, str]:
    roots = [s for s in spans if not s.get("parent_span_id")]
    if not roots:
        if trace:
            return 0.5, (f"no root span; period inferred from child spans: {trace.get('start_time')} to "
                         f"{trace.get('end_time')}")
        return 0.0, "no spans"
    root = min(roots, key=lambda s: s["start_time_unix_nano"])
    start, end = root["start_time_unix_nano"], root["end_time_unix_nano"]
    return 1.0, f"use started {iso(start)} and ended {iso(end)} ({(end - start) / 1e6:.1f} ms)"


def _calls(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in spans if s.get("kind") in LLM_KINDS]


def _reference(trace: dict[str, Any], spans: list[dict[str, Any]], retention: int) -> tuple[float, str]:
    calls = _calls(spans)
    if not calls:
        return 1.0, "no model calls in this trace"
    named = sum(1 for s in calls if s.get("model") and s.get("provider"))
    models = sorted({s["model"] for s in calls if s.get("model")})
    return _share(named, len(calls)), (f"{named} of {len(calls)} model calls record model and provider"
                                       f" ({', '.join(models[:5]) or 'none'})")


def _inputs(trace: dict[str, Any], spans: list[dict[str, Any]], retention: int) -> tuple[float, str]:
    calls = _calls(spans)
    if not calls:
        return 1.0, "no model calls in this trace"
    captured = sum(1 for s in calls if "input" in s)
    stripped = sum(1 for s in calls if (s.get("attributes") or {}).get("agentwatch.zero_data_retention"))
    text = f"{captured} of {len(calls)} model calls have their input data recorded"
    if stripped:
        text += f"; {stripped} stripped by zero data retention (metadata only)"
    return _share(captured, len(calls)), text


def _actors(trace: dict[str, Any], spans: list[dict[str, Any]], retention: int) -> tuple[float, str]:
    relevant = [s for s in spans if s.get("kind") in LLM_KINDS or s.get("kind") in ("agent", "tool")]
    if not relevant:
        return 1.0, "no agent, tool or model activity to attribute"

    def identified(span: dict[str, Any]) -> bool:
        attributes = span.get("attributes") or {}
        return bool(span.get("agent_id") or span.get("agent_name") or any(k in attributes for k in _USER_KEYS))

    good = sum(1 for s in relevant if identified(s))
    agents = sorted({str(s.get("agent_name") or s.get("agent_id")) for s in relevant
                     if s.get("agent_id") or s.get("agent_name")})
    return _share(good, len(relevant)), (f"{good} of {len(relevant)} agent, tool and model spans identify the"
                                         f" agent or person acting ({', '.join(agents[:5]) or 'none'})")


def _risks(trace: dict[str, Any], spans: list[dict[str, Any]], retention: int) -> tuple[float, str]:
    errors = [s for s in spans if s.get("status") == "error"]
    blocked = [s for s in spans if s.get("status") == "blocked"]
    breakers = [s for s in spans if s.get("kind") == "breaker"]
    if not (errors or blocked or breakers):
        return 1.0, "no errors, blocked calls or breaker transitions occurred; recording of them is active"
    documented = sum(1 for s in errors if {"error.type", "error.message"} & set(s.get("attributes") or {}))
    documented += sum(1 for s in blocked if any(k in (s.get("attributes") or {})
                                                for k in ("breaker.reason", "reason")))
    documented += sum(1 for s in breakers if (s.get("attributes") or {}).get("eu_ai_act_art12_relevant"))
    oversight = sum(1 for s in breakers if (s.get("attributes") or {}).get("event") in _OVERSIGHT_EVENTS)
    total = len(errors) + len(blocked) + len(breakers)
    return _share(documented, total), (
        f"{len(errors)} errors, {len(blocked)} blocked calls, {len(breakers)} breaker transitions"
        f" ({oversight} oversight interventions); {documented} of {total} carry their cause")


def _retention(trace: dict[str, Any], spans: list[dict[str, Any]], retention: int) -> tuple[float, str]:
    if retention == 0:
        return 1.0, "DATA_RETENTION_DAYS=0: logs are kept until deleted by the operator"
    if retention >= 183:
        return 1.0, f"DATA_RETENTION_DAYS={retention}: at least six months"
    return 0.0, f"DATA_RETENTION_DAYS={retention}: shorter than the six months required"


#: (id, description, article reference, max points, check)
RUBRIC: tuple[tuple[str, str, str, int, Check], ...] = (
    ("automatic_recording", "Events are recorded automatically over the lifetime of the system",
     "Art. 12(1)", 20, _recording),
    ("period_of_use", "The period of each use is recorded (start and end date and time)",
     "Art. 12(3)(a)", 15, _period),
    ("reference_data", "The reference data a result was produced against is identified (model and provider of"
     " every model call)", "Art. 12(3)(b)", 15, _reference),
    ("input_data", "The input data of each model call is traceable", "Art. 12(3)(c)", 15, _inputs),
    ("persons_involved", "The agents and natural persons involved are identified", "Art. 12(3)(d), Art. 14(5)",
     15, _actors),
    ("risk_situations", "Situations that may present a risk are recorded with their cause: errors, blocked"
     " calls, circuit-breaker transitions and human oversight interventions",
     "Art. 12(2)(a), Art. 12(2)(c), Art. 79(1)", 15, _risks),
    ("log_retention", "Logs are kept for a period appropriate to the purpose, at least six months",
     "Art. 19(1), Art. 26(6)", 5, _retention),
)


def compliance_score(trace: dict[str, Any], spans: list[dict[str, Any]], retention_days: int) -> dict[str, Any]:
    items = []
    score = 0
    for item_id, description, article, max_points, check in RUBRIC:
        fraction, evidence = check(trace, spans, retention_days)
        points = round(max_points * max(0.0, min(1.0, fraction)))
        score += points
        items.append({"id": item_id, "description": description, "article": article, "points": points,
                      "max_points": max_points, "passed": points == max_points, "evidence": evidence})
    return {
        "trace_id": trace.get("trace_id"), "score": score, "max_score": 100,
        "regulation": "Regulation (EU) 2024/1689 (AI Act), Article 12 record-keeping",
        "items": items,
        "note": "Readiness of the recorded logs against the logging duties; not legal advice.",
    }


def _cause(span: dict[str, Any]) -> str:
    attributes = span.get("attributes") or {}
    for key in ("error.message", "breaker.reason", "reason", "error.type", "event"):
        if attributes.get(key):
            return f"{key}: {attributes[key]}"
    return ""


def compliance_report(trace: dict[str, Any], spans: list[dict[str, Any]], retention_days: int) -> dict[str, Any]:
    """What the signed per-trace PDF shows: the score with its evidence, the actors, the model calls and the
    risk events, each straight from the recorded spans."""
    agents: dict[str, dict[str, Any]] = {}
    for span in spans:
        key = span.get("agent_id") or span.get("agent_name")
        if not key:
            continue
        agent = agents.setdefault(key, {"agent_id": span.get("agent_id") or "", "agent_name": span.get("agent_name")
                                        or key, "agent_role": span.get("agent_role") or "", "spans": 0,
                                        "llm_calls": 0, "cost_usd": 0.0})
        agent["spans"] += 1
        agent["llm_calls"] += span.get("kind") in LLM_KINDS
        agent["cost_usd"] += float(span.get("cost_usd") or 0.0)
    calls = [{"start_time": iso(s["start_time_unix_nano"]), "agent": s.get("agent_name") or s.get("agent_id") or "",
              "model": s.get("model") or "", "provider": s.get("provider") or "",
              "input_tokens": int(s.get("input_tokens") or 0), "output_tokens": int(s.get("output_tokens") or 0),
              "cost_usd": float(s.get("cost_usd") or 0.0), "status": s.get("status") or ""}
             for s in _calls(spans)]
    risks = [{"start_time": iso(s["start_time_unix_nano"]), "kind": s.get("kind") or "", "name": s.get("name") or "",
              "status": s.get("status") or "", "cause": _cause(s)}
             for s in spans if s.get("status") in ("error", "blocked") or s.get("kind") == "breaker"]
    return {"trace": trace, "score": compliance_score(trace, spans, retention_days),
            "agents": sorted(agents.values(), key=lambda a: -a["spans"]), "model_calls": calls,
            "risk_events": risks, "generated_at": iso(now_ns())}
