"""The agent a span is charged to in the costs by agent: its own, else that of its nearest ancestor that has one.

The SDK names the agent on every span of it. OpenTelemetry instrumentations name it on the agent's own span only
(``invoke_agent Planner``, ``gen_ai.agent.name``), not on the model calls under it, which carry the cost: those are
charged to the agent above them. Spans of one trace arrive in any order and in any number of requests (an OTLP
exporter sends a call before its agent's span: the call ends first), so both stores decide at ingest (``Charger``):
a span whose ancestor's agent is stored already is charged as it arrives; spans stored before their agent's span are
charged when it arrives. A span keeps the agent it was sent with; the charge is kept beside it (each store's
``span_agents``), and only the costs by agent read it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import Final, Protocol

from ._model import SpanRecord

__all__ = ["Owner", "StoredSpan", "StoredTree", "Charges", "Charger", "own_agent"]

#: (agent key, agent name): the key groups the costs by agent (the id, else the name), the name is shown.
Owner = tuple[str, str | None]
SpanKey = tuple[str, str]  # (trace id, span id)

_UNSEEN: Final = object()


class _Waiting:
    """The chain of ancestors breaks at ``stop``, a span not stored yet (as far as was read): nothing to charge."""

    __slots__ = ("stop",)

    def __init__(self, stop: SpanKey) -> None:
        self.stop = stop


@dataclasses.dataclass(frozen=True, slots=True)
class StoredSpan:
    """What ``charge`` needs of a stored span: its parent, and its own agent or the one it is charged to."""

    parent_span_id: str | None
    owner: Owner | None


class StoredTree(Protocol):
    """A store's spans of the traces a batch adds to, as ``charge`` reads them (under the store's write lock)."""

    def span(self, trace_id: str, span_id: str) -> StoredSpan | None:
        """The stored span, or None if it is not stored."""

    def may_wait(self, trace_id: str) -> bool:
        """Whether the trace may hold stored spans waiting for an agent (False: ``uncharged_children`` is not asked)."""

    def uncharged_children(self, trace_id: str, parent_ids: Collection[str]) -> list[tuple[str, str]]:
        """(span id, parent id) of the stored spans under ``parent_ids`` that have no agent and are charged to none."""


@dataclasses.dataclass(slots=True)
class Charges:
    """``batch``: the batch's spans without an agent of their own that are charged to one; ``stored``: stored spans
    charged now, as an ancestor's agent arrived with this batch."""

    batch: dict[SpanKey, Owner] = dataclasses.field(default_factory=dict)
    stored: dict[SpanKey, Owner] = dataclasses.field(default_factory=dict)


def own_agent(record: SpanRecord) -> Owner | None:
    key = record.agent_id or record.agent_name
    return (key, record.agent_name) if key else None


class Charger:
    """The charges a batch of new spans (no two alike) makes: first within the batch (``in_batch``, decided before
    the store is read), then through the stored spans of the traces it adds to (``with_store``)."""

    __slots__ = ("_by_key", "_owners", "_waiting_at", "in_batch")

    def __init__(self, records: Sequence[SpanRecord]) -> None:
        self._by_key = {(record.trace_id, record.span_id): record for record in records}
        # Per span walked: its Owner, None (no agent above it) or _Waiting; spans under one parent walk it once.
        self._owners: dict[SpanKey, object] = {}
        # The spans waiting, by the missing span their walk stopped at (siblings, mostly, share it).
        self._waiting_at: dict[SpanKey, list[SpanRecord]] = {}
        self.in_batch: dict[SpanKey, Owner] = {}
        for record in records:
            if record.agent_id or record.agent_name or record.parent_span_id is None:
                continue
            owner = self._owners.get((record.trace_id, record.parent_span_id), _UNSEEN)
            if owner is _UNSEEN:
                owner = self._owner(record.trace_id, record.parent_span_id, None, ())
            self._owners[(record.trace_id, record.span_id)] = owner
            if isinstance(owner, tuple):
                self.in_batch[(record.trace_id, record.span_id)] = owner
            elif isinstance(owner, _Waiting):
                waiting = self._waiting_at.get(owner.stop)
                if waiting is None:
                    self._waiting_at[owner.stop] = [record]
                else:
                    waiting.append(record)

    def with_store(self, tree: StoredTree, known_traces: Collection[str]) -> Charges:
        """All the charges, the stored spans of ``known_traces`` read through ``tree`` (which may hold the batch's
        spans themselves: a store that reads after writing them)."""
        result = Charges(dict(self.in_batch))
        if not known_traces:
            return result
        # The spans waiting at a missing ancestor are walked on only if the store has it.
        stale = [stop for stop in self._waiting_at if stop[0] in known_traces and tree.span(*stop) is not None]
        if stale:
            self._owners = {key: owner for key, owner in self._owners.items() if not isinstance(owner, _Waiting)}
            for stop in stale:
                for record in self._waiting_at[stop]:
                    owner = self._owner(record.trace_id, record.span_id, tree, known_traces)
                    if isinstance(owner, tuple):
                        result.batch[(record.trace_id, record.span_id)] = owner
        # The batch's spans that now have an agent (their own or charged) pass it down to stored spans waiting for it.
        by_key = self._by_key
        frontier: dict[str, dict[str, Owner]] = {}
        waits = {trace_id for trace_id in {key[0] for key in by_key}
                 if trace_id in known_traces and tree.may_wait(trace_id)}
        for key, record in by_key.items() if waits else ():
            if record.trace_id in waits:
                owner = own_agent(record) or result.batch.get(key)
                if owner is not None:
                    frontier.setdefault(record.trace_id, {})[record.span_id] = owner
        while frontier:
            below: dict[str, dict[str, Owner]] = {}
            for trace_id, parents in frontier.items():
                for span_id, parent_id in tree.uncharged_children(trace_id, parents):
                    key = (trace_id, span_id)
                    if key in by_key or key in result.stored:
                        continue
                    result.stored[key] = parents[parent_id]
                    below.setdefault(trace_id, {})[span_id] = parents[parent_id]
            frontier = below
        return result

    def _owner(self, trace_id: str, span_id: str, tree: StoredTree | None, known_traces: Collection[str]) -> object:
        """The agent of a span or above it: walked up its ancestors, in the batch and then (``tree``) in the store,
        each span's answer remembered."""
        owners, by_key = self._owners, self._by_key
        path: list[SpanKey] = []
        on_path: set[SpanKey] = set()
        key = (trace_id, span_id)
        found: object
        while True:
            if key in owners:
                found = owners[key]
                break
            if key in on_path:  # a parent cycle: no agent above
                found = None
                break
            record = by_key.get(key)
            if record is not None:
                own = own_agent(record)
                if own is not None:
                    found = owners[key] = own
                    break
                parent = record.parent_span_id
            else:
                stored = tree.span(*key) if tree is not None and trace_id in known_traces else None
                if stored is None or stored.owner is not None:
                    found = owners[key] = _Waiting(key) if stored is None else stored.owner
                    break
                parent = stored.parent_span_id
            path.append(key)
            on_path.add(key)
            if parent is None:
                found = None
                break
            key = (trace_id, parent)
        for walked in path:
            owners[walked] = found
        return found
