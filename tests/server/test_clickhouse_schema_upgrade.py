"""A ClickHouse database made by an earlier version is upgraded in place when the store opens it: its data stays and
the answers do not change."""

from __future__ import annotations

import json
import time
from typing import Any

from agentwatch.server import TraceQuery
from agentwatch.server._clickhouse_schema import SMALL_BLOCK_COLUMNS
from agentwatch.server._ingest import parse_spans
from agentwatch.server._stats import HOUR_NS
from tests.server.aw_helpers import SpanFactory, make_trace


def _answers(store: Any) -> list[Any]:
    queries = [TraceQuery(), TraceQuery(sort="cost"), TraceQuery(agent_id="coder"), TraceQuery(search="write"),
               TraceQuery(search="task"), TraceQuery(status="error"), TraceQuery(limit=2)]
    listed = [store.list_traces(query) for query in queries]
    some = listed[0]["traces"][0]["trace_id"]
    starts = [trace["start_time_unix_nano"] for trace in listed[0]["traces"]]
    edges = (min(starts) - 1, max(starts) + 1)  # inside hours at both ends
    return [*listed, store.list_traces(TraceQuery(start_ns=edges[0], end_ns=edges[1])), store.get_trace(some),
            store.trace_spans(some), store.metrics(None, None), store.metrics(*edges)]


