"""A LangGraph thread blocked by a budget in one process and resumed from its checkpoint in a second process is one
session of two traces, in the API (both stores) and in the Sessions view (headless Chromium); and the dashboard's
views update by themselves while spans arrive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from agentwatch.server import ServerHandle
from tests.server.aw_helpers import SpanFactory, make_trace
from tests.server.test_dashboard import browser, ingest, open_view, pytestmark  # noqa: F401 - fixture, skip rule
from tests.server.test_dashboard import page as page  # noqa: F401 - fixture

PROGRAM = """
import sys

from langgraph.checkpoint.sqlite import SqliteSaver

import agentwatch
from agentwatch.server._demo_workflow import build_workflow

agentwatch.init(agents={"researcher": {"budget_per_hour": 0.12, "block_on_threshold": True}})
with SqliteSaver.from_conn_string(sys.argv[2]) as saver:
    graph, _ = build_workflow(saver)
    config = {"configurable": {"thread_id": sys.argv[3]}}
    if sys.argv[1] == "first":
        try:
            graph.invoke({"topic": "EU AI Act", "notes": []}, config)
        except agentwatch.CircuitBreakerException as blocked:
            print("blocked", blocked.scope_id, graph.get_state(config).next)
        else:
            sys.exit("the budget did not block")
    else:
        result = graph.invoke(None, config)  # a fresh process: the checkpoint says where to go on
        print("resumed", len(result["notes"]), bool(result["report"]))
agentwatch.shutdown()
"""


def _get(handle: ServerHandle, path: str) -> Any:
    with urllib.request.urlopen(f"{handle.url}{path}", timeout=10) as response:
        return json.loads(response.read())


def _run(tmp_path: Path, handle: ServerHandle, step: str, thread: str) -> str:
    program = tmp_path / "thread.py"
    program.write_text(PROGRAM)
    env = {**os.environ, "AGENTWATCH_URL": f"{handle.url}/api/ingest", "AGENTWATCH_SPOOL_DIR": ""}
    done = subprocess.run([sys.executable, str(program), step, str(tmp_path / "checkpoints.db"), thread],
                          capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_blocked_thread_resumed_in_another_process_is_one_session(tmp_path: Path, collector: ServerHandle,
                                                                  page: Any) -> None:
    thread = f"thread-{uuid.uuid4().hex[:8]}"
    assert "blocked researcher ('researcher',)" in _run(tmp_path, collector, "first", thread)
    assert "resumed 4 True" in _run(tmp_path, collector, "resume", thread)

    # Each process flushed at exit: both traces are stored, under the thread's session.
    sessions = _get(collector, "/api/sessions")["sessions"]
    assert [s["session_id"] for s in sessions] == [thread]
    assert sessions[0]["trace_count"] == 2 and sessions[0]["blocked_calls"] >= 1
    detail = _get(collector, f"/api/sessions/{thread}")
    first, resumed = detail["traces"]
    assert (first["role"], first["status"]) == ("blocked", "blocked")
    assert (resumed["role"], resumed["status"], resumed["resumes"]) == ("resume", "ok", first["trace_id"])
    assert first["name"] == resumed["name"] == "LangGraph"
    assert [(b["name"], b["reason"], b["scope_id"]) for b in detail["blocks"]] == [
        ("researcher", "budget_per_hour", "researcher")]
    trip = [t for t in detail["transitions"] if t["role"] == "trip"]
    assert trip and (trip[0]["scope"], trip[0]["scope_id"], trip[0]["to_state"]) == ("agent", "researcher", "OPEN")
    kinds = [item["type"] for item in detail["story"]]
    assert kinds.index("block") < len(kinds) - 1 and kinds[-1] == "trace"  # the resume ends the story
    # The second process's spans carry the session too (not just its root): the resumed researcher call is there.
    spans = _get(collector, f"/api/traces/{resumed['trace_id']}/spans")["spans"]
    assert {s["attributes"].get("session.id") for s in spans} == {thread}
    assert any(s["kind"] == "llm" for s in spans)

    open_view(page, collector, "#/sessions", "sessions")
    row = page.locator(f'#session-list tr[data-session-id="{thread}"]')
    assert row.count() == 1
    page.click(f'#session-list tr[data-session-id="{thread}"] a')
    page.wait_for_selector("#view[data-ready=session]", timeout=15_000)
    assert page.inner_text("#session-title") == thread
    roles = page.locator("#session-traces tbody tr")
    assert [roles.nth(i).get_attribute("data-role") for i in range(roles.count())] == ["blocked", "resume"]
    story = page.locator("#session-story li")
    story_roles = [story.nth(i).get_attribute("data-role") for i in range(story.count())]
    assert story_roles[0] == "blocked" and "trip" in story_roles and "block" in story_roles
    assert story_roles[-1] == "resume"
    assert "resumed" in page.inner_text("#session-story")
    assert page.locator("nav a.active").inner_text() == "Sessions"
    page.click("#session-traces tbody tr[data-role=resume] a")  # the resumed trace links back to its session
    page.wait_for_selector("#view[data-ready=trace]", timeout=15_000)
    assert page.inner_text("#trace-session a") == thread
    assert page.errors == []


RUNS = """
import sys

