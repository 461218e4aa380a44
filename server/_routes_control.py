"""Operator control of running agents: pause, resume, override (add budget), kill, limit overrides, and the
feed the SDK processes poll to apply them (``/api/control``). Bodies are compatible with the peer product's
``/api/circuit-breaker/{pause,resume,override}``. Who may call what: ``_auth``."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from ._auth import CONTROL_FEED_PATH, LOCAL_PRINCIPAL, PRINCIPAL_KEY, Principal
from ._control import CONTROL_HEADER, ControlBody, LimitsBody, OverrideBody, PauseBody, action_record
from ._state import app_state

__all__ = ["router", "ProcessReport", "CONTROL_HEADER"]

router = APIRouter(tags=["circuit breaker"])
_ScopeName = Annotated[Literal["global", "agent"], Path()]
_ScopeId = Annotated[str, Path(min_length=1, max_length=256)]


def _caller(request: Request) -> Principal:
    principal = getattr(request.state, PRINCIPAL_KEY, None)
    return principal if isinstance(principal, Principal) else LOCAL_PRINCIPAL


async def _act(request: Request, action: str, scope: str, scope_id: str | None, reason: str | None,
               params: dict[str, Any]) -> dict[str, Any]:
    state = app_state(request)
    caller = _caller(request)
    record = action_record(action, caller.name, caller.role, scope, scope_id, reason, params)
    stored = await run_in_threadpool(state.store.add_operator_action, record)
    state.control.invalidate()
    return {"ok": True, "action": stored}


@router.post("/api/circuit-breaker/pause")
async def pause(request: Request, body: PauseBody) -> dict[str, Any]:
    """Matching monitors go PAUSED (calls blocked), then HALF_OPEN after ``seconds``, as ``monitor.pause()``."""
    return await _act(request, "pause", body.scope, body.scope_id, body.reason, {"seconds": body.seconds})


@router.post("/api/circuit-breaker/resume")
async def resume(request: Request, body: Annotated[ControlBody | None, Body()] = None) -> dict[str, Any]:
    """Back to CLOSED (also ends a kill). No body: global, every process."""
    body = body or ControlBody()
    return await _act(request, "resume", body.scope, body.scope_id, body.reason, {})


@router.post("/api/circuit-breaker/override")
async def override(request: Request, body: OverrideBody) -> dict[str, Any]:
    """Raise the hourly budget by ``additional_budget`` USD and close, as ``monitor.increase_budget()``."""
    return await _act(request, "override", body.scope, body.scope_id, body.reason,
                      {"additional_budget": body.additional_budget})


@router.post("/api/circuit-breaker/kill")
async def kill(request: Request, body: Annotated[ControlBody | None, Body()] = None) -> dict[str, Any]:
    """Block every LLM call in scope (reason ``operator_kill``) until a resume. No body: global, every process."""
    body = body or ControlBody()
    return await _act(request, "kill", body.scope, body.scope_id, body.reason, {})


@router.put("/api/limits/{scope}/{scope_id}")
async def put_limits(request: Request, scope: _ScopeName, scope_id: _ScopeId, body: LimitsBody) -> dict[str, Any]:
    """Override limits of the matching monitors in every process (``scope_id`` ``*``: all of the scope)."""
    limits = body.limits()
    if not limits:
        raise HTTPException(422, "send at least one of budget_per_hour, max_error_rate, max_calls_per_minute, "
                                 "block_on_threshold, hard_budget")
    return await _act(request, "limits_set", scope, scope_id, body.reason, limits)


@router.delete("/api/limits/{scope}/{scope_id}")
async def delete_limits(request: Request, scope: _ScopeName, scope_id: _ScopeId,
                        reason: Annotated[str | None, Query(max_length=1000)] = None) -> dict[str, Any]:
    """Return the scope to each process's own limits."""
    state = app_state(request)
    _, control = await run_in_threadpool(state.control.state)
    if not any(e["scope"] == scope and e["scope_id"] == scope_id for e in control["limits"]):
        raise HTTPException(404, f"no limits override for {scope}/{scope_id}")
    return await _act(request, "limits_cleared", scope, scope_id, reason, {})


@router.get("/api/limits")
async def get_limits(request: Request) -> dict[str, Any]:
    """The limit overrides in force."""
    version, control = await run_in_threadpool(app_state(request).control.state)
    return {"version": version, "limits": control["limits"]}


class MonitorReport(BaseModel):
    model_config = ConfigDict(extra="ignore")

    scope: Annotated[str, Field(max_length=64)]
    scope_id: Annotated[str, Field(max_length=512)]
    state: Annotated[str, Field(max_length=32)]
    reason: Annotated[str, Field(max_length=200)] | None = None
    budget_per_hour: float | None = None
    spend_last_hour: float | None = None


#: Monitors kept of one poll: the SDK reports its most telling ones (``REPORTED_MONITORS``, fewer than this) and counts
#: the others; an older SDK that sends them all has the rest counted here, its poll still answered.
MONITORS_KEPT: Final = 1000


class ProcessReport(BaseModel):
    """What an SDK process says when it polls: who it is, the control version it applied, its breakers (some of them:
    ``monitors_omitted`` counts the others)."""

    model_config = ConfigDict(extra="ignore")

    process: Annotated[str, Field(min_length=1, max_length=200)]
    service: Annotated[str, Field(max_length=200)] | None = None
    version: Annotated[int, Field(ge=0)] = 0
    monitors: Annotated[list[MonitorReport], Field(max_length=MONITORS_KEPT)] = []
    monitors_omitted: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="before")
    @classmethod
    def _keep_the_first_monitors(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("monitors"), list) and len(data["monitors"]) > MONITORS_KEPT:
            omitted = data.get("monitors_omitted") or 0
            if isinstance(omitted, int):
                omitted += len(data["monitors"]) - MONITORS_KEPT
            data = {**data, "monitors": data["monitors"][:MONITORS_KEPT], "monitors_omitted": omitted}
        return data


def _feed(version: int, control: dict[str, Any] | None) -> JSONResponse:
    import time

    content: dict[str, Any] = {"version": version, "now_unix_nano": time.time_ns()}
    if control is not None:
        content.update(control)
    return JSONResponse(content, headers={CONTROL_HEADER: str(version)})


@router.post(CONTROL_FEED_PATH, response_class=JSONResponse)
async def control_feed(request: Request, report: ProcessReport) -> JSONResponse:
    """The SDK's poll: it reports its breakers and gets the control state, or only the version when it
    already has it (the cheap answer an idle process gets every second)."""
    state = app_state(request)
    caller = _caller(request)
    state.processes.report(report.process, {"service": report.service, "applied_version": report.version,
                                            "credential": caller.name,
                                            "monitors": [m.model_dump() for m in report.monitors],
                                            "monitors_omitted": report.monitors_omitted})
    version = await run_in_threadpool(state.control.version)
    if version == report.version:
        return _feed(version, None)
    version, control = await run_in_threadpool(state.control.state)
    return _feed(version, control)


@router.get(CONTROL_FEED_PATH, response_class=JSONResponse)
async def control_state(request: Request) -> JSONResponse:
    """The control state in force (what the SDK processes follow)."""
    version, control = await run_in_threadpool(app_state(request).control.state)
    return _feed(version, control)

