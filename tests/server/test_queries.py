"""Read API: the traces list and its filters, spans, graph, compliance score, metrics and costs."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from agentwatch.server._stats import HOUR_NS
from tests.server.aw_helpers import SpanFactory, make_trace, new_trace_id

NOW = time.time_ns()


@pytest.fixture
def populated(client: TestClient, make_span: SpanFactory) -> dict[str, list[dict]]:
    traces = {
        "old_ok": make_trace(make_span, start=NOW - 50 * HOUR_NS, agent="planner", model="gpt-4o", name="plan"),
        "error": make_trace(make_span, start=NOW - 30 * HOUR_NS, agent="researcher", status="error",
                            name="research the market"),
        "blocked": make_trace(make_span, start=NOW - 20 * HOUR_NS, agent="writer", model="claude-sonnet-4-6",
                              status="blocked", name="write summary"),
        "recent": make_trace(make_span, calls=6, start=NOW - 2 * HOUR_NS, agent="researcher", name="deep dive"),
    }
    for spans in traces.values():
        assert client.post("/api/ingest", json=spans).status_code == 202
    return traces


def ids(answer: dict) -> list[str]:
    return [trace["trace_id"] for trace in answer["traces"]]


def test_trace_summaries_aggregate_their_spans(client: TestClient, populated: dict) -> None:
    answer = client.get("/api/traces").json()
    assert answer["total"] == 4
    assert ids(answer) == [populated[k][0]["trace_id"] for k in ("recent", "blocked", "error", "old_ok")]
    recent = answer["traces"][0]
    assert recent["name"] == "deep dive"
    assert recent["span_count"] == 7 and recent["llm_calls"] == 6
    assert recent["input_tokens"] == 600 and recent["output_tokens"] == 120 and recent["total_tokens"] == 720
    assert recent["cost_usd"] == pytest.approx(0.006)
    assert recent["status"] == "ok"
    assert recent["agents"] == [{"agent_id": "researcher", "agent_name": "Researcher"}]
    assert recent["models"] == ["gpt-4o-mini"]
    assert recent["duration_ms"] == pytest.approx(6010.0)
    assert recent["start_time"].endswith("Z")
    statuses = {t["trace_id"]: t["status"] for t in answer["traces"]}
    assert statuses[populated["error"][0]["trace_id"]] == "error"
    assert statuses[populated["blocked"][0]["trace_id"]] == "blocked"


def test_root_name_wins_whatever_the_arrival_order(client: TestClient, make_span: SpanFactory) -> None:
    spans = make_trace(make_span, calls=2, name="the root")
    # Children first, as an SDK exports them (a parent ends last).
    client.post("/api/ingest", json=spans[1:])
    assert client.get(f"/api/traces/{spans[0]['trace_id']}").json()["name"] == "openai.chat"
    client.post("/api/ingest", json=spans[:1])
    assert client.get(f"/api/traces/{spans[0]['trace_id']}").json()["name"] == "the root"


def test_search_finds_a_trace_by_the_name_it_has_now(client: TestClient, make_span: SpanFactory) -> None:
    spans = make_trace(make_span, calls=2, name="quarterly digest")
    for span in spans[1:]:
        span["name"] = "summarise section"
    trace_id = spans[0]["trace_id"]

    def found(text: str) -> bool:
        return trace_id in ids(client.get("/api/traces", params={"search": text}).json())

    client.post("/api/ingest", json=spans[1:])  # children first: the trace is named after its earliest span
    assert found("SUMMARISE") and not found("quarterly")
    client.post("/api/ingest", json=spans[:1])  # the root names it from now on, whatever came before
    assert found("Quarterly") and not found("summarise")


def test_search_looks_at_the_labels_not_at_how_they_are_stored(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-05: on SQLite a search matched the JSON text a trace's agents and models are kept in: ``null``
    found every trace with an agent without a name, and ``"``, ``[``, ``,`` or ``\\`` nearly every trace; and an agent
    was not found by the name it was given in a later batch. Both stores search the name, id and labels alone."""
    unnamed = make_span(name="nightly job", kind="agent", agent_id="agent-one", agent_name=None, model=None)
    first = make_span(name="r", kind="agent", agent_id="bot", agent_name="Zed", model="m-1")
    renamed = make_span(trace_id=first["trace_id"], parent_span_id=first["span_id"], agent_id="bot",
                        agent_name="Alpha", model="m-2")
    for batch in ([unnamed], [first], [renamed]):
        assert client.post("/api/ingest", json=batch).status_code == 202

    def found(text: str) -> list[str]:
        return sorted(ids(client.get("/api/traces", params={"search": text}).json()))

    for text in ("null", '"', "[", ",", "\\", "]]"):
        assert found(text) == [], text
    for text in ("ALPHA", "zed", "BOT", "M-2"):
        assert found(text) == [first["trace_id"]], text
    assert found("AGENT-ONE") == [unnamed["trace_id"]]
    assert found(unnamed["trace_id"][-12:].upper()) == [unnamed["trace_id"]]


