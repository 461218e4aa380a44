"""Operator control of running agents: request bodies, the audit record of each action, and the control state
the SDKs follow, folded from the audit log.

The log of operator actions is the only thing stored (both stores keep it the same way); the state in force
— which scopes are killed or paused, which limits are overridden, which budget grants were made — is computed
from it, so the audit trail and what the processes do cannot disagree. The control version is the id of the
newest action: an SDK that has seen it has nothing to fetch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CONTROL_HEADER", "ACTIONS", "ALL", "ControlBody", "PauseBody", "OverrideBody", "LimitsBody",
           "action_record", "control_state", "overrides_in_force", "ProcessBoard", "ControlCache"]

#: ``scope_id`` of an action meant for every monitor of its scope (the peer's "scope omitted = global").
ALL: Final = "*"
#: The control version, on every ingest answer and feed answer: an SDK that has it has nothing to fetch.
CONTROL_HEADER: Final = "X-AgentWatch-Control"
ACTIONS: Final = ("pause", "resume", "kill", "override", "limits_set", "limits_cleared")
_MODES: Final = frozenset({"pause", "resume", "kill"})
#: Budget overrides older than this are left out of the feed: budgets are per hour, and the feed stays small.
GRANT_SECONDS: Final = 3600
#: A process that has not polled for this long is no longer listed as live.
LIVE_SECONDS: Final = 30.0

Scope = Literal["global", "agent"]
ScopeId = Annotated[str, Field(min_length=1, max_length=256)]
Reason = Annotated[str, Field(max_length=1000)]


class ControlBody(BaseModel):
    """Scope omitted: global, every process. ``scope_id`` omitted: every monitor of the scope."""

    model_config = ConfigDict(extra="ignore")  # the peer's bodies may carry more

    reason: Reason | None = None
    scope: Scope = "global"
    scope_id: ScopeId | None = None

    @model_validator(mode="after")
    def _agent_needs_id(self) -> ControlBody:
        if self.scope == "agent" and not self.scope_id:
            raise ValueError("scope agent needs scope_id (the agent's id or name)")
        return self


class PauseBody(ControlBody):
    seconds: Annotated[float, Field(gt=0, le=7 * 86400, allow_inf_nan=False)] = 60.0


class OverrideBody(ControlBody):
    additional_budget: Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)]


class LimitsBody(BaseModel):
    """Only the fields sent are overridden; null removes that limit in the processes."""

    model_config = ConfigDict(extra="forbid")

    budget_per_hour: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    max_error_rate: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    max_calls_per_minute: Annotated[int, Field(ge=0)] | None = None
    block_on_threshold: bool | None = None
    hard_budget: bool | None = None
    reason: Reason | None = None

    def limits(self) -> dict[str, Any]:
        sent = self.model_dump(exclude_unset=True)
        sent.pop("reason", None)
        for flag in ("block_on_threshold", "hard_budget"):
            if flag in sent and sent[flag] is None:
                del sent[flag]  # a flag cannot be "removed"; leaving it out keeps the process's own
        return sent


def action_record(action: str, actor: str, role: str, scope: str, scope_id: str | None, reason: str | None,
                  params: dict[str, Any]) -> dict[str, Any]:
    """An audit record as routes hand it to ``Store.add_operator_action`` (which adds ``id``)."""
    assert action in ACTIONS
    return {"ts_ns": time.time_ns(), "actor": actor, "role": role, "action": action, "scope": scope,
            "scope_id": scope_id or ALL, "reason": reason or "", "params": params}


def control_state(actions: Sequence[dict[str, Any]], now_ns: int) -> dict[str, Any]:
    """What the SDKs follow, from the actions oldest first.

    ``controls``: per (scope, scope_id) the latest pause, resume or kill (a pause that has ended is left out);
    ``limits``: the overrides in force per (scope, scope_id); ``grants``: budget overrides of the last hour (each
    applied once by the processes running when it was made).
    """
    modes: dict[tuple[str, str], dict[str, Any]] = {}
    limits: dict[tuple[str, str], dict[str, Any]] = {}
    grants: list[dict[str, Any]] = []
    for action in actions:
        key = (action["scope"], action["scope_id"])
        kind = action["action"]
        base = {"id": action["id"], "scope": key[0], "scope_id": key[1], "actor": action["actor"],
                "reason": action["reason"], "ts_unix_nano": action["timestamp_unix_nano"]}
        if kind in _MODES:
            modes[key] = {**base, "mode": kind, **({"seconds": action["params"].get("seconds")}
                                                   if kind == "pause" else {})}
        elif kind == "override":
            if now_ns - base["ts_unix_nano"] < GRANT_SECONDS * 1_000_000_000:
                grants.append({**base, "usd": action["params"].get("additional_budget")})
        elif kind == "limits_set":
            limits[key] = {**base, "limits": {**limits.get(key, {}).get("limits", {}), **action["params"]}}
        elif kind == "limits_cleared":
            limits.pop(key, None)
    controls = []
    for entry in modes.values():
        if entry["mode"] == "pause":
            left = entry["seconds"] - (now_ns - entry["ts_unix_nano"]) / 1e9
            if left <= 0:
                continue
            entry = {**entry, "remaining_seconds": left}
        controls.append(entry)
    return {"controls": sorted(controls, key=lambda c: c["id"]), "limits": sorted(limits.values(),
            key=lambda c: c["id"]), "grants": grants}


class ControlCache:
    """The control version and state, read from the store at most every ``ttl`` seconds (polls are frequent);
    an action made through this process refreshes it at once."""

    def __init__(self, version: Callable[[], int], actions: Callable[[], list[dict[str, Any]]],
                 ttl: float = 0.25) -> None:
        self._read_version = version
        self._read_actions = actions
        self._ttl = ttl
        self._lock = threading.Lock()
        self._version = -1
        self._checked = 0.0
        self._actions: list[dict[str, Any]] = []

    def invalidate(self) -> None:
        with self._lock:
            self._checked = 0.0

    def version(self) -> int:
        now = time.monotonic()
        with self._lock:
            if now - self._checked < self._ttl:
                return self._version
        current = self._read_version()
        with self._lock:
            if current != self._version:
                self._actions = []  # re-read on the next state() call
            self._version, self._checked = current, now
        return current

    def state(self) -> tuple[int, dict[str, Any]]:
        version = self.version()
        with self._lock:
            actions = self._actions
        if not actions and version > 0:
            actions = self._read_actions()
            with self._lock:
                self._actions = actions
        return version, control_state(actions, time.time_ns())


#: The board keeps at most this many processes and about this many bytes of their reports (a fleet of hundreds of
#: processes reporting 200 monitors each fits); past either, the process that reported longest ago is dropped.
#: Any ingest token may report, under any process name: unbounded, the board and the status answer grew without end.
BOARD_PROCESSES: Final = 2000
BOARD_BYTES: Final = 16 * 1024 * 1024
#: What a monitor costs in the status answer beyond its strings, in the same rough bytes (keys, numbers, punctuation).
_MONITOR_OVERHEAD: Final = 150


def _report_size(process: str, report: dict[str, Any]) -> int:
    """About what the report adds to the status answer, where each monitor is listed under its process and the
    process under its monitor's scope; counted from its strings (cheaper than serialising it at every poll)."""
    size = len(process) + len(report.get("service") or "") + _MONITOR_OVERHEAD
    for monitor in report.get("monitors", ()):
        strings = sum(len(value) for value in monitor.values() if isinstance(value, str))
        size += _MONITOR_OVERHEAD + strings + len(process)
    return size


