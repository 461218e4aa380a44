from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextvars import Context, copy_context
from typing import Any

import pytest

import agentwatch


def _by_name(spans: list[dict]) -> dict[str, dict]:
    return {span["name"]: span for span in spans}


def test_span_dict_has_the_contract_keys(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], capture_messages=True)
    with agentwatch.trace("root"), agentwatch.llm_call("chat", model="gpt-4o", provider="openai") as call:
        call.set_input([{"role": "user", "content": "hi"}])
        call.set_usage(input_tokens=1000, output_tokens=100, cached_input_tokens=200)
        call.set_output("hello")
    agentwatch.flush()
    llm = _by_name(memory.spans)["chat"]
    expected = {"trace_id", "span_id", "parent_span_id", "name", "kind", "status", "start_time_unix_nano",
                "end_time_unix_nano", "agent_id", "agent_name", "agent_role", "model", "provider",
                "input_tokens", "output_tokens", "cached_input_tokens", "cost_usd", "input", "output",
                "attributes"}
    assert expected <= set(llm)
    assert len(llm["trace_id"]) == 32 and len(llm["span_id"]) == 16
    assert llm["kind"] == "llm" and llm["status"] == "ok"
    assert (llm["input_tokens"], llm["output_tokens"], llm["cached_input_tokens"]) == (1000, 100, 200)
    # gpt-4o: $2.50 / 1M input, $1.25 / 1M cached input, $10 / 1M output
    assert llm["cost_usd"] == pytest.approx((800 * 2.5 + 200 * 1.25 + 100 * 10) / 1e6)
    assert llm["output"] == "hello"
    assert llm["end_time_unix_nano"] >= llm["start_time_unix_nano"]


def test_a_span_s_record_is_a_plain_dict_of_its_own_with_the_wire_keys_in_order() -> None:
    from agentwatch._span import Span

    span = Span("chat", "llm", model="gpt-4o", attributes={"a": 1})
    head = ["trace_id", "span_id", "parent_span_id", "name", "kind", "status", "start_time_unix_nano",
            "end_time_unix_nano", "agent_id", "agent_name", "agent_role", "model", "provider", "input_tokens",
            "output_tokens", "cached_input_tokens", "cost_usd", "attributes"]
    record = span.to_dict()
    assert type(record) is dict and list(record) == head
    assert record["attributes"] == {"a": 1} and record["attributes"] is not span.attributes
    span.output = "answer"  # text only where captured, after the attributes
    assert list(span.to_dict()) == [*head, "output"]
    span.input = ["prompt"]
    with_text = span.to_dict()
    assert list(with_text) == [*head, "input", "output"] and with_text["input"] == ["prompt"]
    with_text["extra"] = 1  # an exporter may change its records: other records are not affected
    del with_text["trace_id"]
    assert list(span.to_dict()) == [*head, "input", "output"] and "extra" not in record


def test_a_batch_s_records_are_each_span_s_record_with_or_without_text() -> None:
    """``wire_records`` (the export worker's batch, from the spans' queued fields) gives what ``to_dict`` gives per
    span, keys in the same order, for a batch mixing spans with and without captured text; each record's attributes
    are its own."""
    from agentwatch._span import Span, span_fields, wire_records

    spans = [Span(f"s{i}", "llm", attributes={"i": i}) for i in range(4)]
    spans[1].input, spans[2].output, spans[3].input, spans[3].output = "q", "a", ["q"], {"a": 1}
    records = wire_records([span_fields(span) for span in spans])
    assert records == [span.to_dict() for span in spans]
    assert [list(record) for record in records] == [list(span.to_dict()) for span in spans]
    assert all(record["attributes"] is not span.attributes for record, span in zip(records, spans, strict=True))
    assert wire_records([]) == []