def test_search_ignores_case_in_every_alphabet(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-05: SQLite's search folded ASCII letters only: ``résumé`` did not find ``RÉSUMÉ`` (ClickHouse
    did)."""
    span = make_span(name="RÉSUMÉ ÉTÉ", agent_id="agent-ümlaut", agent_name="Ärger", model="MODÈLE-Ü")
    assert client.post("/api/ingest", json=[span]).status_code == 202
    for text in ("résumé", "été", "AGENT-ÜMLAUT", "ärger", "modèle-ü", "ét"):
        assert ids(client.get("/api/traces", params={"search": text}).json()) == [span["trace_id"]], text
    assert ids(client.get("/api/traces", params={"search": "ÉTÉ_"}).json()) == []


@pytest.mark.parametrize(("params", "expected"), [
    ({"status": "error"}, ["error"]),
    ({"status": "blocked"}, ["blocked"]),
    ({"agent_id": "researcher"}, ["recent", "error"]),
    ({"model": "claude-sonnet-4-6"}, ["blocked"]),
    ({"search": "RESEARCH"}, ["recent", "error"]),
    ({"search": "write"}, ["blocked"]),
    ({"search": "gpt-4o"}, ["recent", "error", "old_ok"]),
    ({"search": "100%"}, []),
    ({"from": "__25h"}, ["recent", "blocked"]),
    ({"from": "__40h", "to": "__10h"}, ["blocked", "error"]),
    ({"sort": "spans", "order": "desc", "limit": "1"}, ["recent"]),
    ({"sort": "name", "order": "asc"}, ["recent", "old_ok", "error", "blocked"]),
    ({"agent_id": "researcher", "status": "ok"}, ["recent"]),
])
def test_filters(client: TestClient, populated: dict, params: dict[str, str], expected: list[str]) -> None:
    for key, value in list(params.items()):
        if value.startswith("__"):
            hours = int(value[2:-1])
            params[key] = datetime.fromtimestamp((NOW - hours * HOUR_NS) / 1e9, UTC).isoformat()
    answer = client.get("/api/traces", params=params).json()
    assert ids(answer) == [populated[name][0]["trace_id"] for name in expected]


@pytest.mark.parametrize("params", [{"agent_id": "researcher"}, {"search": "gpt-4o"}, {"status": "ok"},
                                    {"model": "gpt-4o-mini", "sort": "cost"}])
def test_a_filtered_total_counts_every_match_whatever_the_page(client: TestClient, populated: dict,
                                                               params: dict[str, str]) -> None:
    everything = client.get("/api/traces", params=params).json()
    assert everything["total"] == len(everything["traces"]) >= 2
    for offset in range(len(everything["traces"]) + 2):  # pages of one, then past the end
        page = client.get("/api/traces", params={**params, "limit": "1", "offset": str(offset)}).json()
        assert page["total"] == everything["total"]
        assert ids(page) == ids(everything)[offset:offset + 1]


def test_paging_and_epoch_times(client: TestClient, populated: dict) -> None:
    first = client.get("/api/traces", params={"limit": 2}).json()
    second = client.get("/api/traces", params={"limit": 2, "offset": 2}).json()
    assert first["total"] == second["total"] == 4
    assert len(set(ids(first)) | set(ids(second))) == 4
    since = str((NOW - 25 * HOUR_NS) // 1_000_000)  # epoch milliseconds
    assert client.get("/api/traces", params={"from": since}).json()["total"] == 2


@pytest.mark.parametrize("params", [
    {"sort": "cost; DROP TABLE spans"}, {"order": "sideways"}, {"status": "weird"}, {"limit": "0"},
    {"limit": "100000"}, {"from": "next tuesday"},
])
def test_bad_parameters_are_refused_not_interpolated(client: TestClient, populated: dict,
                                                     params: dict[str, str]) -> None:
    assert client.get("/api/traces", params=params).status_code == 422
    assert client.get("/api/traces").json()["total"] == 4


def test_injection_in_filters_is_just_text(client: TestClient, populated: dict) -> None:
    for value in ("' OR 1=1 --", "\" OR \"\"=\"", "researcher' --", "%' UNION SELECT * FROM spans --"):
        for key in ("search", "agent_id", "model"):
            assert client.get("/api/traces", params={key: value}).json()["total"] == 0
    assert client.get("/api/traces").json()["total"] == 4


def test_unknown_trace_is_404_and_odd_ids_400(client: TestClient) -> None:
    assert client.get("/api/traces/" + "0" * 32).status_code == 404
    assert client.get("/api/traces/" + "0" * 32 + "/spans").status_code == 404
    assert client.get("/api/traces/" + "0" * 32 + "/graph").status_code == 404
    assert client.get("/api/traces/" + "0" * 32 + "/compliance-score").status_code == 404
    assert client.get("/api/traces/bad id!/spans").status_code == 400


def test_causal_graph(client: TestClient, make_span: SpanFactory) -> None:
    start = NOW - HOUR_NS
    root = make_span(name="crew", kind="chain", agent_id=None, agent_name=None, model=None, start=start,
                     duration_ms=5000)
    tid = root["trace_id"]
    boss = make_span(trace_id=tid, parent_span_id=root["span_id"], kind="agent", name="boss", agent_id="boss",
                     agent_name="Boss", model=None, start=start + 1)
    boss_call = make_span(trace_id=tid, parent_span_id=boss["span_id"], agent_id="boss", start=start + 2)
    node = make_span(trace_id=tid, parent_span_id=boss["span_id"], kind="node", name="step", agent_id="boss",
                     model=None, start=start + 3)
    helper = make_span(trace_id=tid, parent_span_id=node["span_id"], kind="agent", name="helper",
                       agent_id="helper", agent_name="Helper", model=None, start=start + 4)
    tool = make_span(trace_id=tid, parent_span_id=helper["span_id"], kind="tool", name="web_search",
                     agent_id="helper", model=None, start=start + 5)
    calls = [make_span(trace_id=tid, parent_span_id=helper["span_id"], agent_id="helper", model="gpt-4o",
                       start=start + 6 + i) for i in range(2)]
    client.post("/api/ingest", json=[root, boss, boss_call, node, helper, tool, *calls])
    graph = client.get(f"/api/traces/{tid}/graph").json()
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes["agent:boss"]["type"] == "agent" and nodes["agent:helper"]["label"] == "Helper"
    assert f"tool:{tool['span_id']}" in nodes
    edges = {(e["source"], e["target"], e["type"]) for e in graph["edges"]}
    assert (f"root:{root['span_id']}", "agent:boss", "invokes") in edges
    assert ("agent:boss", "agent:helper", "delegates") in edges  # through the plumbing "node" span
    assert ("agent:boss", f"llm:{boss_call['span_id']}", "calls") in edges
    assert ("agent:helper", f"tool:{tool['span_id']}", "uses_tool") in edges
    assert all(("agent:helper", f"llm:{c['span_id']}", "calls") in edges for c in calls)
    assert graph["span_count"] == 8
    assert graph["total_cost_usd"] == pytest.approx(0.008)


def test_compliance_score_rubric(client: TestClient, make_span: SpanFactory) -> None:
    good = make_trace(make_span, calls=2, input=[{"role": "user", "content": "q"}])
    good[2]["status"] = "error"
    good[2]["attributes"] = {"error.type": "RateLimitError", "error.message": "429"}
    client.post("/api/ingest", json=good)
    score = client.get(f"/api/traces/{good[0]['trace_id']}/compliance-score").json()
    items = {item["id"]: item for item in score["items"]}
    assert set(items) == {"automatic_recording", "period_of_use", "reference_data", "input_data",
                          "persons_involved", "risk_situations", "log_retention"}
    assert sum(item["max_points"] for item in score["items"]) == 100
    assert all(item["article"].startswith("Art.") and item["evidence"] for item in score["items"])
    assert items["risk_situations"]["passed"]
    assert not items["log_retention"]["passed"]  # the default 30 days is under six months
    assert score["score"] == 95

    # No root, no inputs, no agent, an undocumented error: points are lost item by item.
    poor = make_span(agent_id=None, agent_name=None, parent_span_id="ab" * 8, status="error", model=None)
    client.post("/api/ingest", json=poor)
    weak = client.get(f"/api/traces/{poor['trace_id']}/compliance-score").json()
    weak_items = {item["id"]: item for item in weak["items"]}
    for item_id in ("automatic_recording", "period_of_use", "reference_data", "input_data", "persons_involved",
                    "risk_situations"):
        assert not weak_items[item_id]["passed"], item_id
    assert weak["score"] < 40


def test_metrics_and_costs(client: TestClient, populated: dict) -> None:
    metrics = client.get("/api/metrics").json()
    assert metrics["traces"] == 4 and metrics["spans"] == 19
    # The blocked call is not a call that went out.
    assert metrics["llm_calls"] == 14 and metrics["blocked_calls"] == 1
    assert metrics["errors"] == 1 and metrics["llm_errors"] == 1
    assert metrics["error_rate"] == pytest.approx(1 / 14, abs=1e-4)
    assert metrics["cost_usd"] == pytest.approx(0.015)
    assert metrics["latency_p50_ms"] == pytest.approx(100, rel=0.03)
    recent = client.get("/api/metrics", params={"from": str((NOW - 25 * HOUR_NS) // 10**9)}).json()
    assert recent["traces"] == 2 and recent["spans"] == 11

    by_agent = {a["agent_id"]: a for a in client.get("/api/cost/by-agent").json()["agents"]}
    assert by_agent["researcher"]["cost_usd"] == pytest.approx(0.009)
    assert by_agent["researcher"]["agent_name"] == "Researcher"
    assert by_agent["writer"]["blocked"] == 1
    by_model = {m["model"]: m for m in client.get("/api/cost/by-model").json()["models"]}
    assert by_model["gpt-4o-mini"]["llm_calls"] == 9 and by_model["gpt-4o"]["provider"] == "openai"
    days = client.get("/api/cost/daily", params={"days": 4}).json()["days"]
    assert len(days) == 4
    assert sum(day["cost_usd"] for day in days) == pytest.approx(0.015)
    assert days[-1]["date"] == datetime.now(UTC).date().isoformat()


def _sdk_blocks() -> list[dict]:
    """What the SDK exports for two blocks of the agent "writer": its run stopped at the start (the plugin guide's
    recipe: ``check_limits``, then ``record_blocked(kind="agent", scopes=...)``), and a run whose model call was
    refused (the call blocked, and the agent's span it ended on its way out)."""
    import agentwatch
    from agentwatch import instrumentation as aw

    memory = agentwatch.InMemoryExporter()
    client = agentwatch.init(exporters=[memory], agents={"writer": {"budget_per_hour": 0.0,
                                                                    "block_on_threshold": True}})
    scope = client.agent_scope("writer")
    try:
        aw.check_limits(scopes=(scope,))
    except agentwatch.CircuitBreakerException as blocked:
        aw.record_blocked(blocked, "writer", kind="agent", scopes=(scope,))
    with pytest.raises(agentwatch.CircuitBreakerException), agentwatch.agent("writer"):
        with agentwatch.llm_call("writer.call", model="gpt-4o-mini"):
            pass
    agentwatch.shutdown()
    return [span for span in memory.spans if span["kind"] in ("agent", "llm")]


def test_a_block_counts_once_where_it_happened_whatever_its_kind(client: TestClient) -> None:
    """The guide's block at an agent's start used to be listed as an "ok" trace with no block and no agent: its span
    had no agent, and only model calls and graph nodes counted as blocks. A block now counts at the span the SDK
    marks as where it happened, of any kind; the spans it ended blocked on its way out do not count again."""
    spans = _sdk_blocks()
    assert client.post("/api/ingest", json=spans).status_code == 202
    stopped = next(span["trace_id"] for span in spans if span["kind"] == "agent" and span["parent_span_id"] is None
                   and not any(other["parent_span_id"] == span["span_id"] for other in spans))
    traces = {trace["trace_id"]: trace for trace in client.get("/api/traces").json()["traces"]}
    assert len(traces) == 2
    for trace in traces.values():
        assert (trace["status"], trace["blocked"]) == ("blocked", 1)
        assert trace["agents"] == [{"agent_id": "writer", "agent_name": "writer"}]
    assert traces[stopped]["llm_calls"] == 0
    assert set(ids(client.get("/api/traces", params={"agent_id": "writer"}).json())) == set(traces)
    assert client.get("/api/metrics").json()["blocked_calls"] == 2
    (writer,) = client.get("/api/cost/by-agent").json()["agents"]
    assert (writer["agent_id"], writer["blocked"]) == ("writer", 2)


def test_ranged_aggregates_match_a_brute_force_count(client: TestClient, make_span: SpanFactory) -> None:
    """Whole hours come from rollups and the partial hours at both ends from raw spans: check the seams."""
    rng = random.Random(12)
    base = (NOW // HOUR_NS - 8) * HOUR_NS
    spans = []
    for _ in range(300):
        kind = rng.choice(["llm", "llm", "tool", "chain", "node", "agent"])
        # Where a block happened, as the SDK marks it (True), a span it passed through (False), or unmarked.
        point = rng.choice([{}, {"breaker.block_point": True}, {"breaker.block_point": False}])
        spans.append(make_span(start=base + rng.randrange(0, 7 * HOUR_NS), kind=kind,
                               status=rng.choice(["ok", "ok", "ok", "error", "blocked"]),
                               cost_usd=rng.choice([0.0, 0.5, 0.25]), duration_ms=rng.uniform(1, 3000),
                               agent_id=rng.choice(["a", "b"]), model=rng.choice(["m1", "m2"]),
                               attributes={"other": False, **point}))
    client.post("/api/ingest", json=spans)
    for _ in range(12):
        low = base + rng.randrange(-HOUR_NS, 8 * HOUR_NS)
        high = low + rng.randrange(1, 6 * HOUR_NS)
        inside = [s for s in spans if low <= s["start_time_unix_nano"] < high]
        calls = [s for s in inside if s["kind"] == "llm" and s["status"] != "blocked"]
        got = client.get("/api/metrics", params={"from": str(low), "to": str(high)}).json()
        assert got["spans"] == len(inside)
        assert got["llm_calls"] == len(calls)
        # A block is counted where it happened (marked by the SDK; unmarked: a model call or a node), not on the spans
        # it passed through: the rollups of whole hours and the raw spans of the partial ones agree.
        assert got["blocked_calls"] == sum(
            s["status"] == "blocked" and s["attributes"].get("breaker.block_point", s["kind"] in ("llm", "node"))
            for s in inside)
        assert got["cost_usd"] == pytest.approx(sum(s["cost_usd"] for s in inside))
        if calls:
            durations = sorted((s["end_time_unix_nano"] - s["start_time_unix_nano"]) / 1e6 for s in calls)
            exact = durations[max(0, -(-len(durations) * 95 // 100) - 1)]
            assert got["latency_p95_ms"] == pytest.approx(exact, rel=0.05)
        agents = client.get("/api/cost/by-agent", params={"from": str(low), "to": str(high)}).json()["agents"]
        assert sum(a["spans"] for a in agents) == len(inside)
        models = client.get("/api/cost/by-model", params={"from": str(low), "to": str(high)}).json()["models"]
        assert sum(m["cost_usd"] for m in models) == pytest.approx(sum(s["cost_usd"] for s in inside))


def test_openapi_schema_describes_the_api(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/api/ingest", "/api/traces", "/api/traces/{trace_id}/spans", "/api/traces/{trace_id}/graph",
                 "/api/traces/{trace_id}/compliance-score", "/api/metrics", "/api/cost/daily", "/api/cost/by-agent",
                 "/api/cost/by-model", "/api/reports/monthly", "/api/reports/monthly/csv", "/api/reports/monthly/pdf",
                 "/api/reports/verify", "/api/circuit-breaker/status", "/api/alerts", "/api/alerts/{rule_id}",
                 "/api/alerts/history", "/api/alerts/sdk-alert", "/health"):
        assert path in schema["paths"], path
    assert {"NativeSpan", "AtpSpan"} <= set(schema["components"]["schemas"])


def test_time_bounds_at_the_edge_of_64_bits_are_answered(client: TestClient, populated: dict) -> None:
    """Found by schemathesis: a bound just under 2**63 rounded up to the hour overflowed SQLite."""
    for bound in ("9223372036854775000", "1e300", "-1e300"):
        for path in ("/api/metrics", "/api/traces", "/api/cost/by-agent"):
            for name in ("from", "to"):
                answer = client.get(path, params={name: bound})
                assert answer.status_code == 200, (path, name, bound, answer.text)
    assert client.get("/api/metrics", params={"from": "9223372036854775000"}).json()["traces"] == 0


@pytest.mark.parametrize("order", ["parents first", "children first"])
def test_graph_of_a_deep_chain(client: TestClient, order: str) -> None:
    """20,000 plumbing spans deep, an LLM call under every 10th: each call hangs off the nearest call above it
    (the walk up is memoised: it was quadratic in depth; bench/bench_graph.py times 100,000)."""
    depth, start = 20_000, time.time_ns() - 3_600_000_000_000
    trace_id = f"deep{order.split()[0]}"
    spans = [{"trace_id": trace_id, "span_id": "s0", "name": "root", "kind": "agent", "agent_id": "a",
              "start_time_unix_nano": start}]
    spans += [{"trace_id": trace_id, "span_id": f"s{i}", "parent_span_id": f"s{i - 1}", "name": "step",
               "kind": "llm" if i % 10 == 0 else "chain", "model": "m", "start_time_unix_nano": start + i}
              for i in range(1, depth + 1)]
    # A parent cycle of plumbing spans with a call under it: listed, never followed forever.
    spans += [{"trace_id": trace_id, "span_id": "c1", "parent_span_id": "c2", "name": "loop", "kind": "chain",
               "start_time_unix_nano": start},
              {"trace_id": trace_id, "span_id": "c2", "parent_span_id": "c1", "name": "loop", "kind": "chain",
               "start_time_unix_nano": start},
              {"trace_id": trace_id, "span_id": "c3", "parent_span_id": "c2", "name": "orphan call", "kind": "llm",
               "model": "m", "start_time_unix_nano": start}]
    if order == "children first":
        spans.reverse()
    for offset in range(0, len(spans), 10_000):
        assert client.post("/api/ingest", json=spans[offset:offset + 10_000]).status_code in (200, 202)
    graph = client.get(f"/api/traces/{trace_id}/graph").json()
    assert graph["span_count"] == depth + 4
    nodes = {node["id"] for node in graph["nodes"]}
    assert nodes == {"agent:a", "llm:c3"} | {f"llm:s{i}" for i in range(10, depth + 1, 10)}
    edges = {(edge["source"], edge["target"]) for edge in graph["edges"]}
    expected = {("agent:a", "llm:s10")} | {(f"llm:s{i}", f"llm:s{i + 10}") for i in range(10, depth, 10)}
    assert edges == expected
    # Every span of the chain counts under its agent, the cycle's under none (the walk up is linear too).
    agents = {a["agent_id"]: a["spans"] for a in client.get("/api/cost/by-agent").json()["agents"]}
    assert agents == {"a": depth + 1, None: 3}


def test_a_model_sent_without_its_provider_is_one_row(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-05: spans of gpt-4o without a provider (a client that does not name it) made a second "gpt-4o" row
    in cost by model (and a second entry in the dashboard's model filter)."""
    spans = [make_span(model="gpt-4o", provider="openai", cost_usd=0.002),
             make_span(model="gpt-4o", provider=None, cost_usd=0.001),
             make_span(model="claude-sonnet-4-5", provider="anthropic", cost_usd=0.004),
             make_span(model="claude-sonnet-4-5", provider="bedrock", cost_usd=0.004),
             make_span(model="claude-sonnet-4-5", provider=None, cost_usd=0.001)]
    assert client.post("/api/ingest", json=spans).json()["accepted"] == 5
    rows = client.get("/api/cost/by-model").json()["models"]
    gpt = [row for row in rows if row["model"] == "gpt-4o"]
    assert len(gpt) == 1 and gpt[0]["provider"] == "openai" and gpt[0]["llm_calls"] == 2
    assert gpt[0]["cost_usd"] == pytest.approx(0.003)
    # Two providers serve claude here: which one the unnamed spans were is not known, so they stay apart.
    assert sorted(str(row["provider"]) for row in rows if row["model"] == "claude-sonnet-4-5") == [
        "None", "anthropic", "bedrock"]


def test_aggregates_keep_the_cost_of_cheap_calls(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-05: aggregates were rounded to 6 decimals while traces were not: five embeddings of $1.6e-7 each
    showed as $1e-6, and a model under $5e-7 as $0, next to a trace of $8e-7."""
    start = time.time_ns() - 5_000_000_000
    spans = [make_span(kind="embedding", model="text-embedding-3-small", agent_id="indexer", agent_name="Indexer",
                       cost_usd=1.6e-7, start=start + i) for i in range(5)]
    spans.append(make_span(model="tiny-model", agent_id="pinger", agent_name="Pinger", cost_usd=4e-7, start=start))
    assert client.post("/api/ingest", json=spans).status_code == 202
    exact = pytest.approx  # a nanodollar apart at most, as a trace's own cost
    assert client.get("/api/metrics").json()["cost_usd"] == exact(1.2e-6, abs=1e-9)
    models = {m["model"]: m["cost_usd"] for m in client.get("/api/cost/by-model").json()["models"]}
    assert models == {"text-embedding-3-small": exact(8e-7, abs=1e-9), "tiny-model": exact(4e-7, abs=1e-9)}
    assert models["tiny-model"] > 0
    agents = {a["agent_id"]: a["cost_usd"] for a in client.get("/api/cost/by-agent").json()["agents"]}
    assert agents == {"indexer": exact(8e-7, abs=1e-9), "pinger": exact(4e-7, abs=1e-9)}
    assert client.get("/api/cost/daily", params={"days": 1}).json()["days"][-1]["cost_usd"] == exact(1.2e-6, abs=1e-9)
    month = datetime.fromtimestamp(start / 1e9, UTC).strftime("%Y-%m")
    report = client.get("/api/reports/monthly", params={"month": month}).json()
    assert report["totals"]["cost_usd"] == exact(1.2e-6, abs=1e-9)
    assert sum(row["cost_usd"] for row in report["cost_by_model"]) == exact(1.2e-6, abs=1e-9)


def _unnamed(make_span: SpanFactory, **fields: object) -> dict:
    """A span as OpenTelemetry instrumentations send a model call or a chain: no agent on it."""
    return make_span(**{"agent_id": None, "agent_name": None, "agent_role": None, **fields})


@pytest.mark.parametrize("order", ["one batch", "children first", "parents first", "middle last"])
def test_calls_are_charged_to_the_agent_above_them(client: TestClient, make_span: SpanFactory, order: str) -> None:
    """Found 2026-12-05: an agent that arrives over OTLP (``invoke_agent Planner`` with gen_ai.agent.name) cost $0 in
    0 calls in the costs by agent: its name is on its own span only, not on the calls under it. Each span is now
    charged to its nearest agent above, whatever order and requests the spans of the trace come in."""
    start = (NOW // HOUR_NS - 3) * HOUR_NS + HOUR_NS // 2
    trace_id = new_trace_id()
    common = {"trace_id": trace_id, "model": None, "provider": None, "input_tokens": 0, "output_tokens": 0,
              "cost_usd": 0.0}
    planner = make_span(**common, name="invoke_agent Planner", kind="agent", agent_id=None, agent_name="Planner",
                        agent_role=None, start=start, duration_ms=5000)
    step = _unnamed(make_span, **common, name="plan", kind="chain", parent_span_id=planner["span_id"],
                    start=start + 1)
    calls = [_unnamed(make_span, trace_id=trace_id, parent_span_id=step["span_id"], cost_usd=0.0035,
                      start=start + 2 + index) for index in range(2)]
    critic = make_span(**common, name="invoke_agent Critic", kind="agent", agent_id=None, agent_name="Critic",
                       agent_role=None, parent_span_id=step["span_id"], start=start + 10)
    review = _unnamed(make_span, trace_id=trace_id, parent_span_id=critic["span_id"], cost_usd=0.001,
                      start=start + 11)
    loose = _unnamed(make_span, cost_usd=0.002, start=start + 20)  # a call under no agent at all
    batches = {
        "one batch": [[planner, step, *calls, critic, review, loose]],
        "children first": [[review], calls, [critic, step], [planner, loose]],  # as an OTLP exporter sends them
        "parents first": [[planner], [step], calls, [critic], [review, loose]],
        "middle last": [[planner, *calls, review], [critic], [step, loose]],
    }[order]
    for batch in batches:
        assert client.post("/api/ingest", json=batch).status_code == 202
    expected = {"Planner": (0.007, 2, 4), "Critic": (0.001, 1, 2), None: (0.002, 1, 1)}
    # Whole hours (rollups, where the store keeps them) and raw spans answer alike.
    for params in ({}, {"from": str(start - 1000), "to": str(start + 1000)}):
        agents = client.get("/api/cost/by-agent", params=params).json()["agents"]
        got = {a["agent_name"]: (a["cost_usd"], a["llm_calls"], a["spans"]) for a in agents}
        assert got == {name: (pytest.approx(cost), calls_, spans) for name, (cost, calls_, spans)
                       in expected.items()}, params
    # The spans keep the agent they were sent with.
    spans = {s["span_id"]: s for s in client.get(f"/api/traces/{trace_id}/spans").json()["spans"]}
    assert spans[calls[0]["span_id"]]["agent_name"] is None
    assert client.get("/api/traces", params={"agent_id": "Planner"}).json()["total"] == 1


def test_charges_to_agents_survive_retries_and_go_with_a_purge(client: TestClient, make_span: SpanFactory) -> None:
    start = NOW - 2 * HOUR_NS
    agent = make_span(name="invoke_agent Planner", kind="agent", agent_id=None, agent_name="Planner", agent_role=None,
                      model=None, cost_usd=0.0, input_tokens=0, output_tokens=0, start=start)
    call = _unnamed(make_span, trace_id=agent["trace_id"], parent_span_id=agent["span_id"], cost_usd=0.004,
                    start=start + 1)
    for batch in ([call], [agent], [call, agent], [agent]):  # the last two: retried requests
        assert client.post("/api/ingest", json=batch).status_code == 202
    agents = client.get("/api/cost/by-agent").json()["agents"]
    assert [(a["agent_name"], a["cost_usd"], a["llm_calls"], a["spans"]) for a in agents] == [
        ("Planner", pytest.approx(0.004), 1, 2)]
    client.app.state.agentwatch.store.purge(start + HOUR_NS)  # type: ignore[attr-defined]
    assert client.get("/api/cost/by-agent").json()["agents"] == []
    assert client.post("/api/ingest", json=[call]).status_code == 202  # the same span again, after the purge
    agents = client.get("/api/cost/by-agent").json()["agents"]
    assert [(a["agent_name"], a["cost_usd"]) for a in agents] == [(None, pytest.approx(0.004))]


def test_a_purge_takes_what_it_deletes_out_of_every_aggregate(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-05: the retention purge deletes a trace that started before the cutoff with all its spans, but
    the SQLite store's hourly rollups kept the figures of its later spans and of every span of the cutoff's own hour:
    /api/metrics, the costs by agent, model and day and the monthly report counted spans that were gone."""
    base = (NOW // HOUR_NS - 6) * HOUR_NS
    cutoff = base + HOUR_NS // 2
    gone, kept = new_trace_id(), new_trace_id()
    agent = {"agent_id": "night", "agent_name": "Night"}
    root = make_span(trace_id=gone, name="long job", kind="chain", model=None, cost_usd=0.0, input_tokens=0,
                     output_tokens=0, start=base - HOUR_NS, duration_ms=4 * 3600_000, **agent)
    doomed = [
        root,
        make_span(trace_id=gone, parent_span_id=root["span_id"], start=base + 60 * 10**9, cost_usd=1.0,
                  duration_ms=9000, **agent),  # in the cutoff's hour, before the cutoff
        make_span(trace_id=gone, parent_span_id=root["span_id"], start=base + 2 * HOUR_NS, cost_usd=2.5,
                  model="gone-model", duration_ms=9000, **agent),  # hours after the cutoff
        _unnamed(make_span, trace_id=gone, parent_span_id=root["span_id"], start=base + 2 * HOUR_NS + 1,
                 cost_usd=0.25, duration_ms=9000),  # charged to the root's agent
        make_span(trace_id=gone, parent_span_id=root["span_id"], start=base + 2 * HOUR_NS + 2, kind="agent",
                  status="blocked", model=None, cost_usd=0.0, attributes={"breaker.block_point": True}, **agent),
    ]
    kept_root = make_span(trace_id=kept, name="short job", kind="chain", model=None, cost_usd=0.0, input_tokens=0,
                          output_tokens=0, start=cutoff + 1, **agent)
    survivors = [kept_root, make_span(trace_id=kept, parent_span_id=kept_root["span_id"], start=base + 2 * HOUR_NS + 5,
                                      cost_usd=0.5, input_tokens=7, output_tokens=3, **agent)]
    assert client.post("/api/ingest", json=doomed + survivors).status_code == 202
    client.app.state.agentwatch.store.purge(cutoff)  # type: ignore[attr-defined]

    assert client.get("/api/traces").json()["total"] == 1
    for params in ({}, {"from": str(base - HOUR_NS), "to": str(base + 4 * HOUR_NS)},  # whole hours: the rollups
                   {"from": str(cutoff), "to": str(base + 2 * HOUR_NS + 10)}):
        metrics = client.get("/api/metrics", params=params).json()
        assert (metrics["traces"], metrics["spans"], metrics["llm_calls"], metrics["input_tokens"],
                metrics["blocked_calls"]) == (1, 2, 1, 7, 0)
        assert metrics["cost_usd"] == pytest.approx(0.5)
        assert metrics["latency_p50_ms"] == pytest.approx(100, rel=0.03)
        agents = client.get("/api/cost/by-agent", params=params).json()["agents"]
        assert [(a["agent_id"], a["cost_usd"], a["spans"], a["blocked"]) for a in agents] == [
            ("night", pytest.approx(0.5), 2, 0)]
        models = client.get("/api/cost/by-model", params=params).json()["models"]
        assert [(m["model"], m["cost_usd"], m["llm_calls"]) for m in models] == [("gpt-4o-mini", pytest.approx(0.5), 1)]
    days = client.get("/api/cost/daily", params={"days": 3}).json()["days"]
    assert sum(day["cost_usd"] for day in days) == pytest.approx(0.5)
    assert sum(day["spans"] for day in days) == 2


def test_an_agent_is_shown_with_its_latest_name(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-05: an agent renamed (same id, "Zed" then "Alpha") was shown as "Zed" by ClickHouse (the
    alphabetically last name) and by SQLite when its spans came in another order or other hours. Both stores show the
    name of its latest-starting span, whatever order they arrive in."""
    base = (NOW // HOUR_NS - 5) * HOUR_NS
    for agent, later in (("same-hour", base + 20 * 10**9), ("hours-apart", base + 2 * HOUR_NS)):
        for name, start in (("Zed", base + 10 * 10**9), ("Alpha", later), ("Omega", base + 5 * 10**9)):
            assert client.post("/api/ingest", json=[make_span(agent_id=agent, agent_name=name, start=start)]
                               ).status_code == 202
    for params in ({}, {"from": str(base), "to": str(base + 3 * HOUR_NS)}):
        agents = client.get("/api/cost/by-agent", params=params).json()["agents"]
        assert {a["agent_id"]: a["agent_name"] for a in agents} == {"same-hour": "Alpha", "hours-apart": "Alpha"}
    month = datetime.fromtimestamp(base / 1e9, UTC).strftime("%Y-%m")
    report = client.get("/api/reports/monthly", params={"month": month}).json()
    assert {a["agent_id"]: a["agent_name"] for a in report["cost_by_agent"]} == {"same-hour": "Alpha",
                                                                               "hours-apart": "Alpha"}


def test_numbers_have_the_same_type_on_every_store(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-05: over chdb a whole-number Float64 came back as an integer, so the API answered
    ``"duration_ms": 60000`` and ``"cost_usd": 2`` (and the monthly CSV ``60000``) where the other stores answer
    ``60000.0`` and ``2.0``."""
    start = (NOW // HOUR_NS - 2) * HOUR_NS
    span = make_span(start=start, duration_ms=60_000, cost_usd=2.0, model="gpt-4o")
    assert client.post("/api/ingest", json=[span]).status_code == 202
    trace = client.get(f"/api/traces/{span['trace_id']}").json()
    listed = client.get("/api/traces").json()["traces"][0]
    stored = client.get(f"/api/traces/{span['trace_id']}/spans").json()["spans"][0]
    metrics = client.get("/api/metrics").json()
    model = client.get("/api/cost/by-model").json()["models"][0]
    for where, value in (("trace", trace["duration_ms"]), ("trace", trace["cost_usd"]), ("list", listed["duration_ms"]),
                         ("list", listed["cost_usd"]), ("span", stored["duration_ms"]), ("span", stored["cost_usd"]),
                         ("metrics", metrics["cost_usd"]), ("model", model["cost_usd"])):
        assert type(value) is float, (where, value)
    month = datetime.fromtimestamp(start / 1e9, UTC).strftime("%Y-%m")
    csv = client.get("/api/reports/monthly/csv", params={"month": month}).text
    assert ",60000.0," in csv and ",2.0," in csv


def test_spans_of_a_trace_larger_than_the_limit_say_so(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-06 (server probe 13): ``/api/traces/{id}/spans`` ("all spans for a trace") gives at most
    ``limit`` (10,000 by default) and said nothing more: a client given 10,000 spans of a trace of 12,000 could not
    tell it from the whole trace. ``truncated`` says it."""
    trace_id = new_trace_id()
    spans = [make_span(trace_id=trace_id, name=f"step {index}", kind="tool", start=NOW - 1000 + index)
             for index in range(5)]
    assert client.post("/api/ingest", json=spans).json()["accepted"] == 5
    for limit, count, truncated in ((3, 3, True), (4, 4, True), (5, 5, False), (6, 5, False)):
        answer = client.get(f"/api/traces/{trace_id}/spans", params={"limit": limit}).json()
        assert (len(answer["spans"]), answer["truncated"]) == (count, truncated), limit
        assert [span["name"] for span in answer["spans"]] == [f"step {index}" for index in range(count)]
    assert client.get(f"/api/traces/{trace_id}/spans").json()["truncated"] is False


def test_days_counted_back_from_an_exclusive_to(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-06 (server probe 13): ``/api/cost/daily?to=<midnight>&days=N`` counted the N days back from
    ``to``'s own day, which ``to`` (exclusive) leaves out: days=2 gave one day, the default 30 gave 29."""
    today = datetime.fromtimestamp(NOW / 1e9, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    midnight = today.isoformat().replace("+00:00", "Z")
    day_ns = 24 * HOUR_NS
    start_of_today = int(today.timestamp()) * 1_000_000_000
    spans = make_trace(make_span, start=start_of_today - day_ns // 2, name="yesterday's run")
    assert client.post("/api/ingest", json=spans).status_code == 202
    for days in (1, 2, 30):
        answer = client.get("/api/cost/daily", params={"to": midnight, "days": days}).json()["days"]
        assert len(answer) == days, (days, answer)
        last = datetime.fromtimestamp((start_of_today - day_ns) / 1e9, UTC).strftime("%Y-%m-%d")
        assert answer[-1]["date"] == last and answer[-1]["llm_calls"] > 0
    # Without ``to`` the last day is today, as before.
    assert len(client.get("/api/cost/daily", params={"days": 3}).json()["days"]) == 3


def test_costs_by_day_and_by_model_count_whole_hours_and_the_hours_cut_by_the_range(
        client: TestClient, make_span: SpanFactory) -> None:
    """``/api/cost/daily`` and ``/api/cost/by-model`` over a range whose ends cut hours (and a day) in the middle:
    every span in the range is counted once, under the UTC day it started in and its model, and none outside it,
    whichever way a store sums the hours inside (the ClickHouse store reads whole hours from its rollups, the ends
    from the spans, as SQLite does)."""
    midnight = (NOW // (24 * HOUR_NS) - 2) * 24 * HOUR_NS
    minute = 60 * 10**9
    # (start, cost, input tokens): before the range, in its cut first hour, whole hours on both days, in its cut last
    # hour, after it.
    placed = [(midnight - 3 * HOUR_NS - 50 * minute, 1.0, 1), (midnight - 3 * HOUR_NS - 10 * minute, 2.0, 2),
              (midnight - HOUR_NS - 5 * minute, 4.0, 4), (midnight - 1, 8.0, 8), (midnight, 16.0, 16),
              (midnight + 2 * HOUR_NS + 30 * minute, 32.0, 32), (midnight + 5 * HOUR_NS + 10 * minute, 64.0, 64),
              (midnight + 5 * HOUR_NS + 40 * minute, 128.0, 128)]
    models = [("gpt-4o", "openai"), ("claude-haiku-4-5", "anthropic"), (None, None)]
    spans = [make_span(start=start, cost_usd=cost, input_tokens=tokens, output_tokens=0,
                       model=models[index % 3][0], provider=models[index % 3][1])
             for index, (start, cost, tokens) in enumerate(placed)]
    assert client.post("/api/ingest", json=spans).json()["accepted"] == len(spans)
    low, high = midnight - 3 * HOUR_NS - 30 * minute, midnight + 5 * HOUR_NS + 20 * minute
    window = {"from": str(low), "to": str(high)}
    day_ns = 24 * HOUR_NS
    by_day: dict[str, list[float]] = {}
    by_model: dict[str, list[float]] = {}
    for index, (start, cost, tokens) in enumerate(placed):
        if low <= start < high:
            date = datetime.fromtimestamp(start // day_ns * day_ns / 1e9, UTC).strftime("%Y-%m-%d")
            for sums in (by_day.setdefault(date, [0.0, 0, 0]),
                         *([by_model.setdefault(models[index % 3][0], [0.0, 0, 0])] if index % 3 < 2 else [])):
                sums[0] += cost
                sums[1] += tokens
                sums[2] += 1
    days = client.get("/api/cost/daily", params=window).json()["days"]
    assert {day["date"]: [day["cost_usd"], day["input_tokens"], day["spans"]] for day in days} == {
        date: [pytest.approx(cost), tokens, count] for date, (cost, tokens, count) in by_day.items()}
    assert [day["llm_calls"] for day in days] == [day["spans"] for day in days]
    answer = client.get("/api/cost/by-model", params=window).json()["models"]
    assert {row["model"]: [row["cost_usd"], row["input_tokens"], row["llm_calls"]] for row in answer} == {
        model: [pytest.approx(cost), tokens, count] for model, (cost, tokens, count) in by_model.items()}
    assert {row["model"]: row["provider"] for row in answer} == {"gpt-4o": "openai", "claude-haiku-4-5": "anthropic"}


def test_costs_by_agent_count_whole_hours_and_the_hours_cut_by_the_range_with_charged_calls(
        client: TestClient, make_span: SpanFactory) -> None:
    """``/api/cost/by-agent`` over a range whose ends cut hours: every span in the range counted once, under its own
    agent or the agent above it (an OpenTelemetry agent span that started before the range, its calls sent before it
    and with it), whichever way a store sums the hours inside (the ClickHouse store's rollup moves a charged call's
    figures to its agent at ingest; the hours the range cuts are read from the spans and their charges)."""
    midnight = (NOW // (24 * HOUR_NS) - 2) * 24 * HOUR_NS
    minute = 60 * 10**9
    starts = [midnight - 3 * HOUR_NS - 50 * minute, midnight - 3 * HOUR_NS - 10 * minute,
              midnight - HOUR_NS - 5 * minute, midnight - 1, midnight, midnight + 2 * HOUR_NS + 30 * minute,
              midnight + 5 * HOUR_NS + 10 * minute, midnight + 5 * HOUR_NS + 40 * minute]
    planner = make_span(name="invoke_agent Planner", kind="agent", agent_id=None, agent_name="Planner", agent_role=None,
                        model=None, cost_usd=0.0, input_tokens=0, output_tokens=0, start=midnight - 4 * HOUR_NS,
                        duration_ms=10 * 3600_000)
    # Even places: calls under the planner with no agent of their own; odd: the coder's own calls.
    calls = [_unnamed(make_span, trace_id=planner["trace_id"], parent_span_id=planner["span_id"], start=start,
                      cost_usd=float(2 ** index), input_tokens=2 ** index, output_tokens=0) if index % 2 == 0 else
             make_span(start=start, cost_usd=float(2 ** index), input_tokens=2 ** index, output_tokens=0,
                       agent_id="coder", agent_name="Coder")
             for index, start in enumerate(starts)]
    loose = _unnamed(make_span, start=midnight + HOUR_NS, cost_usd=0.5, input_tokens=0, output_tokens=0)
    for batch in (calls[:4], [planner, *calls[4:], loose]):  # the first calls stored before their agent's span
        assert client.post("/api/ingest", json=batch).status_code == 202
    low, high = midnight - 3 * HOUR_NS - 30 * minute, midnight + 5 * HOUR_NS + 20 * minute
    expected: dict[str | None, list[float]] = {None: [0.5, 0, 1]}
    for index, start in enumerate(starts):
        if low <= start < high:
            sums = expected.setdefault("Planner" if index % 2 == 0 else "Coder", [0.0, 0, 0])
            sums[0] += 2 ** index
            sums[1] += 2 ** index
            sums[2] += 1
    answer = client.get("/api/cost/by-agent", params={"from": str(low), "to": str(high)}).json()["agents"]
    assert {row["agent_name"]: [row["cost_usd"], row["input_tokens"], row["spans"]] for row in answer} == {
        name: [pytest.approx(cost), tokens, count] for name, (cost, tokens, count) in expected.items()}
    everything = client.get("/api/cost/by-agent").json()["agents"]
    assert {row["agent_name"]: row["spans"] for row in everything} == {"Planner": 5, "Coder": 4, None: 1}
