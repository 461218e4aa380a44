"""DDL of the ClickHouse store.

Spans are append-only and the only big table: sorted by (hour of start, trace_id, span_id) so time-range
scans (the dashboard's KPIs, costs) read contiguous granules. The small mutable tables (rules, alert
history) are ReplacingMergeTree keyed by id, read with FINAL: an update is a new row with a higher version.

Summaries (``SUMMARIES``) are filled by materialized views as spans are inserted, so the traces list and the
KPIs never aggregate the whole spans table (at 10M spans that took seconds):

* ``trace_summary``: one partial aggregate per trace and insert, AggregatingMergeTree keyed by trace_id (merges
  fold them; queries still GROUP BY trace_id). A trace's page of the list, its labels and the ingest's
  duplicate check read it by primary key.
* ``rollup``: per-hour sums and latency bins (SummingMergeTree), as SQLite's rollups; purge inserts the removed
  spans' figures negated.
* ``cost_rollup``: per hour, agent, model and provider, the same way, and each agent's latest name (the costs by
  agent and by model); the ingest moves the figures of spans charged to an ancestor's agent (``_clickhouse_costs``).

The summary also keeps its rows by start (projection ``by_start``: the newest page, time ranges), the names its
states hold as plain text (``s_names``: the search), and compresses the columns read only for a page's rows in small
blocks (``SMALL_BLOCKS``). A summary from before any of these gets it when the store opens it.

Spans of one trace are found by the hours its spans started in (the summary has the first and last start) and
then the trace id: the sort key, no skip index (a bloom filter cost every insert and read more granules).
"""

from __future__ import annotations

from typing import Final

from ._datamodel import BOOKKEEPING_SQL

__all__ = ["TABLES", "SUMMARIES", "RETIRED", "HOUR_SQL", "NO_BIN", "SMALL_BLOCKS", "SMALL_BLOCK_COLUMNS", "BY_START",
           "NAMES", "hour_sql"]

