"""Read API: traces, spans, causal graph, compliance score, KPIs and cost breakdowns."""

from __future__ import annotations

import operator
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from . import _json
from ._compliance import compliance_score
from ._cursor import decode_cursor
from ._graph import build_graph
from ._state import AppState, app_state, time_param
from ._stats import DAY_NS, usd
from ._store import SORT_FIELDS, TRACE_STATUSES, TraceQuery
from ._time import now_ns

__all__ = ["router", "valid_trace_id"]

router = APIRouter(tags=["traces"])

_TRACE_ID = re.compile(r"^[0-9A-Za-z_.:\-]{1,128}$")
From = Annotated[str | None, Query(alias="from", description="ISO 8601 or epoch seconds/ms/ns; inclusive")]
To = Annotated[str | None, Query(alias="to", description="ISO 8601 or epoch seconds/ms/ns; exclusive")]


def valid_trace_id(trace_id: str) -> str:
    if not _TRACE_ID.match(trace_id):
        raise HTTPException(400, "invalid trace id")
    return trace_id


_trace_id = valid_trace_id


@router.get("/api/traces")
async def list_traces(
    request: Request,
    search: Annotated[str | None, Query(max_length=200, description="in trace name, id, agents, models")] = None,
    status: Annotated[str | None, Query(description=f"one of {', '.join(TRACE_STATUSES)}")] = None,
    agent_id: Annotated[str | None, Query(max_length=512)] = None,
    model: Annotated[str | None, Query(max_length=512)] = None,
    from_: From = None,
    to: To = None,
    sort: Annotated[str, Query(description=f"one of {', '.join(SORT_FIELDS)}")] = "start_time",
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    cursor: Annotated[str | None, Query(max_length=2000, description=(
        "the previous page's next_cursor: the page after it, however many traces arrived meanwhile (same filters,"
        " sort and order; not with offset)"))] = None,
    include_system: Annotated[bool, Query(description=(
        "also the traces of the SDK's bookkeeping alone (a process's start, breaker transitions or operator limits"
        " made outside any trace, a session's own span), left out of the list and its total by default"))] = False,
) -> dict[str, Any]:
    """Traces (aggregates of their spans), newest first by default, with ``total`` for paging.

    Two ways to page: ``offset`` (a page number's rows; while traces arrive, newest first, the pages shift and a
    trace can show twice or not at all), or ``cursor``: each full page has ``next_cursor`` (null on the last
    page), and ``cursor=<it>`` gives the rows after that page's last, whatever arrived since. ``total`` counts
    every match, wherever the page starts. A trace whose spans are all the SDK's bookkeeping (``system: true``) is
    listed only with ``include_system=true``; it is read by id like any other."""
    try:
        after = decode_cursor(cursor, sort, order) if cursor else None
        query = TraceQuery(search=search, status=status or None, agent_id=agent_id or None, model=model or None,
                           start_ns=time_param(from_, "from"), end_ns=time_param(to, "to"), sort=sort,
                           order=order, limit=limit, offset=offset, after=after, include_system=include_system)
    except ValueError as error:
        raise HTTPException(422, str(error)) from None
    return await run_in_threadpool(app_state(request).store.list_traces, query)


@router.get("/api/traces/{trace_id}")
async def get_trace(request: Request, trace_id: str) -> dict[str, Any]:
    trace = await run_in_threadpool(app_state(request).store.get_trace, _trace_id(trace_id))
    if trace is None:
        raise HTTPException(404, "trace not found")
    return trace


@router.get("/api/traces/{trace_id}/spans")
async def trace_spans(request: Request, trace_id: str,
                      limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000) -> dict[str, Any]:
    """Spans in start order, in the SDK's wire format plus ``duration_ms``; ``truncated`` when the trace has more
    than ``limit`` (the first ``limit`` are given)."""
    # One more than asked: a client given exactly ``limit`` spans could not tell the first 10,000 of a larger trace
    # from all of it.
    spans = await run_in_threadpool(app_state(request).store.trace_spans, _trace_id(trace_id), limit + 1)
    if not spans:
        raise HTTPException(404, "trace not found")
    truncated = len(spans) > limit
    if truncated:
        del spans[limit:]
    return {"trace_id": trace_id, "spans": spans, "truncated": truncated}


