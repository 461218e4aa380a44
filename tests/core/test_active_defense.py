"""The breaker through the public API: blocking before the call, audit spans, scopes, recovery."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import agentwatch
from agentwatch import CircuitBreakerException

# gpt-4o: 1M input tokens cost $2.50
ONE_CALL_USD = 2.5


def _spend(n: int = 1, **kwargs: object) -> None:
    for _ in range(n):
        with agentwatch.llm_call("chat", model="gpt-4o", provider="openai", **kwargs) as call:  # type: ignore[arg-type]
            call.set_usage(input_tokens=1_000_000, output_tokens=0)


def test_budget_blocks_before_the_call_and_recovers(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=5.0, block_on_threshold=True)
    _spend(2)
    sent: list[str] = []
    with pytest.raises(CircuitBreakerException) as caught:
        with agentwatch.llm_call("chat", model="gpt-4o"):
            sent.append("request")  # never reached: the check happens before the body runs
    error = caught.value
    assert sent == []
    assert (error.reason, error.scope, error.threshold, error.current) == ("budget_per_hour", "global", 5.0, 5.0)
    assert error.state["state"] == "OPEN"
    error.monitor.increase_budget(2.5)
    _spend(1)
    agentwatch.flush()
    blocked = [s for s in memory.by_kind("llm") if s["status"] == "blocked"]
    assert len(blocked) == 1 and blocked[0]["attributes"]["breaker.reason"] == "budget_per_hour"
    events = [s["attributes"]["event"] for s in memory.by_kind("breaker")]
    assert events == ["triggered", "budget_increased"]
    for span in memory.by_kind("breaker"):
        assert span["attributes"]["eu_ai_act_art12_relevant"] is True
        assert {"from_state", "to_state", "scope", "scope_id", "reason", "threshold", "current"} <= set(
            span["attributes"])
    assert agentwatch.get_state()["monitors"]["global"]["spend_last_hour"] == pytest.approx(7.5)


def test_alert_only_mode_lets_calls_through(memory: agentwatch.InMemoryExporter) -> None:
    alerts: list[dict] = []
    agentwatch.init(exporters=[memory], budget_per_hour=2.0, on_alert=alerts.append)
    _spend(4)
    assert agentwatch.get_state()["monitors"]["global"]["state"] == "CLOSED"
    assert len(alerts) == 1  # the 60 s cooldown suppresses repeats of the same violation
    assert {"reason", "scope", "scope_id", "threshold", "current", "state"} <= set(alerts[0])
    agentwatch.flush()
    assert len(memory.by_kind("alert")) == 1
    assert all(s["status"] == "ok" for s in memory.by_kind("llm"))


def test_alert_only_mode_alerts_every_limit_a_call_is_over() -> None:
    """Product docs: "Each unique threshold violation has its own cooldown timer." Found 2026-12-06: in alert-only
    mode, once the budget was over every call's verdict was the budget's (then cooled down) and the error-rate and
    calls-per-minute limits were never looked at: a runaway loop of failing calls went unreported."""
    alerts: list[dict] = []
    agentwatch.init(exporters=[], budget_per_hour=1.0, max_calls_per_minute=5, max_error_rate=0.5,
                    on_alert=alerts.append)
    _spend(1)  # $2.50: over the budget from now on
    for _ in range(12):
        with pytest.raises(RuntimeError), agentwatch.llm_call("chat", model="gpt-4o", provider="openai"):
            raise RuntimeError("provider down")
    assert [alert["reason"] for alert in alerts] == ["budget_per_hour", "max_calls_per_minute", "max_error_rate"]
    assert alerts[1]["threshold"] == 5 and alerts[1]["current"] == 6
    assert agentwatch.get_state()["monitors"]["global"]["state"] == "CLOSED"


def test_nested_agents_inner_trips_first_outer_still_applies(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=100.0, block_on_threshold=True)
    with agentwatch.agent("Orchestrator", budget_per_hour=5.0, block_on_threshold=True):
        with agentwatch.agent("SubAgent", budget_per_hour=2.5, block_on_threshold=True):
            _spend(1)
            with pytest.raises(CircuitBreakerException) as inner:
                _spend(1)
        assert (inner.value.scope, inner.value.scope_id) == ("agent", "subagent")
        _spend(1)  # the orchestrator itself still has budget
        with agentwatch.agent("Other", budget_per_hour=50.0, block_on_threshold=True):
            with pytest.raises(CircuitBreakerException) as outer:
                _spend(1)
        assert outer.value.scope_id == "orchestrator"
    agents = agentwatch.get_state()["monitors"]["agents"]
    assert agents["SubAgent"]["spend_last_hour"] == pytest.approx(2.5)
    assert agents["Orchestrator"]["spend_last_hour"] == pytest.approx(5.0)


def test_a_decorated_class_stays_a_class_and_its_methods_calls_are_the_agents(
        memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    """The SDK spec's ``@agent(name=...) class EmailAgent`` with ``@task`` methods. Found 2026-12-06: the decorator
    replaced the class with a function (``isinstance`` raised TypeError, subclasses could not be made) whose call only
    wrapped the construction, so the methods' LLM calls were no agent's: its budget never blocked them."""
    from openai import OpenAI

    from tests.stubs.provider_server import Reply

    agentwatch.init(exporters=[memory])
    model = OpenAI(base_url=stub_provider.openai_base_url, api_key="sk-test", max_retries=0)

    @agentwatch.agent_fn(name="email-processor", budget_per_hour=0.001, block_on_threshold=True)
    class EmailAgent:
        folder = "inbox"

        @agentwatch.task(name="classify")
        def classify(self, email: str) -> str:
            stub_provider.queue(Reply(content="spam", input_tokens=1000, output_tokens=100))
            answer = model.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": email}])
            return answer.choices[0].message.content or ""

        @staticmethod
        async def summarise() -> str:
            stub_provider.queue(Reply(content="summary"))
            return model.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "all"}]
                                                 ).choices[0].message.content or ""

    class Urgent(EmailAgent):
        pass

    assert isinstance(EmailAgent, type) and EmailAgent.folder == "inbox"
    bot = Urgent()
    assert isinstance(bot, EmailAgent)
    assert bot.classify("win a prize") == "spam"  # $0.0035: over the agent's $0.001
    with pytest.raises(CircuitBreakerException) as caught:
        asyncio.run(EmailAgent.summarise())
    assert (caught.value.scope, caught.value.scope_id) == ("agent", "email-processor")
    assert stub_provider.count() == 1
    agentwatch.flush()
    (first, blocked) = memory.by_kind("llm")
    spans = {span["span_id"]: span for span in memory.spans}
    assert spans[first["parent_span_id"]]["name"] == "classify"
    assert spans[spans[first["parent_span_id"]]["parent_span_id"]]["name"] == "email-processor"
    assert (first["agent_id"], blocked["agent_id"], blocked["status"]) == ("email-processor", "email-processor",
                                                                           "blocked")


def test_a_decorated_class_method_calling_its_helpers_is_one_agent_span(memory: agentwatch.InMemoryExporter) -> None:
    """Found by review 2026-12-06: each helper a method called (``self._fmt()``) opened a nested span of the same agent
    (run() calling three helpers exported four "Email" agent spans). A method called from another agent's block
    inside still runs as its own agent."""
    agentwatch.init(exporters=[memory])

    @agentwatch.agent("Email")
    class EmailAgent:
        def run(self) -> int:
            for _ in range(3):
                self._fmt()
            with agentwatch.agent("Other"):
                self.spend()
            return self.spend()

        def _fmt(self) -> None:
            _spend()

        def spend(self) -> int:
            _spend()
            return 1

    assert EmailAgent().run() == 1
    agentwatch.flush()
    agents = memory.by_kind("agent")
    assert sorted(span["name"] for span in agents) == ["Email", "Email", "Other"]
    by_id = {span["span_id"]: span for span in memory.spans}

    def ancestors(span: dict[str, Any]) -> list[str]:
        names = []
        while span.get("parent_span_id") in by_id:
            span = by_id[span["parent_span_id"]]
            names.append(span["name"])
        return names

    assert [ancestors(call) for call in memory.by_kind("llm")] == [["Email"]] * 3 + [["Email", "Other", "Email"],
                                                                                    ["Email"]]


def test_a_decorated_classs_inherited_and_subclass_methods_are_its_agents(
        memory: agentwatch.InMemoryExporter) -> None:
    """Found by review 2026-12-06: only the methods the decorated class defined itself were wrapped, so a method it
    inherited from an undecorated base ran outside the agent (no budget), a subclass's override lost the agent, and a
    subclass decorated as another agent ran its base's methods as the base's agent."""
    agentwatch.init(exporters=[memory])
    hooked: list[tuple[str, str]] = []

    class Plain:
        def run(self) -> None:
            _spend()

    @agentwatch.agent("Crawler")
    class Crawler(Plain):
        def __init_subclass__(cls, tag: str = "", **kwargs: Any) -> None:
            super().__init_subclass__(**kwargs)
            hooked.append((cls.__name__, tag))

        @property
        def kind(self) -> str:
            return "crawler"

    class Deep(Crawler, tag="deep"):
        def run(self) -> None:
            _spend()

        def fetch(self) -> None:
            _spend()

    @agentwatch.agent("Indexer")
    class Indexer(Crawler):
        pass

    @agentwatch.agent("Stacked")
    @agentwatch.task("step")
    class Stacked(Plain):
        def own(self) -> None:
            self.run()

    class StackedSub(Stacked):
        def more(self) -> None:
            _spend()

    Crawler().run()
    Deep().run()
    Deep().fetch()
    Indexer().run()
    assert isinstance(Deep(), Plain) and Deep().kind == "crawler" and hooked == [("Deep", "deep"), ("Indexer", "")]
    Stacked().own()  # its helper run() in the same task of the same agent
    Stacked().run()
    StackedSub().more()
    agentwatch.flush()
    calls = memory.by_kind("llm")
    assert [call["agent_id"] for call in calls] == ["crawler", "crawler", "crawler", "indexer"] + ["stacked"] * 3
    assert [span["name"] for span in memory.by_kind("agent")] == ["Crawler", "Crawler", "Crawler", "Indexer"] + [
        "Stacked"] * 3
    by_id = {span["span_id"]: span for span in memory.spans}
    parents = [(by_id[call["parent_span_id"]]["name"], by_id[by_id[call["parent_span_id"]]["parent_span_id"]]["name"])
               for call in calls[4:]]
    assert parents == [("step", "Stacked")] * 3


def test_same_agent_name_shares_one_budget_across_threads() -> None:
    agentwatch.init(exporters=[])
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with agentwatch.agent("Researcher", budget_per_hour=ONE_CALL_USD * 3, block_on_threshold=True):
                _spend(1)
        except CircuitBreakerException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 2
    assert agentwatch.get_state()["monitors"]["agents"]["Researcher"]["spend_last_hour"] == pytest.approx(7.5)


def test_agents_preset_in_init() -> None:
    agentwatch.init(exporters=[], agents={"Writer": {"budget_per_hour": ONE_CALL_USD, "block_on_threshold": True}})
    with agentwatch.agent("Writer", role="Writer"):
        _spend(1)
        with pytest.raises(CircuitBreakerException):
            _spend(1)


def test_on_block_async_hook_recovers_and_call_proceeds(memory: agentwatch.InMemoryExporter) -> None:
    seen: list[tuple[str, float]] = []

    async def top_up(event: agentwatch.BlockEvent) -> None:
        await asyncio.sleep(0)
        seen.append((event.reason, event.current))
        event.monitor.increase_budget(10.0)

    agentwatch.init(exporters=[memory], budget_per_hour=2.5, block_on_threshold=True, on_block=top_up)
    _spend(2)  # the second call is admitted after the hook topped the budget up
    assert seen == [("budget_per_hour", 2.5)]
    agentwatch.flush()
    assert [s["attributes"]["event"] for s in memory.by_kind("breaker")] == ["triggered", "budget_increased"]
    assert all(s["status"] == "ok" for s in memory.by_kind("llm"))


def test_loop_detection_and_pause_probe(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], max_calls_per_minute=3, block_on_threshold=True)
    for _ in range(3):
        with agentwatch.llm_call("x", model="gpt-4o-mini"):
            pass
    with pytest.raises(CircuitBreakerException) as caught:
        agentwatch.start_llm_call("x", model="gpt-4o-mini")
    assert caught.value.reason == "max_calls_per_minute"
    caught.value.monitor.reset_windows()
    with agentwatch.llm_call("x", model="gpt-4o-mini"):
        pass
    agentwatch.flush()
    assert [s["attributes"]["event"] for s in memory.by_kind("breaker")] == ["triggered", "reset"]


def test_the_product_docs_reset_is_reset_windows(memory: agentwatch.InMemoryExporter) -> None:
    """Product docs: "Recovery: pause() / increase_budget() / reset()". Found 2026-12-06: ``e.monitor.reset()`` raised
    AttributeError in the user's except block."""
    agentwatch.init(exporters=[memory], budget_per_hour=2.0, block_on_threshold=True)
    _spend(1)
    with pytest.raises(CircuitBreakerException) as caught:
        _spend(1)
    caught.value.monitor.reset()
    _spend(1)
    agentwatch.flush()
    assert [s["attributes"]["event"] for s in memory.by_kind("breaker")] == ["triggered", "reset"]
    assert [s["status"] for s in memory.by_kind("llm")] == ["ok", "blocked", "ok"]


