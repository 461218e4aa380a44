"""The SQLite store answers a filtered traces list by different plans (a rare label's own rows, a label's rows from
``from`` on joined to their traces, the walk in sort order): each must give the same page and total as a plain
reading of every trace.

The traces arrive as an SDK sends them: the LLM calls first, the root (which starts earliest) in a later batch, so a
label first seen on a call is recorded with a start later than its trace's own start. Between them are traces of the
SDK's bookkeeping alone (breaker transitions of an agent, outside any trace), which no plan lists or counts.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from agentwatch.server import SpanRecord, SQLiteStore, TraceQuery, _sqlite_queries

SECOND = 10**9
BASE = 1_700_000_000 * SECOND
AGENTS = ["common", "usual", "rare", "once"]
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-haiku-4-5"]


def _batches(seed: int = 7, traces: int = 80) -> list[list[SpanRecord]]:
    rng = random.Random(seed)
    calls_batch: list[SpanRecord] = []
    roots_batch: list[SpanRecord] = []
    for index in range(traces):
        trace_id = f"{index:032x}"
        start = BASE + index * 100 * SECOND  # distinct starts: the order of the list is unambiguous
        agent = rng.choices(AGENTS[:3], weights=[8, 4, 1])[0]
        roots_batch.append(SpanRecord(trace_id, f"{index:08x}00000000", None, f"task {index % 7}", "agent", "ok",
                                      start, start + 90 * SECOND, agent, agent.title()))
        for call in range(rng.randint(1, 3)):
            callee = "once" if index == 41 and call == 0 else rng.choice(AGENTS[:3])
            status = rng.choices(["ok", "error", "blocked"], weights=[10, 1, 1])[0]
            begin = start + (call + 1) * 20 * SECOND
            calls_batch.append(SpanRecord(
                trace_id, f"{index:08x}{call + 1:08x}", f"{index:08x}00000000", "openai.chat", "llm", status, begin,
                begin + SECOND, callee, callee.title(), None, rng.choice(MODELS), "openai", 10, 5, 0, 0.001))
        if index % 9 == 4:
            agent = AGENTS[index % 4]
            calls_batch.append(SpanRecord(f"{index:030x}ff", f"{index:08x}ffffffff", None, "breaker.tripped",
                                          "breaker", "ok", start + 50 * SECOND, start + 50 * SECOND, agent,
                                          agent.title(), None, None, None, 0, 0, 0, 0.0, {"event": "tripped"}))
    return [calls_batch, roots_batch]


def _matches(trace: dict[str, Any], query: TraceQuery) -> bool:
    start = trace["start_ns"]
    if query.start_ns is not None and start < query.start_ns:
        return False
    if query.end_ns is not None and start >= query.end_ns:
        return False
    if query.status and trace["status"] != query.status:
        return False
    if query.agent_id and query.agent_id not in {agent["agent_id"] for agent in trace["agents"]}:
        return False
    if query.model and query.model not in trace["models"]:
        return False
    if query.search:
        text = query.search.strip().lower()  # LIKE: ASCII letters in any case, % and _ as themselves (escaped)
        return text in trace["name"].lower() or text in trace["trace_id"] or any(
            text in (agent["agent_id"] or "").lower() or text in (agent["agent_name"] or "").lower()
            for agent in trace["agents"]) or any(text in model.lower() for model in trace["models"])
    return True


def _queries() -> list[TraceQuery]:
    # Some cuts fall between a root and its calls.
    cuts = [BASE + offset * SECOND for offset in (0, 2_010, 4_030, 6_000, 7_990)]
    queries = []
    for agent in [*AGENTS, "nobody"]:
        queries.append(TraceQuery(agent_id=agent, limit=5))
        queries.append(TraceQuery(agent_id=agent, status="error", limit=5))
        queries.append(TraceQuery(agent_id=agent, model="gpt-4o", limit=5, offset=5))
        queries.append(TraceQuery(agent_id=agent, search="task 3", limit=5))
        for cut in cuts:
            queries.append(TraceQuery(agent_id=agent, start_ns=cut, limit=5))
            queries.append(TraceQuery(agent_id=agent, start_ns=cut, limit=5, offset=5))
            queries.append(TraceQuery(agent_id=agent, start_ns=cut, end_ns=cut + 3_000 * SECOND, limit=5))
            queries.append(TraceQuery(agent_id=agent, model="claude-haiku-4-5", start_ns=cut, limit=5))
            queries.append(TraceQuery(agent_id=agent, status="ok", start_ns=cut, limit=5, sort="cost"))
    for model in MODELS:
        for cut in cuts:
            queries.append(TraceQuery(model=model, start_ns=cut, limit=5, order="asc"))
    # Texts of names (given by roots that came last), trace ids, agents (id or name, any case), models; common and
    # rare ones, short ones, with LIKE's wildcards (taken literally), none; alone and with other filters.
    for text in ["task 3", "TASK 3", f"{41:030x}", f"{7:032x}", "Rare", "once", "gpt-4o", "claude", "chat", "ta",
                 "task_3", "k 3%", "zzz", " 3"]:
        queries.append(TraceQuery(search=text, limit=5))
        queries.append(TraceQuery(search=text, status="ok", start_ns=cuts[2], limit=5, offset=5))
        queries.append(TraceQuery(search=text, agent_id="rare", limit=5))
    return queries


@pytest.mark.parametrize("few", [0, 3, 2000], ids=["walk-only", "few-for-rare-labels", "few-for-most-labels"])
def test_every_plan_gives_what_a_plain_reading_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     few: int) -> None:
    store = SQLiteStore(tmp_path / "plans.db")
    try:
        for batch in _batches():
            store.ingest(batch)
        every = store.list_traces(TraceQuery(limit=1000))["traces"]
        assert len(every) == 80
        starts = {trace["trace_id"]: BASE + int(trace["trace_id"], 16) * 100 * SECOND for trace in every}
        for trace in every:
            trace["start_ns"] = starts[trace["trace_id"]]
        monkeypatch.setattr(_sqlite_queries, "_FEW", few)
        checked = 0
        for query in _queries():
            expected = [trace for trace in every if _matches(trace, query)]
            key = {"start_time": lambda t: t["start_ns"], "cost": lambda t: (t["cost_usd"], t["start_ns"])}[query.sort]
            expected.sort(key=key, reverse=query.order == "desc")
            answer = store.list_traces(query)
            page = [trace["trace_id"] for trace in expected[query.offset:query.offset + query.limit]]
            assert [trace["trace_id"] for trace in answer["traces"]] == page, query
            assert answer["total"] == len(expected), query
            checked += bool(expected)
        assert checked > 80  # the filters above are not all empty
    finally:
        store.close()


def test_a_rare_agent_is_found_among_many_traces(tmp_path: Path) -> None:
    """The agent "once" appears in one call of one trace, recorded after the trace's start, under a ``from`` that
    falls between that trace's root and its call."""
    store = SQLiteStore(tmp_path / "rare.db")
    try:
        for batch in _batches():
            store.ingest(batch)
        trace_start = BASE + 41 * 100 * SECOND
        found = store.list_traces(TraceQuery(agent_id="once", start_ns=trace_start))
        assert [trace["trace_id"] for trace in found["traces"]] == [f"{41:032x}"] and found["total"] == 1
        later = store.list_traces(TraceQuery(agent_id="once", start_ns=trace_start + 10 * SECOND))
        assert later["traces"] == [] and later["total"] == 0
    finally:
        store.close()