_COST = operator.itemgetter("cost_usd")


def _graph(state: AppState, trace_id: str) -> bytes | None:
    spans = state.store.graph_spans(trace_id, 100_000)
    if not spans:
        return None
    graph = build_graph(spans)
    total_cost = sum(map(float, map(_COST, spans)))  # the same sum, in C
    graph.update({"trace_id": trace_id, "span_count": len(spans), "total_cost_usd": usd(total_cost)})
    return _json.dumps(graph).encode("utf-8")


@router.get("/api/traces/{trace_id}/graph", response_model=None)
async def trace_graph(request: Request, trace_id: str) -> Response:
    """Causal graph: agents, tools and LLM calls as nodes; invokes/delegates/calls/uses_tool edges."""
    # Built and encoded off the event loop, and encoded directly: FastAPI's generic encoder walked every value of
    # a 100,000-span graph, several times slower than building it.
    body = await run_in_threadpool(_graph, app_state(request), _trace_id(trace_id))
    if body is None:
        raise HTTPException(404, "trace not found")
    return Response(body, media_type="application/json")


@router.get("/api/traces/{trace_id}/compliance-score")
async def trace_compliance(request: Request, trace_id: str) -> dict[str, Any]:
    """EU AI Act Article 12 readiness, 0-100, with the rubric item by item."""
    state = app_state(request)
    trace_id = _trace_id(trace_id)
    trace = await run_in_threadpool(state.store.get_trace, trace_id)
    if trace is None:
        raise HTTPException(404, "trace not found")
    spans = await run_in_threadpool(state.store.trace_spans, trace_id, 100_000)
    return compliance_score(trace, spans, state.settings.data_retention_days)


@router.get("/api/metrics", tags=["metrics"])
async def metrics(request: Request, from_: From = None, to: To = None) -> dict[str, Any]:
    """KPIs: traces, spans, LLM calls, tokens, cost, LLM latency p50/p95, error rate, blocked calls."""
    start, end = time_param(from_, "from"), time_param(to, "to")
    return await run_in_threadpool(app_state(request).store.metrics, start, end)


def _days_window(from_: str | None, to: str | None, days: int) -> tuple[int, int]:
    end = time_param(to, "to") or now_ns()
    start = time_param(from_, "from")
    if start is None:
        # ``to`` is exclusive: the last day is the one of its previous nanosecond (to=2026-12-07 ends with 12-06;
        # counted from 12-07, days=2 gave the 6th alone and the default 30 days gave 29).
        start = ((end - 1) // DAY_NS - days + 1) * DAY_NS
    if end - start > 3660 * DAY_NS:
        raise HTTPException(422, "range too long: at most about ten years of days")
    return start, end


@router.get("/api/cost/daily", tags=["metrics"])
async def cost_daily(request: Request, from_: From = None, to: To = None,
                     days: Annotated[int, Query(ge=1, le=3650)] = 30) -> dict[str, Any]:
    """Cost per UTC day; days without spans are included with zeros (default: the last 30 days)."""
    start, end = _days_window(from_, to, days)
    rows = await run_in_threadpool(app_state(request).store.cost_daily, start, end)
    return {"days": rows}


@router.get("/api/cost/by-agent", tags=["metrics"])
async def cost_by_agent(request: Request, from_: From = None, to: To = None) -> dict[str, Any]:
    start, end = time_param(from_, "from"), time_param(to, "to")
    return {"agents": await run_in_threadpool(app_state(request).store.cost_by_agent, start, end)}


@router.get("/api/cost/by-model", tags=["metrics"])
async def cost_by_model(request: Request, from_: From = None, to: To = None) -> dict[str, Any]:
    start, end = time_param(from_, "from"), time_param(to, "to")
    return {"models": await run_in_threadpool(app_state(request).store.cost_by_model, start, end)}
