"""Cron monitoring: "did my nightly job actually run?".

A cron is known by its name, a cron expression (UTC) and a grace period. The collector learns them from
the SDK's cron spans (``agentwatch.cron(name, schedule=..., grace_seconds=...)``; the latest span wins) or
from ``PUT /api/crons/{name}`` before the job ever runs. From the first sighting (or registration) on, every
time the expression fires is an *expected run*, and each gets a status from the cron spans that started
between it and the next expected run:

=======  ===========================================================================
ok       a run started within [expected, expected + grace] and succeeded
failed   a run started within [expected, expected + grace] and failed
running  a run started within [expected, expected + grace] and has not ended yet
late     the first run started after the grace period, before the next expected run
missed   no run had started by expected + grace (it turns ``late`` if one starts later)
pending  expected + grace is still ahead
=======  ===========================================================================

A run is known by its cron span, exported when it ends, or before that by the ``cron_start`` marker the SDK
sends as the job starts (so a job that runs longer than its grace is not missed).

A cron whose runs carry no schedule (``agentwatch.cron("nightly-cleanup")``, as the SDK spec writes it) is
registered *unscheduled*: nothing is expected of it, so its history is its runs themselves (ok, failed, or
running while only a start marker is known), newest first, with no next expected run, no late or missed run and
so no ``cron_missed`` alert (``cron_failed`` reports its failed runs). The first schedule, from a span or a PUT,
makes it a scheduled cron whose runs are expected from then on; a run without one never unschedules it.

The stores only persist registrations and answer "cron spans of this name in this window"; everything
about schedules and statuses is computed here.
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
from collections.abc import Sequence
from typing import Any, Final

from croniter import croniter

from ._model import NAME_MAX, SpanRecord
from ._store import Store
from ._time import iso

__all__ = ["DEFAULT_GRACE_SECONDS", "HISTORY_LIMIT", "CRON_CONDITIONS", "RUN_KINDS", "valid_schedule", "expected_runs",
           "next_expected", "classify", "runs_of", "cron_report", "learn_from_spans", "alert_reports", "alerts_due"]

logger = logging.getLogger("agentwatch.server")

#: Grace when neither the span nor the registration gives one.
DEFAULT_GRACE_SECONDS: Final = 300
#: Expected runs looked at per cron (history shown, counts, alerts).
HISTORY_LIMIT: Final = 50
CRON_CONDITIONS: Final = ("cron_missed", "cron_failed")
#: Span kinds of a run: the finished run, and the SDK's marker sent when it starts.
RUN_KINDS: Final = ("cron", "cron_start")
#: Alert rules only report runs decided within this window: a new rule does not replay months of history.
ALERT_LOOKBACK_NS: Final = 24 * 3600 * 1_000_000_000
_NS: Final = 1_000_000_000


def valid_schedule(expression: object) -> bool:
    """A five-field cron expression (or an alias such as ``@daily``) croniter accepts and that ever fires
    (``0 0 30 2 *`` never does; seconds fields are refused)."""
    if not isinstance(expression, str) or len(expression) > 200:
        return False
    fields = expression.split()
    if not (len(fields) == 5 or (len(fields) == 1 and fields[0].startswith("@"))):
        return False
    return _parses(expression)


@functools.lru_cache(maxsize=512)
def _parses(expression: str) -> bool:
    # Parsing costs about 0.4 ms and every run of a job sends the same expression.
    try:
        if not croniter.is_valid(expression):
            return False
        walker = croniter(expression, _dt.datetime(2024, 1, 1, tzinfo=_dt.UTC))
        walker.get_next(float)
        walker.get_prev(float)
        return True
    except Exception:
        return False


def _dt_of(ns: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ns / _NS, tz=_dt.UTC)


def expected_runs(schedule: str, since_ns: int, now_ns: int, limit: int = HISTORY_LIMIT) -> list[int]:
    """The latest ``limit`` times in [since_ns, now_ns] the schedule fires, oldest first (ns, UTC)."""
    # Walking back from now costs ``limit`` steps whatever the age of the registration.
    walker = croniter(schedule, _dt_of(now_ns + _NS))
    runs: list[int] = []
    while len(runs) < limit:
        at = round(walker.get_prev(float)) * _NS
        if at < since_ns:
            break
        if at <= now_ns:
            runs.append(at)
    runs.reverse()
    return runs


def _previous(schedule: str, at_ns: int) -> int:
    """The schedule's last time at or before ``at_ns`` (croniter's get_prev is strictly before its start)."""
    return round(croniter(schedule, _dt_of(at_ns + 2_000)).get_prev(float)) * _NS


def next_expected(schedule: str, now_ns: int) -> int:
    return round(croniter(schedule, _dt_of(now_ns)).get_next(float)) * _NS


def _failed(span: dict[str, Any]) -> bool:
    success = (span.get("attributes") or {}).get("cron.success")
    return success is False or span.get("status") == "error"


def _duration_ms(span: dict[str, Any]) -> float:
    duration = (span.get("attributes") or {}).get("cron.duration_ms")
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        return float(duration)
    return (int(span["end_ns"]) - int(span["start_ns"])) / 1e6


def classify(expected: Sequence[int], following: int, spans: Sequence[dict[str, Any]], grace_ns: int,
             now_ns: int) -> list[dict[str, Any]]:
    """One entry per expected run (same order): status and the run that decided it.

    ``following`` is the expected run after the last one; ``spans`` are cron spans with ``start_ns``,
    ``end_ns``, ``status`` and ``attributes``, in any order. A run belongs to the expected run before it, so
    a span is never counted twice.
    """
    ordered = sorted(spans, key=lambda span: int(span["start_ns"]))
    entries: list[dict[str, Any]] = []
    for index, at in enumerate(expected):
        upper = expected[index + 1] if index + 1 < len(expected) else following
        in_slot = [span for span in ordered if at <= int(span["start_ns"]) < upper]
        # The finished run decides; a start marker alone means the run is still going.
        run = next((span for span in in_slot if span.get("kind", "cron") == "cron"), None)
        running = run is None and bool(in_slot)
        run = run or (in_slot[0] if in_slot else None)
        entry: dict[str, Any] = {"expected_unix_nano": at, "expected_at": iso(at), "start_unix_nano": None,
                                 "started_at": None, **_ended(run, running), "duration_ms": None, "trace_id": None}
        if run is not None:
            start = int(run["start_ns"])
            entry.update(start_unix_nano=start, started_at=iso(start),
                         duration_ms=None if running else _duration_ms(run), trace_id=run.get("trace_id"))
            if start <= at + grace_ns:
                entry["status"] = "running" if running else "failed" if _failed(run) else "ok"
            else:
                entry["status"] = "late"
        else:
            entry["status"] = "missed" if now_ns > at + grace_ns else "pending"
        entries.append(entry)
    return entries


def _ended(run: dict[str, Any] | None, running: bool) -> dict[str, Any]:
    end = None if run is None or running else int(run["end_ns"])
    return {"end_unix_nano": end, "ended_at": None if end is None else iso(end)}


def runs_of(spans: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The latest ``limit`` runs among cron spans and start markers, newest first: one entry per finished run
    (ok or failed) and per start marker no finished run of its trace holds (running)."""
    finished = [span for span in spans if span.get("kind", "cron") == "cron"]
    runs = list(finished)
    for marker in spans:
        start = int(marker["start_ns"])
        if marker.get("kind") == "cron_start" and not any(
                run.get("trace_id") == marker.get("trace_id") and int(run["start_ns"]) <= start <= int(run["end_ns"])
                for run in finished):
            runs.append(marker)
    runs.sort(key=lambda span: int(span["start_ns"]), reverse=True)
    entries = []
    for run in runs[:limit]:
        start, running = int(run["start_ns"]), run.get("kind") == "cron_start"
        entries.append({"expected_unix_nano": None, "expected_at": None, "start_unix_nano": start,
                        "started_at": iso(start), **_ended(run, running),
                        "duration_ms": None if running else _duration_ms(run), "trace_id": run.get("trace_id"),
                        "status": "running" if running else "failed" if _failed(run) else "ok"})
    return entries


