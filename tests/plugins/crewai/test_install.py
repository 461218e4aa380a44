"""Zero-config, explicit listener, both at once, shutdown, and CrewAI imported after init()."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from crewai import Agent, Crew
from crewai.events import LLMCallCompletedEvent, LLMCallFailedEvent, crewai_event_bus
from crewai.flow.flow import Flow
from crewai.hooks import clear_all_global_hooks, clear_before_llm_call_hooks, get_before_llm_call_hooks
from crewai.hooks.dispatch import clear_all

import agentwatch
from agentwatch.plugins.crewai import AgentWatchListener
from agentwatch.plugins.crewai._listener import before_llm_call

from .conftest import make_crew, script, settle

ROOT = Path(__file__).resolve().parents[3]


def _crewai_spans(memory: Any) -> list[dict[str, Any]]:
    return [span for span in memory.spans if span["attributes"].get("framework") == "crewai"]


def _installed() -> bool:
    hooked = before_llm_call in get_before_llm_call_hooks()
    handlers = crewai_event_bus._sync_handlers.get(LLMCallFailedEvent, frozenset())
    assert hooked == any(getattr(h, "__module__", "").startswith("agentwatch.") for h in handlers)
    # The LLM call's started/completed events are handled inline by the bus's emit, not on its pool.
    assert hooked == hasattr(crewai_event_bus.emit, "agentwatch_original")
    assert not any(getattr(h, "__module__", "").startswith("agentwatch.")
                   for h in crewai_event_bus._sync_handlers.get(LLMCallCompletedEvent, frozenset()))
    # The kickoff boundaries (a block inside a delegated agent reaches the caller) come and go with them.
    assert hooked == all(hasattr(getattr(owner, name), "__wrapped__") for owner in (Crew, Flow, Agent)
                         for name in ("kickoff", "kickoff_async", "akickoff"))
    return hooked


def test_zero_config_plus_explicit_listener_records_everything_once(crew_stub: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    listener = AgentWatchListener()
    AgentWatchListener()  # a second module-level listener, e.g. in another file of the project
    assert listener is not None
    assert get_before_llm_call_hooks().count(before_llm_call) == 1
    make_crew(crew_stub.openai_base_url).kickoff()
    settle()
    spans = _crewai_spans(memory)
    assert len(spans) == 9
    assert len([span for span in spans if span["kind"] == "llm"]) == crew_stub.count() == 3
    assert len({span["span_id"] for span in spans}) == 9


def test_llm_spans_are_not_doubled_by_the_http_layer(crew_stub: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    make_crew(crew_stub.openai_base_url, stream=True).kickoff()
    settle()
    llm_like = [span for span in memory.spans if span["kind"] in ("llm", "http")]
    assert len(llm_like) == crew_stub.count() == 3
    # init() installs the HTTP tap too: it found each activated CrewAI call and added to it instead of
    # opening its own span.
    tapped = [span for span in llm_like if "http.url" in span["attributes"]]
    assert len(tapped) == 3 and all(span["attributes"]["framework"] == "crewai" for span in tapped)


@pytest.mark.parametrize("how", ["kickoff_async", "akickoff"])
def test_async_kickoff_with_both_installs_is_one_span_and_one_charge_per_request(how: str, crew_stub: Any,
                                                                                  memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    AgentWatchListener()
    crew = make_crew(crew_stub.openai_base_url)
    asyncio.run(crew.kickoff_async() if how == "kickoff_async" else crew.akickoff())
    settle()
    llm = [span for span in memory.spans if span["kind"] in ("llm", "http")]
    assert len(llm) == crew_stub.count() == 3
    charged = sum(span["cost_usd"] or 0.0 for span in llm)
    assert charged > 0
    assert agentwatch.get_state()["monitors"]["global"]["spend_last_hour"] == pytest.approx(charged)


def test_shutdown_removes_hook_and_listener_and_init_starts_clean(crew_stub: Any, memory: Any) -> None:
    AgentWatchListener()
    agentwatch.init(exporters=[memory])
    assert _installed()
    agentwatch.shutdown()
    assert not _installed()
    make_crew(crew_stub.openai_base_url).kickoff()  # runs untouched, nothing recorded
    settle()
    assert _crewai_spans(memory) == []

    again = agentwatch.InMemoryExporter()
    agentwatch.init(exporters=[again])
    assert _installed()
    script(crew_stub)
    make_crew(crew_stub.openai_base_url).kickoff()
    settle()
    assert len(_crewai_spans(again)) == 9 and _crewai_spans(memory) == []


def test_disabled_plugin_installs_nothing(crew_stub: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory], disabled_plugins=["crewai"])
    assert not _installed()


def test_crewai_imported_after_init_is_instrumented(stub_provider: Any) -> None:
    script(stub_provider)
    program = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r})
        import agentwatch
        memory = agentwatch.InMemoryExporter()
        agentwatch.init(exporters=[memory])
        assert "crewai" not in sys.modules
        from tests.plugins.crewai.conftest import make_crew, settle
        make_crew({stub_provider.openai_base_url!r}).kickoff()
        settle()
        print(json.dumps([[s["kind"], s["name"]] for s in memory.spans
                          if s["attributes"].get("framework") == "crewai"]))
    """)
    env = {**os.environ, "CREWAI_DISABLE_TELEMETRY": "true", "OTEL_SDK_DISABLED": "true",
           "CREWAI_TRACING_ENABLED": "false", "CREWAI_DISABLE_TRACKING": "true"}
    env = {key: value for key, value in env.items() if not key.startswith("AGENTWATCH_")}
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    spans = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(spans) == 9 and sorted(kind for kind, _ in spans).count("llm") == 3
    assert ["chain", "crew:crew"] in spans and ["agent", "agent:Writer"] in spans


