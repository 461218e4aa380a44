"""Operator control from the collector: pause, resume, kill, add budget and limit overrides reach this process.

The export worker asks, after each of its wake-ups (about every second), over the connection it already has to
the collector: ``POST /api/control`` with this process's breaker states and the control version it applied. The
answer is only the version when nothing changed; otherwise the control state, which is applied through the
monitors' public methods (``pause``, ``resume``, ``kill``, ``increase_budget``, ``update``). An ingest answer
announces a newer version (``X-AgentWatch-Control``) and the worker asks at once. While the exporter knows the
collector down it asks only when the exporter's next probe is due, and the poll is that probe (a program exporting
nothing still finds the collector back): a collector that hangs would cost the worker a timeout per poll, time its
batches need. No port is opened, no thread
is added, and the LLM-call path is untouched: it only sees the monitors' states change. A budget grant is applied by
every process it reaches; with ``limits_backend`` the shared budget is raised once (the grant's id is claimed in
Redis), not once per process. Pause, resume, kill and limit overrides set a state or a value, so applying them in
every process is applying them once.

Control is followed only from a collector this process authenticates to (``api_key``) or one on loopback; a
collector that cannot be reached leaves the last applied state in force. ``init(remote_control=False)`` turns it
off. With ``limits_backend`` the monitors publish the transitions to the shared state as they always do.
"""

from __future__ import annotations

import contextvars
import math
import os
import time
import urllib.parse
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from ._safe import logger, stop_on_exception

if TYPE_CHECKING:
    from ._breaker import Monitor
    from ._client import Client
    from ._exporters import HttpExporter

__all__ = ["RemoteControl", "OPERATOR_ACTION", "attach", "CONTROL_HEADER", "REPORTED_MONITORS"]

CONTROL_HEADER: Final = "X-AgentWatch-Control"
#: The operator action being applied on this thread: the breaker spans it causes carry it (audit, Art. 12).
OPERATOR_ACTION: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "agentwatch_operator_action", default=None)
_LIMIT_KEYS: Final = ("budget_per_hour", "max_error_rate", "max_calls_per_minute", "block_on_threshold",
                      "hard_budget")
#: The control state can list many actions; it is still small next to this.
_MAX_FEED_BYTES: Final = 1024 * 1024
#: Monitors a poll reports at most (the collector takes 1,000, in a body of 1 MiB): a service with an agent scope per
#: user holds thousands. The rest are counted; operator actions still reach every monitor of the process.
REPORTED_MONITORS: Final = 200


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if not host:
        return False
    if host == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def attach(client: Client) -> None:
    """Let each HTTP exporter of ``client`` follow its collector's control, where that is allowed."""
    from ._exporters import HttpExporter

    if not client.config.remote_control:
        return
    for exporter in client.exporters:
        if not isinstance(exporter, HttpExporter):
            continue
        path = exporter.control_path
        host = urllib.parse.urlsplit(exporter.url).hostname
        if path is None:
            continue
        if not client.config.api_key and not is_loopback_host(host):
            logger.debug("agentwatch: remote control off for %s: neither authenticated nor on loopback", exporter.url)
            continue
        exporter.control = RemoteControl(client, exporter, path)


class _Seen:
    """What this process applied to one monitor: action ids, the limit overrides and the values they replaced."""

    __slots__ = ("applied", "limits", "original")

    def __init__(self) -> None:
        self.applied: set[int] = set()
        self.limits: dict[str, Any] = {}
        self.original: dict[str, Any] = {}


