"""Cron monitoring: schedules learned from cron spans or registered by PUT, expected runs marked ok / failed /
late / missed, missed and failed runs alerted once through a real webhook, and a real SDK program."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from agentwatch.server import ServerHandle, Settings, start_background
from agentwatch.server._crons import classify, cron_report, runs_of
from tests.server.aw_helpers import SpanFactory

S = 1_000_000_000
EVERY_5 = "*/5 * * * *"


def cron_span(make_span: SpanFactory, name: str, start: int, *, ok: bool = True, schedule: str | None = EVERY_5,
              grace: int | None = 60) -> dict[str, Any]:
    """A span as ``agentwatch.cron(name, schedule=..., grace_seconds=...)`` sends it."""
    attributes: dict[str, Any] = {"cron.name": name, "cron.duration_ms": 2000.0, "cron.success": ok}
    if schedule is not None:
        attributes["cron.schedule"] = schedule
    if grace is not None:
        attributes["cron.grace_seconds"] = grace
    return make_span(name=name, kind="cron", status="ok" if ok else "error", start=start, duration_ms=2000.0,
                     model=None, provider=None, input_tokens=0, output_tokens=0, cost_usd=0.0, agent_id=None,
                     agent_name=None, attributes=attributes)




def test_classify_with_explicit_times() -> None:
    expected = [1000 * S, 1300 * S, 1600 * S]
    spans = [{"start_ns": 1010 * S, "end_ns": 1012 * S, "status": "ok", "attributes": {"cron.success": True}},
             {"start_ns": 1450 * S, "end_ns": 1452 * S, "status": "ok", "attributes": {}}]
    statuses = [e["status"] for e in classify(expected, 1900 * S, spans, 60 * S, 1650 * S)]
    # The second run started 150 s after its time (grace 60 s): late; the third is still within its grace.
    assert statuses == ["ok", "late", "pending"]
    statuses = [e["status"] for e in classify(expected, 1900 * S, spans, 60 * S, 1661 * S)]
    assert statuses == ["ok", "late", "missed"]
    # A start marker alone: the run is going on; once its cron span arrives, that decides.
    marker = {"start_ns": 1605 * S, "end_ns": 1605 * S, "status": "ok", "attributes": {}, "kind": "cron_start"}
    statuses = [e["status"] for e in classify(expected, 1900 * S, [*spans, marker], 60 * S, 1700 * S)]
    assert statuses == ["ok", "late", "running"]
    finished = {**marker, "end_ns": 1800 * S, "kind": "cron", "attributes": {"cron.success": False}}
    statuses = [e["status"] for e in classify(expected, 1900 * S, [*spans, marker, finished], 60 * S, 1801 * S)]
    assert statuses == ["ok", "late", "failed"]


def _five_decided_runs() -> list[int]:
    """Five consecutive */5 times whose grace (60 s) is over and after which no run is decided yet."""
    now = time.time()
    latest = int(now // 300) * 300
    if 50 < now - latest < 70:  # about to decide the latest run: wait, so the answer cannot change under us
        time.sleep(71 - (now - latest))
        now = time.time()
    last = latest if now - latest > 60 else latest - 300
    return [(last - 300 * (4 - index)) * S for index in range(5)]


def test_statuses_from_spans(client: TestClient, make_span: SpanFactory) -> None:
    e1, e2, e3, e4, e5 = _five_decided_runs()
    spans = [cron_span(make_span, "sync", e1 + 10 * S), cron_span(make_span, "sync", e2 + 5 * S),
             cron_span(make_span, "sync", e3 + 20 * S, ok=False),
             cron_span(make_span, "sync", e4 + 120 * S)]  # after the 60 s grace, before the next run: late
    assert client.post("/api/ingest", json=spans).json()["accepted"] == 4  # e5: skipped
    detail = client.get("/api/crons/sync").json()
    assert detail["schedule"] == EVERY_5 and detail["grace_seconds"] == 60
    by_time = {run["expected_unix_nano"]: run for run in detail["history"]}
    assert [by_time[at]["status"] for at in (e1, e2, e3, e4, e5)] == ["ok", "ok", "failed", "late", "missed"]
    # Expected runs start at the first sighting: nothing before e1 was expected.
    assert min(by_time) == e1
    assert by_time[e4]["started_at"] is not None and by_time[e5]["started_at"] is None
    assert by_time[e2]["duration_ms"] == 2000.0 and by_time[e1]["trace_id"] == spans[0]["trace_id"]
    listed = client.get("/api/crons").json()["crons"]
    assert [cron["name"] for cron in listed] == ["sync"]
    counts = listed[0]["counts"]
    assert (counts["ok"], counts["failed"], counts["late"]) == (2, 1, 1) and counts["missed"] >= 1
    assert listed[0]["last_run"]["status"] == "missed"
    assert listed[0]["next_expected_unix_nano"] > time.time_ns()
    # A newer span with another schedule wins; an older one arriving late does not take it back.
    client.post("/api/ingest", json=cron_span(make_span, "sync", e5 + 30 * S, schedule="0 * * * *", grace=120))
    client.post("/api/ingest", json=cron_span(make_span, "sync", e1 - 60 * S, schedule="*/2 * * * *"))
    again = client.get("/api/crons/sync").json()
    assert (again["schedule"], again["grace_seconds"]) == ("0 * * * *", 120)


def test_register_update_delete(client: TestClient, make_span: SpanFactory) -> None:
    for bad in ("not a cron", "* * * * * *", "61 * * * *", "", "0 0 30 2 *", "@reboot"):
        assert client.put("/api/crons/backup", json={"schedule": bad}).status_code == 422, bad
    assert client.put("/api/crons/backup", json={"schedule": "0 3 * * *", "grace_seconds": -1}).status_code == 422
    assert client.get("/api/crons/backup").status_code == 404
    created = client.put("/api/crons/backup", json={"schedule": "0 3 * * *", "grace_seconds": 600})
    assert created.status_code == 200
    body = created.json()
    assert body["history"] == [] and body["next_expected_at"].endswith("T03:00:00.000Z")
    assert client.put("/api/crons/backup", json={"schedule": "@daily"}).json()["next_expected_at"].endswith(
        "T00:00:00.000Z")
    assert client.put("/api/crons/backup", json={"schedule": "30 4 * * 1"}).json()["schedule"] == "30 4 * * 1"
    assert [c["name"] for c in client.get("/api/crons").json()["crons"]] == ["backup"]
    assert client.put("/api/crons/etl/nightly v2", json={"schedule": "0 3 * * *"}).status_code == 200
    assert client.get("/api/crons/etl/nightly v2").json()["name"] == "etl/nightly v2"
    assert client.delete("/api/crons/etl/nightly v2").status_code == 200
    assert client.delete("/api/crons/backup").json() == {"deleted": "backup"}
    assert client.get("/api/crons/backup").status_code == 404
    assert client.delete("/api/crons/backup").status_code == 404
    assert client.get("/api/crons").json()["crons"] == []


def test_missed_and_failed_runs_alert_once(client: TestClient, make_span: SpanFactory,
                                          webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = webhook
    engine = client.app.state.agentwatch.alerts
    registered = client.put("/api/crons/backup", json={"schedule": EVERY_5, "grace_seconds": 60}).json()
    e1 = registered["next_expected_unix_nano"]
    e2 = e1 + 300 * S
    for condition in ("cron_missed", "cron_failed"):  # no threshold: these fire per run
        response = client.post("/api/alerts", json={"name": condition, "condition": condition,
                                                    "action_type": "webhook", "webhook_url": url})
        assert response.status_code == 201, response.text
    refused = client.post("/api/alerts", json={"name": "x", "condition": "cost_per_hour", "action_type": "webhook",
                                               "webhook_url": url})
    assert refused.status_code == 422 and "threshold is required" in refused.text
    assert engine.evaluate(e1 + 30 * S) == []  # still within the grace period
    fired = engine.evaluate(e1 + 90 * S)  # the job never started: missed, found by the collector alone
    assert [(event["condition"], event["delivery_status"]) for event in fired] == [("cron_missed", "sent")]
    assert engine.evaluate(e1 + 120 * S) == [] and engine.evaluate(e1 + 200 * S) == []
    assert len(received) == 1
    assert received[0]["agentwatch"]["cron"] == "backup" and received[0]["agentwatch"]["status"] == "missed"
    assert "backup" in received[0]["text"] and "missed" in received[0]["text"]
    # The next run starts on time and fails: cron_failed fires once, cron_missed not at all.
    client.post("/api/ingest", json=cron_span(make_span, "backup", e2 + 5 * S, ok=False, schedule=None, grace=None))
    fired = engine.evaluate(e2 + 90 * S)
    assert [event["condition"] for event in fired] == ["cron_failed"]
    assert engine.evaluate(e2 + 100 * S) == []
    assert [message["agentwatch"]["status"] for message in received] == ["missed", "failed"]
    history = client.get("/api/alerts/history").json()["history"]
    assert sorted(h["condition"] for h in history) == ["cron_failed", "cron_missed"]


def test_a_long_run_is_not_missed(client: TestClient, make_span: SpanFactory,
                                  webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = webhook
    engine = client.app.state.agentwatch.alerts
    store = client.app.state.agentwatch.store
    registered = client.put("/api/crons/long", json={"schedule": EVERY_5, "grace_seconds": 60}).json()
    e1 = registered["next_expected_unix_nano"]
    client.post("/api/alerts", json={"name": "missed", "condition": "cron_missed", "action_type": "webhook",
                                     "webhook_url": url})
    marker = cron_span(make_span, "long", e1 + 5 * S)
    marker.update(kind="cron_start", end_time_unix_nano=marker["start_time_unix_nano"])
    client.post("/api/ingest", json=marker)
    assert engine.evaluate(e1 + 120 * S) == [] and received == []
    cron = store.get_cron("long")
    assert cron_report(store, cron, e1 + 120 * S)["history"][0]["status"] == "running"
    done = cron_span(make_span, "long", e1 + 5 * S, schedule=None, grace=None)
    done["end_time_unix_nano"] = e1 + 250 * S
    client.post("/api/ingest", json=done)
    assert cron_report(store, cron, e1 + 260 * S)["history"][0]["status"] == "ok"
    assert engine.evaluate(e1 + 260 * S) == [] and received == []


_PROGRAM = """
import sys
import agentwatch