def test_a_span_opened_by_the_plugins_path_is_the_span_the_class_makes() -> None:
    """``open_span`` (the fast path of ``Client._open_span``) sets every field ``Span.__init__`` sets, to the same
    values: a field added to one and not the other fails here (an unset slot raises)."""
    from agentwatch._span import Span, open_span

    made = Span("chat", "llm", None, None, None, None, None, None, None, "gpt-4o", "openai", None)
    opened = open_span("chat", "llm", None, None, "gpt-4o", "openai", None)
    for field in Span.__slots__:
        if field in ("trace_id", "span_id", "start_time_unix_nano"):
            assert type(getattr(opened, field)) is type(getattr(made, field)), field
        else:
            assert getattr(opened, field) == getattr(made, field), field
    assert opened.to_dict().keys() == made.to_dict().keys() and opened.attributes is not made.attributes
    child = open_span("tool", "tool", opened.trace_id, opened.span_id, None, None, {"a": 1})
    assert child.trace_id == opened.trace_id and child.parent_span_id == opened.span_id
    assert child.attributes == {"a": 1}
    # A root draws one id: its span id is its trace id's low half (64 random bits); a child's is its own.
    for root in (made, opened):
        assert len(root.trace_id) == 32 and root.span_id == root.trace_id[16:]
    assert len(child.span_id) == 16 and child.span_id != opened.span_id
    assert len({open_span("x", "llm", None, None, None, None, None).span_id for _ in range(1000)}) == 1000


@pytest.mark.parametrize("settings", [{}, {"capture_messages": True, "zero_data_retention": True}])
def test_text_is_absent_unless_captured(memory: agentwatch.InMemoryExporter, settings: dict) -> None:
    agentwatch.init(exporters=[memory], **settings)
    with agentwatch.llm_call("chat", model="gpt-4o", input="secret prompt") as call:
        call.set_output("secret answer")
    agentwatch.flush()
    (llm,) = memory.by_kind("llm")
    assert "input" not in llm and "output" not in llm


def test_nesting_builds_one_tree(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    with agentwatch.session("daily") as session, agentwatch.agent("Researcher", role="Researcher"), \
            agentwatch.task("classify"):
        with agentwatch.llm_call("chat", model="gpt-4o-mini") as call:
            call.set_usage(10, 5)
        agentwatch.event("memory_snapshot", {"size_kb": 142})
        agentwatch.metric("queue_depth", 23)
        session.set_result("success")
    agentwatch.flush()
    spans = _by_name(memory.spans)
    root, agent, task = spans["daily"], spans["Researcher"], spans["classify"]
    assert root["parent_span_id"] is None and root["kind"] == "session"
    assert root["attributes"]["session.result"] == "success"
    assert agent["parent_span_id"] == root["span_id"] and agent["kind"] == "agent"
    assert task["parent_span_id"] == agent["span_id"]
    assert spans["chat"]["parent_span_id"] == task["span_id"]
    assert spans["memory_snapshot"]["attributes"] == {"size_kb": 142, "session.id": "daily"}
    assert spans["queue_depth"]["attributes"]["metric.value"] == 23
    assert {span["trace_id"] for span in spans.values() if span["kind"] != "process"} == {root["trace_id"]}
    assert spans["chat"]["agent_name"] == "Researcher" and spans["chat"]["agent_role"] == "Researcher"
    assert spans["chat"]["agent_id"] == "researcher"


def test_decorators_sync_and_async(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])

    @agentwatch.agent_fn("Writer")
    def write() -> str:
        with agentwatch.llm_call("w", model="gpt-4o"):
            pass
        return "done"

    @agentwatch.task("fetch")
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    assert write() == "done"
    assert asyncio.run(fetch(21)) == 42
    agentwatch.flush()
    spans = _by_name(memory.spans)
    assert spans["w"]["parent_span_id"] == spans["Writer"]["span_id"]
    assert spans["fetch"]["kind"] == "task"


