"""The active part of the pytest plugin, registered only when the run asks for AgentWatch."""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

import agentwatch
from agentwatch.instrumentation import (
    AgentScope,
    Monitor,
    RunBudgetStore,
    attach,
    detach,
    init_provisional,
    register_plugin,
    unregister_plugin,
)

from ._limits import TestLimits, marker_limits
from ._report import UsageReport
from ._shared_spend import SharedSpend, create_ledger

__all__ = ["AgentWatchSession"]

_SWITCHED_OFF = ("AgentWatch is switched off (AGENTWATCH_ENABLED): LLM calls were not recorded and no budget or "
                 "limit was enforced")
_OUTPUT_KEY = "agentwatch"
_LEDGER_KEY = "agentwatch_session_ledger"


class _SpanListener:
    """Registered into every AgentWatch client of the process, including ones the tests create."""

    def __init__(self, report: UsageReport) -> None:
        self._report = report

    @agentwatch.hookimpl
    def agentwatch_span_end(self, span: agentwatch.Span) -> None:
        self._report.record(span)


def _test_scope_id(item: pytest.Item) -> str:
    return f"pytest:{item.nodeid}"


def _scope(name: str, monitor: Monitor) -> AgentScope:
    return AgentScope(name, monitor.scope_id, "pytest", monitor)


#: Why a call was blocked by a budget kept in a ``RunBudgetStore`` (the session's, a test's).
_BUDGET_REASON = "trace_budget"
_CALLS_REASON = "max_calls_per_minute"


#: The test's own limits, read from its marker (or the run's per-test budget) when its set-up starts.
_LIMITS = pytest.StashKey[TestLimits]()
_NO_LIMITS = TestLimits(None, None)
#: The agent scopes of the test's own limits: current while it runs and while its function-scoped fixtures do.
_SCOPES = pytest.StashKey[tuple[AgentScope, ...]]()
#: Set once the test's report says it went over its limits: said once, on its call or else on its teardown.
_REPORTED = pytest.StashKey[bool]()


def _fail(session: pytest.Session) -> None:
    """Fail a run that would pass; an interrupted run, a usage or an internal error keeps its own exit status."""
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _attach(scopes: tuple[AgentScope, ...]) -> list[tuple[Any, ...]]:
    return [attach(agent=scope) for scope in scopes]


def _detach(tokens: list[tuple[Any, ...]]) -> None:
    for token in reversed(tokens):
        detach(token)


def _test_monitors(item: pytest.Item, limits: TestLimits) -> list[Monitor]:
    """The test's own limits: its budget is the whole test's (no hourly window), its call limit a rate."""
    monitors = []
    if limits.budget is not None:
        monitors.append(Monitor("agent", _test_scope_id(item), name=item.nodeid, store=RunBudgetStore(),
                                budget_per_hour=limits.budget, block_on_threshold=True))
    if limits.max_calls is not None:
        monitors.append(Monitor("agent", _test_scope_id(item), name=item.nodeid,
                                max_calls_per_minute=limits.max_calls, block_on_threshold=True))
    return monitors


