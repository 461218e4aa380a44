from __future__ import annotations

import contextlib
import functools
import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agentwatch
from agentwatch._plugins import PostImportHooks
from agentwatch.instrumentation import Price
from tests.stubs.provider_server import Reply, StubProvider


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed distribution (dist-info on sys.path) that declares agentwatch plugins."""
    (tmp_path / "aw_thirdparty-1.0.dist-info").mkdir()
    (tmp_path / "aw_thirdparty-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: aw-thirdparty\nVersion: 1.0\n")
    (tmp_path / "aw_thirdparty-1.0.dist-info" / "entry_points.txt").write_text(textwrap.dedent("""
        [agentwatch.plugins]
        lateframework = aw_tp_late
        missingframework = aw_tp_missing
        customexporter = aw_tp_exporter
        brokenhooks = aw_tp_broken
    """))
    (tmp_path / "aw_tp_late.py").write_text(textwrap.dedent("""
        import agentwatch
        AGENTWATCH_REQUIRES = ("aw_fake_framework",)
        calls = []

        @agentwatch.hookimpl
        def agentwatch_instrument(client):
            import os
            import aw_fake_framework
            calls.append(("instrument", aw_fake_framework.VALUE))
            aw_fake_framework.patched = True
            if os.environ.get("AW_TP_BUG") == "late_instrument":
                raise RuntimeError("bug half way through instrumenting")

        @agentwatch.hookimpl
        def agentwatch_uninstrument(client):
            import aw_fake_framework
            calls.append(("uninstrument", None))
            aw_fake_framework.patched = False
    """))
    (tmp_path / "aw_fake_framework.py").write_text("VALUE = 42\npatched = False\n")
    (tmp_path / "aw_tp_missing.py").write_text(textwrap.dedent("""
        import agentwatch
        AGENTWATCH_REQUIRES = ("framework_that_is_not_installed",)

        @agentwatch.hookimpl
        def agentwatch_instrument(client):
            raise AssertionError("must not be called")
    """))
    (tmp_path / "aw_tp_exporter.py").write_text(textwrap.dedent("""
        import agentwatch

        class Collected(agentwatch.InMemoryExporter):
            pass

        @agentwatch.hookimpl
        def agentwatch_make_exporter(name, config):
            return Collected() if name == "collected" else None
    """))
    (tmp_path / "aw_tp_broken.py").write_text(textwrap.dedent("""
        # A plugin without AGENTWATCH_REQUIRES (a span listener): AW_TP_BUG names the hook that raises.
        import os
        import agentwatch
        seen = []

        def _run(hook):
            seen.append(hook)
            if os.environ.get("AW_TP_BUG") == hook:
                raise RuntimeError(f"bug in {hook}")

        @agentwatch.hookimpl
        def agentwatch_configure(config):
            _run("configure")

        @agentwatch.hookimpl
        def agentwatch_instrument(client):
            _run("instrument")

        @agentwatch.hookimpl
        def agentwatch_uninstrument(client):
            _run("uninstrument")

        @agentwatch.hookimpl
        def agentwatch_span_start(span):
            _run("span_start")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("aw_tp_late", "aw_fake_framework", "aw_tp_missing", "aw_tp_exporter", "aw_tp_broken"):
        sys.modules.pop(name, None)


def test_late_import_is_instrumented_and_shutdown_removes_it(third_party: Path) -> None:
    agentwatch.init(exporters=[])
    import aw_tp_late

    assert aw_tp_late.calls == []
    import aw_fake_framework

    assert aw_fake_framework.patched is True
    assert aw_tp_late.calls == [("instrument", 42)]
    assert "lateframework" in agentwatch.get_state()["plugins"]
    agentwatch.shutdown()
    assert aw_fake_framework.patched is False
    assert not any(isinstance(finder, PostImportHooks) for finder in sys.meta_path)


