"""Circuit-breaker state from spans and sdk-alerts; alert rules, evaluation, cooldown and delivery."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agentwatch.server import Settings, SQLiteStore, create_app
from agentwatch.server._alerts import RETRY_DELAYS
from tests.server.aw_helpers import SpanFactory, WebhookHandler

NOW = time.time_ns()


def transition(event: str, from_state: str, to_state: str, at: int, **extra: Any) -> dict[str, Any]:
    return {"event": event, "from_state": from_state, "to_state": to_state, "scope": "agent",
            "scope_id": "researcher", "reason": "budget_per_hour", "threshold": 10.0, "current": 12.5,
            "eu_ai_act_art12_relevant": True, "timestamp_unix_nano": at, **extra}


def test_breaker_state_from_spans_and_sdk_alerts_without_double_counting(client: TestClient,
                                                                         make_span: SpanFactory) -> None:
    tripped = transition("triggered", "closed", "open", NOW - 3_000_000_000)
    span = make_span(kind="breaker", name="breaker.triggered", model=None, start=tripped["timestamp_unix_nano"],
                     duration_ms=0, attributes={k: v for k, v in tripped.items() if k != "timestamp_unix_nano"})
    client.post("/api/ingest", json=span)
    # The SDK's exporter forwards the same transition to sdk-alert: it must not count twice.
    answer = client.post("/api/alerts/sdk-alert", json={"type": "transition", **tripped})
    assert answer.status_code == 202 and answer.json() == {"recorded": False, "duplicate": True}
    paused = transition("paused", "open", "paused", NOW - 2_000_000_000)
    assert client.post("/api/alerts/sdk-alert", json={"type": "transition", **paused}).json()["recorded"]
    # A transition that arrives late does not overwrite the newer state.
    late = transition("retrip", "half_open", "open", NOW - 2_500_000_000)
    client.post("/api/alerts/sdk-alert", json={"type": "transition", **late})
    status = client.get("/api/circuit-breaker/status").json()
    assert status["open"] == 1
    breaker = status["breakers"][0]
    assert (breaker["scope"], breaker["scope_id"], breaker["state"], breaker["last_event"]) == (
        "agent", "researcher", "paused", "paused")
    assert breaker["transitions"] == 3 and breaker["threshold"] == 10.0 and breaker["current"] == 12.5
    history = client.get("/api/circuit-breaker/history").json()["transitions"]
    assert [t["event"] for t in history] == ["paused", "retrip", "triggered"]
    assert history[-1]["source"] == "span" and history[-1]["trace_id"] == span["trace_id"]


def test_the_retention_purge_takes_its_transitions_and_alerts_out_of_the_breaker_status(client: TestClient) -> None:
    """Found 2026-12-06: after the retention purge deleted a scope's breaker transitions and SDK alerts, the SQLite
    store's Breakers view still showed the scope (OPEN, 40 days after its last transition) and counted the deleted
    transitions and alerts; ClickHouse showed what was kept. Both stores now derive the status from what is kept."""
    day = 86400 * 10**9
    old, recent = NOW - 40 * day, NOW - day
    gone = {**transition("triggered", "closed", "open", old), "scope": "global", "scope_id": "forgotten"}
    steps = [transition("triggered", "closed", "open", old), transition("paused", "open", "paused", old + 1),
             transition("half_open", "paused", "half_open", recent), transition("recovered", "half_open", "closed",
                                                                                recent + 1)]
    alerts = [{"type": "alert", "timestamp_unix_nano": at, "reason": "budget_per_hour", "scope": "agent",
               "scope_id": "researcher", "threshold": 10.0, "current": current, "state": state}
              for at, current, state in ((old, 11.0, "open"), (recent, 9.5, "half_open"))]
    for body in [{"type": "transition", **gone}, *({"type": "transition", **step} for step in steps), *alerts]:
        assert client.post("/api/alerts/sdk-alert", json=body).json()["recorded"]
    client.app.state.agentwatch.store.purge(NOW - 30 * day)  # type: ignore[attr-defined]

    status = client.get("/api/circuit-breaker/status").json()
    listed = [(b["scope_id"], b["state"], b["last_event"], b["transitions"], b["alerts"]) for b in status["breakers"]]
    assert listed == [("researcher", "closed", "recovered", 2, 1)]
    assert status["open"] == 0
    breaker = status["breakers"][0]
    assert (breaker["last_alert_reason"], breaker["last_alert_unix_nano"]) == ("budget_per_hour", recent)
    assert [t["event"] for t in client.get("/api/circuit-breaker/history").json()["transitions"]] == [
        "recovered", "half_open"]


def test_sdk_alerts_land_in_history_once(client: TestClient, make_span: SpanFactory) -> None:
    alert = {"type": "alert", "timestamp_unix_nano": NOW, "reason": "max_calls_per_minute", "scope": "global",
             "scope_id": "global", "threshold": 100, "current": 140, "state": "closed"}
    assert client.post("/api/alerts/sdk-alert", json=alert).json()["recorded"] is True
    assert client.post("/api/alerts/sdk-alert", json=alert).json()["recorded"] is False
    as_span = make_span(kind="alert", name="alert.max_calls_per_minute", model=None, start=NOW, duration_ms=0,
                        attributes={k: v for k, v in alert.items() if k not in ("type", "timestamp_unix_nano")})
    client.post("/api/ingest", json=as_span)
    history = client.get("/api/alerts/history").json()["history"]
    assert len(history) == 1
    assert history[0]["source"] == "sdk" and history[0]["condition"] == "max_calls_per_minute"
    assert history[0]["value"] == 140 and "max_calls_per_minute" in history[0]["message"]
    breaker = client.get("/api/circuit-breaker/status").json()["breakers"][0]
    assert breaker["state"] == "closed" and breaker["alerts"] == 1
    assert client.post("/api/alerts/sdk-alert", json={"type": "nonsense"}).status_code == 422


def test_rule_crud(client: TestClient) -> None:
    docs_example = {"name": "High Cost Alert", "condition": "cost_per_hour", "threshold": 50.0,
                    "action_type": "email"}
    created = client.post("/api/alerts", json=docs_example)
    assert created.status_code == 201
    rule = created.json()
    assert rule["enabled"] is True and rule["cooldown_seconds"] == 300
    hook = client.post("/api/alerts", json={"name": "errors", "condition": "error_rate", "threshold": 0.2,
                                            "action_type": "webhook", "webhook_url": "http://127.0.0.1:9/hook",
                                            "cooldown_seconds": 60}).json()
    assert [r["id"] for r in client.get("/api/alerts").json()["rules"]] == [rule["id"], hook["id"]]
    toggled = client.patch(f"/api/alerts/{rule['id']}").json()
    assert toggled["enabled"] is False
    assert client.patch(f"/api/alerts/{rule['id']}", json={"enabled": True, "threshold": 75}).json()["threshold"] == 75
    assert client.delete(f"/api/alerts/{hook['id']}").json() == {"deleted": hook["id"]}
    assert client.delete(f"/api/alerts/{hook['id']}").status_code == 404
    assert client.patch("/api/alerts/999", json={"enabled": False}).status_code == 404
    for bad in ({**docs_example, "condition": "vibes"}, {**docs_example, "threshold": -1},
                {**docs_example, "action_type": "webhook"}, {**docs_example, "webhook_url": "ftp://x/y"},
                {**docs_example, "email": "not an address"}, {**docs_example, "email": "a@b.c\nBcc: x@y.z"},
                {**docs_example, "unknown": 1}):
        assert client.post("/api/alerts", json=bad).status_code == 422, bad
    assert client.patch(f"/api/alerts/{rule['id']}", json={"action_type": "webhook"}).status_code == 422




def test_a_deleted_rules_id_is_never_given_again(client: TestClient) -> None:
    """Found 2026-12-05: SQLite gave a deleted rule's id (the highest) to the next rule created, so the deleted rule's
    alert history named the new rule, and the cron runs it had reported (claims by rule id) kept the new rule from
    reporting them. Ids are never reused, and deleting a rule drops its claims, on both stores."""
    rule = {"name": "a", "condition": "cron_missed", "threshold": 0, "action_type": "webhook",
            "webhook_url": "http://127.0.0.1:9/hook"}
    first = client.post("/api/alerts", json=rule).json()["id"]
    second = client.post("/api/alerts", json=rule).json()["id"]
    store = client.app.state.agentwatch.store
    assert store.claim_cron_alert(second, "nightly", 1000) and not store.claim_cron_alert(second, "nightly", 1000)
    assert client.delete(f"/api/alerts/{second}").status_code == 200
    third = client.post("/api/alerts", json=rule).json()["id"]
    assert third not in (first, second) and third > second
    assert store.claim_cron_alert(second, "nightly", 1000)  # the deleted rule's claim went with it


def test_a_database_from_before_autoincrement_rules_keeps_its_ids(tmp_path: Path) -> None:
    """A file made before alert_rules had AUTOINCREMENT: the next rule's id is after every id the history names."""
    path = tmp_path / "old.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as connection:  # the table as it was made, rule 7 deleted after it alerted
        connection.execute("DROP TABLE alert_rules")
        connection.execute("CREATE TABLE alert_rules (id INTEGER PRIMARY KEY, name TEXT NOT NULL, condition TEXT NOT"
                           " NULL, threshold REAL NOT NULL, action_type TEXT NOT NULL, webhook_url TEXT, email TEXT,"
                           " enabled INTEGER NOT NULL, cooldown_seconds INTEGER NOT NULL, window_seconds INTEGER,"
                           " created_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL, last_triggered_ns INTEGER)")
        connection.execute("INSERT INTO alert_rules VALUES (3, 'kept', 'error_rate', 0.5, 'email', NULL, NULL, 1, 300,"
                           " NULL, 1, 1, NULL)")
        connection.execute("INSERT INTO alert_history (ts_ns, source, rule_id, message, details) VALUES"
                           " (1, 'rule', 7, 'fired', '{}')")
    store = SQLiteStore(path)
    try:
        assert [rule["name"] for rule in store.list_rules()] == ["kept"]
        created = store.create_rule({"name": "new", "condition": "error_rate", "threshold": 0.5,
                                     "action_type": "email", "cooldown_seconds": 300})
        assert created["id"] == 8
    finally:
        store.close()


