"""Zero data retention on the collector: every shape of text a client may send is dropped before it is stored
(checked by grepping the database files' bytes); ids, names, models, numbers and states are kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentwatch._exporters import ROWS_MEDIA_TYPE
from agentwatch.server import ServerHandle, Settings, start_background
from tests.reliability.conftest import ROW_FIELDS
from tests.server.aw_helpers import SpanFactory, new_span_id, new_trace_id

SECRETS = [f"SECRET{index:02d}zdr" for index in range(70)]


def secret(index: int) -> str:
    return f"text with {SECRETS[index]} in it, and more"


@pytest.fixture
def zdr_server(tmp_path: Path, signing_key: Path) -> Iterator[ServerHandle]:
    settings = Settings(db_path=tmp_path / "zdr.db", signing_key_path=signing_key, zero_data_retention=True,
                        alert_interval_seconds=3600, alert_min_interval_seconds=3600)
    handle = start_background(settings=settings)
    try:
        yield handle
    finally:
        handle.stop()


def _native(make_span: SpanFactory, trace_id: str) -> dict[str, Any]:
    return make_span(
        trace_id=trace_id, input=[{"role": "user", "content": secret(0)}], output={"text": secret(1)},
        attributes={
            "gen_ai.system_instructions": secret(2), "gen_ai.tool.call.arguments": json.dumps({"q": secret(3)}),
            "inputs": {"question": secret(4)}, "outputs": [secret(5)], "metadata": {"prompt": secret(6),
                                                                                   "deep": [{"x": [secret(7)]}]},
            "llm.prompt_template.variables": {"topic": secret(8)}, "question": secret(9),
            "gen_ai.prompt": [{"role": "system", "content": secret(10)}], "error.message": secret(11),
            "session.result": secret(12), "http.url": f"https://x.example/?q={SECRETS[13]}",
            secret(14): 1, "gen_ai.request.model": "gpt-4o", "gen_ai.response.id": "chatcmpl-1",
            "llm.latency_ms": 12.5, "tool_name": "search", "finish_reason": "stop",
        },
        # Unknown top-level keys are kept as attributes: text in them must go too.
        question=secret(15), messages=[{"role": "user", "content": secret(16)}],
    )


def _atp(trace_id: str) -> dict[str, Any]:
    now = time.time_ns()
    return {
        "trace_id": trace_id, "span_id": new_span_id(), "name": "atp call", "kind": "CLIENT",
        "start_time_unix_nano": now, "end_time_unix_nano": now + 1_000_000,
        "status": {"code": "ERROR", "message": secret(17)}, "agent_id": "planner", "agent_name": "Planner",
        "decision_reasoning": secret(18), "input": secret(19), "output": {"answer": secret(20)},
        "tool_calls": [{"id": "call_1", "name": "search", "arguments": {"query": secret(21)},
                        "tool_input": secret(22), "tool_output": secret(23)}],
        "model_inference": {"model_name": "gpt-4o-mini", "provider": "openai", "prompt_tokens": 10,
                            "completion_tokens": 5},
        "events": [{"name": "gen_ai.content.prompt", "time_unix_nano": now,
                    "attributes": {"gen_ai.prompt": secret(24), "gen_ai.completion": secret(25)}},
                   {"name": "log", "content": secret(26), "body": {"text": secret(27)}}],
        "links": [{"trace_id": new_trace_id(), "span_id": new_span_id(), "attributes": {"note": secret(28)}}],
        "compliance_flags": ["art12"],
        "attributes": {"llm.prompt_template.variables": json.dumps({"v": secret(29)}), "inputs": [secret(30)]},
        "question": secret(31),
    }


def _row(span: dict[str, Any]) -> list[Any]:
    """``span`` (its known keys) as a span row, the shape an SDK sends a collector that takes rows."""
    attributes = span.get("attributes") or {}
    return [*(span.get(key) for key in ROW_FIELDS[:-2]), list(attributes), list(attributes.values())]


def test_no_text_reaches_the_database_files(zdr_server: ServerHandle, make_span: SpanFactory,
                                            tmp_path: Path) -> None:
    trace_id = new_trace_id()
    with httpx.Client(base_url=zdr_server.url, timeout=30) as client:
        for body in ([_native(make_span, trace_id)], _atp(trace_id), [_native(make_span, trace_id), _atp(trace_id)]):
            answer = client.post("/api/ingest", json=body)
            assert answer.status_code in (200, 202), answer.text
            assert answer.json()["accepted"] >= 1
        # The same span as a row, the shape the SDK's worker sends once the collector said it takes rows.
        answer = client.post("/api/ingest", content=json.dumps([_row(_native(make_span, trace_id))]),
                             headers={"Content-Type": ROWS_MEDIA_TYPE})
        assert answer.status_code == 202 and answer.json()["accepted"] == 1, answer.text
        spans = client.get(f"/api/traces/{trace_id}/spans").json()["spans"]
    assert len(spans) == 5
    shown = json.dumps(spans)
    assert not [s for s in SECRETS if s in shown]
    # What is not text is kept: the dashboard still has ids, names, models, states and numbers.
    native = next(span for span in spans if span["kind"] == "llm" and span["model"] == "gpt-4o-mini"
                  and "gen_ai.request.model" in span["attributes"])
    assert native["attributes"]["gen_ai.request.model"] == "gpt-4o"
    assert native["attributes"]["llm.latency_ms"] == 12.5 and native["attributes"]["tool_name"] == "search"
    assert native["attributes"]["finish_reason"] == "stop" and native["attributes"]["agentwatch.text_stripped"]
    atp = next(span for span in spans if span["name"] == "atp call")
    assert atp["agent_name"] == "Planner" and atp["status"] == "error"
    assert atp["attributes"]["tool_calls"][0]["name"] == "search"
    assert atp["attributes"]["events"][0]["name"] == "gen_ai.content.prompt"
    assert atp["attributes"]["compliance_flags"] == ["art12"]
    zdr_server.stop()  # checkpoints the WAL; its file is read too, in case it was not
    files = [path for path in (tmp_path / "zdr.db").parent.iterdir() if path.name.startswith("zdr.db")]
    assert files
    found = {path.name: [s for s in SECRETS if s.encode() in path.read_bytes()] for path in files}
    assert not any(found.values()), found


def test_sdk_alerts_keep_no_text_either(zdr_server: ServerHandle, tmp_path: Path) -> None:
    alert = {"type": "alert", "scope": "agent", "scope_id": "writer", "reason": "budget_per_hour", "threshold": 5,
             "current": 7.5, "message": secret(32), "details": {"last_prompt": secret(33)},
             "timestamp_unix_nano": time.time_ns()}
    with httpx.Client(base_url=zdr_server.url, timeout=30) as client:
        assert client.post("/api/alerts/sdk-alert", json=alert).status_code in (200, 201, 202)
        history = client.get("/api/alerts/history").json()["history"]
    assert history and history[0]["scope_id"] == "writer" and "budget_per_hour" in json.dumps(history[0])
    zdr_server.stop()
    for path in tmp_path.iterdir():
        if path.name.startswith("zdr.db"):
            data = path.read_bytes()
            assert SECRETS[32].encode() not in data and SECRETS[33].encode() not in data, path


def _database_secrets(handle: ServerHandle, folder: Path) -> dict[str, list[str]]:
    handle.stop()  # checkpoints the WAL; its file is read too, in case it was not
    return {path.name: [s for s in SECRETS if s.encode() in path.read_bytes()]
            for path in folder.iterdir() if path.name.startswith("zdr.db")}


def test_text_under_keys_that_usually_hold_labels_is_dropped(zdr_server: ServerHandle, make_span: SpanFactory,
                                                            tmp_path: Path) -> None:
    """A system prompt or code under keys that elsewhere hold a provider's name or a status code, sentences where
    enumerations are expected, text where numbers are: dropped, even when written as one word."""
    trace_id = new_trace_id()
    native = make_span(trace_id=trace_id, attributes={
        "llm.request": {"model": "claude-sonnet-4", "system": f"{SECRETS[40]}_you_are_the_acme_bot",
                        "messages": [{"role": "user", "content": secret(41)}]},
        "tool": {"type": "code_interpreter_call", "code": f"{SECRETS[42]}_import_os"},
        "gen_ai.system": SECRETS[43], "state": secret(44), "graph_state": [SECRETS[45]], "event": secret(46),
        "stop_reason": secret(47), "compliance_flags": [secret(48), "art12"], "error_code": secret(49),
        "gen_ai.usage.input_tokens": SECRETS[50], "created_at": f"noon, {SECRETS[51]}",
        # What is kept: labels, one-word enumerations, flags, times, numbers.
        "gen_ai.usage.output_tokens": 7, "finish_reason": "stop", "gen_ai.agent.name": "Senior Researcher",
        "error_type": "RateLimitError", "updated_at": "2026-12-05T10:00:00Z"})
    breaker = make_span(trace_id=trace_id, kind="breaker", name="breaker.transition", attributes={
        "event": "trip", "from_state": "CLOSED", "to_state": "OPEN", "scope": "agent", "scope_id": "Senior Researcher",
        "reason": "budget_per_hour", "threshold": 1.0, "current": 2.5, "breaker.reason": "budget_per_hour"})
    otlp = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc6aa", "spanId": "a1a1a1a1a1a1a1a1", "name": "chat", "kind": 3,
        "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
        "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                       {"key": "gen_ai.request.system", "value": {"stringValue": SECRETS[52]}},
                       {"key": "tool.code", "value": {"stringValue": SECRETS[53]}},
                       {"key": "nested", "value": {"kvlistValue": {"values": [
                           {"key": "system", "value": {"stringValue": SECRETS[54]}}]}}}]}]}]}]}
    alert = {"scope": "agent", "scope_id": "writer", "reason": "budget_per_hour", "threshold": 5, "current": 7.5,
             "blocked": True, "timestamp": time.time(), "details": {"system": SECRETS[55], "state": secret(56)}}
    with httpx.Client(base_url=zdr_server.url, timeout=30) as client:
        assert client.post("/api/ingest", json=[native, breaker]).json()["accepted"] == 2
        assert client.post("/v1/traces", json=otlp).status_code == 200
        assert client.post("/api/alerts/sdk-alert", json=alert).status_code == 202
        spans = {span["kind"]: span for span in client.get(f"/api/traces/{trace_id}/spans").json()["spans"]}
        (otlp_span,) = client.get("/api/traces/5b8efff798038103d269b633813fc6aa/spans").json()["spans"]
        history = client.get("/api/alerts/history").json()["history"]
    shown = json.dumps([spans, otlp_span, history])
    assert not [s for s in SECRETS if s in shown]
    kept = spans["llm"]["attributes"]
    assert kept["llm.request"] == {"model": "claude-sonnet-4", "messages": [{"role": "user"}]}
    assert kept["tool"] == {"type": "code_interpreter_call"}
    assert kept["compliance_flags"] == ["art12"] and kept["gen_ai.usage.output_tokens"] == 7
    assert (kept["finish_reason"], kept["gen_ai.agent.name"], kept["error_type"], kept["updated_at"]) == (
        "stop", "Senior Researcher", "RateLimitError", "2026-12-05T10:00:00Z")
    assert {key: spans["breaker"]["attributes"][key] for key in breaker["attributes"]} == breaker["attributes"]
    assert otlp_span["attributes"]["gen_ai.request.model"] == "gpt-4o"
    assert history[0]["scope_id"] == "writer" and "budget_per_hour" in json.dumps(history[0])
    found = _database_secrets(zdr_server, tmp_path)
    assert found and not any(found.values()), found


ALERT_PROGRAM = """
import sys