agentwatch.init(proxy_url=sys.argv[1], flush_interval=0.05, auto_instrument=False)

with agentwatch.cron("nightly-report", schedule="0 3 * * *", grace_seconds=600):
    pass

@agentwatch.cron("cleanup", schedule="*/10 * * * *")
def cleanup():
    raise RuntimeError("disk full")

try:
    cleanup()
except RuntimeError:
    pass
agentwatch.shutdown()
"""


def test_sdk_program_reports_its_schedule(server: ServerHandle) -> None:
    program = textwrap.dedent(_PROGRAM)
    done = subprocess.run([sys.executable, "-c", program, f"{server.url}/api/ingest"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with urllib.request.urlopen(f"{server.url}/api/crons", timeout=10) as response:
        crons = {cron["name"]: cron for cron in json.load(response)["crons"]}
    assert set(crons) == {"nightly-report", "cleanup"}
    nightly = crons["nightly-report"]
    assert (nightly["schedule"], nightly["grace_seconds"]) == ("0 3 * * *", 600)
    assert nightly["next_expected_at"].endswith("T03:00:00.000Z")
    assert (crons["cleanup"]["schedule"], crons["cleanup"]["grace_seconds"]) == ("*/10 * * * *", 300)
    with urllib.request.urlopen(f"{server.url}/api/traces?limit=10", timeout=10) as response:
        traces = json.load(response)["traces"]
    statuses = {trace["name"]: trace["status"] for trace in traces if trace["name"] in crons}
    assert statuses == {"nightly-report": "ok", "cleanup": "error"}  # the run itself: cron.success / error


def _post(server: ServerHandle, path: str, body: Any, status: int) -> None:
    request = urllib.request.Request(f"{server.url}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == status


def test_collector_alone_alerts_missed_runs(tmp_path: Path, signing_key: Path, make_span: SpanFactory,
                                           webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = webhook
    settings = Settings(db_path=tmp_path / "cron.db", signing_key_path=signing_key, alert_interval_seconds=0.2,
                        alert_min_interval_seconds=0.05)
    handle = start_background(settings=settings, port=0)
    try:
        now = time.time_ns()
        first = (now // (300 * S)) * 300 * S - 20 * 60 * S
        rule = {"name": "hook", "condition": "cron_missed", "threshold": 0, "action_type": "webhook",
                "webhook_url": url}
        _post(handle, "/api/alerts", rule, 201)
        _post(handle, "/api/ingest", [cron_span(make_span, "etl", first + 5 * S)], 202)
        deadline = time.monotonic() + 15
        while len(received) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        # 20 minutes after one run of a */5 job: three runs missed (the fourth is within its grace or missed).
        assert len(received) >= 3 and {m["agentwatch"]["status"] for m in received} == {"missed"}
        time.sleep(0.5)  # the round that found them has delivered all
        settled = len(received)
        time.sleep(1.0)  # several more evaluation rounds: nothing is reported twice
        expected = {m["agentwatch"]["expected_at"] for m in received}
        assert len(received) == settled == len(expected)
    finally:
        handle.stop()


def test_retention_does_not_turn_purged_runs_into_missed(client: TestClient, make_span: SpanFactory) -> None:
    e1, e2, e3, e4, e5 = _five_decided_runs()
    client.post("/api/ingest", json=[cron_span(make_span, "sync", at + 5 * S) for at in (e1, e2, e3, e4, e5)])
    before = client.get("/api/crons/sync").json()["counts"]
    assert before["ok"] == 5
    removed = client.app.state.agentwatch.store.purge(e3)  # the spans of e1 and e2 are gone
    assert removed["spans"] == 2
    after = client.get("/api/crons/sync").json()
    assert after["counts"]["ok"] == 3 and after["counts"]["missed"] == before["missed"]
    assert min(run["expected_unix_nano"] for run in after["history"]) == e3


def test_a_grace_longer_than_the_period_invents_no_earlier_runs(client: TestClient, make_span: SpanFactory) -> None:
    # Every minute, grace 10 minutes (the SDK's default is 5): the first run alone is not preceded by misses.
    now = time.time_ns()
    start = (now // (60 * S)) * 60 * S - 3 * 60 * S + 5 * S
    client.post("/api/ingest", json=cron_span(make_span, "minutely", start, schedule="* * * * *", grace=600))
    history = client.get("/api/crons/minutely").json()["history"]
    assert history[-1]["expected_unix_nano"] == start - 5 * S and history[-1]["status"] == "ok"
    # Two later minutes passed without a run, but their grace is not over yet.
    assert {run["status"] for run in history[:-1]} <= {"pending"}


# -- crons without a schedule ------------------------------------------------------------------------------------

_UNSCHEDULED_PROGRAM = """
import sys
import time
import agentwatch

