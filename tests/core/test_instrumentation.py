"""The public plugin API, ``agentwatch.instrumentation``: what it adds beyond re-exports behaves as documented."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

import agentwatch
from agentwatch import instrumentation as aw


def test_every_public_name_exists_and_the_private_modules_stay_out() -> None:
    assert all(hasattr(aw, name) for name in aw.__all__)
    assert not [name for name in aw.__all__ if name.startswith("_")]
    # The same objects as the package's own names, not copies.
    assert aw.start_llm_call is agentwatch.start_llm_call and aw.get_current_span is agentwatch.current_span
    assert aw.get_current_llm_call is agentwatch.current_llm_call and aw.hookimpl is agentwatch.hookimpl


def test_the_public_docstrings_point_at_no_private_module() -> None:
    """A plugin author reads ``help(start_llm_call)``: what it refers to must be there for them to read."""
    import inspect
    import re

    private = re.compile(r"agentwatch(?:\.\w+)*\._\w+")
    found = []
    for name in aw.__all__:
        value = getattr(aw, name)
        members = [value, *(member for _, member in inspect.getmembers(value) if callable(member))] \
            if inspect.isclass(value) else [value]
        for member in members:
            doc = getattr(member, "__doc__", None)
            if isinstance(doc, str) and private.search(doc):
                found.append(f"{name}.{getattr(member, '__name__', '')}: {private.search(doc).group()}")
    assert found == []


def test_the_examples_import_no_private_module() -> None:
    """What users copy from: ``examples/`` (scripts and the toychat plugin) use only public modules."""
    import re
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "examples"
    private = re.compile(r"^\s*(?:from|import)\s+agentwatch(?:\.\w+)*\._", re.MULTILINE)
    offenders = [str(path.relative_to(examples)) for path in sorted(examples.rglob("*.py"))
                 if private.search(path.read_text())]
    assert offenders == []


def test_attach_sets_only_what_is_passed_and_detach_restores_it(memory: agentwatch.InMemoryExporter) -> None:
    client = agentwatch.init(exporters=[memory])
    outer, inner = client.start_span("outer"), client.start_span("inner")
    scope = client.agent_scope("writer")
    token = aw.attach(outer)
    assert aw.get_current_span() is outer and aw.get_current_agent_scopes() == ()
    nested = aw.attach(inner, agent=scope)
    assert aw.get_current_span() is inner and aw.get_current_agent_scopes() == (scope,)
    aw.detach(nested)
    assert aw.get_current_span() is outer and aw.get_current_agent_scopes() == ()
    aw.detach(token)
    assert aw.get_current_span() is None


def test_a_restore_point_undoes_what_the_code_in_between_made_current(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    token = aw.attach(aw.get_current_span(), llm_call=aw.get_current_llm_call())
    call = aw.start_llm_call("model", model="gpt-4o-mini")
    call.activate()  # a framework activating a call it ends elsewhere (another task) and cannot deactivate here
    assert aw.get_current_llm_call() is call and aw.get_current_span() is call.span
    aw.detach(token)
    assert aw.get_current_llm_call() is None and aw.get_current_span() is None
    call.end()


def test_detach_from_another_context_changes_nothing(memory: agentwatch.InMemoryExporter) -> None:
    client = agentwatch.init(exporters=[memory])
    span = client.start_span("work")
    token = aw.attach(span)
    contextvars.copy_context().run(aw.detach, token)  # a callback run in a copy of the context: a no-op
    assert aw.get_current_span() is span
    aw.detach(token)
    assert aw.get_current_span() is None


def test_end_span_records_block_error_or_success(memory: agentwatch.InMemoryExporter) -> None:
    client = agentwatch.init(exporters=[memory], budget_per_hour=0.0, block_on_threshold=True)
    with pytest.raises(agentwatch.CircuitBreakerException) as blocked:
        aw.check_limits()
    spans = [client.start_span(name) for name in ("blocked", "failed", "fine")]
    aw.end_span(spans[0], blocked.value)
    aw.end_span(spans[1], ValueError("bad input"))
    aw.end_span(spans[2])
    aw.end_span(spans[2], ValueError("ended twice"))  # idempotent: exported once, as first ended
    agentwatch.flush()
    by_name = {span["name"]: span for span in memory.spans if span["kind"] == "span"}
    assert len([span for span in memory.spans if span["name"] == "fine"]) == 1
    assert by_name["blocked"]["status"] == "blocked"
    assert by_name["blocked"]["attributes"]["breaker.reason"] == blocked.value.reason
    assert by_name["blocked"]["attributes"]["breaker.scope"] == "global"
    assert by_name["failed"]["status"] == "error"
    assert by_name["failed"]["attributes"]["error.type"] == "ValueError"
    assert by_name["fine"]["status"] == "ok"


def test_a_block_is_marked_where_it_happened_not_on_the_spans_it_ends_on_its_way_out(
        memory: agentwatch.InMemoryExporter) -> None:
    """The guide's recipe for a framework boundary (``check_limits`` then ``record_blocked(..., kind="agent")``) used to
    record a blocked agent span with no agent, which the collector did not count as a block (it counted blocks only at
    model calls and graph nodes). ``record_blocked(scopes=...)`` names the agent, and the SDK marks the one span where
    a block happened (``breaker.block_point``), so the enclosing spans a block ends on its way out are not blocks of
    their own: the collector counts one block of any kind, once."""
    client = agentwatch.init(exporters=[memory], agents={"writer": {"budget_per_hour": 0.0,
                                                                    "block_on_threshold": True}})
    scope = client.agent_scope("writer")
    # 1. An agent stopped at its start: its blocked span is the block, and the agent's.
    with pytest.raises(agentwatch.CircuitBreakerException) as stopped:
        try:
            aw.check_limits(scopes=(scope,))
        except agentwatch.CircuitBreakerException as blocked:
            aw.record_blocked(blocked, "writer", kind="agent", scopes=(scope,))
            raise
    # 2. An agent whose model call was refused: the call is the block; the agent's span and a plugin's copy of the
    # block for its framework (made while handling it) end blocked as they pass.
    with pytest.raises(agentwatch.CircuitBreakerException), agentwatch.span("run", kind="trace"):
        agent = client.start_span("writer-run", "agent", agent=scope)
        token = aw.attach(agent, agent=scope)
        try:
            try:
                with agentwatch.llm_call("refused", model="gpt-4o-mini"):
                    pass
            except agentwatch.CircuitBreakerException as refused:
                raise agentwatch.CircuitBreakerException(
                    refused.reason, refused.threshold, refused.current, scope=refused.scope,
                    scope_id=refused.scope_id, state=refused.state, monitor=refused.monitor) from None
        except agentwatch.CircuitBreakerException as copy:
            aw.end_span(agent, copy)
            raise
        finally:
            aw.detach(token)
    # 3. Refused again while the program handles the first block: a block of its own.
    try:
        raise stopped.value
    except agentwatch.CircuitBreakerException:
        with pytest.raises(agentwatch.CircuitBreakerException), \
                agentwatch.llm_call("again", model="gpt-4o-mini", scopes=(scope,)):
            pass
    agentwatch.flush()
    blocked = {span["name"]: span for span in memory.spans if span["status"] == "blocked"}
    assert {name: span["attributes"]["breaker.block_point"] for name, span in blocked.items()} == {
        "writer": True, "refused": True, "writer-run": False, "run": False, "again": True}
    assert blocked["writer"]["kind"] == "agent"
    assert (blocked["writer"]["agent_id"], blocked["writer"]["agent_name"]) == ("writer", "writer")
    assert blocked["writer"]["attributes"]["breaker.scope_id"] == "writer"


def test_check_limits_without_limits_still_sees_a_kill_and_a_pause(memory: agentwatch.InMemoryExporter) -> None:
    # No limit set: nothing can block a CLOSED monitor, but an operator's kill or a pause must still stop a node.
    client = agentwatch.init(exporters=[memory])
    scope = client.agent_scope("writer")
    aw.check_limits()
    aw.check_limits(scopes=(scope,))
    for stop in (client.monitor.kill, lambda: scope.monitor.pause(60)):
        stop()
        with pytest.raises(agentwatch.CircuitBreakerException):
            aw.check_limits(scopes=(scope,))
        client.monitor.resume()
        scope.monitor.resume()
        aw.check_limits(scopes=(scope,))
    client.monitor.kill()
    with pytest.raises(agentwatch.CircuitBreakerException):
        aw.check_limits()
    with agentwatch.agent("writer"), pytest.raises(agentwatch.CircuitBreakerException):
        aw.check_limits()


def test_blocks_met_keeps_the_blocks_raised_under_it_nested_and_on_a_carried_thread(
        memory: agentwatch.InMemoryExporter) -> None:
    """What a plugin reads after framework code that kept only an error's text (AG2's ``"Error: <block>"``)."""
    import threading

    client = agentwatch.init(exporters=[memory])
    client.monitor.kill()
    raised: list[agentwatch.CircuitBreakerException] = []

    def blocked_call() -> None:
        try:
            aw.check_limits()
        except agentwatch.CircuitBreakerException as blocked:
            raised.append(blocked)

    blocked_call()  # watched by none: kept nowhere
    with aw.BlocksMet() as outer:
        with aw.BlocksMet() as inner:
            blocked_call()
        span = client.start_span("tool")
        token = aw.attach(span)
        carried = aw.carry()
        aw.detach(token)
        assert carried is not None
        thread = threading.Thread(target=carried.run, args=(blocked_call,))
        thread.start()
        thread.join()
    blocked_call()  # after: kept nowhere
    assert inner.blocks == [raised[1]] and outer.blocks == raised[1:3]
    assert outer.named_by(str(raised[2])) is raised[2]
    assert outer.named_by("some other error") is None


def test_before_init_nothing_is_checked_and_spans_only_end() -> None:
    span = agentwatch.Span("alone")
    aw.end_span(span, RuntimeError("x"))
    assert span.ended and span.status == "error"
    assert aw.enclosing_monitors() == [] and aw.run_budget("thread:1", 1.0) is None
    aw.check_limits()  # no client: nothing to check, nothing raised


def test_enclosing_monitors_and_run_budget(memory: agentwatch.InMemoryExporter) -> None:
    client = agentwatch.init(exporters=[memory])
    scope = client.agent_scope("writer", budget_per_hour=5.0)
    run = aw.run_budget("thread:t1", 0.5)
    assert run is not None and aw.run_budget("thread:t1", 9.0) is run  # one monitor per key; first budget stays
    assert aw.enclosing_monitors(scopes=(scope,), budgets=(run,)) == [scope.monitor, run, client.monitor]


def test_usage_normalisation() -> None:
    assert aw.normalize_openai_usage({"prompt_tokens": 10, "completion_tokens": 2,
                                      "prompt_tokens_details": {"cached_tokens": 4}}) == {
        "input_tokens": 10, "output_tokens": 2, "cached_input_tokens": 4}

    class ResponsesUsage:  # the Responses API's shape, as an object
        input_tokens, output_tokens = 7, 3
        input_tokens_details = {"cached_tokens": 5}

    assert aw.normalize_openai_usage(ResponsesUsage()) == {"input_tokens": 7, "output_tokens": 3,
                                                           "cached_input_tokens": 5}
    assert aw.normalize_anthropic_usage(1200, 300, 800, 100) == {
        "input_tokens": 2100, "output_tokens": 300, "cached_input_tokens": 800, "cache_write_tokens": 100}


def test_add_pass_through_lets_a_framework_exception_through_the_guard() -> None:
    class Interrupt(Exception):
        pass

    @aw.stop_on_exception
    def callback() -> None:
        raise Interrupt()

    @aw.stop_on_exception
    def broken() -> None:
        raise KeyError("ours")

    aw.add_pass_through(Interrupt)
    aw.add_pass_through(Interrupt)  # registering twice is harmless
    with pytest.raises(Interrupt):
        callback()
    assert broken() is None  # every other internal error is still swallowed


async def test_attach_in_a_task_stays_in_that_task(memory: agentwatch.InMemoryExporter) -> None:
    client = agentwatch.init(exporters=[memory])
    span = client.start_span("task work")

    async def work() -> None:
        aw.attach(span)

    await asyncio.create_task(work())
    assert aw.get_current_span() is None


def test_carry_takes_agentwatchs_values_and_only_them_to_another_thread(memory: agentwatch.InMemoryExporter) -> None:
    import threading

    client = agentwatch.init(exporters=[memory])
    mine: contextvars.ContextVar[str] = contextvars.ContextVar("plugin_value", default="unset")
    host: contextvars.ContextVar[str] = contextvars.ContextVar("host_value", default="unset")
    assert aw.carry() is None  # nothing current: nothing to carry
    span, scope = client.start_span("job"), client.agent_scope("writer")
    token = aw.attach(span, agent=scope)
    mine.set("the plugin's")
    host.set("the host's")
    carried = aw.carry(mine)
    aw.detach(token)
    assert carried is not None
    seen: list[object] = []

    def look() -> None:
        seen.append((aw.get_current_span(), aw.get_current_agent_scopes(), mine.get(), host.get()))

    thread = threading.Thread(target=carried.run, args=(look,))
    thread.start()
    thread.join()
    look()  # here, afterwards: as it was
    assert seen == [(span, (scope,), "the plugin's", "unset"), (None, (), "the plugin's", "the host's")]
