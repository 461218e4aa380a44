"""Alert rules and history, SDK alerts and breaker transitions, live circuit-breaker state."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.concurrency import run_in_threadpool

from ._control import overrides_in_force
from ._datamodel import Condition
from ._notify import validate_webhook_url
from ._span_content import free_form_problem
from ._state import app_state, time_param
from ._zero_retention import strip_text_from

__all__ = ["router", "AlertRuleIn", "AlertRulePatch", "SdkAlert"]

router = APIRouter(tags=["alerts"])
#: Rule ids are SQLite rowids: a larger number can only be a 404, never an overflow.
RuleId = Annotated[int, Path(ge=1, le=2**63 - 1)]
#: Optional columns a PATCH may set to null; the others always have a value.
_CLEARABLE = frozenset({"webhook_url", "email"})

_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+$")
Threshold = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Cooldown = Annotated[int, Field(ge=0, le=7 * 86400)]
Window = Annotated[int, Field(ge=10, le=7 * 86400)]


def _check_email(value: str | None) -> str | None:
    if value is not None and not _EMAIL.match(value):
        raise ValueError("email must be one address like ops@example.com")
    return value


def _check_url(value: str | None) -> str | None:
    return None if value is None else validate_webhook_url(value)


class AlertRuleIn(BaseModel):
    """A server-side rule; fires when the condition's value goes above ``threshold``."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    condition: Condition
    #: Required, except for cron_missed / cron_failed, which fire per run and ignore it.
    threshold: Threshold | None = None
    action_type: Literal["email", "webhook"] = "webhook"
    webhook_url: Annotated[str, Field(max_length=2000)] | None = None
    email: Annotated[str, Field(max_length=320)] | None = None
    enabled: bool = True
    cooldown_seconds: Cooldown = 300
    window_seconds: Window | None = None

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str | None) -> str | None:
        return _check_email(value)

    @field_validator("webhook_url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        return _check_url(value)

    @model_validator(mode="after")
    def _channel(self) -> AlertRuleIn:
        if self.action_type == "webhook" and not self.webhook_url:
            raise ValueError("action_type webhook needs webhook_url")
        if self.threshold is None:
            if not self.condition.startswith("cron_"):
                raise ValueError("threshold is required for this condition")
            self.threshold = 0.0
        return self


class AlertRulePatch(BaseModel):
    """Fields to change; an empty body toggles ``enabled``."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    condition: Condition | None = None
    threshold: Threshold | None = None
    action_type: Literal["email", "webhook"] | None = None
    webhook_url: Annotated[str, Field(max_length=2000)] | None = None
    email: Annotated[str, Field(max_length=320)] | None = None
    enabled: bool | None = None
    cooldown_seconds: Cooldown | None = None
    window_seconds: Window | None = None

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str | None) -> str | None:
        return _check_email(value)

    @field_validator("webhook_url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        return _check_url(value)


# What each kind of SDK alert must carry: every SDK sends these (core/_monitor.py; the peer SDK's alert payload).
_REQUIRED: Final = {"alert": ("scope", "scope_id", "reason"), "transition": ("scope", "scope_id", "event", "to_state")}


class SdkAlert(BaseModel):
    """What the SDK sends: an alert (a limit was exceeded) or a circuit-breaker transition.

    The aeneas-agentwatch SDK sends ``{scope, scope_id, reason, threshold, current, blocked, timestamp}``:
    no ``type`` (an alert) and ``timestamp`` in seconds. Required: ``scope``, ``scope_id`` and ``reason`` for an
    alert; ``scope``, ``scope_id``, ``event`` and ``to_state`` for a transition (what both SDKs always send).
    """

    model_config = ConfigDict(extra="allow")

    type: Literal["alert", "transition"] = "alert"
    timestamp_unix_nano: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    #: Seconds since the epoch (``time.time()``), as the aeneas-agentwatch SDK sends it.
    timestamp: Annotated[float, Field(ge=0, le=(2**63 - 1) / 1e9, allow_inf_nan=False)] | None = None
    blocked: bool | None = None
    scope: Annotated[str, Field(max_length=512)] | None = None
    scope_id: Annotated[str, Field(max_length=512)] | None = None
    reason: Any = None
    threshold: Any = None
    current: Any = None
    state: Any = None
    event: Annotated[str, Field(max_length=64)] | None = None
    from_state: Annotated[str, Field(max_length=64)] | None = None
    to_state: Annotated[str, Field(max_length=64)] | None = None

    @model_validator(mode="after")
    def _complete(self) -> SdkAlert:
        # Without them the stores filled in defaults ("alert on agent/agent"): an alert nobody raised, on a breaker
        # that does not exist.
        fields = _REQUIRED[self.type]
        missing = [name for name in fields if getattr(self, name) is None or getattr(self, name) == ""]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}: an SDK {self.type} needs {', '.join(fields)}")
        return self

    @model_validator(mode="after")
    def _storable(self) -> SdkAlert:
        # Its loosely typed values are stored as JSON, as span attributes are: the same text and depth rules apply.
        loose = {"reason": self.reason, "threshold": self.threshold, "current": self.current, "state": self.state,
                 **(self.model_extra or {})}
        problem = free_form_problem(loose)
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        return self


@router.get("/api/alerts")
async def list_rules(request: Request) -> dict[str, Any]:
    return {"rules": await run_in_threadpool(app_state(request).store.list_rules)}


@router.post("/api/alerts", status_code=201)
async def create_rule(request: Request, rule: AlertRuleIn) -> dict[str, Any]:
    return await run_in_threadpool(app_state(request).store.create_rule, rule.model_dump())


@router.get("/api/alerts/history")
async def alert_history(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
                        from_: Annotated[str | None, Query(alias="from")] = None,
                        to: Annotated[str | None, Query(alias="to")] = None) -> dict[str, Any]:
    """Alerts fired by server rules (with delivery status) and alerts the SDKs reported, newest first."""
    store = app_state(request).store
    events = await run_in_threadpool(store.alert_history, limit, offset, time_param(from_, "from"),
                                     time_param(to, "to"))
    return {"history": events}


# The aeneas-agentwatch SDK strips "/ingest" from its ingest URL and appends "/api/alerts/sdk-alert", so with
# the URL it documents (".../api/ingest") its alerts arrive at /api/api/alerts/sdk-alert.
@router.post("/api/api/alerts/sdk-alert", status_code=202, include_in_schema=False)
@router.post("/api/alerts/sdk-alert", status_code=202)
async def sdk_alert(request: Request, payload: SdkAlert) -> dict[str, Any]:
    """Record an SDK alert or breaker transition once (the same transition may also arrive as a span)."""
    store = app_state(request).store
    data = payload.model_dump(exclude_none=True)
    if app_state(request).settings.zero_data_retention:
        data = strip_text_from(data)  # an alert's free text (message, details) is not kept either
    kind = data.pop("type")
    if "timestamp_unix_nano" not in data and payload.timestamp is not None:
        data["timestamp_unix_nano"] = int(payload.timestamp * 1e9)
    if kind == "transition":
        recorded = await run_in_threadpool(store.record_breaker_event, data, "sdk-alert")
    else:
        recorded = await run_in_threadpool(store.record_sdk_alert, data)
    return {"recorded": recorded, "duplicate": not recorded}


@router.delete("/api/alerts/{rule_id}")
async def delete_rule(request: Request, rule_id: RuleId) -> dict[str, Any]:
    if not await run_in_threadpool(app_state(request).store.delete_rule, rule_id):
        raise HTTPException(404, "rule not found")
    return {"deleted": rule_id}


@router.patch("/api/alerts/{rule_id}")
async def update_rule(request: Request, rule_id: RuleId,
                      patch: Annotated[AlertRulePatch | None, Body()] = None) -> dict[str, Any]:
    store = app_state(request).store
    current = await run_in_threadpool(store.get_rule, rule_id)
    if current is None:
        raise HTTPException(404, "rule not found")
    changes = patch.model_dump(exclude_unset=True) if patch is not None else {}
    cleared = sorted(key for key, value in changes.items() if value is None and key not in _CLEARABLE)
    if cleared:
        raise HTTPException(422, f"{', '.join(cleared)}: cannot be null (leave the field out to keep it)")
    if not changes:
        changes = {"enabled": not current["enabled"]}
    merged = {**current, **changes}
    if merged["action_type"] == "webhook" and not merged.get("webhook_url"):
        raise HTTPException(422, "action_type webhook needs webhook_url")
    updated = await run_in_threadpool(store.update_rule, rule_id, changes)
    if updated is None:
        raise HTTPException(404, "rule not found")
    return updated


@router.get("/api/circuit-breaker/status", tags=["circuit breaker"])
async def breaker_status(request: Request) -> dict[str, Any]:
    """Last known state of every breaker (scope, scope_id) the SDKs reported, newest change first; the state
    each live process reported in its last control poll; the operator overrides in force."""
    state = app_state(request)
    breakers = await run_in_threadpool(state.store.breaker_status)
    open_count = sum(1 for b in breakers if str(b["state"] or "").lower() in ("open", "paused", "half_open"))
    version, control = await run_in_threadpool(state.control.state)
    return {"breakers": breakers, "open": open_count, "processes": state.processes.live(),
            "by_scope": state.processes.by_scope(), "processes_dropped": state.processes.dropped,
            "overrides": overrides_in_force(control), "control_version": version}


@router.get("/api/circuit-breaker/history", tags=["circuit breaker"])
async def breaker_history(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                          offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
                          from_: Annotated[str | None, Query(alias="from")] = None,
                          to: Annotated[str | None, Query(alias="to")] = None) -> dict[str, Any]:
    """Breaker transitions and operator actions (the audit trail: who, when, what, why), newest first."""
    store = app_state(request).store
    start, end = time_param(from_, "from"), time_param(to, "to")
    events = await run_in_threadpool(store.breaker_history, limit, offset, start, end)
    actions = await run_in_threadpool(store.operator_actions, limit, offset, start, end)
    return {"transitions": events, "operator_actions": actions}