agentwatch.init(proxy_url=sys.argv[1], flush_interval=0.05, auto_instrument=False)

with agentwatch.cron("nightly-cleanup") as c:  # the SDK spec's form: no schedule
    time.sleep(0.05)

@agentwatch.cron("nightly-cleanup")
def cleanup():
    raise RuntimeError("disk full")

try:
    cleanup()
except RuntimeError:
    pass
agentwatch.shutdown()
"""


def _get(handle: ServerHandle, path: str) -> Any:
    with urllib.request.urlopen(f"{handle.url}{path}", timeout=10) as response:
        return json.load(response)


def test_sdk_program_without_a_schedule_shows_its_runs(collector: ServerHandle) -> None:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_UNSCHEDULED_PROGRAM),
                           f"{collector.url}/api/ingest"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    crons = _get(collector, "/api/crons")["crons"]
    assert [cron["name"] for cron in crons] == ["nightly-cleanup"]
    detail = _get(collector, "/api/crons/nightly-cleanup")
    assert crons[0] == detail  # two runs: the list's short strip is the whole history
    assert (detail["scheduled"], detail["schedule"], detail["grace_seconds"]) == (False, None, None)
    assert (detail["next_expected_at"], detail["next_expected_unix_nano"]) == (None, None)
    assert detail["counts"] == {"ok": 1, "failed": 1, "late": None, "missed": None}
    failed, ok = detail["history"]  # newest first
    assert (failed["status"], ok["status"]) == ("failed", "ok")
    assert detail["last_run"]["status"] == "failed" and detail["last_run"]["started_at"] == failed["started_at"]
    assert ok["duration_ms"] >= 50 and ok["end_unix_nano"] > ok["start_unix_nano"]
    assert ok["started_at"] < ok["ended_at"] <= failed["started_at"]
    assert ok["expected_at"] is None and failed["trace_id"] != ok["trace_id"]
    traces = {trace["trace_id"]: trace["status"] for trace in _get(collector, "/api/traces?limit=10")["traces"]}
    assert (traces[ok["trace_id"]], traces[failed["trace_id"]]) == ("ok", "error")


_RUNNING_PROGRAM = """
import sys
import agentwatch

