"""Server-side alert rules: evaluated after ingest and on a timer, with a cooldown per rule.

Rule conditions and the window each looks at (``window_seconds`` in a rule overrides it):

==================  ========  =====================================================
condition           window    value compared with ``threshold`` (fires when above)
==================  ========  =====================================================
cost_per_hour       1 hour    USD spent, scaled to one hour
error_rate          5 min     failed LLM calls / LLM calls (at least 10 calls)
calls_per_minute    1 min     LLM calls, scaled to one minute
blocked_calls       5 min     calls blocked by a circuit breaker
latency_p95         5 min     95th percentile LLM call latency in ms
cron_missed         -         once per expected run of a scheduled cron not started in its grace (no threshold)
cron_failed         -         once per failed cron run, unscheduled crons' too (no threshold)
==================  ========  =====================================================
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

from ._crons import CRON_CONDITIONS, alert_reports, alerts_due
from ._notify import DeliveryError, send_email, send_webhook, validate_webhook_url
from ._settings import Settings
from ._store import Store

__all__ = ["AlertEngine", "DEFAULT_WINDOWS", "MIN_CALLS_FOR_ERROR_RATE", "RETRY_DELAYS"]

logger = logging.getLogger("agentwatch.server")

DEFAULT_WINDOWS = {"cost_per_hour": 3600, "error_rate": 300, "calls_per_minute": 60, "blocked_calls": 300,
                   "latency_p95": 300}
#: As in the SDK: an error rate over a handful of calls is noise.
MIN_CALLS_FOR_ERROR_RATE = 10
#: Seconds before each retry of a failed delivery (4 attempts in all); then the alert is marked failed.
RETRY_DELAYS = (10.0, 60.0, 300.0)


class _ConfigError(DeliveryError):
    """A rule that cannot be delivered until someone changes it: not retried."""


@dataclasses.dataclass(slots=True)
class _Retry:
    event_id: int
    rule: dict[str, Any]
    text: str
    details: dict[str, Any]
    attempt: int  # deliveries tried so far
    due: float  # time.monotonic()


def _value(condition: str, stats: dict[str, Any], window: int) -> float | None:
    if condition == "cost_per_hour":
        return float(stats["cost_usd"]) * 3600 / window
    if condition == "error_rate":
        calls = stats["llm_calls"]
        return stats["llm_errors"] / calls if calls >= MIN_CALLS_FOR_ERROR_RATE else None
    if condition == "calls_per_minute":
        return stats["llm_calls"] * 60 / window
    if condition == "blocked_calls":
        return float(stats["blocked"])
    if condition == "latency_p95":
        return stats["latency_p95_ms"]
    return None


class AlertEngine:
    """Evaluates the enabled rules of a store and delivers what fires, on a background thread."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._last_run = 0.0
        self._thread: threading.Thread | None = None
        self._retries: list[_Retry] = []

    def start(self) -> None:
        if self._thread is None:
            # The minimum interval also holds from start-up: a burst of ingest at boot is checked once.
            self._last_run = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="agentwatch-alerts", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def notify_ingest(self) -> None:
        self._wake.set()

    def _next_wait(self) -> float:
        with self._lock:
            due = min((retry.due for retry in self._retries), default=None)
        wait = self._settings.alert_interval_seconds
        return wait if due is None else max(0.0, min(wait, due - time.monotonic()))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._next_wait())
            if self._stop.is_set():
                return
            try:
                self.retry_due()
            except Exception:
                logger.exception("alert retry failed")
            # Ingest can wake us hundreds of times a second; rules are checked at most every few seconds.
            pause = self._settings.alert_min_interval_seconds - (time.monotonic() - self._last_run)
            if pause > 0 and self._stop.wait(pause):
                return
            self._wake.clear()
            try:
                self.evaluate()
            except Exception:
                logger.exception("alert evaluation failed")

    def evaluate(self, now_ns: int | None = None) -> list[dict[str, Any]]:
        """Check every enabled rule once; returns the alert events that fired."""
        with self._lock:
            self._last_run = time.monotonic()
            now = now_ns if now_ns is not None else time.time_ns()
            rules = [rule for rule in self._store.list_rules() if rule["enabled"]]
            stats_by_window: dict[int, dict[str, Any]] = {}
            fired: list[dict[str, Any]] = []
            cron_reports: list[dict[str, Any]] | None = None
            for rule in rules:
                if rule["condition"] in CRON_CONDITIONS:
                    if cron_reports is None:  # once per evaluation, shared by every cron rule
                        cron_reports = alert_reports(self._store, now)
                    fired.extend(self._fire_cron(rule, cron_reports, now))
                    continue
                window = int(rule.get("window_seconds") or DEFAULT_WINDOWS.get(rule["condition"], 300))
                if window not in stats_by_window:
                    stats_by_window[window] = self._store.window_stats(now - window * 1_000_000_000, now)
                value = _value(rule["condition"], stats_by_window[window], window)
                if value is None or value <= rule["threshold"]:
                    continue
                last = rule.get("last_triggered_unix_nano")
                cooldown = rule["cooldown_seconds"] * 1_000_000_000
                if last is not None and now - last < cooldown:
                    continue
                # Claimed before delivery: a slow or failing channel must not make the next round fire
                # again, and of several server processes only one fires.
                try:
                    if self._store.claim_rule(rule["id"], now, cooldown):
                        fired.append(self._fire(rule, value, window, now))
                except Exception:
                    # One broken rule must never keep the others from being checked and delivered.
                    logger.exception("alert rule %r failed", rule.get("name"))
            return fired

    def retry_due(self, now: float | None = None) -> list[tuple[int, str, str | None]]:
        """Deliver again the failed alerts whose backoff is over; returns (event id, status, error) of each."""
        with self._lock:
            current = time.monotonic() if now is None else now
            due = [retry for retry in self._retries if retry.due <= current]
            self._retries = [retry for retry in self._retries if retry.due > current]
            return [self._deliver(retry.event_id, retry.rule, retry.text, retry.details, retry.attempt, current)
                    for retry in due]

    @property
    def pending_retries(self) -> int:
        return len(self._retries)

    def _fire_cron(self, rule: dict[str, Any], reports: list[dict[str, Any]], now: int) -> list[dict[str, Any]]:
        """Each missed or failed expected run not reported by this rule yet, through the rule's channel."""
        fired = []
        for report, run in alerts_due(self._store, rule, reports, now):
            # An unscheduled cron's run was expected at no time: it is named by its start.
            which = (f"expected at {run['expected_at']}" if report["scheduled"] else f"started at {run['started_at']}")
            text = (f"[AgentWatch] {rule['name']}: cron {report['name']!r} ({report['schedule'] or 'no schedule'}) "
                    f"{run['status']} its run {which}")
            details = {"cron": report["name"], "schedule": report["schedule"], "expected_at": run["expected_at"],
                       "status": run["status"], "started_at": run["started_at"], "trace_id": run["trace_id"]}
            fired.append(self._fire(rule, 1.0, 0, now, text=text, extra=details))
        return fired

    def _fire(self, rule: dict[str, Any], value: float, window: int, now: int, *, text: str | None = None,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
        text = text or (f"[AgentWatch] {rule['name']}: {rule['condition']} is {value:.4g}, above the threshold "
                        f"{rule['threshold']:g} (last {window} s)")
        event = {"ts_ns": now, "rule_id": rule["id"], "rule_name": rule["name"], "condition": rule["condition"],
                 "threshold": rule["threshold"], "value": value, "message": text, "channel": rule["action_type"],
                 "delivery_status": "pending", "details": {"window_seconds": window, **(extra or {})}}
        event["id"] = self._store.add_alert_event(event)
        details = {"rule": rule["name"], "condition": rule["condition"], "value": value,
                   "threshold": rule["threshold"], "window_seconds": window, **(extra or {})}
        _, status, error = self._deliver(event["id"], rule, text, details, 0, time.monotonic())
        event["delivery_status"], event["delivery_error"] = status, error
        return event

    def _send(self, rule: dict[str, Any], text: str, details: dict[str, Any]) -> None:
        if rule["action_type"] == "webhook":
            if not rule.get("webhook_url"):
                raise _ConfigError("rule has no webhook_url")
            try:
                url = validate_webhook_url(rule["webhook_url"])
            except ValueError as error:  # a rule stored before URLs were checked strictly
                raise _ConfigError(str(error)) from None
            send_webhook(url, text, details, self._settings.webhook_timeout_seconds)
        elif rule["action_type"] == "email":
            recipient = rule.get("email") or self._settings.alert_email_to
            if not recipient:
                raise _ConfigError("rule has no email address and ALERT_EMAIL is not set")
            if not self._settings.smtp_host:
                raise _ConfigError("email alerts need SMTP_HOST")
            send_email(self._settings, recipient, f"AgentWatch alert: {rule['name']}", text)

    def _deliver(self, event_id: int, rule: dict[str, Any], text: str, details: dict[str, Any], attempt: int,
                 now: float) -> tuple[int, str, str | None]:
        """One delivery attempt, isolated: whatever it raises is recorded on the alert, never propagated."""
        status, error = "sent", None
        try:
            self._send(rule, text, details)
        except Exception as failure:
            error = f"{type(failure).__name__}: {failure}" if not isinstance(failure, DeliveryError) else str(failure)
            attempt += 1
            if isinstance(failure, _ConfigError) or attempt > len(RETRY_DELAYS):
                status = "failed"
            else:
                status = "retrying"
                error = f"attempt {attempt} of {len(RETRY_DELAYS) + 1} failed: {error}"
                self._retries.append(_Retry(event_id, rule, text, details, attempt, now + RETRY_DELAYS[attempt - 1]))
            logger.warning("alert %r not delivered (%s): %s", rule["name"], status, error)
        self._store.update_alert_delivery(event_id, status, error)
        return event_id, status, error
