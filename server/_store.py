"""The storage interface of the collector.

Every route talks to a ``Store``; the embedded SQLite backend (``_sqlite.py``) is one implementation, and a
scale-out backend (ClickHouse) can be another as long as it gives the same answers. Answers are plain
JSON-ready dicts so that the API layer never depends on a backend's row types.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, Final

from ._cursor import Position
from ._datamodel import RULE_CONDITIONS
from ._model import SpanRecord

__all__ = ["Store", "TraceQuery", "IngestResult", "first_of_each_span", "results_per_batch", "SORT_FIELDS",
           "TRACE_STATUSES", "RULE_CONDITIONS"]

SORT_FIELDS: Final = ("start_time", "end_time", "duration", "cost", "tokens", "spans", "name", "status")
TRACE_STATUSES: Final = ("ok", "error", "blocked")


@dataclasses.dataclass(frozen=True, slots=True)
class TraceQuery:
    search: str | None = None
    status: str | None = None
    agent_id: str | None = None
    model: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    sort: str = "start_time"
    order: str = "desc"
    limit: int = 50
    offset: int = 0
    #: Keyset paging (``_cursor``): only rows after this position in the sort order; ``offset`` is then 0.
    after: Position | None = None
    #: Also list (and count) the traces of SDK bookkeeping alone (``_datamodel.BOOKKEEPING_KINDS``).
    include_system: bool = False

    def __post_init__(self) -> None:
        if self.after is not None and self.offset:
            raise ValueError("cursor and offset cannot be combined: a cursor already says where the page starts")
        if self.sort not in SORT_FIELDS:
            raise ValueError(f"sort must be one of {', '.join(SORT_FIELDS)}")
        if self.order not in ("asc", "desc"):
            raise ValueError("order must be asc or desc")
        if self.status is not None and self.status not in TRACE_STATUSES:
            raise ValueError(f"status must be one of {', '.join(TRACE_STATUSES)}")


@dataclasses.dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int


def first_of_each_span(records: Sequence[SpanRecord]) -> dict[tuple[str, str], SpanRecord]:
    """(trace_id, span_id) → the first record with it: a batch may carry one span twice, and only the first
    counts, as in a retried batch."""
    unique: dict[tuple[str, str], SpanRecord] = {}
    for record in records:
        unique.setdefault((record.trace_id, record.span_id), record)
    return unique


def results_per_batch(batches: Sequence[Sequence[SpanRecord]], fresh: Sequence[SpanRecord]) -> list[IngestResult]:
    """Each batch's answer when ``batches`` were stored together and ``fresh`` are the spans that were new: a span
    is accepted in the first batch that carries it, as if the batches had been stored one after the other."""
    if len(batches) == 1:
        return [IngestResult(len(fresh), len(batches[0]) - len(fresh))]
    if len(fresh) == sum(map(len, batches)):  # every span new, none carried twice: each batch's spans are its own
        return [IngestResult(len(batch), 0) for batch in batches]
    unclaimed = {(record.trace_id, record.span_id) for record in fresh}
    results = []
    for batch in batches:
        accepted = 0
        for record in batch:
            key = (record.trace_id, record.span_id)
            if key in unclaimed:
                unclaimed.discard(key)
                accepted += 1
        results.append(IngestResult(accepted, len(batch) - accepted))
    return results


class Store(abc.ABC):
    """Spans, trace summaries, rollups, breaker state, alert rules and alert history."""

    # -- spans ---------------------------------------------------------------------------------------

    @abc.abstractmethod
    def ingest(self, records: Sequence[SpanRecord]) -> IngestResult:
        """Store spans durably before returning; a span_id already stored is a duplicate, not an error.

        Breaker spans also update the breaker state and alert spans the alert history.
        """

    @abc.abstractmethod
    def list_traces(self, query: TraceQuery) -> dict[str, Any]:
        """``{"traces": [...], "total": n, "next_cursor": str | None}``; a trace aggregates its spans (see the API
        docs). ``total`` counts every match, whatever the cursor; ``next_cursor`` is set when the page is full.
        Traces of bookkeeping spans alone are neither listed nor counted unless ``query.include_system``."""

    @abc.abstractmethod
    def get_trace(self, trace_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def trace_spans(self, trace_id: str, limit: int = 10_000) -> list[dict[str, Any]]:
        """Spans of one trace in start order (at most ``limit``), in the SDK's wire format plus
        ``duration_ms``."""

    def graph_spans(self, trace_id: str, limit: int = 100_000) -> list[dict[str, Any]]:
        """Spans of one trace in start order as the causal graph reads them: ``trace_spans``' format, except that a
        store may leave out ``trace_id``, ``input``, ``output`` and ``duration_ms`` (the graph works it out from the
        start and end for its nodes), and give ``{}`` or None for attributes that hold neither ``atp.kind`` nor
        ``links`` (the only ones the graph reads): reading and shaping whole spans dominated the graph of a
        100,000-span trace."""
        return self.trace_spans(trace_id, limit)

    @abc.abstractmethod
    def iter_traces(self, start_ns: int, end_ns: int) -> Iterator[dict[str, Any]]:
        """Every trace with work of the program's that started in [start_ns, end_ns), oldest first (for CSV
        export)."""

    # -- aggregates ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def metrics(self, start_ns: int | None, end_ns: int | None) -> dict[str, Any]:
        """KPIs over the range; ``traces`` counts the traces with work of the program's, as the traces list does."""

    @abc.abstractmethod
    def cost_daily(self, start_ns: int, end_ns: int) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def cost_by_agent(self, start_ns: int | None, end_ns: int | None) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def cost_by_model(self, start_ns: int | None, end_ns: int | None) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def window_stats(self, start_ns: int, end_ns: int) -> dict[str, Any]:
        """Exact figures over a short recent window, for alert rules: llm_calls, llm_errors, blocked,
        cost_usd, latency_p95_ms."""

    @abc.abstractmethod
    def top_traces(self, start_ns: int, end_ns: int, limit: int) -> list[dict[str, Any]]:
        """The most expensive traces that started in the window."""

    # -- circuit breakers ------------------------------------------------------------------------------

    @abc.abstractmethod
    def record_breaker_event(self, event: dict[str, Any], source: str) -> bool:
        """Store a transition once (the SDK may report it as a span and as an sdk-alert); False if known."""

    @abc.abstractmethod
    def breaker_status(self) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def breaker_history(self, limit: int, offset: int = 0, start_ns: int | None = None,
                        end_ns: int | None = None) -> list[dict[str, Any]]: ...

    # -- operator control (the state in force is folded from these records: _control.py) ----------------

    @abc.abstractmethod
    def add_operator_action(self, action: dict[str, Any]) -> dict[str, Any]:
        """Append an audit record (``_control.action_record``); returns it with its ``id``, which only grows."""

    @abc.abstractmethod
    def operator_actions(self, limit: int | None = None, offset: int = 0, start_ns: int | None = None,
                         end_ns: int | None = None, *, newest_first: bool = True) -> list[dict[str, Any]]:
        """Audit records: ``id``, ``timestamp_unix_nano``, ``time``, ``actor``, ``role``, ``action``, ``scope``,
        ``scope_id``, ``reason``, ``params``; never purged (they are the record of human oversight)."""

    @abc.abstractmethod
    def control_version(self) -> int:
        """The id of the newest operator action (0: none yet)."""

    # -- alerts --------------------------------------------------------------------------------------

    @abc.abstractmethod
    def record_sdk_alert(self, alert: dict[str, Any]) -> bool:
        """Store an alert the SDK raised, once; also refreshes the breaker view of its scope."""

    @abc.abstractmethod
    def add_alert_event(self, event: dict[str, Any]) -> int: ...

    @abc.abstractmethod
    def update_alert_delivery(self, event_id: int, status: str, error: str | None) -> None: ...

    @abc.abstractmethod
    def alert_history(self, limit: int, offset: int = 0, start_ns: int | None = None,
                      end_ns: int | None = None) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def create_rule(self, rule: dict[str, Any]) -> dict[str, Any]: ...

    @abc.abstractmethod
    def list_rules(self) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def get_rule(self, rule_id: int) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def update_rule(self, rule_id: int, changes: dict[str, Any]) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def delete_rule(self, rule_id: int) -> bool: ...

    @abc.abstractmethod
    def claim_rule(self, rule_id: int, ts_ns: int, cooldown_ns: int) -> bool:
        """Atomically mark a rule fired at ``ts_ns`` unless it fired within ``cooldown_ns``; True if this
        caller won (several server processes may evaluate the same rule at once)."""

    # -- crons (the logic lives in _crons.py; stores persist and query) ---------------------------------

    @abc.abstractmethod
    def put_cron(self, name: str, schedule: str | None, grace_seconds: int, *, seen_ns: int, since_ns: int) -> None:
        """Register or update a cron. Schedule and grace change only if ``seen_ns`` is not older than the
        stored one (the latest span or PUT wins); ``since_ns`` only moves earlier. ``schedule`` None: a run
        without one, which registers the cron unscheduled if it is unknown and never changes a scheduled one;
        a schedule for an unscheduled cron replaces everything (its runs are expected from ``since_ns``)."""

    @abc.abstractmethod
    def list_crons(self) -> list[dict[str, Any]]:
        """``{"name", "schedule", "grace_seconds", "since_ns", "updated_ns"}`` per cron, by name (schedule
        None: unscheduled)."""

    @abc.abstractmethod
    def get_cron(self, name: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def delete_cron(self, name: str) -> bool: ...

    @abc.abstractmethod
    def cron_spans(self, name: str, start_ns: int, end_ns: int, limit: int = 10_000, *,
                   newest: bool = False) -> list[dict[str, Any]]:
        """Spans of kind ``cron`` or ``cron_start`` named ``name`` that started in [start_ns, end_ns), oldest
        first (``newest``: the latest ``limit``, newest first): ``trace_id``, ``start_ns``, ``end_ns``,
        ``status``, ``attributes``, ``kind``."""

    @abc.abstractmethod
    def claim_cron_alert(self, rule_id: int, name: str, expected_ns: int) -> bool:
        """Record that ``rule_id`` reported the expected run ``expected_ns`` of ``name``; False if it had."""

    # -- sessions (the story is told in _sessions.py; stores keep and query the grouping) -----------------

    @abc.abstractmethod
    def list_sessions(self, limit: int = 50, offset: int = 0, search: str | None = None) -> dict[str, Any]:
        """``{"sessions": [...], "total": n}``, most recently active first (``_sessions.session_summary``)."""

    @abc.abstractmethod
    def session_traces(self, session_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The traces of a session (as ``get_trace`` gives them), oldest first."""

    @abc.abstractmethod
    def blocked_spans(self, trace_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The spans of these traces where work was blocked (``BLOCKED_SQL``: one per block), ``trace_spans`` format."""

    def change_token(self) -> str:
        """Changes whenever stored data changes (cheap: the live dashboard asks twice a second at most)."""
        return repr(sorted(self.counts().items()))

    # -- upkeep --------------------------------------------------------------------------------------

    @abc.abstractmethod
    def purge(self, before_ns: int) -> dict[str, int]:
        """Delete data older than ``before_ns``; returns counts per kind."""

    @abc.abstractmethod
    def counts(self) -> dict[str, int]:
        """Cheap totals for /health: spans and traces."""

    @abc.abstractmethod
    def close(self) -> None: ...
