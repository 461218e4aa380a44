"""Cron monitoring: registered crons, their expected runs and statuses (see ``_crons.py``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from ._crons import DEFAULT_GRACE_SECONDS, HISTORY_LIMIT, cron_report, valid_schedule
from ._model import NAME_MAX
from ._state import app_state
from ._time import now_ns

__all__ = ["router", "CronIn"]

router = APIRouter(tags=["crons"])
#: A path parameter that may hold "/" (job names such as "etl/nightly" come from the SDK as they are).
#: As long as a span's name, which names the cron its runs register: a longer limit here left such a cron listed but
#: out of reach of its own routes.
CronName = Annotated[str, Path(min_length=1, max_length=NAME_MAX)]


class CronIn(BaseModel):
    """A cron expression (five fields, UTC) and how long after each expected time a run may start."""

    model_config = ConfigDict(extra="forbid")

    schedule: Annotated[str, Field(min_length=1, max_length=200)]
    grace_seconds: Annotated[int, Field(ge=0, le=366 * 86400)] = DEFAULT_GRACE_SECONDS

    @field_validator("schedule")
    @classmethod
    def _valid(cls, value: str) -> str:
        value = value.strip()
        if not valid_schedule(value):
            raise ValueError("schedule must be a five-field cron expression such as '0 3 * * *'")
        return value


@router.get("/api/crons")
async def list_crons(request: Request, runs: Annotated[int, Query(ge=1, le=HISTORY_LIMIT)] = 20) -> dict[str, Any]:
    """Every known cron: schedule, grace, last run, next expected run and counts over the last ``runs``
    expected runs; a cron whose runs carry no schedule (``scheduled`` false) with counts over its last ``runs``
    runs and null schedule, grace, next run, late and missed."""
    store = app_state(request).store

    def collect() -> list[dict[str, Any]]:
        now = now_ns()
        reports = [cron_report(store, cron, now, runs) for cron in store.list_crons()]
        for report in reports:
            report["history"] = report["history"][:10]  # the list shows a short strip; details per cron
        return reports

    return {"crons": await run_in_threadpool(collect)}


@router.get("/api/crons/{name:path}")
async def get_cron(request: Request, name: CronName,
                   runs: Annotated[int, Query(ge=1, le=HISTORY_LIMIT)] = HISTORY_LIMIT) -> dict[str, Any]:
    """One cron with the history of its expected runs (an unscheduled cron: of its runs), newest first."""
    store = app_state(request).store
    cron = await run_in_threadpool(store.get_cron, name)
    if cron is None:
        raise HTTPException(404, "cron not found")
    return await run_in_threadpool(cron_report, store, cron, now_ns(), runs)


@router.put("/api/crons/{name:path}")
async def put_cron(request: Request, name: CronName, body: CronIn) -> dict[str, Any]:
    """Register a cron (before it ever runs), change its schedule or give one to a cron known unscheduled; runs
    are expected from now on."""
    store = app_state(request).store
    now = now_ns()
    await run_in_threadpool(lambda: store.put_cron(name, body.schedule, body.grace_seconds, seen_ns=now,
                                                   since_ns=now))
    cron = await run_in_threadpool(store.get_cron, name)
    assert cron is not None
    return await run_in_threadpool(cron_report, store, cron, now, HISTORY_LIMIT)


@router.delete("/api/crons/{name:path}")
async def delete_cron(request: Request, name: CronName) -> dict[str, Any]:
    """Forget a cron (its spans stay; a later run registers it again: with a schedule, expecting runs from
    then on; without one, with the runs it had)."""
    if not await run_in_threadpool(app_state(request).store.delete_cron, name):
        raise HTTPException(404, "cron not found")
    return {"deleted": name}