import agentwatch

agentwatch.init()
with agentwatch.trace("zdr-alerts"):
    agentwatch.alert(sys.argv[1], severity="warning")
    agentwatch.alert("disk_full")
agentwatch.shutdown()
"""


def test_an_alert_title_is_not_kept_as_its_span_name(zdr_server: ServerHandle, make_span: SpanFactory,
                                                     tmp_path: Path) -> None:
    """``agentwatch.alert("...")`` names its span ``alert: <title>``: free text that was stored as the span's name
    (span names are otherwise kept: they are what the dashboard shows)."""
    program = tmp_path / "alerts.py"
    program.write_text(ALERT_PROGRAM)
    env = {**os.environ, "AGENTWATCH_URL": f"{zdr_server.url}/api/ingest", "AGENTWATCH_SPOOL_DIR": ""}
    done = subprocess.run([sys.executable, str(program), secret(40)], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # The monitor's own alerts are named after their reason: an identifier, kept.
    monitor_alert = make_span(kind="alert", name="alert.budget_per_hour", model=None, attributes={
        "reason": "budget_per_hour", "scope": "agent", "scope_id": "writer", "threshold": 5, "current": 7.5})
    with httpx.Client(base_url=zdr_server.url, timeout=30) as client:
        assert client.post("/api/ingest", json=monitor_alert).json()["accepted"] == 1
        (trace,) = client.get("/api/traces", params={"search": "zdr-alerts"}).json()["traces"]
        spans = client.get(f"/api/traces/{trace['trace_id']}/spans").json()["spans"]
        kept = client.get(f"/api/traces/{monitor_alert['trace_id']}/spans").json()["spans"][0]
    names = sorted(span["name"] for span in spans if span["kind"] == "alert")
    assert names == ["alert.manual", "alert.manual"], names  # a title of one word is still not an identifier
    assert SECRETS[40] not in json.dumps(spans)
    assert kept["name"] == "alert.budget_per_hour"
    zdr_server.stop()
    for path in tmp_path.iterdir():
        if path.name.startswith("zdr.db"):
            assert SECRETS[40].encode() not in path.read_bytes(), path.name


def test_span_names_that_are_text_are_not_kept(zdr_server: ServerHandle, make_span: SpanFactory,
                                               tmp_path: Path) -> None:
    """CrewAI names a task's span ``task:<the task's description>`` where the SDK captures text: that prompt was
    stored as the span's name (only alert names were checked). A task's name is kept only as an identifier; any
    span's name that reads as text (over four words, several lines, over 256 characters) becomes its kind."""
    trace_id = new_trace_id()
    sent = {
        ("task", f"task:ZC04B-TASKDESC {SECRETS[41]} research the customer's private data"): "task",
        ("task", f"task:Summarize {SECRETS[42]}"): "task",
        ("task", "task:research_task"): "task:research_task",
        ("task", "task"): "task",
        ("tool", f"look up {SECRETS[43]} for the user now"): "tool",
        ("agent", f"agent:Senior Analyst\n{SECRETS[44]}"): "agent",
        ("chain", "crew:" + "x" * 250 + SECRETS[45]): "chain",
        ("agent", "agent:Senior Research Analyst"): "agent:Senior Research Analyst",
        ("chain", "crew:Research Crew"): "crew:Research Crew",
        ("llm", "chat gpt-4o"): "chat gpt-4o",
        ("tool", "execute_tool get_weather"): "execute_tool get_weather",
        ("node", "langgraph.node.call_model"): "langgraph.node.call_model",
    }
    spans = [make_span(trace_id=trace_id, kind=kind, name=name) for kind, name in sent]
    with httpx.Client(base_url=zdr_server.url, timeout=30) as client:
        assert client.post("/api/ingest", json=spans).json()["accepted"] == len(spans)
        stored = client.get(f"/api/traces/{trace_id}/spans").json()["spans"]
    by_id = {span["span_id"]: span for span in stored}
    for span, expected in zip(spans, sent.values(), strict=True):
        kept = by_id[span["span_id"]]
        assert kept["name"] == expected, (span["name"], kept["name"])
        assert kept["attributes"].get("agentwatch.text_stripped", False) is (expected != span["name"])
    zdr_server.stop()
    for path in tmp_path.iterdir():
        if path.name.startswith("zdr.db"):
            for index in range(41, 46):
                assert SECRETS[index].encode() not in path.read_bytes(), (path.name, index)