class RemoteControl:
    """Polls the collector's control feed from the export worker and applies it to the client's monitors."""

    POLL_INTERVAL: Final = 0.9

    def __init__(self, client: Client, exporter: HttpExporter, path: str) -> None:
        self._client = weakref.ref(client)
        self._exporter = exporter
        self._path = path
        self._instance = os.urandom(4).hex()  # uuid4().hex[:8] without importing uuid (and platform) at init
        self._started = time.monotonic()
        self._next_poll = 0.0
        self.version = 0
        self._feed: dict[str, Any] | None = None
        self._feed_at = 0.0
        self._seen: weakref.WeakKeyDictionary[Monitor, _Seen] = weakref.WeakKeyDictionary()
        self._warned = False
        #: The last poll got no answer (logged once per outage).
        self._unreachable = False

    @property
    def process(self) -> str:
        import socket  # json and socket here, on the export worker: ~4 ms less for ``import agentwatch``

        return f"{socket.gethostname()}:{os.getpid()}:{self._instance}"

    def on_idle(self) -> None:
        """Called by the export worker after each drain: poll when due, or at once if an ingest answer
        announced a newer version."""
        now = time.monotonic()
        announced = self._exporter.announced_control
        if now < self._next_poll and (announced is None or announced == str(self.version)):
            return
        if not self._exporter.may_try():  # known down: tried again by the exporter's probe, or this poll when it is due
            return
        self._next_poll = now + self.POLL_INTERVAL
        client = self._client()
        if client is None:
            return
        feed = self._poll(client)
        if feed is not None and "controls" in feed:
            self._feed = feed
            self._feed_at = now
        if self._feed is not None:
            self._apply(client, self._feed, now)
            if feed is not None:
                self.version = int(feed.get("version") or 0)

    # ---- the round trip ------------------------------------------------------------------------------

    def _monitors(self, client: Client) -> Iterator[Monitor]:
        yield client.monitor
        for scope in client.agents.values():
            yield scope.monitor

    def _poll(self, client: Client) -> dict[str, Any] | None:
        monitors, omitted = self._reports(client)
        report = {"process": self.process, "service": client.config.agent_name, "version": self.version,
                  "monitors": monitors, "monitors_omitted": omitted}
        import json

        body = json.dumps(report, default=str).encode("utf-8")
        try:
            status, data = self._exporter.sender.post(self._path, body, "application/json", gzipped=False,
                                                      max_answer=_MAX_FEED_BYTES)
        except Exception as error:  # unreachable: the last known state stays in force
            if isinstance(error, OSError):  # no answer (refused, reset, timed out): a failed probe of the collector;
                # an answer it could not take (too large, malformed) says nothing of the collector's reach
                self._exporter.probed(False, timed_out=isinstance(error, TimeoutError))
            if not self._unreachable:  # once per outage: the poll is tried again every probe interval
                self._unreachable = True
                logger.debug("agentwatch: control poll failed: %s; tried again every %.0f s until the collector "
                             "answers", error, self._exporter.PROBE_INTERVAL)
            return None
        if self._unreachable:
            self._unreachable = False
            logger.debug("agentwatch: control poll answered again (%s)", status)
        if 200 <= status < 300:
            self._exporter.probed(True)
        if status != 200:
            if not self._warned:
                self._warned = True
                logger.warning("agentwatch: the collector refused the control poll (%s); operator actions "
                               "will not reach this process", status)
            return None
        answer = json.loads(data)
        return answer if isinstance(answer, dict) else None

    def _reports(self, client: Client) -> tuple[list[dict[str, Any]], int]:
        """The reports of the global monitor and of the agents' most telling ones, ``REPORTED_MONITORS`` in all:
        those not CLOSED first, then by the hour's spend; and how many agents' were left out."""
        reports = [self._report(monitor) for monitor in self._monitors(client)]
        agents = reports[1:]
        if len(agents) < REPORTED_MONITORS:
            return reports, 0
        agents.sort(key=lambda report: (report["state"] == "CLOSED", -(report["spend_last_hour"] or 0.0)))
        kept = agents[:REPORTED_MONITORS - 1]
        return [reports[0], *kept], len(agents) - len(kept)

    @staticmethod
    def _report(monitor: Monitor) -> dict[str, Any]:
        state, reason, budget, spent = monitor.report()
        return {"scope": monitor.scope, "scope_id": monitor.scope_id, "state": state, "reason": reason,
                "budget_per_hour": budget, "spend_last_hour": spent}

    # ---- applying ------------------------------------------------------------------------------------

    @staticmethod
    def _matches(entry: dict[str, Any], monitor: Monitor) -> bool:
        return entry["scope"] == monitor.scope and entry["scope_id"] in ("*", monitor.scope_id, monitor.name)

    def _apply(self, client: Client, feed: dict[str, Any], now: float) -> None:
        # How old an action was when the feed was answered, in this process's clock: no clock sync needed.
        server_now = int(feed.get("now_unix_nano") or 0)
        uptime = now - self._started
        for monitor in list(self._monitors(client)):
            seen = self._seen.get(monitor)
            first = seen is None
            if seen is None:
                seen = self._seen[monitor] = _Seen()
            for entry in feed.get("controls", ()):
                if self._matches(entry, monitor) and entry["id"] not in seen.applied:
                    seen.applied.add(entry["id"])
                    if not (first and entry["mode"] == "resume"):  # an old resume says nothing to a new monitor
                        self._act(monitor, entry, entry["mode"], now)
            for grant in feed.get("grants", ()):
                if self._matches(grant, monitor) and grant["id"] not in seen.applied:
                    seen.applied.add(grant["id"])
                    if (server_now - grant["ts_unix_nano"]) / 1e9 <= uptime:  # made while this process ran
                        self._act(monitor, grant, "override", now)
            self._apply_limits(client, monitor, seen, feed.get("limits", ()))

    @stop_on_exception
    def _act(self, monitor: Monitor, entry: dict[str, Any], mode: str, now: float) -> None:
        token = OPERATOR_ACTION.set(self._audit(entry, mode))
        try:
            if mode == "kill":
                monitor.kill()
            elif mode == "resume":
                monitor.resume()
            elif mode == "pause":
                left = float(entry.get("remaining_seconds") or entry.get("seconds") or 0) - (now - self._feed_at)
                if left > 0:
                    monitor.pause(left)
            elif mode == "override":
                usd = float(entry.get("usd") or 0)
                if 0 < usd < math.inf:
                    # Every process applies the grant; a budget shared through limits_backend is raised once.
                    monitor._increase_budget(usd, f"{entry.get('id')}:{entry.get('ts_unix_nano')}")
        finally:
            OPERATOR_ACTION.reset(token)

    @staticmethod
    def _audit(entry: dict[str, Any], mode: str) -> dict[str, Any]:
        return {"operator": entry.get("actor"), "operator_action": mode, "operator_action_id": entry.get("id"),
                "operator_reason": entry.get("reason") or None}

    @stop_on_exception
    def _apply_limits(self, client: Client, monitor: Monitor, seen: _Seen, entries: Any) -> None:
        wanted: dict[str, Any] = {}
        last: dict[str, Any] | None = None
        # Overrides for every monitor of the scope first, one naming this monitor after: the specific wins.
        for entry in sorted((e for e in entries if self._matches(e, monitor)), key=lambda e: e["scope_id"] != "*"):
            wanted.update({k: v for k, v in entry["limits"].items() if k in _LIMIT_KEYS})
            last = entry
        if wanted == seen.limits:
            return
        changes = {key: seen.original.pop(key) for key in seen.limits if key not in wanted}
        for key, value in wanted.items():
            if key not in seen.original and key not in changes:
                seen.original[key] = getattr(monitor, key)
            changes[key] = value
        monitor.update(**changes)
        seen.limits = wanted
        audit = self._audit(last, "limits_set") if last is not None else {"operator_action": "limits_cleared"}
        state = monitor.state
        attributes = {"event": "operator_limits", "from_state": state, "to_state": state, "scope": monitor.scope,
                      "scope_id": monitor.scope_id, "reason": audit["operator_action"], "limits": changes,
                      "eu_ai_act_art12_relevant": True, **audit}
        client.end_span(client.start_span("breaker.operator_limits", "breaker", attributes=attributes,
                                          activate=False))
        # An operator who raises or removes the limit that stopped the monitor means "let it run".
        token = OPERATOR_ACTION.set(audit)
        try:
            monitor.close_if_within_limits(audit["operator_action"])
        finally:
            OPERATOR_ACTION.reset(token)