def _unscheduled_report(store: Store, cron: dict[str, Any], since: int, limit: int) -> dict[str, Any]:
    """A cron without a schedule: its latest runs as they happened; nothing expected, so nothing late or missed."""
    # Twice the runs: a finished run may come with its start marker; no upper bound, for a job host's clock ahead.
    spans = store.cron_spans(cron["name"], since, 2**63 - 1, 2 * limit, newest=True)
    history = runs_of(spans, limit)
    last = history[0] if history else None
    return {"name": cron["name"], "scheduled": False, "schedule": None, "grace_seconds": None,
            "registered_at": iso(int(cron["since_ns"])), "updated_at": iso(int(cron["updated_ns"])),
            "last_run": None if last is None else {key: last[key] for key in _LAST_RUN_KEYS},
            "next_expected_at": None, "next_expected_unix_nano": None,
            "counts": {"ok": sum(entry["status"] == "ok" for entry in history),
                       "failed": sum(entry["status"] == "failed" for entry in history), "late": None, "missed": None},
            "history": history}


_LAST_RUN_KEYS: Final = ("status", "expected_at", "started_at", "ended_at", "duration_ms")


def cron_report(store: Store, cron: dict[str, Any], now_ns: int, limit: int = HISTORY_LIMIT,
                not_before_ns: int | None = None) -> dict[str, Any]:
    """A registered cron with its expected runs (newest first), last decided run, next run and counts;
    ``not_before_ns`` leaves out expected runs before it (the alert engine only needs recent ones). An
    unscheduled cron: its latest ``limit`` runs, newest first (``scheduled`` False, schedule fields None)."""
    schedule, grace = cron["schedule"], int(cron["grace_seconds"])
    since = max(int(cron["since_ns"]), not_before_ns if not_before_ns is not None else int(cron["since_ns"]))
    if schedule is None:
        return _unscheduled_report(store, cron, since, limit)
    expected = expected_runs(schedule, since, now_ns, limit)
    following = next_expected(schedule, now_ns)
    spans = store.cron_spans(cron["name"], expected[0], following) if expected else []
    history = classify(expected, following, spans, grace * _NS, now_ns)
    counts = {status: 0 for status in ("ok", "failed", "late", "missed")}
    for entry in history:
        if entry["status"] in counts:
            counts[entry["status"]] += 1
    decided = [entry for entry in history if entry["status"] != "pending"]
    last = decided[-1] if decided else None
    history.reverse()
    return {"name": cron["name"], "scheduled": True, "schedule": schedule, "grace_seconds": grace,
            "registered_at": iso(int(cron["since_ns"])), "updated_at": iso(int(cron["updated_ns"])),
            "last_run": None if last is None else {key: last[key] for key in _LAST_RUN_KEYS},
            "next_expected_at": iso(following), "next_expected_unix_nano": following,
            "counts": counts, "history": history}


