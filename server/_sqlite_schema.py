"""DDL of the embedded SQLite store.

Reads must stay fast at millions of spans, so ingest maintains summaries next to the raw spans:
``traces`` (one row per trace, what the traces list pages over), ``trace_labels`` (the agent and model
filters), and hourly rollups (KPIs, costs and latency histograms without scanning spans).
"""

from __future__ import annotations

import sqlite3
from typing import Final

from ._datamodel import BOOKKEEPING_SQL

__all__ = ["SCHEMA_VERSION", "SCHEMA", "upgrade"]

SCHEMA_VERSION: Final = 1

_ALERT_RULES_BODY: Final = """(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    condition TEXT NOT NULL,
    threshold REAL NOT NULL,
    action_type TEXT NOT NULL,
    webhook_url TEXT,
    email TEXT,
    enabled INTEGER NOT NULL,
    cooldown_seconds INTEGER NOT NULL,
    window_seconds INTEGER,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    last_triggered_ns INTEGER
)"""

SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY,
    tkey INTEGER NOT NULL,
    span_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    agent_id TEXT,
    agent_name TEXT,
    agent_role TEXT,
    model TEXT,
    provider TEXT,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    attributes TEXT NOT NULL,
    input TEXT,
    output TEXT
);
-- One index serves both trace lookups and idempotency. It is keyed by the trace's sequential key, not by
-- its random id, so a batch of new traces appends at the end of the index instead of splitting pages
-- all over it (which cost several times more WAL writes per span).
CREATE UNIQUE INDEX IF NOT EXISTS spans_key ON spans(tkey, span_id);
CREATE INDEX IF NOT EXISTS spans_start ON spans(start_ns);
-- Cron runs by name and time: partial, so only cron spans pay for it on ingest.
CREATE INDEX IF NOT EXISTS spans_cron ON spans(name, start_ns) WHERE kind IN ('cron', 'cron_start');

CREATE TABLE IF NOT EXISTS traces (
    tkey INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    has_root INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    span_count INTEGER NOT NULL,
    llm_calls INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    total_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    errors INTEGER NOT NULL,
    blocked INTEGER NOT NULL,
    status TEXT NOT NULL,
    agents TEXT NOT NULL,
    models TEXT NOT NULL,
    root_start_ns INTEGER,
    unowned INTEGER NOT NULL DEFAULT 0,
    search TEXT,
    system INTEGER NOT NULL DEFAULT 0
);
-- root_start_ns: start of the earliest root span, which names the trace (NULL: no root yet, or a row from before
-- the column existed). unowned: its spans with a parent and no agent of their own, which an agent's span arriving
-- later may be charged (_agent_charge; 0 in a row from before the column existed). search: what a text search looks
-- in (_sqlite_search; NULL in a row from before the column existed). system: 1 while the trace holds bookkeeping spans
-- alone (_datamodel.BOOKKEEPING_KINDS), which the list and the counts leave out; its partial index (``upgrade``)
-- counts those few, so the count of the others stays a count of every trace less them.
CREATE INDEX IF NOT EXISTS traces_start ON traces(start_ns);
CREATE INDEX IF NOT EXISTS traces_status_start ON traces(status, start_ns);
-- The traces list sorted by cost or duration reads the first page of an index instead of sorting every trace (at
-- 5M spans that sort took over a second).
CREATE INDEX IF NOT EXISTS traces_cost ON traces(cost_usd);
CREATE INDEX IF NOT EXISTS traces_duration ON traces(duration_ms);

-- Which traces an agent or model appears in, for the filters. New traces get increasing keys, so a batch
-- appends at the end of a few (kind, label) ranges of the index instead of writing one random page per
-- trace; the filters probe it per trace (EXISTS) or count a label's range. The labels shown with a trace
-- live in traces.agents / traces.models.
-- Keyed by what the filters look up, without a rowid: one b-tree per label row written, not a table and an index
-- (a file made before keeps its rowid table and trace_labels_label index; the same statements serve both).
CREATE TABLE IF NOT EXISTS trace_labels (
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    tkey INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    PRIMARY KEY (kind, label, tkey)
) WITHOUT ROWID;
-- A label's rows by start: a filter with ``from`` reads only the rows from then on. A row's start_ns is the start of
-- the spans that brought the label, never before the trace's own start, so these rows include every trace of the
-- label that starts from then on.
CREATE INDEX IF NOT EXISTS trace_labels_start ON trace_labels(kind, label, start_ns);