def test_a_summary_from_before_small_blocks_its_projection_and_names_keeps_its_data(
        clickhouse_store: Any, make_span: SpanFactory) -> None:
    from agentwatch.server._clickhouse import ClickHouseStore

    start = (time.time_ns() // HOUR_NS - 5) * HOUR_NS
    spans = [span for index, (agent, status) in enumerate([("coder", "ok"), ("writer", "error"), ("coder", "ok")])
             for span in make_trace(make_span, start=start + index * HOUR_NS, agent=agent, status=status,
                                    name=f"{agent} task")]
    assert clickhouse_store.ingest(parse_spans(json.dumps(spans).encode(), 100).records).accepted == len(spans)
    before = _answers(clickhouse_store)
    db = clickhouse_store.database
    # The summary as it was before its columns' setting and its projection by start.
    for column in SMALL_BLOCK_COLUMNS:
        clickhouse_store._execute(f"ALTER TABLE {db}.trace_summary MODIFY COLUMN {column}"
                                  " RESET SETTING min_compress_block_size, max_compress_block_size")
    clickhouse_store._execute(f"ALTER TABLE {db}.trace_summary DROP PROJECTION by_start SETTINGS mutations_sync = 2")
    clickhouse_store._execute(f"ALTER TABLE {db}.trace_summary DROP COLUMN s_names SETTINGS mutations_sync = 2")
    old = clickhouse_store._rows(f"SHOW CREATE TABLE {db}.trace_summary")[0][0]
    assert "max_compress_block_size" not in old and "by_start" not in old and "s_names" not in old
    again = ClickHouseStore(clickhouse_store._db_conn)
    new = again._rows(f"SHOW CREATE TABLE {db}.trace_summary")[0][0]
    assert "max_compress_block_size" in new and "PROJECTION by_start" in new and "s_names" in new
    assert _answers(again) == before
    again._execute(f"OPTIMIZE TABLE {db}.trace_summary FINAL")  # its parts written again, with the setting
    assert _answers(again) == before
    # New spans are still summed by the view.
    more = make_trace(make_span, start=start + 4 * HOUR_NS, agent="coder", name="coder task")
    assert again.ingest(parse_spans(json.dumps(more).encode(), 100).records).accepted == len(more)
    assert again.list_traces(TraceQuery(agent_id="coder"))["total"] == 3
    assert again.list_traces(TraceQuery())["traces"][0]["trace_id"] == more[0]["trace_id"]


def test_a_database_from_before_the_cost_rollup_gets_it_filled_and_its_model_rollup_dropped(
        clickhouse_store: Any, make_span: SpanFactory) -> None:
    """Costs by model are read from ``cost_rollup``: a database made before it (with the model rollup an earlier
    version kept) has the table made and filled from its spans when the store opens it, kept up by the ingest from then
    on, and the old rollup and its view dropped (the view would go on writing a part per insert)."""
    from agentwatch.server._clickhouse import ClickHouseStore

    start = (time.time_ns() // HOUR_NS - 5) * HOUR_NS
    spans = [span for index, model in enumerate(["gpt-4o", "claude-haiku-4-5", "gpt-4o"])
             for span in make_trace(make_span, start=start + index * HOUR_NS, model=model)]
    assert clickhouse_store.ingest(parse_spans(json.dumps(spans).encode(), 100).records).accepted == len(spans)
    whole_hours = (start - HOUR_NS, start + 4 * HOUR_NS)
    before = [clickhouse_store.cost_by_model(None, None), clickhouse_store.cost_by_model(*whole_hours)]
    assert {row["model"]: row["llm_calls"] for row in before[1]} == {"gpt-4o": 6, "claude-haiku-4-5": 3}
    db = clickhouse_store.database
    clickhouse_store._execute(f"DROP VIEW {db}.cost_rollup_mv")
    clickhouse_store._execute(f"DROP TABLE {db}.cost_rollup")
    clickhouse_store._execute(f"CREATE TABLE {db}.model_rollup (hour Int64, model String, provider String, spans Int64)"
                              " ENGINE = SummingMergeTree ORDER BY (hour, model, provider)")
    clickhouse_store._execute(f"CREATE MATERIALIZED VIEW {db}.model_rollup_mv TO {db}.model_rollup AS SELECT"
                              " intDiv(start_ns, 3600000000000) AS hour, assumeNotNull(model) AS model,"
                              f" coalesce(provider, '') AS provider, toInt64(count()) AS spans FROM {db}.spans"
                              " GROUP BY hour, model, provider")
    again = ClickHouseStore(clickhouse_store._db_conn)
    assert [again.cost_by_model(None, None), again.cost_by_model(*whole_hours)] == before
    assert again._rows(f"SELECT name FROM system.tables WHERE database = '{db}' AND name LIKE 'model_rollup%'") == []
    more = make_trace(make_span, start=start + 3 * HOUR_NS, model="claude-haiku-4-5")
    assert again.ingest(parse_spans(json.dumps(more).encode(), 100).records).accepted == len(more)
    assert {row["model"]: row["llm_calls"] for row in again.cost_by_model(*whole_hours)} == {
        "gpt-4o": 6, "claude-haiku-4-5": 6}


def test_a_database_from_before_the_cost_rollup_gets_it_filled_with_its_charges_to_agents(
        clickhouse_store: Any, make_span: SpanFactory) -> None:
    """Costs by agent are read from ``cost_rollup`` too: a database made before it has it filled from its spans when
    the store opens it, each call charged to the agent above it counted under that agent (the charges stored beside the
    spans), and kept up by the ingest from then on."""
    from agentwatch.server._clickhouse import ClickHouseStore

    start = (time.time_ns() // HOUR_NS - 5) * HOUR_NS
    no_agent = {"agent_id": None, "agent_name": None, "agent_role": None}

    def planned(at: int, cost: float) -> list[list[dict[str, Any]]]:
        """An OpenTelemetry-style agent span and a call under it without an agent, the call sent first."""
        agent = make_span(name="invoke_agent Planner", kind="agent", agent_id=None, agent_name="Planner",
                          agent_role=None, model=None, cost_usd=0.0, input_tokens=0, output_tokens=0, start=at)
        call = make_span(trace_id=agent["trace_id"], parent_span_id=agent["span_id"], start=at + 1, cost_usd=cost,
                         **no_agent)
        return [[call], [agent]]

    batches = [*planned(start + HOUR_NS // 2, 0.25), *planned(start + 2 * HOUR_NS, 0.5),
               make_trace(make_span, start=start + HOUR_NS, agent="coder", cost_usd=0.125),
               [make_span(start=start + 3 * HOUR_NS, cost_usd=1.0, **no_agent)]]
    for batch in batches:
        assert clickhouse_store.ingest(parse_spans(json.dumps(batch).encode(), 100).records).accepted == len(batch)
    ranges = [(None, None), (start - HOUR_NS, start + 4 * HOUR_NS), (start + HOUR_NS // 2, start + 3 * HOUR_NS + 5)]
    before = [clickhouse_store.cost_by_agent(*bounds) for bounds in ranges]
    assert {row["agent_name"]: (row["llm_calls"], row["spans"]) for row in before[1]} == {
        "Planner": (2, 4), "Coder": (3, 4), None: (1, 1)}
    db = clickhouse_store.database
    clickhouse_store._execute(f"DROP VIEW {db}.cost_rollup_mv")
    clickhouse_store._execute(f"DROP TABLE {db}.cost_rollup")
    again = ClickHouseStore(clickhouse_store._db_conn)
    assert [again.cost_by_agent(*bounds) for bounds in ranges] == before
    for batch in planned(start + 3 * HOUR_NS, 2.0):
        assert again.ingest(parse_spans(json.dumps(batch).encode(), 100).records).accepted == len(batch)
    assert {row["agent_name"]: (row["cost_usd"], row["spans"]) for row in again.cost_by_agent(*ranges[1])} == {
        "Planner": (2.75, 6), "Coder": (0.375, 4), None: (1.0, 1)}