agentwatch.init(proxy_url=sys.argv[1], auto_instrument=False)
with agentwatch.cron("long-import"):  # no schedule
    agentwatch.flush()
    print("started", flush=True)
    sys.stdin.readline()  # runs until the test has looked
agentwatch.shutdown()
"""


def test_an_unscheduled_sdk_run_in_progress_is_listed_as_running(collector: ServerHandle) -> None:
    """Found 2026-12-06: the SDK sent its start marker only for a cron with a schedule, so a job without one (the SDK
    spec's form) appeared only once its run ended."""
    program = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_RUNNING_PROGRAM), f"{collector.url}/api/ingest"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert program.stdout is not None and program.stdout.readline().strip() == "started"
        detail = _get(collector, "/api/crons/long-import")
        assert detail["scheduled"] is False
        assert [run["status"] for run in detail["history"]] == ["running"]
    finally:
        assert program.stdin is not None
        program.stdin.write("\n")
        program.stdin.close()
        program.wait(timeout=60)
    assert program.returncode == 0
    assert [run["status"] for run in _get(collector, "/api/crons/long-import")["history"]] == ["ok"]


def test_a_schedule_arriving_later_makes_it_a_scheduled_cron(client: TestClient, make_span: SpanFactory) -> None:
    e1, e2, e3, e4, e5 = _five_decided_runs()
    # Runs without a schedule at odd times (a run whose cron.schedule is invalid is one of them).
    unscheduled = [cron_span(make_span, "sync", e1 + 77 * S, schedule=None, grace=None),
                   cron_span(make_span, "sync", e2 + 140 * S, ok=False, schedule=None, grace=None),
                   cron_span(make_span, "sync", e3 + 200 * S, schedule="every night")]
    assert client.post("/api/ingest", json=unscheduled[1:]).json()["accepted"] == 2
    client.post("/api/ingest", json=unscheduled[0])  # an older run arriving late is still in the history
    detail = client.get("/api/crons/sync").json()
    assert (detail["scheduled"], detail["schedule"], detail["next_expected_at"]) == (False, None, None)
    assert [run["start_unix_nano"] for run in detail["history"]] == [e3 + 200 * S, e2 + 140 * S, e1 + 77 * S]
    assert detail["registered_at"] == detail["history"][-1]["started_at"]
    assert client.get("/api/crons/sync?runs=2").json()["counts"] == {"ok": 1, "failed": 1, "late": None,
                                                                        "missed": None}
    # A run with a schedule makes it scheduled from that run on: the runs before expected nothing, so nothing
    # between them and it is missed, whatever the order the spans arrive in.
    client.post("/api/ingest", json=cron_span(make_span, "sync", e4 + 5 * S))
    client.post("/api/ingest", json=cron_span(make_span, "sync", e5 + 5 * S, schedule=None, grace=None))
    scheduled = client.get("/api/crons/sync").json()
    assert (scheduled["scheduled"], scheduled["schedule"], scheduled["grace_seconds"]) == (True, EVERY_5, 60)
    decided = [(run["expected_unix_nano"], run["status"]) for run in scheduled["history"] if run["status"] != "pending"]
    assert decided == [(e5, "ok"), (e4, "ok")]  # the run after e5 may be pending
    assert scheduled["counts"]["missed"] == 0 and scheduled["next_expected_unix_nano"] > time.time_ns()
    # A run without a schedule never takes it back.
    client.post("/api/ingest", json=cron_span(make_span, "sync", e5 + 100 * S, schedule=None, grace=None))
    assert client.get("/api/crons/sync").json()["schedule"] == EVERY_5
    # PUT gives one to an unscheduled cron too, expecting runs from now on.
    client.post("/api/ingest", json=cron_span(make_span, "cleanup", e1 + 5 * S, schedule=None, grace=None))
    assert client.get("/api/crons/cleanup").json()["scheduled"] is False
    put = client.put("/api/crons/cleanup", json={"schedule": "* * * * *", "grace_seconds": 30}).json()
    assert (put["scheduled"], put["schedule"], put["history"]) == (True, "* * * * *", [])
    assert [cron["scheduled"] for cron in client.get("/api/crons").json()["crons"]] == [True, True]
    # Forgotten, it comes back unscheduled with its next run, and the runs it had.
    assert client.delete("/api/crons/cleanup").status_code == 200
    client.post("/api/ingest", json=cron_span(make_span, "cleanup", time.time_ns() - S, schedule=None, grace=None))
    again = client.get("/api/crons/cleanup").json()
    assert again["scheduled"] is False and len(again["history"]) == 2