def test_otlp_event_names_and_agent_names_that_are_text_are_not_kept(zdr_server: ServerHandle,
                                                                    tmp_path: Path) -> None:
    """An OTLP event's name was kept as a label (``otel.events[].name``), and an OTLP agent span with no agent
    attribute takes its span's name as the agent's name: a sentence in either was stored, shown by the spans API
    and listed by the costs by agent. Names that read as text go; short names stay."""
    def span(span_id: str, name: str, kind: str, events: list[str]) -> dict[str, Any]:
        return {"traceId": "5b8efff798038103d269b633813fc6bb", "spanId": span_id, "name": name,
                "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
                "attributes": [{"key": "openinference.span.kind", "value": {"stringValue": kind}}],
                "events": [{"name": event, "timeUnixNano": "1700000000500000000"} for event in events]}

    otlp = {"resourceSpans": [{"scopeSpans": [{"spans": [
        span("b1b1b1b1b1b1b1b1", "chat gpt-4o", "LLM", [secret(30), "exception"]),
        span("b2b2b2b2b2b2b2b2", f"Please summarise the history of {SECRETS[31]} born 1960", "AGENT", []),
        span("b3b3b3b3b3b3b3b3", "planner", "AGENT", [])]}]}]}
    with httpx.Client(base_url=zdr_server.url, timeout=30) as client:
        assert client.post("/v1/traces", json=otlp).status_code == 200
        spans = {span["span_id"]: span
                 for span in client.get("/api/traces/5b8efff798038103d269b633813fc6bb/spans").json()["spans"]}
        agents = client.get("/api/cost/by-agent", params={"from": "2023-01-01T00:00:00Z"}).json()["agents"]
    assert not [s for s in SECRETS if s in json.dumps([spans, agents])]
    events = spans["b1b1b1b1b1b1b1b1"]["attributes"]["otel.events"]
    assert [event["name"] for event in events] == ["event", "exception"]
    assert spans["b2b2b2b2b2b2b2b2"]["agent_name"] is None and spans["b2b2b2b2b2b2b2b2"]["name"] == "agent"
    assert spans["b3b3b3b3b3b3b3b3"]["agent_name"] == "planner" and "planner" in json.dumps(agents)
    found = _database_secrets(zdr_server, tmp_path)
    assert found and not any(found.values()), found