TABLES: Final = {
    "spans": """
CREATE TABLE IF NOT EXISTS {db}.spans (
    seq UInt64,
    trace_id String,
    span_id String,
    parent_span_id Nullable(String),
    name String,
    kind LowCardinality(String),
    status LowCardinality(String),
    start_ns Int64,
    end_ns Int64,
    agent_id Nullable(String),
    agent_name Nullable(String),
    agent_role Nullable(String),
    agent_key String,
    model Nullable(String),
    provider Nullable(String),
    input_tokens Int64,
    output_tokens Int64,
    cached_input_tokens Int64,
    cost_usd Float64,
    is_root UInt8,
    is_call UInt8,
    is_blocked UInt8,
    attributes String,
    input Nullable(String),
    output Nullable(String)
) ENGINE = ReplacingMergeTree(seq)
PARTITION BY toYYYYMM(toDateTime(intDiv(start_ns, 1000000000)))
ORDER BY (intDiv(start_ns, 3600000000000), trace_id, span_id)
""",
    "breaker_events": """
CREATE TABLE IF NOT EXISTS {db}.breaker_events (
    id UInt64,
    ts_ns Int64,
    scope String,
    scope_id String,
    event String,
    from_state Nullable(String),
    to_state Nullable(String),
    reason Nullable(String),
    threshold String,
    current String,
    source String,
    trace_id Nullable(String),
    span_id Nullable(String),
    details String
) ENGINE = ReplacingMergeTree
ORDER BY (scope, scope_id, ts_ns, event)
""",
    "alert_history": """
CREATE TABLE IF NOT EXISTS {db}.alert_history (
    id UInt64,
    version UInt64,
    ts_ns Int64,
    source String,
    rule_id Nullable(Int64),
    rule_name Nullable(String),
    condition Nullable(String),
    threshold String,
    value String,
    message String,
    scope Nullable(String),
    scope_id Nullable(String),
    state Nullable(String),
    channel Nullable(String),
    delivery_status Nullable(String),
    delivery_error Nullable(String),
    details String,
    dedup_key Nullable(String)
) ENGINE = ReplacingMergeTree(version)
ORDER BY id
""",
    "alert_rules": """
CREATE TABLE IF NOT EXISTS {db}.alert_rules (
    id UInt64,
    version UInt64,
    deleted UInt8,
    name String,
    condition String,
    threshold Float64,
    action_type String,
    webhook_url Nullable(String),
    email Nullable(String),
    enabled UInt8,
    cooldown_seconds Int64,
    window_seconds Nullable(Int64),
    created_ns Int64,
    updated_ns Int64,
    last_triggered_ns Nullable(Int64)
) ENGINE = ReplacingMergeTree(version)
ORDER BY id
""",
    # Cron monitoring: the latest registration per name (deleted = a tombstone), and the expected runs each
    # alert rule has reported.
    "crons": """
CREATE TABLE IF NOT EXISTS {db}.crons (
    name String,
    version UInt64,
    deleted UInt8,
    schedule String,
    grace_seconds Int64,
    since_ns Int64,
    updated_ns Int64
) ENGINE = ReplacingMergeTree(version)
ORDER BY name
""",
    # Operator actions: append-only audit records (the control state is folded from them), never purged.
    "operator_actions": """
CREATE TABLE IF NOT EXISTS {db}.operator_actions (
    id UInt64,
    ts_ns Int64,
    actor String,
    role String,
    action String,
    scope String,
    scope_id String,
    reason String,
    params String
) ENGINE = ReplacingMergeTree
ORDER BY id
""",
    # How many traces start in each hour (the hour of a trace's earliest span): the trace counts of the KPIs and
    # the traces list, and where the newest page of traces starts, without a distinct count of every trace id.
    # The ingest adds +1 for a new trace and moves a trace whose start moved to an earlier hour (-1, +1); the
    # purge subtracts the traces it removes. ``system``: how many of them hold bookkeeping spans alone
    # (_datamodel.BOOKKEEPING_KINDS), which the list and the counts leave out; -1 when work arrives in one.
    "trace_starts": """
CREATE TABLE IF NOT EXISTS {db}.trace_starts (
    hour Int64,
    traces Int64,
    system Int64 DEFAULT 0
) ENGINE = SummingMergeTree
ORDER BY hour
""",
    "cron_alerts": """
CREATE TABLE IF NOT EXISTS {db}.cron_alerts (
    rule_id Int64,
    name String,
    expected_ns Int64
) ENGINE = ReplacingMergeTree
ORDER BY (rule_id, name, expected_ns)
""",
}


#: The latency bin of rollup rows for spans that are not model calls (real bins are above -200).
NO_BIN: Final = -1_000_000
#: The hour of ``start_ns`` rounded down (floor, also before 1970), as SQLite's rollups number hours.
HOUR_SQL: Final = "intDiv(start_ns - if(start_ns < 0, 3599999999999, 0), 3600000000000)"


def hour_sql(column: str) -> str:
    """``HOUR_SQL`` of another column."""
    return HOUR_SQL.replace("start_ns", column)

#: Compression of the summary columns read for a page's rows alone (by trace id: a granule here and there, never
#: scanned by the list's filters and sorts but the labels' arrays, which read as fast so): a granule's read then
#: decompresses a block of ~8 KB instead of 64 KB-1 MB. Columns that the filters and sorts scan keep the default.
SMALL_BLOCKS: Final = "min_compress_block_size = 4096, max_compress_block_size = 8192"
SMALL_BLOCK_COLUMNS: Final = ("s_last_start", "s_roots", "s_calls", "s_in", "s_out", "s_root_name", "s_first_name",
                              "s_agents", "s_agent_names", "s_models")