def test_a_database_purged_by_an_earlier_version_loses_its_stale_breaker_status(tmp_path: Path) -> None:
    """A file whose purge deleted a scope's transitions but kept its status (before the purge took them out): the
    collector derives the status anew once, when it opens the file."""
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    try:
        for step in (transition("triggered", "closed", "open", NOW - 2_000_000_000),
                     {**transition("triggered", "closed", "open", NOW - 1_000_000_000), "scope_id": "kept"}):
            assert store.record_breaker_event(step, "sdk")
    finally:
        store.close()
    with sqlite3.connect(path) as connection:  # what the earlier purge left
        connection.execute("DELETE FROM breaker_events WHERE scope_id = 'researcher'")
        connection.execute("DELETE FROM meta WHERE key = 'breaker_state_derived'")
    store = SQLiteStore(path)
    try:
        assert [(b["scope_id"], b["state"], b["transitions"]) for b in store.breaker_status()] == [("kept", "open", 1)]
    finally:
        store.close()


def _calls(make_span: SpanFactory, count: int, *, errors: int = 0, cost: float = 0.001,
           duration_ms: float = 100.0) -> list[dict[str, Any]]:
    return [make_span(start=NOW - 20_000_000_000 + i * 1_000_000, status="error" if i < errors else "ok",
                      cost_usd=cost, duration_ms=duration_ms) for i in range(count)]