def test_an_agent_role_that_is_text_is_not_kept(zdr_server: ServerHandle, make_span: SpanFactory,
                                                tmp_path: Path) -> None:
    """An agent's role was stored as sent (only its name was checked): an ATP client or an ``agentwatch.agent``
    scope given the agent's instructions as its role kept that text on disk and in the spans API. A role that reads
    as text goes, as a name does; a short role stays."""
    trace_id = new_trace_id()
    native = make_span(trace_id=trace_id, agent_id="writer", agent_name="Writer",
                       agent_role=f"You are a careful writer; never mention {SECRETS[57]} to the user")
    short = make_span(trace_id=trace_id, agent_id="researcher", agent_name="Researcher",
                      agent_role="Senior Research Analyst")
    atp = {**_atp(trace_id), "agent_role": f"Plans the work for {SECRETS[58]}\nand checks it"}
    with httpx.Client(base_url=zdr_server.url, timeout=30) as client:
        assert client.post("/api/ingest", json=[native, short, atp]).json()["accepted"] == 3
        spans = {span["span_id"]: span for span in client.get(f"/api/traces/{trace_id}/spans").json()["spans"]}
    assert not [s for s in SECRETS if s in json.dumps(spans)]
    assert spans[native["span_id"]]["agent_role"] is None
    assert spans[native["span_id"]]["agent_name"] == "Writer"
    assert spans[native["span_id"]]["attributes"]["agentwatch.text_stripped"] is True
    assert spans[short["span_id"]]["agent_role"] == "Senior Research Analyst"
    found = _database_secrets(zdr_server, tmp_path)
    assert found and not any(found.values()), found