@pytest.mark.parametrize("limit", [{"max_calls_per_minute": 2}, {"budget_per_hour": 0.01}])
def test_a_streaming_endpoint_answers_402_once_check_limits_sees_the_block(limit: dict[str, float],
                                                                          stub_provider: Any) -> None:
    """README: open the stream or call check_limits() before returning the streaming response, so a block can still
    answer 402. Found 2026-12-06: with max_calls_per_minute=N, after N calls check_limits() let the request through
    (it counted N calls as within the limit), the model call inside the response's generator was blocked, and the
    client got 200 with an empty body."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse
    from fastapi.testclient import TestClient
    from openai import OpenAI

    from tests.stubs.provider_server import Reply

    agentwatch.init(exporters=[], block_on_threshold=True, stream_usage="always", **limit)  # the stub reports usage
    model = OpenAI(base_url=stub_provider.openai_base_url, api_key="sk-test", max_retries=0)
    app = FastAPI()

    @app.exception_handler(CircuitBreakerException)
    def over_limit(request: Any, blocked: CircuitBreakerException) -> JSONResponse:
        return JSONResponse({"blocked": blocked.reason}, status_code=402)

    @app.get("/chat")
    def chat() -> StreamingResponse:
        agentwatch.check_limits()

        def events() -> Iterator[str]:
            stream = model.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                                   stream=True)
            for chunk in stream:
                yield f"data: {chunk.choices[0].delta.content if chunk.choices else ''}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    answers = []
    with TestClient(app, raise_server_exceptions=False) as web:
        for _ in range(3):
            stub_provider.queue(Reply(content="hello", input_tokens=1000, output_tokens=500))
            response = web.get("/chat")
            answers.append((response.status_code, "hello" if "hello" in response.text else response.json()))
    # Two calls within the limit (a budget of $0.01: the second starts at $0.0075); the third is not sent.
    assert answers == [(200, "hello"), (200, "hello"), (402, {"blocked": next(iter(limit))})]
    assert stub_provider.count() == 2


def test_the_programs_check_at_the_call_limit_raises_without_tripping_and_a_boundary_passes(
        memory: agentwatch.InMemoryExporter) -> None:
    """Found 2026-12-06: a check at N calls of a calls-per-minute limit N tripped the breaker OPEN (on_block asked,
    a "triggered" alert) although no call was attempted, and a framework boundary's check (a LangGraph node, a crew
    still blocked) stopped work that made no call."""
    asked: list[str] = []
    agentwatch.init(exporters=[memory], max_calls_per_minute=2, block_on_threshold=True,
                    on_block=lambda event: asked.append(event.reason))
    for _ in range(2):
        with agentwatch.llm_call("x", model="gpt-4o-mini"):
            pass
    monitor = agentwatch.get_client().monitor
    agentwatch.check_limits(scopes=())  # a boundary: the limit is reached, not passed
    with pytest.raises(CircuitBreakerException) as caught:
        agentwatch.check_limits()  # the program's next call would be call 3
    assert (caught.value.reason, caught.value.threshold, caught.value.current) == ("max_calls_per_minute", 2, 3)
    assert monitor.snapshot()["state"] == "CLOSED" and asked == []
    agentwatch.flush()
    assert memory.by_kind("breaker") == []


def _trip_error_rate() -> pytest.ExceptionInfo[CircuitBreakerException]:
    """Ten calls, six of them failed, then the call the error rate blocks."""
    for i in range(10):
        with agentwatch.llm_call("x", model="gpt-4o-mini") as call:
            if i < 6:
                call.end(error=RuntimeError("provider error"))
    with pytest.raises(CircuitBreakerException) as caught:
        agentwatch.start_llm_call("x", model="gpt-4o-mini")
    return caught


def test_error_rate_trips_after_ten_calls() -> None:
    agentwatch.init(exporters=[], max_error_rate=0.5, block_on_threshold=True)
    caught = _trip_error_rate()
    assert caught.value.reason == "max_error_rate"


def _trip_call_rate() -> pytest.ExceptionInfo[CircuitBreakerException]:
    """Three calls within a minute, then the fourth the call rate (3 a minute) blocks."""
    for _ in range(3):
        with agentwatch.llm_call("x", model="gpt-4o-mini"):
            pass
    with pytest.raises(CircuitBreakerException) as caught:
        agentwatch.start_llm_call("x", model="gpt-4o-mini")
    return caught


@pytest.mark.parametrize("probe_fails", [False, True])
@pytest.mark.parametrize("limit", ["max_error_rate", "max_calls_per_minute"])
def test_a_pause_recovers_from_a_rate_trip_through_one_probe(limit: str, probe_fails: bool) -> None:
    """Found 2026-12-05: after an error-rate trip, a pause shorter than the error window (300 s) never recovered:
    the probe was blocked by the very errors it was to test (HALF_OPEN, then every call blocked, none sent). Found
    2026-12-05 again for a loop: a pause shorter than the call window (60 s) after a ``max_calls_per_minute`` trip."""
    if limit == "max_error_rate":
        client = agentwatch.init(exporters=[], max_error_rate=0.5, block_on_threshold=True)
        caught = _trip_error_rate()
    else:
        client = agentwatch.init(exporters=[], max_calls_per_minute=3, block_on_threshold=True)
        caught = _trip_call_rate()
    assert caught.value.reason == limit
    caught.value.monitor.pause(0.05)
    time.sleep(0.1)
    probe = agentwatch.start_llm_call("probe", model="gpt-4o-mini")  # the one call let through
    with pytest.raises(CircuitBreakerException):
        agentwatch.start_llm_call("another", model="gpt-4o-mini")  # while the probe is in flight
    probe.end(error=RuntimeError("still failing") if probe_fails else None)
    if probe_fails:
        assert client.monitor.state == "OPEN"
        with pytest.raises(CircuitBreakerException):
            agentwatch.start_llm_call("x", model="gpt-4o-mini")
        return
    assert client.monitor.state == "CLOSED"
    if limit == "max_error_rate":
        for _ in range(12):  # the errors before the probe are forgotten: the provider is judged afresh
            with agentwatch.llm_call("x", model="gpt-4o-mini"):
                pass
        assert client.monitor.snapshot()["error_rate"] == 0.0
        return
    for _ in range(3):  # the calls before the probe are forgotten: the loop is judged afresh
        with agentwatch.llm_call("x", model="gpt-4o-mini"):
            pass
    with pytest.raises(CircuitBreakerException) as again:  # and the limit still holds
        agentwatch.start_llm_call("x", model="gpt-4o-mini")
    assert again.value.reason == "max_calls_per_minute"


def test_public_path_concurrency_spend_is_exact(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], max_queue_size=20_000)
    barrier = threading.Barrier(16)

    def worker(seed: int) -> None:
        barrier.wait()
        for i in range(500):
            with agentwatch.agent(f"agent-{seed % 4}"), agentwatch.llm_call("c", model="gpt-4o-mini") as call:
                call.set_usage(input_tokens=100 + (seed * i) % 37, output_tokens=10 + i % 11)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    async def one(i: int) -> None:
        with agentwatch.agent("async-agent"), agentwatch.llm_call("a", model="gpt-4o-mini") as call:
            await asyncio.sleep(0)
            call.set_usage(input_tokens=50 + i % 13, output_tokens=5)

    async def many() -> None:
        await asyncio.gather(*(one(i) for i in range(1_000)))

    asyncio.run(many())
    agentwatch.flush()
    llm = memory.by_kind("llm")
    assert len(llm) == 16 * 500 + 1_000
    state = agentwatch.get_state()["monitors"]
    assert state["global"]["spend_last_hour"] == pytest.approx(sum(s["cost_usd"] for s in llm), rel=1e-9)
    for name, monitor in state["agents"].items():
        expected = sum(s["cost_usd"] for s in llm if s["agent_name"] == name)
        assert monitor["spend_last_hour"] == pytest.approx(expected, rel=1e-9), name


def test_reentering_an_agent_keeps_a_recovery_but_applies_new_limits() -> None:
    agentwatch.init(exporters=[])
    with agentwatch.agent("Looper", budget_per_hour=ONE_CALL_USD, block_on_threshold=True):
        _spend(1)
        with pytest.raises(CircuitBreakerException) as caught:
            _spend(1)
    caught.value.monitor.increase_budget(ONE_CALL_USD)
    with agentwatch.agent("Looper", budget_per_hour=ONE_CALL_USD, block_on_threshold=True):
        _spend(1)  # same declared limits: the top-up stands
    with agentwatch.agent("Looper", budget_per_hour=100.0, block_on_threshold=True):
        _spend(1)  # new declared limit replaces the old one
    assert agentwatch.get_state()["monitors"]["agents"]["Looper"]["limits"]["budget_per_hour"] == 100.0


def test_agents_named_in_any_script_are_apart(memory: agentwatch.InMemoryExporter) -> None:
    """Found 2026-12-05: every name without an ASCII letter or digit got the id "agent", so two such agents shared
    one budget (with Redis, one window) and the collector's per-agent views merged them."""
    limited = {"budget_per_hour": 3.0, "block_on_threshold": True}
    names = ["翻訳エージェント", "要約エージェント", "🤖", "🦾"]
    agentwatch.init(exporters=[memory], agents=dict.fromkeys(names, limited))
    for name in names:
        with agentwatch.agent(name):
            _spend()  # $2.50 each: within each agent's own $3
    agentwatch.flush()
    ids = {span["agent_name"]: span["agent_id"] for span in memory.spans if span["kind"] == "llm"}
    assert set(ids) == set(names) and len(set(ids.values())) == len(names)
    assert ids["翻訳エージェント"] == "翻訳エージェント"
    with agentwatch.agent("Ünïcode Agent"):
        assert agentwatch.current_span() is not None
        assert agentwatch.current_span().agent_id == "ünïcode-agent"  # type: ignore[union-attr]