def test_the_client_init_returns_has_the_structure_api(memory: agentwatch.InMemoryExporter) -> None:
    """The SDK spec's structured mode: ``ap = init()``, then ``ap.session(...)``, ``@ap.agent(name=...)``,
    ``@ap.task(name=...)``, ``ap.cron``, ``ap.event``, ``ap.metric``, ``ap.alert``, ``ap.set_metadata``. Found
    2026-12-06: each raised AttributeError on the client."""
    ap = agentwatch.init(exporters=[memory])

    @ap.agent(name="email-processor")
    class EmailAgent:
        @ap.task(name="classify")
        def classify(self, email: str) -> str:
            with agentwatch.llm_call("chat", model="gpt-4o"):
                pass
            return "spam"

    with ap.trace("run"), ap.session("daily-email-check") as s:
        assert EmailAgent().classify("hi") == "spam"
        s.log("Processed 5 emails")
        with ap.cron("nightly-cleanup"), ap.span("step", kind="tool"):
            ap.event("memory_snapshot", {"file": "MEMORY.md", "size_kb": 142})
            ap.metric("queue_depth", 23)
            ap.alert("Cost spike", severity="warning", details="$5.20 in last hour")
            ap.set_metadata(user="marcus")
    agentwatch.flush()
    spans = _by_name(memory.spans)
    assert spans["chat"]["agent_name"] == "email-processor"
    assert spans["chat"]["parent_span_id"] == spans["classify"]["span_id"]
    assert spans["daily-email-check"]["attributes"]["session.id"] == "daily-email-check"
    assert spans["memory_snapshot"]["attributes"]["size_kb"] == 142
    assert spans["queue_depth"]["attributes"]["metric.value"] == 23
    assert spans["alert: Cost spike"]["attributes"]["details"] == "$5.20 in last hour"
    assert spans["step"]["attributes"]["metadata"] == {"user": "marcus"}
    assert spans["nightly-cleanup"]["kind"] == "cron" and spans["step"]["kind"] == "tool"


def test_a_decorated_generator_s_scope_is_that_of_its_run(memory: agentwatch.InMemoryExporter) -> None:
    """The scope of a decorated generator function spans its body's steps, not the consumer's code between them;
    ``send``/``throw``/``close`` reach the body as without the decorator, and the span ends with the generator."""
    agentwatch.init(exporters=[memory])
    seen: list[str | None] = []

    @agentwatch.task("echo")
    def echo() -> Any:
        received = None
        try:
            while True:
                seen.append(agentwatch.current_span().name)  # type: ignore[union-attr]
                received = yield received
        except KeyError:
            yield "handled"

    with agentwatch.trace("consumer"):
        generator = echo()
        assert next(generator) is None and generator.send("ping") == "ping"
        seen.append(agentwatch.current_span().name)  # type: ignore[union-attr]
        assert generator.throw(KeyError("k")) == "handled"
        generator.close()

    @agentwatch.span("failing")
    async def failing() -> Any:
        yield 1
        raise ValueError("body failed")

    async def consume() -> list[int]:
        return [item async for item in failing()]

    with pytest.raises(ValueError, match="body failed"):
        asyncio.run(consume())

    @agentwatch.span("left")
    async def left() -> Any:
        for item in range(10):
            yield item

    async def break_early() -> None:
        generator = left()
        async for _ in generator:
            break
        await generator.aclose()

    asyncio.run(break_early())
    agentwatch.flush()
    assert seen == ["echo", "echo", "consumer"]
    spans = _by_name(memory.spans)
    assert spans["echo"]["parent_span_id"] == spans["consumer"]["span_id"] and spans["echo"]["status"] == "ok"
    assert (spans["failing"]["status"], spans["failing"]["attributes"]["error.type"]) == ("error", "ValueError")
    assert spans["left"]["status"] == "ok"


