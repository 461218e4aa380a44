"""Sessions API: traces grouped by session (``agentwatch.session()``, a LangGraph thread, OTLP ``session.id``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from ._sessions import MAX_SESSION_ID, session_detail
from ._state import app_state

__all__ = ["router"]

router = APIRouter(tags=["sessions"])


@router.get("/api/sessions")
async def list_sessions(
    request: Request,
    search: Annotated[str | None, Query(max_length=200, description="in the session id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    """Sessions, most recently active first: traces, cost, LLM calls, blocked calls, first and last activity."""
    search = (search or "").strip() or None
    return await run_in_threadpool(app_state(request).store.list_sessions, limit, offset, search)


@router.get("/api/sessions/{session_id:path}")
async def get_session(request: Request, session_id: str) -> dict[str, Any]:
    """A session's traces in order, its blocks and breaker transitions, and the story: every trace, block and
    transition in time order (``role``: run, blocked, resume; trip, pause, recovery)."""
    return await _session(request, session_id)


@router.get("/api/session")
async def get_session_by_query(request: Request, id: Annotated[str, Query(description="the session id")]
                               ) -> dict[str, Any]:
    """The same as ``/api/sessions/{id}``, the id given as a query parameter: a session named ``.`` or ``..`` cannot
    be put in a URL's path, where browsers and HTTP clients resolve it as a step up the path (the dashboard uses
    this one)."""
    return await _session(request, id)


async def _session(request: Request, session_id: str) -> dict[str, Any]:
    if not session_id or len(session_id) > MAX_SESSION_ID:
        raise HTTPException(400, "invalid session id")
    found = await run_in_threadpool(session_detail, app_state(request).store, session_id)
    if found is None:
        raise HTTPException(404, "session not found")
    return found
