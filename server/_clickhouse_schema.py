"""DDL of the ClickHouse store.

Spans are append-only and the only big table: sorted by (hour of start, trace_id, span_id) so time-range
scans (the dashboard's KPIs, costs, the traces list) read contiguous granules, with a bloom filter on
trace_id for single-trace lookups. Trace summaries are aggregated at query time (ClickHouse is built for
that; maintaining them would mean upserts it is not built for). The small mutable tables (rules, alert
history) are ReplacingMergeTree keyed by id, read with FINAL: an update is a new row with a higher version.
"""

from __future__ import annotations

from typing import Final

__all__ = ["TABLES"]

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
    output Nullable(String),
    INDEX trace_idx trace_id TYPE bloom_filter GRANULARITY 4
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
    "cron_alerts": """
CREATE TABLE IF NOT EXISTS {db}.cron_alerts (
    rule_id Int64,
    name String,
    expected_ns Int64
) ENGINE = ReplacingMergeTree
ORDER BY (rule_id, name, expected_ns)
""",
}