def test_errors_mark_spans_and_propagate(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    with pytest.raises(ZeroDivisionError), agentwatch.cron("nightly"):
        1 / 0  # noqa: B018
    with agentwatch.cron("ok-job"):
        pass
    agentwatch.flush()
    spans = _by_name(memory.spans)
    assert spans["nightly"]["status"] == "error"
    assert spans["nightly"]["attributes"]["error.type"] == "ZeroDivisionError"
    assert spans["nightly"]["attributes"]["cron.success"] is False
    assert spans["ok-job"]["attributes"]["cron.success"] is True
    assert spans["ok-job"]["attributes"]["cron.duration_ms"] >= 0
    assert "cron.schedule" not in spans["ok-job"]["attributes"]
    # Each run's start is announced at once (the collector lists a job in progress as running), schedule or not.
    assert sorted(span["name"] for span in memory.spans if span["kind"] == "cron_start") == ["nightly", "ok-job"]


def test_cron_reports_its_schedule(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    with agentwatch.cron("nightly", schedule="0 3 * * *", grace_seconds=600):
        pass

    @agentwatch.cron("hourly", schedule="0 * * * *")
    def job() -> None:
        pass

    job()
    agentwatch.flush()
    spans = _by_name(memory.spans)
    nightly = spans["nightly"]["attributes"]
    assert (nightly["cron.name"], nightly["cron.schedule"]) == ("nightly", "0 3 * * *")
    assert nightly["cron.grace_seconds"] == 600
    assert nightly["cron.success"] is True and "cron.duration_ms" in nightly
    assert spans["hourly"]["attributes"]["cron.schedule"] == "0 * * * *"
    assert "cron.grace_seconds" not in spans["hourly"]["attributes"]  # the collector's default applies
    # With a schedule, a start marker inside the cron span is sent as the job starts; without one, none.
    markers = [span for span in memory.spans if span["kind"] == "cron_start"]
    assert sorted(span["name"] for span in markers) == ["hourly", "nightly"]
    nightly_marker = next(span for span in markers if span["name"] == "nightly")
    assert nightly_marker["parent_span_id"] == spans["nightly"]["span_id"]
    assert nightly_marker["attributes"]["cron.schedule"] == "0 3 * * *"


def test_context_follows_asyncio_tasks_and_copied_thread_contexts(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])

    async def one(i: int) -> None:
        with agentwatch.span(f"child-{i}"):
            await asyncio.sleep(0.001)

    async def main() -> None:
        with agentwatch.trace("async-root"):
            await asyncio.gather(*(one(i) for i in range(20)))

    asyncio.run(main())
    with agentwatch.trace("thread-root"), ThreadPoolExecutor(4) as pool:
        contexts = [copy_context() for _ in range(8)]
        list(pool.map(lambda ctx: ctx.run(lambda: agentwatch.event("in-thread")), contexts))
    agentwatch.flush()
    spans = _by_name(memory.spans)
    for i in range(20):
        assert spans[f"child-{i}"]["parent_span_id"] == spans["async-root"]["span_id"]
    threaded = [s for s in memory.spans if s["name"] == "in-thread"]
    assert len(threaded) == 8
    assert {s["parent_span_id"] for s in threaded} == {spans["thread-root"]["span_id"]}


def test_metadata_reaches_later_spans(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    with agentwatch.trace("t"):
        agentwatch.set_metadata(user="u1", tenant="acme")
        agentwatch.event("later")
    agentwatch.flush()
    spans = _by_name(memory.spans)
    assert spans["t"]["attributes"]["metadata"] == {"user": "u1", "tenant": "acme"}
    assert spans["later"]["attributes"]["metadata"] == {"user": "u1", "tenant": "acme"}


def test_metadata_set_in_a_scope_ends_with_it(memory: agentwatch.InMemoryExporter) -> None:
    """Found 2026-12-06: metadata set inside one request's trace stayed on every later span of the thread, so the next
    request's trace (another, anonymous user) carried the first user's id. The program runs in a context of its own:
    the metadata it sets outside any scope stays for the rest of its context, which must not be the test worker's."""
    agentwatch.init(exporters=[memory])

    def handle(request: str, user: str | None) -> None:
        with agentwatch.trace(request):
            if user is not None:
                agentwatch.set_metadata(user=user)
            agentwatch.event(f"{request}-event")

    def program() -> None:
        agentwatch.set_metadata(service="api")  # outside any scope: the rest of the program's
        handle("request-1", "u1")
        handle("request-2", None)

    copy_context().run(program)
    agentwatch.flush()
    spans = _by_name(memory.spans)
    assert spans["request-1-event"]["attributes"]["metadata"] == {"service": "api", "user": "u1"}
    assert spans["request-2"]["attributes"]["metadata"] == {"service": "api"}
    assert spans["request-2-event"]["attributes"]["metadata"] == {"service": "api"}


def test_garbage_usage_is_recorded_without_breaking_the_call(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    with agentwatch.llm_call("bad", model="gpt-4o") as call:
        call.set_usage(input_tokens="lots", output_tokens=-5, cached_input_tokens=None)
    with agentwatch.llm_call("partial", model="gpt-4o") as call:
        call.set_usage(input_tokens=100, output_tokens=None)
    agentwatch.flush()
    spans = _by_name(memory.spans)
    assert spans["bad"]["attributes"]["usage_invalid"] is True
    assert spans["bad"]["input_tokens"] == 0 and spans["bad"]["cost_usd"] == 0
    assert spans["partial"]["input_tokens"] == 100 and spans["partial"]["cost_usd"] > 0


@pytest.mark.parametrize(("reported", "kept", "invalid"), [
    ((10, 5, 0), (10, 5, 0), False),
    ((2**40, 1, 2**40), (2**40, 1, 2**40), False),  # the largest count taken
    ((2**40 + 1, 1, 0), (0, 1, 0), True),
    ((10, -1, 0), (10, 0, 0), True),
    ((10, 5, 11), (10, 5, 10), True),  # cached beyond input: clipped to it
    ((True, 5, 0), (0, 5, 0), True),  # a bool is no count
    ((10, 5, None), (10, 5, 0), False),
])
def test_token_counts_are_checked_whichever_way_they_arrive(
        memory: agentwatch.InMemoryExporter, reported: tuple[object, object, object], kept: tuple[int, int, int],
        invalid: bool) -> None:
    agentwatch.init(exporters=[memory])
    with agentwatch.llm_call("c", model="gpt-4o") as call:
        call.set_usage(*reported)
    agentwatch.flush()
    span = _by_name(memory.spans)["c"]
    assert (span["input_tokens"], span["output_tokens"], span["cached_input_tokens"]) == kept
    assert span["attributes"].get("usage_invalid", False) is invalid


def test_unknown_model_cost_is_flagged(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], cost_table_override={"house-model": {"input": 4.0, "output": 8.0}})
    with agentwatch.llm_call("a", model="no-such-model-abc") as call:
        call.set_usage(1_000_000, 1_000_000)
    with agentwatch.llm_call("b", model="house-model-large") as call:
        call.set_usage(1_000_000, 1_000_000)
    agentwatch.flush()
    spans = _by_name(memory.spans)
    assert spans["a"]["cost_usd"] == pytest.approx(3.0)
    assert spans["a"]["attributes"]["cost_estimated"] is True
    assert spans["b"]["cost_usd"] == pytest.approx(12.0)
    assert "cost_estimated" not in spans["b"]["attributes"]


def test_manual_alert_reaches_hooks(memory: agentwatch.InMemoryExporter) -> None:
    seen: list[dict] = []

    class Listener:
        @agentwatch.hookimpl
        def agentwatch_alert(self, alert: dict) -> None:
            seen.append(alert)

    client = agentwatch.init(exporters=[memory])
    client.register_plugin(Listener(), "listener")
    agentwatch.alert("Cost spike", severity="critical", details="$5.20 in last hour")
    agentwatch.flush()
    assert seen and seen[0]["message"] == "Cost spike" and seen[0]["severity"] == "critical"
    assert memory.by_kind("alert")[0]["attributes"]["details"] == "$5.20 in last hour"


def test_fingerprint_span_names_python_and_frameworks(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    agentwatch.flush()
    (process,) = memory.by_kind("process")
    assert process["attributes"]["python.version"].startswith("3.")
    assert "pluggy" in process["attributes"]["packages"]


def test_threads_record_concurrently(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for _ in range(200):
            with agentwatch.llm_call("x", model="gpt-4o-mini") as call:
                call.set_usage(10, 10)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    agentwatch.flush()
    assert len(memory.by_kind("llm")) == 1600
    assert agentwatch.get_state()["exporter"]["dropped"] == 0
    # Eight threads drew ids at once from one generator: no id was drawn twice.
    assert len({span["span_id"] for span in memory.by_kind("llm")}) == 1600
    assert len({span["trace_id"] for span in memory.by_kind("llm")}) == 1600


def test_ids_do_not_follow_the_programs_random_seed() -> None:
    """Evals and tests seed the global generator; two such runs must still send distinct span ids (the
    collector treats a repeated span_id as a retry and drops it)."""
    import subprocess
    import sys

    code = ("import random; random.seed(42); import agentwatch; from agentwatch._span import Span, new_trace_id, "
            "new_span_id; random.seed(42); span = Span('s'); print(new_trace_id(), new_span_id(), span.trace_id, "
            "span.span_id)")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert len(runs) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_never_takes_the_parents_next_ids() -> None:
    """A child forked after the parent drew ids draws its own: it never continues the parent's generator."""
    from agentwatch._span import Span

    Span("before the fork")  # the parent's generator has drawn
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its spans' ids to the parent, then out without running the parent's exit hooks
        try:
            os.write(write, " ".join(f"{span.trace_id} {span.span_id}" for span in
                                     (Span("child"), Span("child", trace_id="t" * 32), Span("child"))).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {id_ for span in (Span("parent"), Span("parent", trace_id="t" * 32), Span("parent"))
              for id_ in (span.trace_id, span.span_id)}
    assert len(child) == 6  # three span ids, two trace ids of their own and the one given (the same on both sides)
    assert child & parent == {"t" * 32}


def test_ids_drawn_by_threads_at_once_are_all_different() -> None:
    """Ids are handed out from pools drawn 64 at a time: threads taking them at once, refills included, never get the
    same one, and each is as many hex digits as its kind has."""
    import threading

    from agentwatch._span import new_span_id, new_trace_id

    drawn: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def draw(into: list[str]) -> None:
        start.wait()
        for _ in range(3000):
            into.append(new_span_id())
            into.append(new_trace_id())

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [id_ for into in drawn for id_ in into]
    assert len(set(ids)) == len(ids) == 48_000
    assert {len(id_) for id_ in ids} == {16, 32} and all(int(id_, 16) >= 0 for id_ in ids[:100])


def test_an_llm_span_names_the_opentelemetry_span_current_when_it_started(memory: agentwatch.InMemoryExporter,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    # CrewAI, imported by other tests in the same worker, switches the OpenTelemetry SDK off process-wide: a provider
    # made then only makes non-recording spans with no ids. The program runs in a context of its own, as a fresh
    # program does: other tests' instrumentations may have left their spans current in this one.
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    agentwatch.init(exporters=[memory])
    tracer = TracerProvider().get_tracer("the program's own")

    def program() -> Any:
        with agentwatch.llm_call("before"):  # no OpenTelemetry span current yet: no name
            pass
        with tracer.start_as_current_span("request") as current:
            with agentwatch.llm_call("inside"):
                pass
        with agentwatch.llm_call("after"):  # its span ended: the context is empty again
            pass
        return current.get_span_context()

    ids = Context().run(program)
    agentwatch.flush()
    spans = _by_name(memory.spans)
    assert "otel.current_span" not in spans["before"]["attributes"]
    assert spans["inside"]["attributes"]["otel.current_span"] == f"{ids.trace_id:032x}-{ids.span_id:016x}"
    assert "otel.current_span" not in spans["after"]["attributes"]
