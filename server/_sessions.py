"""Sessions: traces grouped by the ``session.id`` span attribute, and the story of a session.

The SDK puts ``session.id`` on every span of an ``agentwatch.session()`` and of a LangGraph thread (its
``thread_id``); OTLP ingest maps ``gen_ai.conversation.id`` and ``langfuse.session.id`` onto it. Each store keeps
which traces belong to which session and answers the list and the pieces of the detail; the story (block →
recovery → resume, linked to the breaker transitions) is told here, once, for both stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from ._model import SpanRecord
from ._stats import usd
from ._store import Store
from ._time import iso

__all__ = ["SESSION_KEY", "MAX_SESSION_ID", "session_pairs", "session_summary", "session_story",
           "blocks_of", "session_detail", "BREAKER_LOOKBACK_NS", "RUN_SQL", "is_run"]

SESSION_KEY: Final = "session.id"
MAX_SESSION_ID: Final = 512
#: How far before a session's first trace (after its last) the trip behind a block (the recovery) is looked for.
BREAKER_LOOKBACK_NS: Final = 24 * 3_600_000_000_000
#: How long after its blocked span ended a trip may be stamped and still be the block's (clocks are read apart).
_TRIP_SLACK_NS: Final = 1_000_000


def session_of(attributes: dict[str, Any]) -> str | None:
    value = attributes.get(SESSION_KEY)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_SESSION_ID:
        return None
    return value


def session_pairs(records: Iterable[SpanRecord]) -> dict[tuple[str, str], tuple[int, bool]]:
    """(session id, trace id) → (earliest span start, whether the trace is the session's own: its root is the
    ``session`` span of a session opened outside any trace), for the spans of a batch that name a session."""
    pairs: dict[tuple[str, str], tuple[int, bool]] = {}
    for record in records:
        attributes = record.attributes
        if SESSION_KEY not in attributes:
            continue
        session = session_of(attributes)
        if session is None:
            continue
        key = (session, record.trace_id)
        wrapper = record.kind == "session" and record.parent_span_id is None
        known = pairs.get(key)
        if known is None:
            pairs[key] = (record.start_ns, wrapper)
        elif record.start_ns < known[0] or wrapper:
            pairs[key] = (min(known[0], record.start_ns), known[1] or wrapper)
    return pairs


#: SQL, over a session's (session_traces s, traces t) rows: the trace is one of its runs. A session opened outside
#: any trace has a trace of its own holding its span (and the breaker spans of recoveries made in it): bookkeeping,
#: not a run, unless calls were made in it directly.
RUN_SQL: Final = "NOT (s.wrapper AND t.llm_calls = 0 AND t.blocked = 0)"


def is_run(trace: dict[str, Any]) -> bool:
    """``RUN_SQL`` for a trace of ``Store.session_traces`` (``session_wrapper``: its root is the session's span)."""
    return not (trace.get("session_wrapper") and not trace["llm_calls"] and not trace["blocked"])


def session_summary(session_id: str, runs: int, cost: float, calls: int, blocked: int, errors: int,
                    first_ns: int, last_ns: int, last_status: str | None) -> dict[str, Any]:
    """One row of ``/api/sessions``; both stores build it from the same aggregates. ``trace_count`` counts the runs;
    ``status`` is where the session stands: its latest run's (blocked, then resumed and done: ok)."""
    return {"session_id": session_id, "id": session_id, "trace_count": int(runs or 0),
            "cost_usd": usd(cost), "llm_calls": int(calls or 0),
            "blocked_calls": int(blocked or 0), "errors": int(errors or 0),
            "first_activity_unix_nano": int(first_ns), "last_activity_unix_nano": int(last_ns),
            "first_activity": iso(int(first_ns)), "last_activity": iso(int(last_ns)),
            "status": last_status or "ok"}


def blocks_of(spans: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where work was blocked, from the blocked spans of a session's traces (``trace_spans`` format). A node
    blocked because a model call inside it was is one block, told at the call."""
    spans = list(spans)
    parents = {span.get("parent_span_id") for span in spans}
    blocks = []
    for span in spans:
        if span["span_id"] in parents:
            continue
        attributes = span.get("attributes") or {}
        blocks.append({
            "trace_id": span["trace_id"], "span_id": span["span_id"], "name": span["name"], "kind": span["kind"],
            "timestamp_unix_nano": span["start_time_unix_nano"], "time": iso(span["start_time_unix_nano"]),
            "end_unix_nano": span.get("end_time_unix_nano") or span["start_time_unix_nano"],
            "reason": attributes.get("breaker.reason"), "scope": attributes.get("breaker.scope"),
            "scope_id": attributes.get("breaker.scope_id"), "agent_name": span.get("agent_name"),
        })
    blocks.sort(key=lambda block: block["timestamp_unix_nano"])
    return blocks


def _role(event: dict[str, Any]) -> str:
    state = str(event.get("to_state") or "").upper()
    if state == "OPEN":
        return "trip"
    if state == "PAUSED":
        return "pause"
    if state in ("CLOSED", "HALF_OPEN"):
        return "recovery"
    return "transition"


def _caused_trip(block: dict[str, Any], trips: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The trip a block caused, if it did: the SDK trips the breaker while it blocks the call, and records the trip
    under the blocked call's parent, in the block's trace, a moment after the blocked span started. A trip reported
    without a trace counts if it falls inside the blocked span. A block under a breaker that was open already (a
    trip of another run, or another session's) caused none."""
    start, end = int(block["timestamp_unix_nano"]), int(block.get("end_unix_nano") or block["timestamp_unix_nano"])
    caused = [trip for trip in trips if trip.get("trace_id") in (block["trace_id"], None)
              and start <= int(trip["timestamp_unix_nano"]) <= end + _TRIP_SLACK_NS]
    return min(caused, key=_order, default=None)


def _order(event: dict[str, Any]) -> tuple[int, Any]:
    return int(event["timestamp_unix_nano"]), event["id"]


def related_transitions(events: Sequence[dict[str, Any]], trace_ids: set[str], blocks: Sequence[dict[str, Any]],
                        first_ns: int, last_ns: int) -> list[dict[str, Any]]:
    """The breaker transitions of this session: recorded inside its traces; the trip each of its blocks caused; and,
    of a scope that blocked one of its calls, the recoveries and pauses while it ran and the first recovery after
    each block. A trip recorded in another trace is another run's story (another session's, perhaps), even when it
    left the breaker open that blocked this one: the block tells its reason itself. Each chosen trip carries
    ``caused_block`` (the blocked span) when it is a block's own."""
    scopes = {(b["scope"], b["scope_id"]) for b in blocks if b.get("scope") and b.get("scope_id")}
    chosen: dict[Any, dict[str, Any]] = {}
    for event in events:
        key = (event.get("scope"), event.get("scope_id"))
        ts = int(event["timestamp_unix_nano"])
        if event.get("trace_id") in trace_ids or (
                key in scopes and first_ns <= ts <= last_ns and _role(event) != "trip"):
            chosen[event["id"]] = {**event, "role": _role(event)}
    for block in blocks:
        key = (block.get("scope"), block.get("scope_id"))
        if key not in scopes:
            continue
        of_scope = [e for e in events if (e.get("scope"), e.get("scope_id")) == key]
        trip = _caused_trip(block, [e for e in of_scope if _role(e) == "trip"])
        if trip is not None:
            chosen.setdefault(trip["id"], {**trip, "role": "trip"})["caused_block"] = block["span_id"]
        # A recovery not followed by a resume (yet) is still part of this story.
        recoveries = [e for e in of_scope if _role(e) == "recovery"
                      and int(e["timestamp_unix_nano"]) >= block["timestamp_unix_nano"]]
        if recoveries:
            first = min(recoveries, key=_order)
            chosen.setdefault(first["id"], {**first, "role": "recovery"})
    return sorted(chosen.values(), key=_order)


def session_story(session_id: str, traces: list[dict[str, Any]], blocks: list[dict[str, Any]],
                  events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``/api/sessions/{id}``: the traces in order, each with its part in the story, and the story itself: every
    trace, block and breaker transition in time order (a trace after a blocked one resumes it)."""
    traces = sorted(traces, key=lambda t: (t["start_time_unix_nano"], t["trace_id"]))
    first_ns = min(t["start_time_unix_nano"] for t in traces)
    last_ns = max(t["end_time_unix_nano"] for t in traces)
    transitions = related_transitions(events, {t["trace_id"] for t in traces}, blocks, first_ns, last_ns)
    blocked_before: str | None = None
    story: list[dict[str, Any]] = []
    runs = []
    for trace in traces:
        if not is_run(trace):
            trace["role"] = "session"  # listed, linked, but no part of the story: the runs are
            continue
        runs.append(trace)
        role = "run"
        if blocked_before is not None:
            role = "resume"
            trace["resumes"] = blocked_before
        if trace["status"] == "blocked":
            role = "blocked" if role == "run" else "resume_blocked"
            blocked_before = trace["trace_id"]
        elif role == "resume":
            blocked_before = None
        trace["role"] = role
        story.append({"type": "trace", "timestamp_unix_nano": trace["start_time_unix_nano"],
                      "time": trace["start_time"], "trace_id": trace["trace_id"], "name": trace["name"],
                      "status": trace["status"], "role": role, "cost_usd": trace["cost_usd"],
                      "resumes": trace.get("resumes")})
    for block in blocks:
        story.append({"type": "block", **block})
    for event in transitions:
        story.append({"type": "breaker", "timestamp_unix_nano": event["timestamp_unix_nano"], "time": event["time"],
                      "id": event["id"], "event": event["event"], "role": event["role"], "scope": event["scope"],
                      "scope_id": event["scope_id"], "from_state": event["from_state"],
                      "to_state": event["to_state"], "reason": event["reason"], "threshold": event["threshold"],
                      "current": event["current"], "trace_id": event.get("trace_id"),
                      "caused_block": event.get("caused_block")})
    # A trip is told just before the block it caused (cause, then effect), though stamped a moment after it.
    block_start = {block["span_id"]: int(block["timestamp_unix_nano"]) for block in blocks}
    order = {"trace": 0, "breaker": 1, "block": 2}
    story.sort(key=lambda item: (block_start.get(item.get("caused_block"), int(item["timestamp_unix_nano"])),
                                 order[item["type"]]))
    summary = session_summary(
        session_id, len(runs), sum(float(t["cost_usd"]) for t in traces), sum(int(t["llm_calls"]) for t in traces),
        sum(int(t["blocked"]) for t in traces), sum(int(t["errors"]) for t in traces), first_ns, last_ns,
        runs[-1]["status"] if runs else None)
    return {**summary, "traces": traces, "blocks": blocks, "transitions": transitions, "story": story,
            "resumed": any(t["role"].startswith("resume") for t in traces)}


def session_detail(store: Store, session_id: str, max_traces: int = 1000) -> dict[str, Any] | None:
    """The detail of one session from any store, or None if no stored trace names it."""
    traces = store.session_traces(session_id, max_traces)
    if not traces:
        return None
    blocks = blocks_of(store.blocked_spans([trace["trace_id"] for trace in traces]))
    first_ns = min(trace["start_time_unix_nano"] for trace in traces)
    last_ns = max(trace["end_time_unix_nano"] for trace in traces)
    events = store.breaker_history(1000, 0, first_ns - BREAKER_LOOKBACK_NS, last_ns + BREAKER_LOOKBACK_NS)
    return session_story(session_id, traces, blocks, events)