@pytest.mark.parametrize("first", ["aw_two_a", "aw_two_b"])
def test_a_plugin_requiring_two_modules_waits_for_both(first: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``AGENTWATCH_REQUIRES`` names every module a plugin instruments: it was registered (and its
    ``agentwatch_instrument`` run) when the first of them was imported, and failed on the other, not imported yet."""
    (tmp_path / "aw_two-1.0.dist-info").mkdir()
    (tmp_path / "aw_two-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: aw-two\nVersion: 1.0\n")
    (tmp_path / "aw_two-1.0.dist-info" / "entry_points.txt").write_text("[agentwatch.plugins]\ntwo = aw_tp_two\n")
    (tmp_path / "aw_tp_two.py").write_text(textwrap.dedent("""
        import sys
        import agentwatch
        AGENTWATCH_REQUIRES = ("aw_two_a", "aw_two_b")
        calls = []

        @agentwatch.hookimpl
        def agentwatch_instrument(client):
            calls.append(sorted(name for name in AGENTWATCH_REQUIRES if name in sys.modules))
    """))
    for name in ("aw_two_a", "aw_two_b"):
        (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("aw_tp_two", "aw_two_a", "aw_two_b"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    agentwatch.init(exporters=[])
    import aw_tp_two

    __import__(first)
    assert aw_tp_two.calls == []
    assert "two" not in agentwatch.get_state()["plugins"]
    __import__("aw_two_b" if first == "aw_two_a" else "aw_two_a")
    assert aw_tp_two.calls == [["aw_two_a", "aw_two_b"]]
    assert "two" in agentwatch.get_state()["plugins"]
    agentwatch.shutdown()
    agentwatch.init(exporters=[])  # both imported: at once
    assert aw_tp_two.calls == [["aw_two_a", "aw_two_b"]] * 2


def test_framework_imported_before_init_is_instrumented_at_once(third_party: Path) -> None:
    import aw_fake_framework
    import aw_tp_late

    agentwatch.init(exporters=[])
    assert aw_fake_framework.patched is True
    agentwatch.shutdown()
    agentwatch.init(exporters=[])
    assert aw_tp_late.calls == [("instrument", 42), ("uninstrument", None), ("instrument", 42)]


@pytest.mark.parametrize("bug", ["configure", "instrument", "late_instrument"])
def test_a_plugin_that_fails_to_start_is_left_out_and_the_program_carries_on(
        bug: str, third_party: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A plugin's ``agentwatch_configure`` or ``agentwatch_instrument`` that raised used to make ``init()`` raise
    (a plugin without ``AGENTWATCH_REQUIRES``), leaving the client half started, or was swallowed with the plugin
    half registered (a framework plugin, instrumented on import). Either way it is now logged with the plugin's name
    and the plugin is left out; one that failed half way through instrumenting has its own uninstrument undo it."""
    monkeypatch.setenv("AW_TP_BUG", bug)
    caplog.set_level(logging.DEBUG, logger="agentwatch")
    agentwatch.init(exporters=[])
    import aw_fake_framework  # the late framework plugin is instrumented now
    import aw_tp_broken

    plugins = agentwatch.get_state()["plugins"]
    broken = "lateframework" if bug == "late_instrument" else "brokenhooks"
    assert broken not in plugins and {"lateframework", "brokenhooks"} - {broken} <= set(plugins)
    seen_before = list(aw_tp_broken.seen)
    with agentwatch.span("after"):
        pass
    if broken == "brokenhooks":
        assert aw_tp_broken.seen == seen_before  # left out: no span shown to it
        assert bug == "instrument" or "instrument" not in seen_before  # configure failed: not instrumented either
        assert aw_fake_framework.patched is True
    else:
        assert aw_tp_broken.seen[-1] == "span_start"
        assert aw_fake_framework.patched is False  # its own uninstrument undid what it had installed
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and f"{broken!r}" in errors[0].getMessage() and "not used" in errors[0].getMessage()
    agentwatch.shutdown()


def test_a_plugin_whose_uninstrument_raises_does_not_stop_shutdown(
        third_party: Path, monkeypatch: pytest.MonkeyPatch, memory: agentwatch.InMemoryExporter) -> None:
    """``shutdown()`` used to raise the plugin's error (as an AttributeError of our own) and stop there: the other
    plugins stayed instrumented and the spans still queued were never exported."""
    monkeypatch.setenv("AW_TP_BUG", "uninstrument")
    import aw_fake_framework

    client = agentwatch.init(exporters=[memory], flush_interval=60)
    assert aw_fake_framework.patched is True
    with agentwatch.span("last-work"):
        pass
    agentwatch.shutdown()
    assert aw_fake_framework.patched is False
    assert "last-work" in {span["name"] for span in memory.spans}
    assert client.plugin_manager.get_plugins() == set()


def test_missing_framework_is_skipped_quietly(third_party: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agentwatch")
    agentwatch.init(exporters=[])
    assert "missingframework" not in agentwatch.get_state()["plugins"]
    assert any("framework_that_is_not_installed not installed" in r.getMessage() for r in caplog.records)
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)


def test_a_plugin_that_fails_to_import_is_named_in_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """A plugin whose module crashed on import was logged at DEBUG only, as quietly as one whose framework is
    absent: the user never learned that a plugin they installed did nothing."""
    (tmp_path / "aw_broken-1.0.dist-info").mkdir()
    (tmp_path / "aw_broken-1.0.dist-info" / "entry_points.txt").write_text(
        "[agentwatch.plugins]\ncrashing = aw_tp_crashing\nreaching = aw_tp_reaching\n")
    (tmp_path / "aw_tp_crashing.py").write_text("raise RuntimeError('plugin module crashed at import')\n")
    (tmp_path / "aw_tp_reaching.py").write_text("from agentwatch._no_such_private_module import thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    caplog.set_level(logging.DEBUG, logger="agentwatch")
    agentwatch.init(exporters=[])
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "'crashing'" in warnings[0] and "RuntimeError: plugin module crashed at import" in warnings[0]
    assert "'reaching'" in warnings[1] and "agentwatch._no_such_private_module" in warnings[1]
    assert not {"crashing", "reaching"} & set(agentwatch.get_state()["plugins"])
    for name in ("aw_tp_crashing", "aw_tp_reaching"):
        sys.modules.pop(name, None)


def test_disabled_plugins_env(third_party: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTWATCH_DISABLED_PLUGINS", "lateframework")
    import aw_fake_framework

    agentwatch.init(exporters=[])
    assert aw_fake_framework.patched is False
    assert "lateframework" not in agentwatch.get_state()["plugins"]


def test_third_party_exporter_by_entry_point(third_party: Path) -> None:
    client = agentwatch.init(exporters=["collected"])
    agentwatch.event("hello")
    agentwatch.flush()
    (exporter,) = client.exporters
    assert type(exporter).__name__ == "Collected"
    assert "hello" in {span["name"] for span in exporter.spans}


def test_span_hooks_and_price_hook(memory: agentwatch.InMemoryExporter) -> None:
    events: list[tuple[str, str]] = []

    class Plugin:
        @agentwatch.hookimpl
        def agentwatch_span_start(self, span: agentwatch.Span) -> None:
            events.append(("start", span.name))

        @agentwatch.hookimpl
        def agentwatch_span_end(self, span: agentwatch.Span) -> None:
            events.append(("end", span.name))
            span.attributes["seen_by_plugin"] = True

        @agentwatch.hookimpl
        def agentwatch_price(self, model: str, provider: str | None, input_tokens: int, output_tokens: int,
                             cached_input_tokens: int, cache_write_tokens: int) -> object:
            return Price(1.23) if model == "negotiated-model" else None

        @agentwatch.hookimpl
        def agentwatch_export(self, spans: list[dict]) -> None:
            events.extend(("export", span["name"]) for span in spans)

    client = agentwatch.init(exporters=[memory])
    client.register_plugin(Plugin(), "p")
    with agentwatch.llm_call("priced", model="negotiated-model") as call:
        call.set_usage(10, 10)
    with agentwatch.llm_call("table", model="gpt-4o") as call:
        call.set_usage(1_000_000, 0)
    agentwatch.flush()
    spans = {span["name"]: span for span in memory.spans}
    assert spans["priced"]["cost_usd"] == 1.23
    assert spans["table"]["cost_usd"] == pytest.approx(2.5)
    assert spans["priced"]["attributes"]["seen_by_plugin"] is True
    assert ("start", "priced") in events and ("end", "priced") in events and ("export", "priced") in events


class _BuggyListener:
    """A third-party span listener and price plugin with a bug in one hook (``hook``)."""

    def __init__(self, hook: str) -> None:
        self.hook = hook
        self.answered: list[str] = []

    def _run(self, hook: str) -> None:
        self.answered.append(hook)
        if hook == self.hook:
            raise RuntimeError(f"listener bug in {hook}")

    @agentwatch.hookimpl
    def agentwatch_span_start(self, span: agentwatch.Span) -> None:
        self._run("span_start")

    @agentwatch.hookimpl
    def agentwatch_span_end(self, span: agentwatch.Span) -> None:
        self._run("span_end")

    @agentwatch.hookimpl
    def agentwatch_price(self, model: str, provider: str | None, input_tokens: int, output_tokens: int,
                         cached_input_tokens: int, cache_write_tokens: int) -> None:
        self._run("price")


@pytest.mark.parametrize("hook", ["span_start", "span_end", "price"])
def test_a_plugin_hook_that_raises_leaves_limits_charging_and_export_alone(
        hook: str, stub_provider: StubProvider, memory: agentwatch.InMemoryExporter,
        caplog: pytest.LogCaptureFixture) -> None:
    """A bug in any plugin's span or price hook used to turn every limit off: raised before the limit check (span
    start) or in place of the block being recorded (span end), it reached the SDK layer as an internal error, which
    sent the request unchecked; a price hook's error ended the call before it was charged. Now each implementation's
    error is logged once and the hook goes on without it: the limit blocks, the call is charged and exported."""
    import openai

    caplog.set_level(logging.DEBUG, logger="agentwatch")
    limits: dict[str, Any] = {"budget_per_hour": 0.001} if hook == "price" else {"max_calls_per_minute": 1}
    client = agentwatch.init(exporters=[memory], block_on_threshold=True, **limits)
    plugin = _BuggyListener(hook)
    client.register_plugin(plugin, "buggy-listener")
    sdk = openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="sk-test", max_retries=0)
    blocked = 0
    for _ in range(4):
        stub_provider.queue(Reply(input_tokens=10_000, output_tokens=1_000))  # $0.0021 with gpt-4o-mini
        try:
            sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        except agentwatch.CircuitBreakerException:
            blocked += 1
    agentwatch.flush()
    assert (stub_provider.count(), blocked) == (1, 3)
    assert plugin.answered.count("span_end") >= 4  # still registered: every span is shown to it
    calls = memory.by_kind("llm")
    assert [span["status"] for span in calls] == ["ok", "blocked", "blocked", "blocked"]
    assert calls[0]["cost_usd"] == pytest.approx(0.0021)
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and "'buggy-listener'" in errors[0].getMessage()
    assert f"agentwatch_{hook}" in errors[0].getMessage() and errors[0].exc_info is not None


@pytest.mark.parametrize("answer", [0.01, 1, Price(0.01), Price(0.01, estimated=True)])
def test_price_hook_answers_a_number_or_a_public_price(answer: object, memory: agentwatch.InMemoryExporter) -> None:
    """``agentwatch_price`` is documented to price a call in USD: a number used to fail the call's end (an
    AttributeError on ``cost_usd``), which was then neither charged nor exported; ``Price`` was private."""
    cost = float(answer.cost_usd if isinstance(answer, Price) else answer)  # type: ignore[arg-type]

    class Prices:
        @agentwatch.hookimpl
        def agentwatch_price(self, model: str, provider: str | None, input_tokens: int, output_tokens: int,
                             cached_input_tokens: int, cache_write_tokens: int) -> object:
            return answer if model == "my-local-model" else None

    client = agentwatch.init(exporters=[memory], budget_per_hour=cost * 1.5, block_on_threshold=True)
    client.register_plugin(Prices(), "my-prices")
    made = 0
    for _ in range(3):
        with contextlib.suppress(agentwatch.CircuitBreakerException):
            with agentwatch.llm_call("mine", model="my-local-model", provider="local") as call:
                made += 1
                call.set_usage(input_tokens=100, output_tokens=10)
    agentwatch.flush()
    assert made == 2  # the second call spends past the budget: the third is blocked
    calls = memory.by_kind("llm")
    assert [(span["status"], span["cost_usd"]) for span in calls] == [("ok", cost), ("ok", cost), ("blocked", 0.0)]
    estimated = isinstance(answer, Price) and answer.estimated
    assert calls[0]["attributes"].get("cost_estimated", False) is estimated


@pytest.mark.parametrize("answer", [(0.01, False), "0.01", -1.0, float("nan"), True])
def test_price_hook_with_a_wrong_answer_is_logged_once_and_the_built_in_price_used(
        answer: object, memory: agentwatch.InMemoryExporter, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agentwatch")

    class Prices:
        @agentwatch.hookimpl
        def agentwatch_price(self, model: str, provider: str | None, input_tokens: int, output_tokens: int,
                             cached_input_tokens: int, cache_write_tokens: int) -> object:
            return answer

    client = agentwatch.init(exporters=[memory])
    client.register_plugin(Prices(), "my-prices")
    for _ in range(3):
        with agentwatch.llm_call("table", model="gpt-4o") as call:
            call.set_usage(1_000_000, 0)
    agentwatch.flush()
    assert [span["cost_usd"] for span in memory.by_kind("llm")] == [pytest.approx(2.5)] * 3
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and "'my-prices'" in errors[0].getMessage()
    assert "expected a Price, a number of USD, or None" in caplog.text


@pytest.mark.parametrize("limit", ["budget_per_hour", "hard_budget"])
def test_before_block_hook_may_recover_the_call(limit: str) -> None:
    """``agentwatch_before_block`` runs before a block is raised, in the caller's context and after the monitor's own
    ``on_block``; a plugin that recovers the monitor lets the call through (the LangChain plugin applies a human's
    answer to a graph's pause this way, for calls it does not make itself)."""
    from contextvars import ContextVar

    caller: ContextVar[str] = ContextVar("caller", default="elsewhere")
    asked: list[tuple[str, str, str]] = []

    class Plugin:
        @agentwatch.hookimpl
        def agentwatch_before_block(self, event: agentwatch.BlockEvent) -> bool:
            asked.append(("plugin", event.reason, caller.get()))
            if caller.get() == "recover":
                event.monitor.increase_budget(1.0)
                return True
            return False

    hard = limit == "hard_budget"
    client = agentwatch.init(exporters=[], budget_per_hour=0.01, block_on_threshold=not hard, hard_budget=hard,
                             on_block=lambda event: asked.append(("on_block", event.reason, caller.get())))
    client.register_plugin(Plugin(), "p")

    def call() -> None:
        with agentwatch.llm_call("c", model="gpt-4o") as llm:
            if hard:
                llm.top_up(0.02)  # a worst case over the budget: refused, the breaker stays CLOSED
            else:
                llm.set_usage(10_000, 0)  # $0.025: spends the budget

    if not hard:
        call()
    caller.set("decline")
    with pytest.raises(agentwatch.CircuitBreakerException):
        call()
    caller.set("recover")
    call()
    assert asked == [("on_block", limit, "decline"), ("plugin", limit, "decline"),
                     ("on_block", limit, "recover"), ("plugin", limit, "recover")]


def test_hookspecs_are_prefixed_and_documented() -> None:
    from agentwatch import hookspecs

    specs = [name for name in dir(hookspecs) if name.startswith("agentwatch_")]
    assert len(specs) >= 10
    for name in specs:
        assert getattr(hookspecs, name).__doc__, name


def _plugin_names(entry_points: list[Any]) -> set[str]:
    return {entry.name for entry in entry_points}


def _add_to_listing(cache: Path, directory: str, row: str) -> None:
    """A plugin row added to ``directory``'s listing in the entry-point cache file (after its line of names)."""
    lines = cache.read_text().splitlines()
    header = next(index for index, line in enumerate(lines) if line.startswith("@") and line.endswith(f" {directory}"))
    lines.insert(header + 2, row)
    cache.write_text("\n".join(lines) + "\n")


def test_entry_point_cache_is_used_until_a_path_directory_changes(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-user cache of the ``agentwatch.plugins`` scan answers for a ``sys.path`` directory while it has not
    changed, and a distribution installed afterwards is found (its metadata directory changes its parent's mtime)."""
    import os
    import time

    from agentwatch import _entry_points

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    settled = time.time() - 60
    os.utime(site, (settled, settled))

    first = _plugin_names(_entry_points.plugin_entry_points())
    cache = tmp_path / "cache" / "agentwatch" / "entry-points.txt"
    assert cache.is_file() and first == _plugin_names(_entry_points.entry_points_of("agentwatch.plugins"))
    assert "agentwatch.plugins.http._plugin" in cache.read_text()
    # Read from the cache while the directory did not change: a plugin added to its listing there shows up.
    _add_to_listing(cache, str(site), "aw-cached\tfrom_the_cache\taw_nothing")
    assert "from_the_cache" in _plugin_names(_entry_points.plugin_entry_points())

    (site / "aw_new-1.0.dist-info").mkdir()
    (site / "aw_new-1.0.dist-info" / "entry_points.txt").write_text("[agentwatch.plugins]\nnewplugin = aw_new\n")
    found = _plugin_names(_entry_points.plugin_entry_points())
    assert "newplugin" in found and "from_the_cache" not in found
    os.utime(site, (settled + 1, settled + 1))  # settled again: scanned once more, and kept
    assert "newplugin" in _plugin_names(_entry_points.plugin_entry_points())
    assert "newplugin" in cache.read_text()


def test_a_program_in_a_directory_of_its_own_reads_the_installed_plugins_from_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory first on ``sys.path`` that changed just now (a script's or a test's new folder) is scanned by itself
    and not kept; the other directories' plugins still come from the cache (it was one cache for the whole path, so
    every such program scanned ~500 metadata directories again)."""
    import os
    import time

    from agentwatch import _entry_points

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    site = tmp_path / "site"  # an installation directory that has not changed for a minute
    (site / "aw_installed-1.0.dist-info").mkdir(parents=True)
    (site / "aw_installed-1.0.dist-info" / "entry_points.txt").write_text("[agentwatch.plugins]\ninstalled = aw_x\n")
    settled = time.time() - 60
    os.utime(site, (settled, settled))
    monkeypatch.syspath_prepend(str(site))
    expected = _plugin_names(_entry_points.plugin_entry_points())
    assert "installed" in expected
    cache = tmp_path / "cache" / "agentwatch" / "entry-points.txt"
    _add_to_listing(cache, str(site), "aw-cached\tfrom_the_cache\taw_nothing")

    script = tmp_path / "script"
    script.mkdir()
    monkeypatch.syspath_prepend(str(script))
    assert _plugin_names(_entry_points.plugin_entry_points()) == expected | {"from_the_cache"}
    assert f" {script}\n" not in cache.read_text()  # changed just now: not trusted, not kept

    (script / "aw_local-1.0.dist-info").mkdir()  # a plugin in that directory is found all the same
    (script / "aw_local-1.0.dist-info" / "entry_points.txt").write_text("[agentwatch.plugins]\nlocal = aw_local\n")
    assert "local" in _plugin_names(_entry_points.plugin_entry_points())


@pytest.fixture
def half_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A package whose ``models`` module imports ``manager`` before it defines ``BaseModel``; the manager's import calls
    ``aw_half_registry.hook`` (as importing LangChain's callback manager, half way through its chat models' module,
    instruments LangChain)."""
    package = tmp_path / "aw_half"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text("import aw_half.manager\nBaseModel = 'defined after the manager'\n")
    (package / "manager.py").write_text("import aw_half_registry\naw_half_registry.hook()\n")
    (package / "later.py").write_text("")
    (tmp_path / "aw_half_registry.py").write_text("hook = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import aw_half_registry

    yield aw_half_registry
    for name in ("aw_half", "aw_half.models", "aw_half.manager", "aw_half.later", "aw_half_registry"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("watched_before", [True, False])
def test_a_module_still_being_imported_is_called_back_once_its_import_completes(half_imported: Any,
                                                                                watched_before: bool) -> None:
    """``when_imported`` asked for a module from inside that module's own import used to call back at once, with the
    module half made (LangChain's ``BaseChatModel`` not defined yet: the patch failed, and the model was never
    patched). Now it calls back when that import completes: right then if the module was watched before its import
    began, else at the next import of any module after it."""
    hooks = PostImportHooks()
    seen: list[tuple[str, str]] = []

    def record(label: str) -> Any:
        return lambda module: seen.append((label, getattr(module, "BaseModel", "half made")))

    half_imported.hook = lambda: hooks.when_imported("aw_half.models", record("during"))
    try:
        if watched_before:
            hooks.when_imported("aw_half.models", record("before"))
        import aw_half.models  # noqa: F401

        if watched_before:
            assert seen == [("before", "defined after the manager"), ("during", "defined after the manager")]
        else:
            assert seen == []
            import aw_half.later  # noqa: F401

            assert seen == [("during", "defined after the manager")]
        import aw_half.later  # noqa: F401,F811  (no second call back)

        assert len(seen) == (2 if watched_before else 1)
    finally:
        hooks.uninstall()
    assert hooks not in sys.meta_path


def test_a_callback_sees_its_module_imported(half_imported: Any) -> None:
    """A module's callback runs when its code has run, before the import machinery marks it imported: asked from
    there, ``imported_module`` said "still being imported", and ``when_imported`` for that module waited for the next
    import of anything (a plugin requiring two modules, imported last, was never registered)."""
    from agentwatch.instrumentation import imported_module

    hooks = PostImportHooks()
    seen: list[Any] = []

    def first(module: Any) -> None:
        seen.append(imported_module("aw_half.later") is module)
        hooks.when_imported("aw_half.later", lambda again: seen.append(again is module))

    hooks.when_imported("aw_half.later", first)
    try:
        import aw_half.later  # noqa: F401
    finally:
        hooks.uninstall()
    assert seen == [True, True]
    assert imported_module("aw_half.manager") is None  # never imported: not taken for one


def test_a_failing_callback_made_with_partial_leaves_the_programs_import_alone(
        half_imported: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Found 2026-12-07: ``stop_on_exception`` named the failed function by its ``__qualname__``, which a
    ``functools.partial`` has not (the client's own callbacks are partials): the error it swallowed became an
    AttributeError raised into the program's import statement."""
    hooks = PostImportHooks()

    def broken(_plugin: str, module: Any) -> None:
        raise ImportError(f"a bug in the callback for {module.__name__}")

    hooks.when_imported("aw_half.later", functools.partial(broken, "plugin"))
    try:
        with caplog.at_level(logging.ERROR, logger="agentwatch"):
            import aw_half.later  # noqa: F401
    finally:
        hooks.uninstall()
    assert "a bug in the callback for aw_half.later" in caplog.text