def test_runs_stored_before_the_upgrade_are_shown(tmp_path: Path, signing_key: Path, make_span: SpanFactory) -> None:
    # A collector of the version before kept the runs of agentwatch.cron("nightly-cleanup") as spans and registered
    # nothing: that database, opened by this version, lists the job from its next run with its earlier runs.
    settings = Settings(db_path=tmp_path / "old.db", signing_key_path=signing_key, alert_interval_seconds=3600)
    now = time.time_ns()
    old_runs = [cron_span(make_span, "nightly-cleanup", now - days * 86400 * S, ok=days != 2, schedule=None,
                          grace=None) for days in (3, 2, 1)]
    handle = start_background(settings=settings, port=0)
    try:
        _post(handle, "/api/ingest", old_runs, 202)
    finally:
        handle.stop()
    with sqlite3.connect(settings.db_path) as connection:  # as the version before left it: no registration
        connection.execute("DELETE FROM crons")
    handle = start_background(settings=settings, port=0)
    try:
        assert _get(handle, "/api/crons")["crons"] == []
        _post(handle, "/api/ingest", [cron_span(make_span, "nightly-cleanup", now - S, schedule=None, grace=None)],
              202)
        detail = _get(handle, "/api/crons/nightly-cleanup")
        assert [run["trace_id"] for run in detail["history"][1:]] == [run["trace_id"] for run in old_runs[::-1]]
        assert [run["status"] for run in detail["history"]] == ["ok", "ok", "failed", "ok"]
        assert detail["counts"] == {"ok": 3, "failed": 1, "late": None, "missed": None}
        assert detail["registered_at"] == detail["history"][-1]["started_at"]
    finally:
        handle.stop()