#: The summary's rows by start as well (a projection, kept by the engine in each part): the newest traces, a time
#: range's traces and its partial hours read the granules of that range, not the start of every row. Queries that
#: group the summary's trace_id, s_start, s_key and s_user_spans by trace id within a range of s_start use it.
BY_START: Final = "PROJECTION by_start (SELECT trace_id, s_start, s_key, s_user_spans ORDER BY s_start)"

#: The names a partial aggregate's states hold (its root's and its first span's), as plain text for the search: a
#: scan of the states decodes every one of them. Computed from the states as rows are written; merges keep the union,
#: so a trace's merged name (the states' merge) is always one of its rows' names.
NAMES: Final = ("s_names SimpleAggregateFunction(groupUniqArrayArray, Array(String)) MATERIALIZED"
                " arrayDistinct([finalizeAggregation(s_root_name), finalizeAggregation(s_first_name)])")

#: (table DDL, materialized view DDL, backfill SELECT) per summary; the SELECT is the view's and fills the
#: table from spans stored before the summary existed.
SUMMARIES: Final = {
    "trace_summary": ("""
CREATE TABLE IF NOT EXISTS {db}.trace_summary (
    trace_id String,
    s_start SimpleAggregateFunction(min, Int64),
    s_end SimpleAggregateFunction(max, Int64),
    s_last_start SimpleAggregateFunction(max, Int64) {small},
    s_key SimpleAggregateFunction(min, UInt64),
    s_spans SimpleAggregateFunction(sum, UInt64),
    s_roots SimpleAggregateFunction(sum, UInt64) {small},
    s_calls SimpleAggregateFunction(sum, UInt64) {small},
    s_in SimpleAggregateFunction(sum, Int64) {small},
    s_out SimpleAggregateFunction(sum, Int64) {small},
    s_cost SimpleAggregateFunction(sum, Float64),
    s_errors SimpleAggregateFunction(sum, UInt64),
    s_blocked SimpleAggregateFunction(sum, UInt64),
    -- spans that are not bookkeeping (_datamodel.BOOKKEEPING_KINDS): a trace without any is left out of the list
    s_user_spans SimpleAggregateFunction(sum, UInt64),
    s_root_name AggregateFunction(argMinIf, String, Tuple(Int64, UInt64), UInt8) {small},
    s_first_name AggregateFunction(argMin, String, Tuple(Int64, UInt64)) {small},
    -- label -> first seq: agents (by agent_key), agents' names ("key\\0name"), models
    s_agents SimpleAggregateFunction(minMap, Tuple(Array(String), Array(UInt64))) {small},
    s_agent_names SimpleAggregateFunction(minMap, Tuple(Array(String), Array(UInt64))) {small},
    s_models SimpleAggregateFunction(minMap, Tuple(Array(String), Array(UInt64))) {small},
    {names},
    {by_start}
) ENGINE = AggregatingMergeTree
ORDER BY trace_id
-- Small granules: a page of traces is 50 random ids, each reading its granule's aggregate states. Merges fold rows
-- and build the projection again from the merged part.
SETTINGS index_granularity = 128, deduplicate_merge_projection_mode = 'rebuild'
""".replace("{small}", f"SETTINGS ({SMALL_BLOCKS})").replace("{names}", NAMES).replace("{by_start}", BY_START), """
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.trace_summary_mv TO {db}.trace_summary AS {select}
""", f"""
SELECT trace_id, min(start_ns) AS s_start, max(end_ns) AS s_end, max(start_ns) AS s_last_start, min(seq) AS s_key,
    toUInt64(count()) AS s_spans, toUInt64(sum(is_root)) AS s_roots, toUInt64(sum(is_call)) AS s_calls,
    sum(input_tokens) AS s_in, sum(output_tokens) AS s_out, sum(cost_usd) AS s_cost,
    toUInt64(countIf(status = 'error')) AS s_errors, toUInt64(sum(is_blocked)) AS s_blocked,
    toUInt64(countIf(NOT {BOOKKEEPING_SQL})) AS s_user_spans,
    argMinIfState(name, (start_ns, seq), is_root = 1) AS s_root_name,
    argMinState(name, (start_ns, seq)) AS s_first_name,
    minMap(if(agent_key != '', [agent_key], []), if(agent_key != '', [seq], [])) AS s_agents,
    minMap(if(agent_key != '' AND isNotNull(agent_name), [concat(agent_key, '\\0', assumeNotNull(agent_name))], []),
           if(agent_key != '' AND isNotNull(agent_name), [seq], [])) AS s_agent_names,
    minMap(if(coalesce(model, '') != '', [assumeNotNull(model)], []), if(coalesce(model, '') != '', [seq], []))
        AS s_models
FROM {{db}}.spans GROUP BY trace_id
"""),
    # Per hour and latency bin (NO_BIN for spans that are not model calls): the KPIs' sums and the latency
    # histogram in one table, so an insert writes one part for both.
    "rollup": ("""
CREATE TABLE IF NOT EXISTS {db}.rollup (
    hour Int64,
    bin Int64,
    spans Int64,
    calls Int64,
    call_errors Int64,
    errors Int64,
    blocked Int64,
    input_tokens Int64,
    output_tokens Int64,
    cost_usd Float64
) ENGINE = SummingMergeTree
ORDER BY (hour, bin)
""", """
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollup_mv TO {db}.rollup AS {select}
""", f"""
SELECT {HOUR_SQL} AS hour,
    if(is_call = 1, toInt64(floor(log(greatest((end_ns - start_ns) / 1e6, 0.001)) / log(1.05))), {NO_BIN}) AS bin,
    toInt64(count()) AS spans, toInt64(sum(is_call)) AS calls,
    toInt64(countIf(is_call = 1 AND status = 'error')) AS call_errors, toInt64(countIf(status = 'error')) AS errors,
    toInt64(sum(is_blocked)) AS blocked, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS cost_usd
FROM {{db}}.spans GROUP BY hour, bin
"""),
    # Per hour, agent ('' for spans of none), model ('' for none) and provider: the costs by agent and by model from one
    # table (one part per insert for both), with each agent's name (that of its latest-starting span with one; on a
    # tie, the later stored). The view counts a span under its own agent; the ingest moves a span charged to an
    # ancestor's agent from '' to that agent by rows of its own (``_clickhouse_costs``), as SQLite's rollup_agent does.
    # ``spans``: an agent or model whose spans were all purged sums to zero spans (left out) until a merge drops it.
    "cost_rollup": ("""
CREATE TABLE IF NOT EXISTS {db}.cost_rollup (
    hour Int64,
    agent_key String,
    model String,
    provider String,
    spans Int64,
    cost_usd Float64,
    calls Int64,
    input_tokens Int64,
    output_tokens Int64,
    errors Int64,
    blocked Int64,
    agent_name AggregateFunction(argMaxIf, String, Tuple(Int64, UInt64), UInt8)
) ENGINE = SummingMergeTree
ORDER BY (hour, agent_key, model, provider)
""", """
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.cost_rollup_mv TO {db}.cost_rollup AS {select}
""", f"""
SELECT {HOUR_SQL} AS hour, agent_key, coalesce(model, '') AS model, coalesce(provider, '') AS provider,
    toInt64(count()) AS spans, sum(cost_usd) AS cost_usd, toInt64(sum(is_call)) AS calls,
    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    toInt64(countIf(status = 'error')) AS errors, toInt64(sum(is_blocked)) AS blocked,
    argMaxIfState(assumeNotNull(agent_name), (start_ns, seq), agent_key != '' AND isNotNull(agent_name)) AS agent_name
FROM {{db}}.spans GROUP BY hour, agent_key, model, provider
"""),
}

#: Summaries an earlier version kept, dropped (view first) when the store opens a database that has them.
RETIRED: Final = ("model_rollup_mv", "model_rollup")
