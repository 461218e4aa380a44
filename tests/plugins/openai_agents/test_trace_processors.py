"""``set_trace_processors([yours])`` (the SDK's documented way to replace OpenAI's exporter) after ``init()`` keeps
AgentWatch's processor beside yours, which is told exactly what it is told without AgentWatch; ``shutdown()`` takes
ours out again. Found 2026-12-06: it silently dropped ours: no agent, tool or handoff spans any more, and each model
call a trace of its own."""

from __future__ import annotations

from typing import Any

import pytest
from agents import Runner, add_trace_processor, set_trace_processors
from agents.tracing import TracingProcessor, get_trace_provider

import agentwatch

from .conftest import HANDOFF_RUN, Team, llm_spans


class Events(TracingProcessor):
    """A user's processor: what it was told, in order, with the SDK's ids numbered by first appearance."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self._ids: dict[str, int] = {}

    def _id(self, value: str | None) -> int | None:
        return None if value is None else self._ids.setdefault(value, len(self._ids))

    def on_trace_start(self, trace: Any) -> None:
        self.events.append(("trace_start", trace.name, self._id(trace.trace_id)))

    def on_trace_end(self, trace: Any) -> None:
        self.events.append(("trace_end", self._id(trace.trace_id)))

    def on_span_start(self, span: Any) -> None:
        self.events.append(("span_start", span.span_data.type, self._id(span.span_id), self._id(span.parent_id)))

    def on_span_end(self, span: Any) -> None:
        self.events.append(("span_end", span.span_data.type, self._id(span.span_id), span.error))

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


def _processors() -> tuple[Any, ...]:
    return tuple(get_trace_provider()._multi_processor._processors)  # type: ignore[attr-defined]


def _handoff_run(stub: Any) -> None:
    stub.queue(*HANDOFF_RUN)
    assert Runner.run_sync(Team(stub).triage, "what is 1 + 2?").final_output == "the sum is 3"


def test_set_trace_processors_after_init_keeps_agentwatchs_spans(stub_provider: Any, memory: Any) -> None:
    plain = Events()
    set_trace_processors([plain])
    _handoff_run(stub_provider)

    agentwatch.init(exporters=[memory])
    ours = _processors()[-1]
    yours = Events()
    set_trace_processors([yours])  # after init(), as the SDK's docs replace OpenAI's exporter
    assert _processors() == (yours, ours)
    _handoff_run(stub_provider)
    agentwatch.flush()
    kept = sorted((span["kind"], span["name"]) for span in memory.spans if span["kind"] in ("agent", "tool", "handoff"))
    assert kept == [("agent", "Billing"), ("agent", "Triage"), ("handoff", "handoff Triage -> Billing"),
                    ("tool", "add")]
    assert len({span["trace_id"] for span in llm_spans(memory)}) == 1  # one run, one trace
    assert yours.events == plain.events  # yours is told exactly what it is told without AgentWatch

    set_trace_processors([ours, yours])  # ours given back by hand: not twice
    assert _processors() == (ours, yours)
    agentwatch.shutdown()
    assert _processors() == (yours,)  # taken out at shutdown
    set_trace_processors([])
    assert _processors() == ()  # and set_trace_processors is the SDK's own again


def test_a_processor_added_after_set_trace_processors_is_kept_in_order(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    ours = _processors()[-1]
    first, second = Events(), Events()
    set_trace_processors([first])
    add_trace_processor(second)
    assert _processors() == (first, ours, second)
    agentwatch.shutdown()
    assert _processors() == (first, second)


@pytest.mark.parametrize("again", [False, True])
def test_init_after_shutdown_adds_ours_once(stub_provider: Any, memory: Any, again: bool) -> None:
    agentwatch.init(exporters=[memory])
    agentwatch.shutdown()
    assert _processors() == ()
    agentwatch.init(exporters=[memory])
    if again:
        set_trace_processors([])
    assert len(_processors()) == 1
    _handoff_run(stub_provider)
    agentwatch.flush()
    assert sorted(span["name"] for span in memory.spans if span["kind"] == "agent") == ["Billing", "Triage"]
