"""`agentwatch demo`, the README's main job: a real collector, a real LangGraph run, a block and a resume."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import pytest

from agentwatch.server import start_background
from agentwatch.server._cli import main as cli_main
from agentwatch.server._demo import run_demo
from agentwatch.server._demo_workflow import RESEARCH_ROUNDS


def _get(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.loads(response.read())


def test_demo_trips_resumes_and_reaches_the_collector(tmp_path: Path) -> None:
    handle = start_background("127.0.0.1", 0, tmp_path / "demo.db")
    try:
        out = io.StringIO()
        outcome = run_demo(handle.url, tmp_path / "checkpoints.sqlite", out)
        assert outcome["blocked"]["scope_id"] == "researcher"
        assert outcome["blocked"]["reason"] == "budget_per_hour"
        # Three research rounds ran before the block; the resume runs only the missing round and the writer.
        assert outcome["first_nodes"] == ["planner"] + ["researcher"] * 3
        assert outcome["resumed_nodes"] == ["researcher"] * (RESEARCH_ROUNDS - 3) + ["writer"]
        assert outcome["report"].startswith("Report:")
        metrics = _get(handle.url, "/api/metrics")
        assert metrics["llm_calls"] == 1 + RESEARCH_ROUNDS + 1 and metrics["blocked_calls"] == 1
        agents = {row["agent_name"]: row for row in _get(handle.url, "/api/cost/by-agent")["agents"]}
        assert agents["researcher"]["llm_calls"] == RESEARCH_ROUNDS and agents["researcher"]["blocked"] == 1
        assert agents["researcher"]["cost_usd"] > agents["writer"]["cost_usd"] > 0
        (breaker,) = _get(handle.url, "/api/circuit-breaker/status")["breakers"]
        assert (breaker["scope_id"], breaker["state"], breaker["last_event"]) == ("researcher", "CLOSED",
                                                                                  "budget_increased")
        traces = _get(handle.url, "/api/traces")
        assert any(trace["status"] == "blocked" for trace in traces["traces"])
        assert "blocked before researcher" in out.getvalue()
    finally:
        handle.stop()


def test_demo_command_exits_with_no_serve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["demo", "--no-serve", "--port", "0", "--db", str(tmp_path / "cli.db")]) == 0
    out = capsys.readouterr().out
    assert "resumed" in out and "Dashboard:" not in out  # no server is left to open
    assert "researcher" in out and "blocked calls 1" in out


def test_demo_warns_off_loopback_and_keeps_its_traces_in_its_db(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Found 2026-12-06 (review 3): with HOST=0.0.0.0 (common in containers) the demo bound every interface in local
    mode without serve's warning, and CLICKHOUSE_URL or AGENTWATCH_STORE silently sent its traces there instead of
    its --db file."""
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("CLICKHOUSE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("AGENTWATCH_STORE", raising=False)
    monkeypatch.delenv("API_KEY", raising=False)
    db = tmp_path / "cli.db"
    assert cli_main(["demo", "--no-serve", "--port", "0", "--db", str(db)]) == 0
    captured = capsys.readouterr()
    assert "WARNING: listening on 0.0.0.0 without API_KEY" in captured.err
    assert "CLICKHOUSE_URL is ignored" in captured.err
    assert "blocked calls 1" in captured.out
    monkeypatch.delenv("CLICKHOUSE_URL")
    handle = start_background("127.0.0.1", 0, db)
    try:
        assert _get(handle.url, "/api/metrics")["blocked_calls"] == 1
    finally:
        handle.stop()