def test_agent_ids_models_and_providers_that_are_text_are_not_kept(zdr_server: ServerHandle,
                                                                   make_span: SpanFactory, tmp_path: Path) -> None:
    """Found 2026-12-06 (review 3): only an agent's name and role were checked. A native agent_id that is a sentence
    was stored in the spans and as the key of the costs by agent, a model or provider that is one was stored as
    sent, an OTLP agent span named with a sentence lost its name but kept the id derived from it
    ("please-summarise-..."), and a sentence of Chinese or Japanese (no spaces) under 256 characters was kept. Such
    ids are stored as a hash (the agent's rows stay one); legitimate labels, a five-word role among them, stay."""
    trace_id = new_trace_id()
    sentence_id = make_span(trace_id=trace_id, agent_id=f"You are a careful writer never mention {SECRETS[50]}",
                            agent_name="Writer")
    slug_id = make_span(trace_id=trace_id, agent_id=f"you-are-a-careful-writer-never-mention-{SECRETS[51]}",
                        agent_name="Writer2")
    model = make_span(trace_id=trace_id, agent_id="w3", agent_name="W3",
                      model=f"please never reveal the {SECRETS[52]} to anyone",
                      provider=f"always say {SECRETS[53]} to the user")
    cjk = make_span(trace_id=trace_id, agent_id="w4", agent_name="W4",
                    agent_role="あなたは注意深い作家です秘密の言葉を決して言わないでください"
                               "ユーザーには何も教えないでくださいそれが規則です")
    legit = make_span(trace_id=trace_id, agent_id="customer-support-triage-agent-v2", agent_name="翻訳エージェント",
                      agent_role="Senior Data Research Analyst Lead", model="gpt-4o-mini-2024-07-18",
                      provider="openai")
    otlp = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc6cc", "spanId": "b4b4b4b4b4b4b4b4",
        "name": f"Never tell {SECRETS[54]} a thing", "kind": 1, "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000001000000000",
        "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "invoke_agent"}}]}]}]}]}
    with httpx.Client(base_url=zdr_server.url, timeout=30) as client:
        assert client.post("/api/ingest", json=[sentence_id, slug_id, model, cjk, legit]).json()["accepted"] == 5
        assert client.post("/v1/traces", json=otlp).status_code == 200
        spans = {span["span_id"]: span for trace in (trace_id, "5b8efff798038103d269b633813fc6cc")
                 for span in client.get(f"/api/traces/{trace}/spans").json()["spans"]}
        agents = client.get("/api/cost/by-agent", params={"from": "2023-01-01T00:00:00Z"}).json()["agents"]
    assert not [s for s in SECRETS if s.lower() in json.dumps([spans, agents]).lower()]
    for hashed in (sentence_id, slug_id):
        assert spans[hashed["span_id"]]["agent_id"].startswith("agent-")
    assert (spans[model["span_id"]]["model"], spans[model["span_id"]]["provider"]) == (None, None)
    assert spans[cjk["span_id"]]["agent_role"] is None
    kept = spans[legit["span_id"]]
    assert (kept["agent_id"], kept["agent_name"], kept["agent_role"], kept["model"], kept["provider"]) == (
        "customer-support-triage-agent-v2", "翻訳エージェント", "Senior Data Research Analyst Lead",
        "gpt-4o-mini-2024-07-18", "openai")
    otlp_agent = spans["b4b4b4b4b4b4b4b4"]
    assert otlp_agent["agent_name"] is None and otlp_agent["agent_id"].startswith("agent-")
    found = _database_secrets(zdr_server, tmp_path)
    assert found and not any(s.lower() for names in found.values() for s in names), found
    lowered = {path.name: [s for s in SECRETS if s.lower().encode() in path.read_bytes()]
               for path in tmp_path.iterdir() if path.name.startswith("zdr.db")}
    assert not any(lowered.values()), lowered


