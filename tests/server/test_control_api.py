"""Operator control routes, role tokens and the audit trail, on both stores (the ``client`` fixture)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agentwatch.server import Settings
from agentwatch.server._auth import create_token
from tests.server.aw_helpers import SpanFactory

SECRET = "jwt-test-secret-0123456789abcdef0123456789"
KEY = "all-powers-key"


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path) -> Settings:
    return Settings(db_path=tmp_path / "agentwatch.db", signing_key_path=signing_key, api_key=KEY, jwt_secret=SECRET,
                    alert_interval_seconds=3600, alert_min_interval_seconds=3600)


def _bearer(role: str, name: str, secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(secret, role, name)}"}


CONTROL_WRITES = (
    ("POST", "/api/circuit-breaker/pause", {"seconds": 30}),
    ("POST", "/api/circuit-breaker/resume", {}),
    ("POST", "/api/circuit-breaker/override", {"additional_budget": 5.0, "scope": "agent", "scope_id": "r"}),
    ("POST", "/api/circuit-breaker/kill", {"reason": "runaway"}),
    ("PUT", "/api/limits/agent/r", {"budget_per_hour": 1.0}),
)


def test_control_routes_answer_401_without_credentials_and_403_for_viewer_or_ingest(client: TestClient) -> None:
    for method, path, body in CONTROL_WRITES:
        assert client.request(method, path, json=body).status_code == 401, path
        forged = client.request(method, path, json=body,
                                headers=_bearer("operator", "eve", "other-secret-0123456789abcdef0123456789"))
        assert forged.status_code == 401, path
        for role in ("viewer", "ingest"):
            refused = client.request(method, path, json=body, headers=_bearer(role, "bob"))
            assert refused.status_code == 403, (role, path)
            assert role in refused.json()["detail"]
    assert client.delete("/api/limits/agent/r").status_code == 401
    assert client.delete("/api/limits/agent/r", headers=_bearer("viewer", "bob")).status_code == 403
    # Nothing refused was recorded.
    assert client.get("/api/circuit-breaker/history", headers={"X-API-Key": KEY}).json()["operator_actions"] == []


def test_roles_read_control_and_ingest_as_documented(client: TestClient, make_span: SpanFactory) -> None:
    viewer, operator, ingest = _bearer("viewer", "vic"), _bearer("operator", "alice"), _bearer("ingest", "ci")
    for path in ("/api/traces", "/api/circuit-breaker/status", "/api/circuit-breaker/history", "/api/limits"):
        assert client.get(path, headers=viewer).status_code == 200, path
        assert client.get(path, headers=operator).status_code == 200, path
        assert client.get(path, headers=ingest).status_code == 403, path
    assert client.post("/api/ingest", json=make_span(), headers=ingest).status_code == 202
    assert client.post("/api/ingest", json=make_span(), headers=viewer).status_code == 403
    assert client.post("/api/ingest", json=make_span(), headers=operator).status_code == 403
    # The SDK's poll works with an ingest token; the dashboard's prompt puts a token in X-API-Key.
    assert client.post("/api/control", json={"process": "p1"}, headers=ingest).status_code == 200
    # A viewer reads the control state but does not report as a process (the dashboard would list it).
    assert client.get("/api/control", headers=viewer).status_code == 200
    assert client.post("/api/control", json={"process": "planted"}, headers=viewer).status_code == 403
    token = create_token(SECRET, "operator", "alice")
    assert client.post("/api/circuit-breaker/pause", json={"seconds": 5},
                       headers={"X-API-Key": token}).status_code == 200
    assert client.post("/api/circuit-breaker/resume", json={}, headers={"X-API-Key": KEY}).status_code == 200
    who = [a["actor"] for a in client.get("/api/circuit-breaker/history", headers=viewer).json()["operator_actions"]]
    assert who == ["api-key", "alice"]


def test_actions_are_audited_folded_into_control_state_and_announced(client: TestClient,
                                                                     make_span: SpanFactory) -> None:
    alice = _bearer("operator", "alice")
    feed = client.post("/api/control", json={"process": "p1"}, headers=alice)
    assert feed.json()["version"] == 0 and feed.headers["x-agentwatch-control"] == "0"
    assert client.post("/api/circuit-breaker/kill", json={"reason": "runaway loop"}, headers=alice).status_code == 200
    assert client.post("/api/circuit-breaker/pause", headers=alice, json={
        "seconds": 600, "reason": "investigate", "scope": "agent", "scope_id": "researcher"}).status_code == 200
    assert client.post("/api/circuit-breaker/override", headers=alice, json={
        "additional_budget": 5.0, "scope": "agent", "scope_id": "writer", "reason": "deadline"}).status_code == 200
    put = client.put("/api/limits/agent/writer", headers=alice, json={"budget_per_hour": 2.5, "reason": "cap"})
    assert put.status_code == 200
    client.put("/api/limits/agent/writer", headers=alice, json={"max_calls_per_minute": 30})
    assert client.post("/api/circuit-breaker/pause", json={"scope": "agent"}, headers=alice).status_code == 422
    assert client.put("/api/limits/agent/writer", json={}, headers=alice).status_code == 422
    assert client.delete("/api/limits/agent/nobody", headers=alice).status_code == 404

    limits = client.get("/api/limits", headers=alice).json()["limits"]
    assert [(e["scope_id"], e["limits"]) for e in limits] == [
        ("writer", {"budget_per_hour": 2.5, "max_calls_per_minute": 30})]
    status = client.get("/api/circuit-breaker/status", headers=alice).json()
    in_force = {(o["mode"], o["scope"], o["scope_id"]) for o in status["overrides"]}
    assert in_force == {("kill", "global", "*"), ("pause", "agent", "researcher"), ("limits", "agent", "writer")}

    # The ingest answer carries the version; a poll at that version gets no state, an older one gets it all.
    version = int(client.post("/api/ingest", json=make_span(), headers={"X-API-Key": KEY})
                  .headers["x-agentwatch-control"])
    assert version == status["control_version"] > 0
    same = client.post("/api/control", json={"process": "p1", "version": version}, headers=alice).json()
    assert "controls" not in same and same["version"] == version
    full = client.post("/api/control", json={"process": "p1", "version": 0, "monitors": [
        {"scope": "global", "scope_id": "global", "state": "OPEN", "reason": "operator_kill"}]}, headers=alice).json()
    assert [c["mode"] for c in full["controls"]] == ["kill", "pause"]
    assert [(g["scope_id"], g["usd"]) for g in full["grants"]] == [("writer", 5.0)]
    processes = client.get("/api/circuit-breaker/status", headers=alice).json()["processes"]
    assert [(p["process"], p["monitors"][0]["state"], p["credential"]) for p in processes] == [
        ("p1", "OPEN", "alice")]
    assert client.get("/api/circuit-breaker/status", headers=alice).json()["by_scope"] == [
        {"scope": "global", "scope_id": "global", "processes": [{"process": "p1", "state": "OPEN"}]}]

    # resume ends the kill; DELETE returns the scope to the processes' own limits.
    client.post("/api/circuit-breaker/resume", json={"reason": "fixed"}, headers=alice)
    assert client.delete("/api/limits/agent/writer?reason=done", headers=alice).status_code == 200
    status = client.get("/api/circuit-breaker/status", headers=alice).json()
    assert {(o["mode"], o["scope_id"]) for o in status["overrides"]} == {("pause", "researcher")}
    actions = client.get("/api/circuit-breaker/history", headers=alice).json()["operator_actions"]
    assert [(a["action"], a["actor"], a["reason"]) for a in actions] == [
        ("limits_cleared", "alice", "done"), ("resume", "alice", "fixed"), ("limits_set", "alice", ""),
        ("limits_set", "alice", "cap"), ("override", "alice", "deadline"), ("pause", "alice", "investigate"),
        ("kill", "alice", "runaway loop")]
    assert actions[-1]["time"] and actions[-1]["role"] == "operator" and actions[-1]["scope_id"] == "*"
    report = client.get("/api/reports/monthly", headers=alice).json()["circuit_breaker"]
    assert report["operator_actions"] == 7 and report["recent_operator_actions"][0]["action"] == "limits_cleared"


def test_token_create_prints_a_token_the_collector_accepts(client: TestClient) -> None:
    env = {**os.environ, "JWT_SECRET": SECRET}
    done = subprocess.run([sys.executable, "-m", "agentwatch.server._cli", "token", "create", "--role", "operator",
                           "--name", "alice"], env=env, capture_output=True, text=True, timeout=60, check=True)
    token = done.stdout.strip()
    answer = client.post("/api/circuit-breaker/kill", json={"reason": "cli"},
                         headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json()["action"]["actor"] == "alice"
    env.pop("JWT_SECRET")
    missing = subprocess.run([sys.executable, "-m", "agentwatch.server._cli", "token", "create", "--role", "viewer",
                              "--name", "x"], env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "JWT_SECRET" in missing.stderr


def test_local_mode_needs_no_credentials_and_records_local(tmp_path: Path, signing_key: Path) -> None:
    from agentwatch.server import create_app

    settings = Settings(db_path=tmp_path / "l.db", signing_key_path=signing_key)
    with TestClient(create_app(settings=settings), base_url="http://localhost") as local:
        assert local.post("/api/circuit-breaker/kill").json()["action"]["actor"] == "local"  # no body: global
        assert local.post("/api/circuit-breaker/resume").status_code == 200


def test_a_poll_with_more_monitors_than_kept_is_answered(tmp_path: Path, signing_key: Path) -> None:
    """An SDK from before the bounded report sends every monitor: past 1,000 its poll was refused (422), so operator
    actions no longer reached it. The first 1,000 are kept and the rest counted, with what the SDK counted itself."""
    from agentwatch.server import create_app

    monitors = [{"scope": "agent", "scope_id": f"user-{i}", "state": "CLOSED"} for i in range(1200)]
    settings = Settings(db_path=tmp_path / "l.db", signing_key_path=signing_key)
    with TestClient(create_app(settings=settings), base_url="http://localhost") as local:
        local.post("/api/circuit-breaker/kill")
        answer = local.post("/api/control", json={"process": "old", "version": 0, "monitors": monitors})
        assert answer.status_code == 200 and [c["mode"] for c in answer.json()["controls"]] == ["kill"]
        assert local.post("/api/control", json={"process": "new", "version": 0, "monitors": monitors[:3],
                                                "monitors_omitted": 40}).status_code == 200
        processes = {p["process"]: p for p in local.get("/api/circuit-breaker/status").json()["processes"]}
    assert (len(processes["old"]["monitors"]), processes["old"]["monitors_omitted"]) == (1000, 200)
    assert (len(processes["new"]["monitors"]), processes["new"]["monitors_omitted"]) == (3, 40)


def test_the_process_board_and_the_status_answer_are_bounded(tmp_path: Path, signing_key: Path) -> None:
    """Any ingest token may report under any process name: 100 reports of 0.8 MiB made a 242 MiB status answer (and
    +1.3 MB of memory each, for 300 s). The board keeps about 16 MiB; the processes that reported last stay."""
    from agentwatch.server import create_app

    monitors = [{"scope": "agent", "scope_id": f"{i:04d}" + "a" * 500, "state": "OPEN", "reason": "r" * 200}
                for i in range(1000)]
    settings = Settings(db_path=tmp_path / "l.db", signing_key_path=signing_key)
    with TestClient(create_app(settings=settings), base_url="http://localhost") as local:
        for n in range(40):
            assert local.post("/api/control", json={"process": f"flood-{n}", "monitors": monitors}).status_code == 200
        answer = local.get("/api/circuit-breaker/status")
        names = {p["process"] for p in answer.json()["processes"]}
        assert len(answer.content) < 24 * 1024 * 1024, len(answer.content)
        assert "flood-39" in names and "flood-0" not in names and answer.json()["processes_dropped"] > 0
        # A fleet of hundreds of ordinary processes is listed whole.
        fleet = [{"scope": "agent", "scope_id": f"agent-{i}", "state": "CLOSED"} for i in range(20)]
        for n in range(500):
            assert local.post("/api/control", json={"process": f"worker-{n}", "monitors": fleet}).status_code == 200
        names = {p["process"] for p in local.get("/api/circuit-breaker/status").json()["processes"]}
        assert {f"worker-{n}" for n in range(500)} <= names


def test_the_process_board_drops_the_process_that_reported_longest_ago() -> None:
    from agentwatch.server._control import ProcessBoard

    board = ProcessBoard(max_processes=3)
    for name in ("a", "b", "c", "a", "d"):  # "a" reported again, so "b" is the one that reported longest ago
        board.report(name, {"monitors": []})
    assert [entry["process"] for entry in board.live()] == ["a", "c", "d"] and board.dropped == 1


def test_control_state_leaves_out_ended_pauses_and_old_grants() -> None:
    from agentwatch.server._control import control_state

    hour = 3600 * 10**9
    now = 10 * hour

    def action(id_: int, kind: str, ts: int, **params: float) -> dict[str, object]:
        return {"id": id_, "scope": "agent", "scope_id": f"a{id_}", "actor": "alice", "reason": "",
                "timestamp_unix_nano": ts, "action": kind, "params": params}

    state = control_state([action(1, "pause", now - 120 * 10**9, seconds=60), action(2, "pause", now, seconds=60),
                           action(3, "override", now - 2 * hour, additional_budget=1.0),
                           action(4, "override", now - 60 * 10**9, additional_budget=2.0)], now)
    assert [(c["id"], c["remaining_seconds"]) for c in state["controls"]] == [(2, 60.0)]
    assert [(g["id"], g["usd"]) for g in state["grants"]] == [(4, 2.0)]