def learn_from_spans(store: Store, records: Sequence[SpanRecord]) -> int:
    """Register the schedule of every cron span that carries one (the latest span of a name wins), and every
    cron seen without one as unscheduled (a no-op for a cron known already with a schedule)."""
    latest: dict[str, tuple[SpanRecord, str, int]] = {}
    earliest: dict[str, int] = {}
    unscheduled: dict[str, tuple[int, int]] = {}  # name: (first start, last start)
    for record in records:
        if record.kind not in RUN_KINDS:
            continue
        attributes = record.attributes or {}
        name = attributes.get("cron.name")
        # A cron.name longer than a span's name could be would name a cron no route can reach: the span's name then.
        name = name if isinstance(name, str) and 0 < len(name) <= NAME_MAX else record.name
        schedule = attributes.get("cron.schedule")
        if schedule is not None and not valid_schedule(schedule):
            logger.warning("cron %r: ignoring invalid schedule %r", record.name, schedule)
            schedule = None  # its runs are still shown
        if schedule is None:
            first, last = unscheduled.get(name, (record.start_ns, record.start_ns))
            unscheduled[name] = (min(first, record.start_ns), max(last, record.start_ns))
            continue
        grace = attributes.get("cron.grace_seconds")
        grace_s = int(grace) if isinstance(grace, (int, float)) and not isinstance(grace, bool) and 0 <= grace \
            <= 366 * 86400 else DEFAULT_GRACE_SECONDS
        known = latest.get(name)
        if known is None or record.start_ns >= known[0].start_ns:
            latest[name] = (record, schedule, grace_s)
        # First sighting: that run was expected at most ``grace`` before it started, and not before the schedule's
        # last time at or before its start (a grace longer than the period must not invent earlier missed runs).
        since = max(record.start_ns - grace_s * _NS, _previous(schedule, record.start_ns))
        earliest[name] = min(earliest.get(name, since), since)
    registrations: list[tuple[str, str | None, int, int, int]] = [
        (name, schedule, grace_s, record.start_ns, earliest[name])
        for name, (record, schedule, grace_s) in latest.items()]
    # A name with a schedule in this batch is registered by it; its runs without one need nothing more.
    registrations += [(name, None, DEFAULT_GRACE_SECONDS, last, first)
                      for name, (first, last) in unscheduled.items() if name not in latest]
    for name, maybe_schedule, grace_s, seen, since in registrations:
        try:
            if maybe_schedule is None and store.get_cron(name) is None:
                since = _first_run(store, name, since)
            store.put_cron(name, maybe_schedule, grace_s, seen_ns=seen, since_ns=since)
        except Exception:
            # The spans are stored already: a failed registration must not fail (and so repeat) the ingest.
            logger.exception("cron %r: not registered", name)
    return len(registrations)