def _hook_dispatches(stub: Any, how: str = "call", denied: bool = False) -> list[tuple[str, str, int]]:
    """The ``HookDispatchedEvent``s another listener sees for one ``LLM.call`` (or one crew run); ``denied``: a hook
    denies the call, whose error is not this helper's business."""
    from crewai import LLM
    from crewai.events.types.hook_events import HookDispatchedEvent

    seen: list[Any] = []

    def listener(source: Any, event: Any) -> None:
        seen.append(event)

    crewai_event_bus.on(HookDispatchedEvent)(listener)
    try:
        if how == "crew":
            script(stub)
            make_crew(stub.openai_base_url).kickoff()
        else:
            try:
                LLM(model="openai/gpt-4o-mini", base_url=stub.openai_base_url, api_key="k",
                    max_retries=0).call("hello")
            except Exception:
                if not denied:
                    raise
        crewai_event_bus.flush(timeout=10)
    finally:
        crewai_event_bus.off(HookDispatchedEvent, listener)
    return sorted((event.interception_point, event.outcome, event.hook_count) for event in seen)


@pytest.mark.parametrize("how", ["call", "crew"])
def test_other_listeners_see_the_hook_dispatched_events_of_a_run_without_agentwatch(stub_provider: Any,
                                                                                      memory: Any, how: str) -> None:
    from crewai.hooks import register_before_llm_call_hook, unregister_before_llm_call_hook

    assert _hook_dispatches(stub_provider, how) == []  # without AgentWatch: no hook, no event

    def users_hook(context: Any) -> None:
        return None

    register_before_llm_call_hook(users_hook)
    try:
        without = _hook_dispatches(stub_provider, how)
        agentwatch.init(exporters=[memory])
        with_agentwatch = _hook_dispatches(stub_provider, how)
    finally:
        unregister_before_llm_call_hook(users_hook)
    assert without and all(count == 1 for _, _, count in without)
    assert with_agentwatch == without  # the user's hook alone is counted: AgentWatch's is not shown
    assert _hook_dispatches(stub_provider, how) == []  # our hook alone: no event, as without AgentWatch
    agentwatch.flush()
    assert any(span["kind"] == "llm" and span["status"] == "ok" for span in _crewai_spans(memory))


def test_a_users_hook_that_denies_before_ours_runs_is_counted_alone(stub_provider: Any, memory: Any) -> None:
    """A user's hook registered before ours that denies the call: ours never runs, and the event other listeners see
    counts the user's hook alone, as without AgentWatch (found 2026-12-05 by review: it counted ours too)."""
    from crewai.hooks import register_before_llm_call_hook, unregister_before_llm_call_hook

    def users_hook(context: Any) -> bool:
        return False

    register_before_llm_call_hook(users_hook)
    try:
        without = _hook_dispatches(stub_provider, denied=True)
        agentwatch.init(exporters=[memory])
        with_agentwatch = _hook_dispatches(stub_provider, denied=True)
    finally:
        unregister_before_llm_call_hook(users_hook)
    assert [(outcome, count) for _, outcome, count in without] == [("aborted", 1)]
    assert with_agentwatch == without
    assert stub_provider.count() == 0