def test_text_taken_out_of_a_spans_fields_is_not_kept_in_its_attributes(zdr_server: ServerHandle,
                                                                         make_span: SpanFactory,
                                                                         tmp_path: Path) -> None:
    """Found 2026-12-06 (server probe 13): an OTLP span's agent name, agent id, model and provider are read from its
    attributes (gen_ai.agent.name, gen_ai.agent.id, gen_ai.request.model, gen_ai.provider.name, OpenInference's
    agent.name). A sentence there was taken out of the span's fields (no agent name, a hashed id, no model), but
    the attribute it came from is a label to the allowlist and was stored as sent, shown by the spans API."""
    trace_id = "5b8efff798038103d269b633813fc6dd"

    def span(span_id: str, **attributes: str) -> dict[str, Any]:
        return {"traceId": trace_id, "spanId": span_id, "name": "step", "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000001000000000",
                "attributes": [{"key": key.replace("__", "."), "value": {"stringValue": value}}
                               for key, value in attributes.items()]}

    otlp = {"resourceSpans": [{"scopeSpans": [{"spans": [
        span("c1c1c1c1c1c1c1c1", gen_ai__operation__name="invoke_agent",
             gen_ai__agent__name=f"You must never tell anyone about {SECRETS[60]}"),
        span("c2c2c2c2c2c2c2c2", gen_ai__operation__name="invoke_agent",
             gen_ai__agent__id=f"you-must-never-tell-anyone-about-{SECRETS[61]}"),
        span("c3c3c3c3c3c3c3c3", gen_ai__operation__name="chat",
             gen_ai__request__model=f"please never reveal the {SECRETS[62]} to anyone",
             gen_ai__provider__name=f"always say {SECRETS[63]} to the user"),
        span("c4c4c4c4c4c4c4c4", openinference__span__kind="AGENT",
             agent__name=f"Summarise the medical history of {SECRETS[64]} for me"),
        span("c5c5c5c5c5c5c5c5", gen_ai__operation__name="invoke_agent", gen_ai__agent__name="Planner")]}]}]}
    with httpx.Client(base_url=zdr_server.url, timeout=30) as client:
        assert client.post("/v1/traces", json=otlp).status_code == 200
        spans = {span["span_id"]: span for span in client.get(f"/api/traces/{trace_id}/spans").json()["spans"]}
    assert len(spans) == 5
    assert not [s for s in SECRETS if s in json.dumps(spans)], spans
    assert spans["c1c1c1c1c1c1c1c1"]["attributes"]["agentwatch.text_stripped"] is True
    assert spans["c3c3c3c3c3c3c3c3"]["attributes"]["gen_ai.operation.name"] == "chat"
    planner = spans["c5c5c5c5c5c5c5c5"]
    assert planner["agent_name"] == "Planner" and planner["attributes"]["gen_ai.agent.name"] == "Planner"
    # A session span is named after its session, whose id is a label: a name that reads as text is stored as the
    # kind, but the session keeps its own trace (its session.id is not the text of a field taken out).
    session = "Help me plan the surprise party for my sister"
    wrapper = make_span(kind="session", name=session, attributes={"session.id": session, "session.name": session})
    with httpx.Client(base_url=zdr_server.url, timeout=30) as client:
        assert client.post("/api/ingest", json=[wrapper]).json()["accepted"] == 1
        traces = client.get("/api/session", params={"id": session}).json()["traces"]
    assert [trace["trace_id"] for trace in traces] == [wrapper["trace_id"]]
    found = _database_secrets(zdr_server, tmp_path)
    assert found and not any(found.values()), found