CREATE TABLE IF NOT EXISTS rollup_hour (
    hour INTEGER PRIMARY KEY,
    spans INTEGER NOT NULL,
    llm_calls INTEGER NOT NULL,
    llm_errors INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    blocked INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS rollup_latency (
    hour INTEGER NOT NULL,
    bin INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (hour, bin)
) WITHOUT ROWID;
-- /api/metrics sums the histogram per bin over a range of hours: read in bin order, no sort (28 ms -> 5 ms at
-- 60,000 rows, a month of traffic).
CREATE INDEX IF NOT EXISTS rollup_latency_bin ON rollup_latency(bin, hour, n);

CREATE TABLE IF NOT EXISTS rollup_agent (
    hour INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    agent_name TEXT,
    spans INTEGER NOT NULL,
    llm_calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    blocked INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    name_ns INTEGER,
    PRIMARY KEY (hour, agent_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rollup_model (
    hour INTEGER NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    llm_calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    PRIMARY KEY (hour, model, provider)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS breaker_events (
    id INTEGER PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    scope TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    event TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT,
    reason TEXT,
    threshold,
    current,
    source TEXT NOT NULL,
    trace_id TEXT,
    span_id TEXT,
    details TEXT NOT NULL,
    UNIQUE (scope, scope_id, ts_ns, event)
);
CREATE INDEX IF NOT EXISTS breaker_events_ts ON breaker_events(ts_ns);

CREATE TABLE IF NOT EXISTS breaker_state (
    scope TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    state TEXT,
    last_event TEXT,
    from_state TEXT,
    reason TEXT,
    threshold,
    current,
    ts_ns INTEGER,
    transitions INTEGER NOT NULL DEFAULT 0,
    alerts INTEGER NOT NULL DEFAULT 0,
    last_alert_reason TEXT,
    last_alert_ns INTEGER,
    PRIMARY KEY (scope, scope_id)
) WITHOUT ROWID;

-- AUTOINCREMENT: a deleted rule's id is never given to another (its alert history and cron claims name it).
CREATE TABLE IF NOT EXISTS alert_rules {_ALERT_RULES_BODY};

CREATE TABLE IF NOT EXISTS alert_history (
    id INTEGER PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    source TEXT NOT NULL,
    rule_id INTEGER,
    rule_name TEXT,
    condition TEXT,
    threshold,
    value,
    message TEXT NOT NULL,
    scope TEXT,
    scope_id TEXT,
    state TEXT,
    channel TEXT,
    delivery_status TEXT,
    delivery_error TEXT,
    details TEXT NOT NULL,
    dedup_key TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS alert_history_ts ON alert_history(ts_ns);

-- Cron monitoring: a cron's schedule (from its latest span or a PUT) and, per alert rule, the expected runs
-- already reported, so a missed or failed run alerts once.
CREATE TABLE IF NOT EXISTS crons (
    name TEXT PRIMARY KEY,
    schedule TEXT NOT NULL,
    grace_seconds INTEGER NOT NULL,
    since_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL
) WITHOUT ROWID;

-- Operator actions on running agents (pause, kill, limits...): the audit trail the control state is folded from.
CREATE TABLE IF NOT EXISTS operator_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns INTEGER NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    scope TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    params TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS operator_actions_ts ON operator_actions(ts_ns);

CREATE TABLE IF NOT EXISTS cron_alerts (
    rule_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    expected_ns INTEGER NOT NULL,
    PRIMARY KEY (rule_id, name, expected_ns)
) WITHOUT ROWID;
"""


def upgrade(connection: sqlite3.Connection) -> None:
    """Columns added after a database was created (``CREATE TABLE IF NOT EXISTS`` leaves old tables as they are), and
    alert rule ids that are never reused."""
    _never_reuse_rule_ids(connection)
    _mark_system_traces(connection)
    connection.execute("CREATE INDEX IF NOT EXISTS traces_system ON traces(start_ns) WHERE system = 1")
    for table, column, definition in (("traces", "root_start_ns", "INTEGER"),
                                      ("traces", "unowned", "INTEGER NOT NULL DEFAULT 0"), ("traces", "search", "TEXT"),
                                      ("rollup_agent", "name_ns", "INTEGER")):
        if column not in {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}:
            try:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            except sqlite3.OperationalError as error:  # another server process sharing the file added it first
                if "duplicate column" not in str(error):
                    raise


def _mark_system_traces(connection: sqlite3.Connection) -> None:
    """A file from before ``traces.system``: the column is added and its traces of bookkeeping spans alone marked, in
    one transaction (a trace with a model call has work: only the others are read, each up to its first span of
    work)."""
    if "system" in _columns(connection, "traces"):
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        if "system" not in _columns(connection, "traces"):  # another server process sharing the file was first
            connection.execute("ALTER TABLE traces ADD COLUMN system INTEGER NOT NULL DEFAULT 0")
            connection.execute(
                "UPDATE traces SET system = 1 WHERE llm_calls = 0 AND NOT EXISTS (SELECT 1 FROM spans"
                f" WHERE spans.tkey = traces.tkey AND NOT {BOOKKEEPING_SQL})")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _columns(connection: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}


def _never_reuse_rule_ids(connection: sqlite3.Connection) -> None:
    """A file from before AUTOINCREMENT gave a deleted rule's id (the highest) to the next rule: its table is made
    again with AUTOINCREMENT (a few rows), counting on from the highest id anything names."""
    found = connection.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'alert_rules'").fetchone()
    if found is None or "AUTOINCREMENT" in found[0].upper():
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(f"CREATE TABLE alert_rules_autoincrement {_ALERT_RULES_BODY}")
        connection.execute("INSERT INTO alert_rules_autoincrement SELECT * FROM alert_rules")
        connection.execute("DROP TABLE alert_rules")
        connection.execute("ALTER TABLE alert_rules_autoincrement RENAME TO alert_rules")
        connection.execute("DELETE FROM sqlite_sequence WHERE name = 'alert_rules'")
        connection.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'alert_rules', max(coalesce((SELECT max(id) FROM"
            " alert_rules), 0), coalesce((SELECT max(rule_id) FROM alert_history), 0),"
            " coalesce((SELECT max(rule_id) FROM cron_alerts), 0))")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