def test_the_event_of_a_denial_after_the_program_cleared_crewais_hooks_reaches_its_listener(
        stub_provider: Any, memory: Any) -> None:
    """The program clears CrewAI's hooks (``clear_all()``, as CrewAI's own test suite does before each test),
    AgentWatch's among them, then its own hook denies a call: other listeners see that dispatch's event, as without
    AgentWatch (found 2026-12-06 running CrewAI's test suite with init(): the event was swallowed, ours counted as
    if it were still listed)."""
    from crewai.hooks import register_before_llm_call_hook, unregister_before_llm_call_hook

    def users_hook(context: Any) -> bool:
        return False

    agentwatch.init(exporters=[memory])
    clear_all()
    assert before_llm_call not in get_before_llm_call_hooks()
    register_before_llm_call_hook(users_hook)
    try:
        seen = _hook_dispatches(stub_provider, denied=True)
    finally:
        unregister_before_llm_call_hook(users_hook)
    assert [(outcome, count) for _, outcome, count in seen] == [("aborted", 1)]
    assert stub_provider.count() == 0


def test_a_crew_that_ran_before_init_is_checked_and_recorded_once_after_it(crew_stub: Any, memory: Any) -> None:
    # CrewAI copies the registered before-LLM-call hooks into an agent's executor when it makes it, and reuses
    # the executor for the agent's later tasks: this crew's executors were made without AgentWatch's hook.
    crew = make_crew(crew_stub.openai_base_url)
    crew.kickoff()
    agentwatch.init(exporters=[memory],
                    agents={"Researcher": {"budget_per_hour": 0.00005, "block_on_threshold": True}})
    crew_stub.clear()
    script(crew_stub)
    crew.kickoff()  # Researcher spends $0.000072, over its limit now
    settle()
    llm_like = [span for span in memory.spans if span["kind"] in ("llm", "http")]
    assert len(llm_like) == crew_stub.count() == 3  # each request once, by the hook's call
    assert not any(span["attributes"].get("agentwatch.unchecked") for span in llm_like)
    assert len({span["trace_id"] for span in _crewai_spans(memory)}) == 1
    client = agentwatch.get_client()
    assert client is not None
    assert client.agents["Researcher"].monitor.snapshot()["spend_last_hour"] == pytest.approx(0.000072)

    crew_stub.clear()
    with pytest.raises(agentwatch.CircuitBreakerException) as caught:
        crew.kickoff()
    assert crew_stub.count() == 0  # the Researcher's per-agent limit holds for the warm executor too
    assert (caught.value.scope, caught.value.scope_id) == ("agent", "researcher")


@pytest.mark.parametrize("clear", [clear_all_global_hooks, clear_before_llm_call_hooks, clear_all])
def test_per_agent_limits_hold_after_the_program_cleared_crewais_hooks(crew_stub: Any, memory: Any,
                                                                       clear: Callable[[], Any]) -> None:
    """The program clears CrewAI's hooks after init() (CrewAI's documented reset between runs or tests), ours
    among them: the crew's calls still run through AgentWatch's hook, so the Researcher's limit blocks its second
    request and each request is one span in its agent's scope (found 2026-12-06: only the HTTP layer saw the calls,
    in no agent's scope, so per-agent limits never blocked and each call was recorded, with its cost, twice)."""
    agentwatch.init(exporters=[memory],
                    agents={"Researcher": {"max_calls_per_minute": 1, "block_on_threshold": True}})
    clear()
    with pytest.raises(agentwatch.CircuitBreakerException) as caught:
        make_crew(crew_stub.openai_base_url).kickoff()
    settle()
    assert crew_stub.count() == 1  # the tool call went out; the answer after it was blocked before its request
    assert (caught.value.scope, caught.value.scope_id) == ("agent", "researcher")
    llm_spans = [span for span in memory.spans if span["kind"] in ("llm", "http")]
    assert [(span["agent_name"], span["status"]) for span in llm_spans] == [("Researcher", "ok"),
                                                                           ("Researcher", "blocked")]


def test_a_direct_llm_call_after_the_program_cleared_crewais_hooks_is_recorded_once(stub_provider: Any,
                                                                                    memory: Any) -> None:
    from crewai import LLM

    agentwatch.init(exporters=[memory])
    clear_all_global_hooks()
    stub_provider.queue({"content": "hi", "input_tokens": 100, "output_tokens": 20})
    llm = LLM(model="openai/gpt-4o-mini", base_url=stub_provider.openai_base_url, api_key="test-key", max_retries=0)
    assert llm.call("Say hi") == "hi"
    settle()
    llm_spans = [span for span in memory.spans if span["kind"] in ("llm", "http")]
    assert len(llm_spans) == 1 and llm_spans[0]["attributes"].get("framework") == "crewai"
    assert before_llm_call in get_before_llm_call_hooks()