@pytest.mark.parametrize("declared", ["preset", "agent"])
def test_agents_block_when_init_blocks(declared: str, memory: agentwatch.InMemoryExporter) -> None:
    """``init(block_on_threshold=True)`` is an agent's default, as ``hard_budget`` is. Found 2026-12-05: an agent's
    budget from ``init(agents=...)`` or ``agent(..., budget_per_hour=...)`` only alerted, every call went out."""
    limits = {"budget_per_hour": ONE_CALL_USD}
    agentwatch.init(exporters=[memory], block_on_threshold=True,
                    agents={"Researcher": limits} if declared == "preset" else {})
    with agentwatch.agent("Researcher", **({} if declared == "preset" else limits)):  # type: ignore[arg-type]
        _spend(1)
        with pytest.raises(CircuitBreakerException) as caught:
            _spend(1)
    assert caught.value.scope_id == "researcher"


@pytest.mark.parametrize("declared", ["preset", "agent"])
def test_init_hooks_hear_of_an_agents_alerts_and_blocks(declared: str) -> None:
    """``init(on_alert=..., on_block=...)`` fire for an agent scope's limits as for the global one's (found
    2026-12-05: neither fired for an agent's budget, from ``init(agents=...)`` or ``agent(...)``); an ``on_block``
    that raises the agent's budget lets the blocked call go ahead."""
    alerts: list[tuple[str, str]] = []
    blocks: list[tuple[str, str]] = []

    def top_up(event: agentwatch.BlockEvent) -> None:
        blocks.append((event.scope_id, event.reason))
        if len(blocks) == 1:
            event.monitor.increase_budget(ONE_CALL_USD)

    limits = {"budget_per_hour": ONE_CALL_USD}
    agentwatch.init(exporters=[], block_on_threshold=True, on_block=top_up,
                    on_alert=lambda alert: alerts.append((alert["scope_id"], alert["reason"])),
                    agents={"Researcher": limits} if declared == "preset" else {})
    with agentwatch.agent("Researcher", **({} if declared == "preset" else limits)):  # type: ignore[arg-type]
        _spend(2)  # the second call is blocked, topped up by on_block, and goes ahead
        with pytest.raises(CircuitBreakerException):
            _spend(1)
    assert blocks == [("researcher", "budget_per_hour")] * 2
    assert ("researcher", "budget_per_hour") in alerts