def test_an_unscheduled_run_in_progress_is_running() -> None:
    # A start marker (the SDK sends one with a schedule; an OTLP exporter may without) alone: running; the run's
    # cron span, holding it in the same trace, replaces it.
    run = {"trace_id": "t1", "start_ns": 100 * S, "end_ns": 160 * S, "status": "ok", "attributes": {}, "kind": "cron"}
    marker = {**run, "end_ns": 100 * S, "kind": "cron_start"}
    other = {**marker, "trace_id": "t2", "start_ns": 200 * S, "end_ns": 200 * S}
    assert [entry["status"] for entry in runs_of([marker, other], 10)] == ["running", "running"]
    entries = runs_of([marker, run, other], 10)
    assert [(entry["trace_id"], entry["status"]) for entry in entries] == [("t2", "running"), ("t1", "ok")]
    assert entries[0]["duration_ms"] is None and entries[1]["duration_ms"] == 60_000.0
    assert [entry["trace_id"] for entry in runs_of([marker, run, other], 1)] == ["t2"]


def test_unscheduled_failed_runs_alert_once_and_are_never_missed(client: TestClient, make_span: SpanFactory,
                                                                  webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = webhook
    engine = client.app.state.agentwatch.alerts
    for condition in ("cron_missed", "cron_failed"):
        response = client.post("/api/alerts", json={"name": condition, "condition": condition,
                                                    "action_type": "webhook", "webhook_url": url})
        assert response.status_code == 201, response.text
    start = time.time_ns() - 3600 * S
    client.post("/api/ingest", json=[cron_span(make_span, "cleanup", start, schedule=None, grace=None),
                                     cron_span(make_span, "cleanup", start + 600 * S, ok=False, schedule=None,
                                               grace=None)])
    now = time.time_ns()
    fired = engine.evaluate(now)
    assert [event["condition"] for event in fired] == ["cron_failed"]
    assert engine.evaluate(now + 60 * S) == [] and engine.evaluate(now + 3 * 86400 * S) == []
    assert len(received) == 1 and received[0]["agentwatch"]["status"] == "failed"
    assert received[0]["agentwatch"]["schedule"] is None and received[0]["agentwatch"]["expected_at"] is None
    assert "'cleanup' (no schedule) failed its run started at" in received[0]["text"]


def test_a_cron_named_as_long_as_a_span_can_be_is_reachable(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-06: a cron's routes took names of at most 200 characters while its runs' spans may be named with
    2,000: such a cron was listed, and its history, PUT and DELETE answered 422. A ``cron.name`` attribute longer than
    a span's name could be registered a cron no route could name; the span's own name names it then."""
    long_name = "nightly-" + "x" * 1500
    run = cron_span(make_span, long_name, (int(time.time()) - 600) * S, schedule=None, grace=None)
    assert client.post("/api/ingest", json=run).status_code == 202
    assert client.get(f"/api/crons/{long_name}").json()["name"] == long_name
    assert client.put(f"/api/crons/{long_name}", json={"schedule": EVERY_5}).status_code == 200
    assert client.delete(f"/api/crons/{long_name}").status_code in (200, 204)
    huge = cron_span(make_span, "short-span-name", (int(time.time()) - 300) * S, schedule=None, grace=None)
    huge["attributes"]["cron.name"] = "y" * 5000
    assert client.post("/api/ingest", json=huge).status_code == 202
    assert "short-span-name" in {cron["name"] for cron in client.get("/api/crons").json()["crons"]}