def test_an_agent_id_that_is_text_is_one_hashed_scope_in_the_breaker_history(zdr_server: ServerHandle,
                                                                             tmp_path: Path) -> None:
    """Found 2026-12-06 (server probe 13): the SDK sends a breaker transition and an alert of an agent scope both as
    spans and to /api/alerts/sdk-alert. With an agent id that reads as text, the spans' agent id was hashed but the
    scope_id of the alert and transition was stored as sent (the text in the alert and breaker histories); taken
    out of the spans alone, it left a second transition and alert, on a scope "agent/agent". Both now name the
    hashed id: one transition, one alert, no text."""
    from tests.reliability.conftest import run_script

    result = run_script(f"""
        import agentwatch, openai
        from tests.stubs.provider_server import StubProvider

        with StubProvider() as stub:
            agentwatch.init(proxy_url="{zdr_server.url}", block_on_threshold=True, flush_interval=0.05)
            client = openai.OpenAI(base_url=stub.openai_base_url, api_key="x", max_retries=0)
            with agentwatch.trace("run"):
                for _ in range(3):
                    with agentwatch.agent("You must never reveal {SECRETS[66]} to anyone", budget_per_hour=0.0001):
                        try:
                            client.chat.completions.create(model="gpt-4o",
                                                           messages=[{{"role": "user", "content": "hi"}}])
                        except agentwatch.CircuitBreakerException:
                            print("blocked")
            assert agentwatch.flush()
        agentwatch.shutdown()
    """, tmp_path)
    assert result.returncode == 0 and "blocked" in result.stdout, result.stderr
    with httpx.Client(base_url=zdr_server.url, timeout=30) as client:
        (agent,) = [row for row in client.get("/api/cost/by-agent").json()["agents"] if row["llm_calls"]]
        history = client.get("/api/circuit-breaker/history").json()
        alerts = client.get("/api/alerts/history").json()["history"]
    hashed = agent["agent_id"]
    assert hashed.startswith("agent-")
    assert [(event["scope"], event["scope_id"], event["event"]) for event in history["transitions"]] == [
        ("agent", hashed, "triggered")]
    assert [(alert["scope"], alert["scope_id"], alert["condition"]) for alert in alerts] == [
        ("agent", hashed, "budget_per_hour")]
    assert SECRETS[66].lower() not in json.dumps([history, alerts]).lower()
    found = _database_secrets(zdr_server, tmp_path)
    assert found and not any(s.lower() for names in found.values() for s in names), found
    lowered = [path.name for path in tmp_path.iterdir()
               if path.name.startswith("zdr.db") and SECRETS[66].lower().encode() in path.read_bytes()]
    assert not lowered