def test_an_agent_only_alerts_when_init_only_alerts_or_it_says_so(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], block_on_threshold=True)
    with agentwatch.agent("Watcher", budget_per_hour=ONE_CALL_USD, block_on_threshold=False):
        _spend(2)  # alerts, does not block: the agent's own setting wins
    agentwatch.shutdown()
    agentwatch.init(exporters=[memory])
    with agentwatch.agent("Quiet", budget_per_hour=ONE_CALL_USD):
        _spend(2)  # init's default (alert only) applies


def test_a_service_scoping_each_user_keeps_the_busy_and_blocked_scopes_and_forgets_idle_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One agent scope per user of a web service: scopes pile up with every user ever served (memory, and the
    report each control poll sends). Past the limit, a scope made anew from its declaration would decide the same
    is forgotten; one that spent, is blocked, or was topped up is not."""
    monkeypatch.setattr("agentwatch._client.AGENT_SCOPES_KEPT", 20)
    agentwatch.init(exporters=[])
    with agentwatch.agent("heavy-user", budget_per_hour=ONE_CALL_USD, block_on_threshold=True):
        _spend(1)
        with pytest.raises(CircuitBreakerException):
            _spend(1)
    with agentwatch.agent("topped-up", budget_per_hour=ONE_CALL_USD, block_on_threshold=True) as scope:
        scope.monitor.increase_budget(1.0)
    with agentwatch.agent("light-user", budget_per_hour=100.0, block_on_threshold=True):
        _spend(1)
    for user in range(200):  # users who opened a scope and made no call (their requests were cached, say)
        with agentwatch.agent(f"user-{user}", budget_per_hour=1.0, block_on_threshold=True):
            pass
    agents = agentwatch.get_client().agents
    assert len(agents) <= 40
    assert {"heavy-user", "topped-up", "light-user"} <= set(agents)
    with agentwatch.agent("heavy-user", budget_per_hour=ONE_CALL_USD, block_on_threshold=True):
        with pytest.raises(CircuitBreakerException) as still:
            _spend(1)
    assert still.value.scope_id == "heavy-user"
    assert agents["topped-up"].monitor.budget_per_hour == ONE_CALL_USD + 1.0
    spent = agentwatch.get_state()["monitors"]["agents"]["light-user"]["spend_last_hour"]
    assert spent == pytest.approx(ONE_CALL_USD)


def test_a_scope_forgotten_while_a_request_still_holds_it_is_the_one_its_name_gets_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: a user's scope forgotten while one of its requests was still running got a second monitor
    for the next request of that user: their spend was counted apart and the budget was passed."""
    monkeypatch.setattr("agentwatch._client.AGENT_SCOPES_KEPT", 5)
    agentwatch.init(exporters=[])
    budget = dict(budget_per_hour=ONE_CALL_USD, block_on_threshold=True)
    with agentwatch.agent("alice", **budget):  # a long request of alice's
        for user in range(20):  # other users come and go meanwhile: alice's scope, idle so far, is forgotten
            with agentwatch.agent(f"user-{user}", **budget):
                pass
        assert "alice" not in agentwatch.get_client().agents
        _spend(1)
        with agentwatch.agent("alice", **budget):  # alice's next request, while the first still runs
            with pytest.raises(CircuitBreakerException):
                _spend(1)
    assert agentwatch.get_state()["monitors"]["agents"]["alice"]["spend_last_hour"] == pytest.approx(ONE_CALL_USD)