def test_rules_fire_to_a_webhook_with_cooldown(client: TestClient, make_span: SpanFactory,
                                               webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = webhook
    engine = client.app.state.agentwatch.alerts
    rules = {condition: client.post("/api/alerts", json={
        "name": f"{condition} rule", "condition": condition, "threshold": threshold, "action_type": "webhook",
        "webhook_url": url, "cooldown_seconds": 600}).json()
        for condition, threshold in (("cost_per_hour", 1.0), ("error_rate", 0.3), ("calls_per_minute", 20),
                                     ("blocked_calls", 0), ("latency_p95", 900))}
    client.post("/api/ingest", json=_calls(make_span, 9, errors=9))
    assert engine.evaluate(NOW) == []  # fewer than 10 calls: an error rate is not judged yet
    client.post("/api/ingest", json=_calls(make_span, 30, errors=12, cost=0.05, duration_ms=1500))
    blocked = make_span(start=NOW - 10_000_000_000, status="blocked", attributes={"breaker.reason": "budget"})
    client.post("/api/ingest", json=blocked)
    fired = engine.evaluate(NOW)
    assert {event["condition"] for event in fired} == set(rules)
    assert all(event["delivery_status"] == "sent" for event in fired)
    texts = sorted(message["text"] for message in received)
    assert len(texts) == 5 and all(text.startswith("[AgentWatch]") for text in texts)
    assert any("cost_per_hour is 1.5" in text for text in texts)
    # Within the cooldown nothing fires again; after it, it does.
    assert engine.evaluate(NOW + 1_000_000_000) == []
    assert engine.evaluate(NOW + 599 * 1_000_000_000) == []
    # After it, only what still holds fires again: the short-window conditions have aged out.
    assert [e["condition"] for e in engine.evaluate(NOW + 601 * 1_000_000_000)] == ["cost_per_hour"]
    client.patch(f"/api/alerts/{rules['error_rate']['id']}", json={"cooldown_seconds": 0})
    assert [e["condition"] for e in engine.evaluate(NOW + 2_000_000_000)] == ["error_rate"]
    history = client.get("/api/alerts/history").json()["history"]
    assert len(history) == 7 and {h["source"] for h in history} == {"rule"}
    assert all(h["delivery_status"] == "sent" for h in history)
    assert client.get("/api/alerts").json()["rules"][0]["last_triggered_at"]


def test_ingest_wakes_the_evaluator(tmp_path: Path, signing_key: Path, make_span: SpanFactory,
                                    webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = webhook
    settings = Settings(db_path=tmp_path / "wake.db", signing_key_path=signing_key, alert_interval_seconds=3600,
                        alert_min_interval_seconds=0.05)
    with TestClient(create_app(settings=settings), base_url="http://localhost") as client:
        client.post("/api/alerts", json={"name": "loop", "condition": "calls_per_minute", "threshold": 5,
                                         "action_type": "webhook", "webhook_url": url})
        client.post("/api/ingest", json=[make_span(start=time.time_ns() - 1_000_000_000) for _ in range(8)])
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert received and "calls_per_minute" in received[0]["text"]


def test_failed_delivery_is_recorded(client: TestClient, make_span: SpanFactory) -> None:
    client.post("/api/alerts", json={"name": "dead hook", "condition": "blocked_calls", "threshold": 0,
                                     "action_type": "webhook", "webhook_url": "http://127.0.0.1:9/nothing"})
    client.post("/api/alerts", json={"name": "no smtp", "condition": "blocked_calls", "threshold": 0,
                                     "action_type": "email", "email": "ops@example.com"})
    client.post("/api/ingest", json=make_span(start=NOW - 1_000_000_000, status="blocked"))
    engine = client.app.state.agentwatch.alerts
    fired = engine.evaluate(NOW)
    # A channel that is down is retried with backoff; a rule that cannot work until changed fails at once.
    assert [e["delivery_status"] for e in fired] == ["retrying", "failed"]
    errors = {h["rule_name"]: h["delivery_error"] for h in client.get("/api/alerts/history").json()["history"]}
    assert "not reachable" in errors["dead hook"] and "attempt 1 of 4" in errors["dead hook"]
    assert "SMTP_HOST" in errors["no smtp"]
    later = time.monotonic()
    for delay in RETRY_DELAYS:
        later += delay
        assert [status for _, status, _ in engine.retry_due(later)] == ["retrying" if delay != RETRY_DELAYS[-1]
                                                                        else "failed"]
    assert engine.pending_retries == 0
    history = {h["rule_name"]: h for h in client.get("/api/alerts/history").json()["history"]}
    assert history["dead hook"]["delivery_status"] == "failed" and "not reachable" in history["dead hook"][
        "delivery_error"]


@pytest.mark.parametrize("url", ["http://hooks.example.com/a b", "http://hooks.example.com:99999/x",
                                 "http://hooks.example.com:abc/x", "ftp://hooks.example.com/x", "http:///x",
                                 "http://bad_host!.example/x", "http://user:pw@hooks.example.com/x",
                                 "http://hooks.example.com/\u00e9", "http://hooks.example.com/x\n",
                                 "javascript:alert(1)"])
def test_webhook_urls_are_checked_at_creation(client: TestClient, url: str) -> None:
    answer = client.post("/api/alerts", json={"name": "r", "condition": "blocked_calls", "threshold": 0,
                                              "action_type": "webhook", "webhook_url": url})
    assert answer.status_code == 422, answer.text
    good = client.post("/api/alerts", json={"name": "r", "condition": "blocked_calls", "threshold": 0,
                                            "action_type": "webhook", "webhook_url": "https://[::1]:8443/h?x=1"})
    assert good.status_code == 201, good.text
    assert client.patch(f"/api/alerts/{good.json()['id']}", json={"webhook_url": url}).status_code == 422


def test_one_broken_rule_never_silences_the_others(client: TestClient, make_span: SpanFactory,
                                                   webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = webhook
    store = client.app.state.agentwatch.store
    # Rules stored before URLs were checked strictly (written to the store directly, as an old version did).
    base = {"condition": "blocked_calls", "threshold": 0.0, "action_type": "webhook", "email": None,
            "enabled": True, "cooldown_seconds": 0, "window_seconds": None}
    store.create_rule({**base, "name": "space", "webhook_url": "http://127.0.0.1:9/a b"})
    store.create_rule({**base, "name": "port", "webhook_url": "http://127.0.0.1:99999/x"})
    store.create_rule({**base, "name": "good", "webhook_url": url})
    client.post("/api/ingest", json=make_span(start=NOW - 1_000_000_000, status="blocked"))
    fired = {e["rule_name"]: e for e in client.app.state.agentwatch.alerts.evaluate(NOW)}
    assert fired["good"]["delivery_status"] == "sent" and len(received) == 1
    assert fired["space"]["delivery_status"] == "failed" and "space" in fired["space"]["delivery_error"]
    assert fired["port"]["delivery_status"] == "failed" and "port" in fired["port"]["delivery_error"]
    history = {h["rule_name"]: h["delivery_status"] for h in client.get("/api/alerts/history").json()["history"]}
    assert history == {"space": "failed", "port": "failed", "good": "sent"}


def test_a_retried_alert_is_sent_once_the_hook_is_back(client: TestClient, make_span: SpanFactory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client.post("/api/alerts", json={"name": "flaky", "condition": "blocked_calls", "threshold": 0,
                                     "action_type": "webhook", "webhook_url": f"http://127.0.0.1:{port}/hook"})
    client.post("/api/ingest", json=make_span(start=NOW - 1_000_000_000, status="blocked"))
    engine = client.app.state.agentwatch.alerts
    assert [e["delivery_status"] for e in engine.evaluate(NOW)] == ["retrying"]
    assert engine.retry_due(time.monotonic()) == []  # not before its backoff is over
    received: list[dict[str, Any]] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", port), type("Hook", (WebhookHandler,), {"received": received}))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        assert [status for _, status, _ in engine.retry_due(time.monotonic() + RETRY_DELAYS[0])] == ["sent"]
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(received) == 1
    assert client.get("/api/alerts/history").json()["history"][0]["delivery_status"] == "sent"


def test_email_alerts_through_a_real_smtp_server(tmp_path: Path, signing_key: Path,
                                                 make_span: SpanFactory) -> None:
    import aiosmtpd.controller

    messages: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
            messages.append(envelope)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = aiosmtpd.controller.Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = Settings(db_path=tmp_path / "mail.db", signing_key_path=signing_key, smtp_host="127.0.0.1",
                            smtp_port=port, from_email="agentwatch@test.local", alert_email_to="oncall@test.local",
                            alert_interval_seconds=3600, alert_min_interval_seconds=3600)
        with TestClient(create_app(settings=settings), base_url="http://localhost") as client:
            client.post("/api/alerts", json={"name": "Spend", "condition": "cost_per_hour", "threshold": 0.01,
                                             "action_type": "email", "email": "ops@test.local"})
            client.post("/api/alerts", json={"name": "Docs style", "condition": "cost_per_hour",
                                             "threshold": 0.01, "action_type": "email"})
            client.post("/api/ingest", json=_calls(make_span, 3, cost=0.02))
            fired = client.app.state.agentwatch.alerts.evaluate(NOW)
            assert [e["delivery_status"] for e in fired] == ["sent", "sent"]
    finally:
        controller.stop()
    assert sorted(m.rcpt_tos[0] for m in messages) == ["oncall@test.local", "ops@test.local"]
    body = messages[0].content.decode()
    assert "Subject: AgentWatch alert:" in body and "cost_per_hour" in body
    assert messages[0].mail_from == "agentwatch@test.local"


def test_patch_with_null_for_a_required_field_is_refused(client: TestClient) -> None:
    """Found by schemathesis: ``{"enabled": null}`` made a 500."""
    rule = client.post("/api/alerts", json={"name": "spend", "condition": "cost_per_hour", "threshold": 5,
                                            "action_type": "webhook",
                                            "webhook_url": "https://hooks.example.com/x"}).json()
    for field in ("enabled", "name", "threshold", "cooldown_seconds"):
        answer = client.patch(f"/api/alerts/{rule['id']}", json={field: None})
        assert answer.status_code == 422 and field in answer.json()["detail"], (field, answer.text)
    assert client.get("/api/alerts").json()["rules"][0]["enabled"] is True


@pytest.mark.parametrize(("body", "missing"), [
    ({"scope": "agent"}, "scope_id, reason"),
    ({"scope": "agent", "scope_id": "researcher"}, "reason"),
    ({"scope_id": "researcher", "reason": "budget_per_hour"}, "scope"),
    ({"scope": "agent", "scope_id": "", "reason": "budget_per_hour"}, "scope_id"),
    ({"type": "alert", "scope": "agent", "scope_id": "researcher", "reason": None}, "reason"),
    ({"type": "transition", "scope": "agent", "scope_id": "researcher", "from_state": "closed"}, "event, to_state"),
])
def test_an_sdk_alert_without_its_required_fields_is_refused(client: TestClient, body: dict, missing: str) -> None:
    """Both SDKs always send scope, scope_id and reason (a transition: scope, scope_id, event and to_state); a body
    without them was answered 202 and stored as an alert 'alert on agent/agent' nobody raised."""
    answer = client.post("/api/alerts/sdk-alert", json={"timestamp_unix_nano": NOW, **body})
    assert answer.status_code == 422, answer.text
    assert f"missing {missing}" in answer.text
    assert client.get("/api/alerts/history").json()["history"] == []
    assert client.get("/api/circuit-breaker/history").json()["transitions"] == []