class ProcessBoard:
    """The breaker states each live SDK process reported in its last poll (kept in memory: they are live).

    Bounded in processes and bytes; the process that reported longest ago goes first."""

    def __init__(self, max_processes: int = BOARD_PROCESSES, max_bytes: int = BOARD_BYTES) -> None:
        self._lock = threading.Lock()
        self._max_processes = max_processes
        self._max_bytes = max_bytes
        # In order of the last report, oldest first: (time, report, size).
        self._seen: dict[str, tuple[float, dict[str, Any], int]] = {}
        self._bytes = 0
        #: Processes dropped to keep the board within its bounds (not those that went quiet).
        self.dropped = 0

    def report(self, process: str, report: dict[str, Any]) -> None:
        now = time.time()
        size = _report_size(process, report)
        with self._lock:
            previous = self._seen.pop(process, None)
            if previous is not None:
                self._bytes -= previous[2]
            self._seen[process] = (now, report, size)
            self._bytes += size
            while self._seen:
                oldest = next(iter(self._seen))
                seen, _, oldest_size = self._seen[oldest]
                crowded = len(self._seen) > self._max_processes or self._bytes > self._max_bytes
                if not crowded and now - seen <= 10 * LIVE_SECONDS:
                    break
                if oldest == process:  # one report over the byte bound on its own is still shown
                    break
                del self._seen[oldest]
                self._bytes -= oldest_size
                if crowded:
                    self.dropped += 1

    def by_scope(self) -> list[dict[str, Any]]:
        """Per (scope, scope_id): the state each live process reported for it."""
        scopes: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for entry in self.live():
            for monitor in entry["monitors"]:
                scopes.setdefault((monitor["scope"], monitor["scope_id"]), []).append(
                    {"process": entry["process"], "state": monitor["state"]})
        return [{"scope": scope, "scope_id": scope_id, "processes": reports}
                for (scope, scope_id), reports in sorted(scopes.items())]

    def live(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            items = list(self._seen.items())
        return [{"process": key, "last_seen_seconds_ago": round(now - seen, 3), **report}
                for key, (seen, report, _) in sorted(items) if now - seen <= LIVE_SECONDS]


def overrides_in_force(control: dict[str, Any]) -> list[dict[str, Any]]:
    """Kills, live pauses and limit overrides, for the status answer (resumes are not "in force")."""
    return [c for c in control["controls"] if c["mode"] != "resume"] + [
        {**entry, "mode": "limits"} for entry in control["limits"]]