import openai

import agentwatch
from tests.stubs.provider_server import Reply, StubProvider

shape, session_id = sys.argv[1], sys.argv[2]
agentwatch.init()


def run(name):
    with agentwatch.trace(name), agentwatch.agent("Spender", budget_per_hour=0.01, block_on_threshold=True):
        for index in range(4):
            stub.queue(Reply(input_tokens=1000, output_tokens=200))  # $0.0045 on gpt-4o: the fourth is blocked
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": str(index)}])


def attempt(name):
    if shape == "session per run":
        with agentwatch.session("job", session_id=session_id):
            run(name)
    else:
        run(name)


with StubProvider() as stub:
    client = openai.OpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0)
    session = agentwatch.session("job", session_id=session_id) if shape == "one session" else None
    if session is not None:
        session.__enter__()
    try:
        attempt("attempt-1")
    except agentwatch.CircuitBreakerException as blocked:
        blocked.monitor.increase_budget(0.05)
    attempt("attempt-2")
    if session is not None:
        session.__exit__(None, None, None)
agentwatch.shutdown()
"""


@pytest.mark.parametrize("shape", ["session per run", "one session"])
def test_a_session_is_told_by_its_runs_not_its_own_traces(tmp_path: Path, collector: ServerHandle,
                                                          shape: str) -> None:
    """Found 2026-12-05: a session opened outside any trace has a trace of its own (its span, and the breaker spans
    of a recovery made in it). It took the role ``resume`` from the run that resumed, counted as a trace (4 for 2
    runs), and the session stayed "blocked" after its last run succeeded. The runs tell the story now."""
    session_id = f"job-{uuid.uuid4().hex[:8]}"
    program = tmp_path / "runs.py"
    program.write_text(RUNS)
    env = {**os.environ, "AGENTWATCH_URL": f"{collector.url}/api/ingest", "AGENTWATCH_SPOOL_DIR": "",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, str(program), shape, session_id], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    detail = _get(collector, f"/api/sessions/{session_id}")
    runs = [t for t in detail["traces"] if t["role"] != "session"]
    assert [(t["name"], t["role"], t["status"]) for t in runs] == [
        ("attempt-1", "blocked", "blocked"), ("attempt-2", "resume", "ok")]
    assert runs[1]["resumes"] == runs[0]["trace_id"]
    own = [t for t in detail["traces"] if t["role"] == "session"]
    assert own and all(t["name"] == "job" and t["llm_calls"] == 0 for t in own)  # listed, still reachable
    assert not any(item["type"] == "trace" and item["role"] == "session" for item in detail["story"])
    assert (detail["trace_count"], detail["status"], detail["resumed"]) == (2, "ok", True)
    assert (detail["llm_calls"], detail["blocked_calls"]) == (7, 1)
    listed = _get(collector, "/api/sessions")["sessions"]
    assert [(s["session_id"], s["trace_count"], s["status"]) for s in listed] == [(session_id, 2, "ok")]


def test_views_update_while_spans_arrive(page: Any, server: ServerHandle, make_span: SpanFactory) -> None:
    ingest(server, make_trace(make_span, calls=1, name="before"))
    open_view(page, server, "#/traces", "traces")
    page.wait_for_selector("body[data-live=on]", timeout=15_000)
    assert page.locator("table.traces tbody tr").count() == 1

    # Traces: no timer re-renders this view; only the live stream can bring the new trace in.
    later = make_trace(make_span, calls=2, name="arrived while watching")
    ingest(server, later)
    page.wait_for_selector(f'table.traces tr[data-trace-id="{later[0]["trace_id"]}"]', timeout=20_000)
    assert page.locator("table.traces tbody tr").count() == 2

    # Overview: the KPIs count the next trace.
    page.click("nav a[data-view=overview]")
    page.wait_for_selector("#view[data-ready=overview]", timeout=15_000)
    assert page.inner_text("#kpi-traces .value") == "2"
    ingest(server, make_trace(make_span, calls=1, name="third"))
    page.wait_for_selector("#kpi-traces .value:text-is('3')", timeout=20_000)

    # Breakers: a transition reported now shows up in the open view.
    page.click("nav a[data-view=breakers]")
    page.wait_for_selector("#view[data-ready=breakers]", timeout=15_000)
    ingest(server, {"type": "transition", "event": "triggered", "from_state": "closed", "to_state": "open",
                    "scope": "agent", "scope_id": "live-writer", "reason": "budget_per_hour", "threshold": 5,
                    "current": 7.5, "timestamp_unix_nano": time.time_ns()}, "/api/alerts/sdk-alert")
    page.wait_for_selector("#breaker-status td:text-is('agent / live-writer')", timeout=20_000)
    assert page.errors == []