class AgentWatchSession:
    def __init__(self, config: pytest.Config, session_budget: float | None, test_budget: float | None,
                 json_path: Path | None = None) -> None:
        self.config = config
        self.session_budget = session_budget
        self.test_budget = test_budget
        self.json_path = json_path
        self._json_error: str | None = None
        self.report = UsageReport()
        self._listener = _SpanListener(self.report)
        self._session_token: tuple[Any, ...] = ()
        self._is_worker = hasattr(config, "workerinput")
        self._ledger_directory: str | None = None  # the controller's, with a session budget and workers
        self._shared_spend: SharedSpend | None = None  # a worker's
        self.switched_off = False
        #: Per fixture being torn down: who spent before its teardown started, and its limits' tokens.
        self._tearing_down: dict[int, tuple[str | None, list[tuple[Any, ...]]]] = {}

    # ---- session ----------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        register_plugin(self._listener, "pytest-agentwatch")
        if self.session_budget is not None:
            # The session scope is checked before every LLM call made anywhere in the run. Its store keeps the
            # whole run's spend (a per-run budget): an hourly window gave a run longer than an hour its budget again.
            store = RunBudgetStore()
            monitor = Monitor("agent", "pytest-session", name="pytest session", store=store,
                              budget_per_hour=self.session_budget, block_on_threshold=True)
            self._session_token = attach(agent=_scope("pytest session", monitor))
            ledger = getattr(self.config, "workerinput", {}).get(_LEDGER_KEY)
            if ledger:  # an xdist worker: the budget is the run's, shared with the other workers
                worker = str(self.config.workerinput["workerid"])  # type: ignore[attr-defined]
                self._shared_spend = SharedSpend(ledger, worker, monitor, store)
                self._shared_spend.start()
        self._ensure_client()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """pytest-xdist's controller, before a worker starts: where the workers share the session budget."""
        if self.session_budget is None:
            return
        if self._ledger_directory is None:
            self._ledger_directory = tempfile.mkdtemp(prefix="agentwatch-pytest-")
        node.workerinput[_LEDGER_KEY] = create_ledger(Path(self._ledger_directory))

    def _ensure_client(self) -> None:
        # Provisional: if a test calls agentwatch.init(...) itself, its own configuration takes over. Without process
        # hooks: pytest handles signals and uncaught exceptions itself, and tests may look for objects with
        # gc.get_objects() (which gc.freeze() would hide from them); until a limit is hit, AgentWatch is not seen.
        if self.switched_off:
            return
        if agentwatch.get_client() is None and not init_provisional(exporters=[], process_hooks=False).enabled:
            # The kill switch (AGENTWATCH_ENABLED=0) wins over the options: AgentWatch stays out of the process,
            # and the report says that nothing was recorded or limited instead of passing the budgets.
            self.switched_off = True

    def pytest_report_header(self, config: pytest.Config) -> str | None:
        return _SWITCHED_OFF if self.switched_off else None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        agentwatch.flush(5.0)
        if self._shared_spend is not None:
            self._shared_spend.stop()
        if self._ledger_directory is not None:
            shutil.rmtree(self._ledger_directory, ignore_errors=True)
        if self._is_worker:
            self.config.workeroutput[_OUTPUT_KEY] = json.dumps(  # type: ignore[attr-defined]
                [usage.summary() for usage in self.report.tests.values()])
        if self.session_budget is not None and not self._is_worker and self._session_over_budget():
            _fail(session)
        if self.json_path is not None and not self._is_worker:
            from ._plugin import write_json

            try:
                write_json(self.json_path, self.report.as_json(self.session_budget, self.test_budget,
                                                               enforced=not self.switched_off))
            except OSError as error:
                self._json_error = f"AgentWatch: the JSON report could not be written to {self.json_path}: {error}"
                _fail(session)
        unregister_plugin("pytest-agentwatch")

    def _session_over_budget(self) -> bool:
        assert self.session_budget is not None
        total = self.report.totals()
        return total.cost_usd > self.session_budget or (total.blocked > 0 and total.cost_usd >= self.session_budget)

    # optionalhook: the hook is pytest-xdist's; without xdist installed (or with -p no:xdist) pluggy would
    # otherwise refuse the whole plugin ("unknown hook") and the run would stop with an INTERNALERROR.
    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """pytest-xdist: the controller adds up what each worker measured."""
        output = getattr(node, "workeroutput", {}).get(_OUTPUT_KEY)
        if output:
            self.report.merge(json.loads(output))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self._is_worker:
            return
        terminalreporter.write_sep("=", "AgentWatch: LLM calls and cost per test")
        if self._json_error is not None:
            terminalreporter.write_line(self._json_error, red=True, bold=True)
        if self.switched_off:
            terminalreporter.write_line(_SWITCHED_OFF, yellow=True, bold=True)
            for name, budget in (("session budget", self.session_budget), ("per-test budget", self.test_budget)):
                if budget is not None:
                    terminalreporter.write_line(f"{name} ${budget:.6f}: NOT ENFORCED", yellow=True, bold=True)
            return
        for line in self.report.lines():
            terminalreporter.write_line(line)
        total = self.report.totals()
        if self.session_budget is not None:
            verdict = "EXCEEDED" if self._session_over_budget() else "ok"
            terminalreporter.write_line(f"session budget ${self.session_budget:.6f}: spent ${total.cost_usd:.6f},"
                                        f" {total.blocked} call(s) blocked — {verdict}")

    # ---- tests ------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # Before any fixture: a marker that cannot be read fails this test's set-up, before it spends anything.
        limits = item.stash[_LIMITS] = marker_limits(item, self.test_budget)
        item.stash[_SCOPES] = tuple(_scope(item.nodeid, monitor) for monitor in _test_monitors(item, limits))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
        self.report.current = item.nodeid
        self.report.usage(item.nodeid)
        try:
            yield
        finally:
            self.report.current = None
            if _SCOPES in item.stash:
                del item.stash[_SCOPES]  # the monitors of a test that has ended

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        self._ensure_client()
        tokens = _attach(item.stash.get(_SCOPES, ()))
        try:
            yield
        finally:
            _detach(tokens)

    # ---- fixtures: a function-scoped one is the test's, a wider one its scope's ----------------------------------
    # A fixture's teardown runs from its finalizers, last added first: the one added once it is set up runs just
    # before its teardown, and pytest_fixture_post_finalizer (added first) just after.

    def _owner(self, request: pytest.FixtureRequest) -> tuple[str, tuple[AgentScope, ...]]:
        """Whose spend a fixture's is, and the limits it spends under: a function-scoped fixture's is the test's,
        under the test's limits; a wider one's is its scope's (``<session>`` for the session), shared by the tests
        that use it, under the session budget only."""
        if request.scope == "function":
            return request.node.nodeid, request.node.stash.get(_SCOPES, ())
        return request.node.nodeid or UsageReport.OUTSIDE, ()

    def _enter(self, request: pytest.FixtureRequest) -> tuple[str | None, list[tuple[Any, ...]]]:
        owner, scopes = self._owner(request)
        previous, self.report.current = self.report.current, owner
        return previous, _attach(scopes)

    def _leave(self, entered: tuple[str | None, list[tuple[Any, ...]]]) -> None:
        previous, tokens = entered
        _detach(tokens)
        self.report.current = previous

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any],
                             request: pytest.FixtureRequest) -> Generator[None, None, None]:
        self._ensure_client()
        entered = self._enter(request)
        try:
            yield
        finally:
            self._leave(entered)
            fixturedef.addfinalizer(functools.partial(self._fixture_teardown_starts, fixturedef, request))

    def _fixture_teardown_starts(self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
        self._tearing_down[id(fixturedef)] = self._enter(request)

    def pytest_fixture_post_finalizer(self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
        entered = self._tearing_down.pop(id(fixturedef), None)
        if entered is not None:
            self._leave(entered)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[Any, Any, None]:
        """A test over its own limits fails: its set-up's error, if a function-scoped fixture failed there (one error
        for the test, not a second one at its teardown); its call, if that passed or failed as such; else (skipped,
        xfail, or spent in its teardown) its teardown, as an error beside the skip or xfail: neither excuses the
        spend."""
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        if (call.when == "setup" and report.outcome != "failed") or item.stash.get(_REPORTED, False):
            return
        plain = report.outcome != "skipped" and not hasattr(report, "wasxfail")
        if call.when == "call" and not plain:
            return
        problems = self._problems(item)
        if problems:
            item.stash[_REPORTED] = True
            report.outcome = "failed"
            previous = f"\n\n{report.longreprtext}" if report.longreprtext else ""
            report.longrepr = "\n".join(problems) + previous

    def _problems(self, item: pytest.Item) -> list[str]:
        """What the test spent beyond its own limits. Only its own speak here: a call blocked by the session budget
        fails the run, not as the test's."""
        usage = self.report.usage(item.nodeid)
        limits = item.stash.get(_LIMITS, _NO_LIMITS)
        budget, max_calls = limits.budget, limits.max_calls
        problems = []
        own = _test_scope_id(item)
        if budget is not None and (usage.cost_usd > budget or usage.blocked_by(own, _BUDGET_REASON)):
            problems.append(f"AgentWatch: test budget ${budget:.6f} exceeded: spent ${usage.cost_usd:.6f} "
                            f"in {usage.calls} LLM call(s), {usage.blocked_by(own, _BUDGET_REASON)} blocked")
        if max_calls is not None and (usage.calls > max_calls or usage.blocked_by(own, _CALLS_REASON)):
            problems.append(f"AgentWatch: max_calls={max_calls} exceeded: {usage.calls} LLM call(s) made, "
                            f"{usage.blocked_by(own, _CALLS_REASON)} blocked")
        return problems