def _first_run(store: Store, name: str, since_ns: int) -> int:
    """A cron first seen without a schedule shows the runs of it stored already: those a collector that did not
    register unscheduled crons kept, or those of a cron forgotten by DELETE (nothing was expected of them, so
    reaching back invents no missed run)."""
    earlier = store.cron_spans(name, 0, since_ns, 1)
    return int(earlier[0]["start_ns"]) if earlier else since_ns


def alert_reports(store: Store, now_ns: int) -> list[dict[str, Any]]:
    """Every cron's expected runs of the alert window only: what the alert rules look at."""
    return [cron_report(store, cron, now_ns, not_before_ns=now_ns - ALERT_LOOKBACK_NS - _grace_ns(cron))
            for cron in store.list_crons()]


def _grace_ns(cron: dict[str, Any]) -> int:
    return int(cron["grace_seconds"]) * _NS if cron["schedule"] is not None else 0


def alerts_due(store: Store, rule: dict[str, Any], reports: Sequence[dict[str, Any]],
               now_ns: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(cron report, run) pairs this rule must report now: each missed or failed run once per rule (claimed in
    the store, so neither a later evaluation nor another server process reports it again). An unscheduled cron
    has no missed run; its failed runs are known by their start."""
    wanted = "missed" if rule["condition"] == "cron_missed" else "failed"
    due: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for report in reports:
        for entry in reversed(report["history"]):
            if entry["status"] != wanted:
                continue
            if report["scheduled"]:
                key = int(entry["expected_unix_nano"])
                decided_at = key + report["grace_seconds"] * _NS
            else:
                key, decided_at = int(entry["start_unix_nano"]), int(entry["end_unix_nano"])
            if decided_at < now_ns - ALERT_LOOKBACK_NS:
                continue
            if store.claim_cron_alert(int(rule["id"]), report["name"], key):
                due.append((report, entry))
    return due
