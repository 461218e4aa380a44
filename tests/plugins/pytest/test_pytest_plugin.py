"""The pytest plugin, exercised by running small suites in a real pytest subprocess (pytester)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

# A suite whose tests call a LangChain fake chat model that reports usage like a real provider, with
# AgentWatch's zero-config LangChain instrumentation doing the recording.
SUITE_HEADER = textwrap.dedent("""
    import pytest
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    def model(n_calls, input_tokens=1000, output_tokens=500):
        messages = iter([AIMessage(content="ok", usage_metadata={"input_tokens": input_tokens,
                        "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens},
                        response_metadata={"model_name": "gpt-4o"}) for _ in range(n_calls)])
        return GenericFakeChatModel(messages=messages, metadata={"ls_model_name": "gpt-4o", "ls_provider": "openai"})

    def call(n, **kw):
        chat = model(n, **kw)
        for _ in range(n):
            chat.invoke("hi")
""")

# gpt-4o: 1000 input tokens at $2.50/M + 500 output tokens at $10/M
COST_PER_CALL = (1000 * 2.5 + 500 * 10) / 1e6


def _suite(pytester: pytest.Pytester, body: str) -> None:
    pytester.makepyfile(test_suite=SUITE_HEADER + textwrap.dedent(body))


def test_off_unless_asked(pytester: pytest.Pytester) -> None:
    _suite(pytester, """
        def test_one():
            call(2)
    """)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert "AgentWatch" not in result.stdout.str()


def test_summary_and_json(pytester: pytest.Pytester, tmp_path: Path) -> None:
    _suite(pytester, """
        def test_cheap():
            call(1)

        def test_expensive():
            call(3)

        def test_no_llm():
            assert True
    """)
    report = tmp_path / "aw.json"
    result = pytester.runpytest_subprocess("--agentwatch", f"--agentwatch-json={report}")
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    assert "AgentWatch: LLM calls and cost per test" in out
    assert "most expensive tests:" in out
    data = json.loads(report.read_text())
    tests = {test["nodeid"].split("::")[-1]: test for test in data["tests"]}
    assert tests["test_expensive"]["calls"] == 3
    assert tests["test_cheap"]["calls"] == 1
    assert tests["test_expensive"]["input_tokens"] == 3000
    assert tests["test_expensive"]["cost_usd"] == pytest.approx(3 * COST_PER_CALL)
    assert "test_no_llm" not in tests
    assert data["totals"]["calls"] == 4
    assert data["most_expensive"][0].endswith("test_expensive")


def test_most_expensive_lists_only_tests_that_spent(pytester: pytest.Pytester) -> None:
    """Found 2026-12-06: once the session budget was spent, every test whose calls it blocked was listed among the
    "most expensive tests" at $0.000000. They are in the table, with their blocked calls, and not in that list."""
    _suite(pytester, """
        from agentwatch import CircuitBreakerException

        def test_spends():
            call(1)

        @pytest.mark.parametrize("i", range(2))
        def test_blocked(i):
            with pytest.raises(CircuitBreakerException):
                call(1)
    """)
    result = pytester.runpytest_subprocess(f"--agentwatch-budget={COST_PER_CALL / 2}", "--agentwatch-json=out.json",
                                           "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    table, most_expensive = result.stdout.str().split("most expensive tests:")
    assert "test_blocked" not in most_expensive and "test_spends" in most_expensive, most_expensive
    result.stdout.fnmatch_lines(["test_suite.py::test_blocked?0? * 0 * 1 * 0.000000"])
    assert json.loads((pytester.path / "out.json").read_text())["most_expensive"] == ["test_suite.py::test_spends"]


def test_per_test_budget_fails_the_test(pytester: pytest.Pytester) -> None:
    _suite(pytester, """
        def test_within():
            call(1)

        def test_over():
            call(2)
    """)
    result = pytester.runpytest_subprocess(f"--agentwatch-test-budget={COST_PER_CALL * 1.5}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test budget $0.011250 exceeded: spent $0.0*"])


def test_a_skip_or_xfail_does_not_excuse_going_over_the_test_budget(pytester: pytest.Pytester) -> None:
    """Found 2026-12-05: a test marked xfail, or one calling pytest.skip() after its LLM calls, was never failed for
    spending over its budget. Its skip or xfail stands; the overspend is an error at its teardown, naming both."""
    _suite(pytester, """
        @pytest.mark.xfail(reason="flaky eval")
        def test_xfail():
            call(2)
            assert False

        @pytest.mark.xfail(reason="flaky eval")
        def test_xpass():
            call(2)

        def test_skip():
            call(2)
            pytest.skip("answer not gradeable")

        def test_within_and_skipped():
            call(1)
            pytest.skip("answer not gradeable")
    """)
    result = pytester.runpytest_subprocess(f"--agentwatch-test-budget={COST_PER_CALL * 1.5}", "-p", "no:randomly",
                                           "-rA")
    result.assert_outcomes(xfailed=1, xpassed=1, skipped=2, errors=3)
    result.stdout.fnmatch_lines_random([
        "ERROR test_suite.py::test_xfail - AgentWatch: test budget $0.011250 exceeded*",
        "ERROR test_suite.py::test_xpass - AgentWatch: test budget $0.011250 exceeded*",
        "ERROR test_suite.py::test_skip - AgentWatch: test budget $0.011250 exceeded*",
    ])
    assert "ERROR test_suite.py::test_within_and_skipped" not in result.stdout.str()


def test_a_wider_fixtures_spend_is_its_scopes_not_a_tests(pytester: pytest.Pytester) -> None:
    """Found 2026-12-05: a session-scoped fixture's spend was charged to whichever test ran first (its set-up) and
    last (its teardown), so an arbitrary, order-dependent test failed its budget for money it did not spend."""
    _suite(pytester, """
        @pytest.fixture(scope="session")
        def warm_agent():
            call(2)
            yield
            call(1)

        @pytest.fixture(scope="module")
        def module_agent():
            call(1)

        def test_a(warm_agent, module_agent):
            pass

        def test_b(warm_agent):
            pass

        def test_c(warm_agent):
            call(1)
    """)
    result = pytester.runpytest_subprocess(f"--agentwatch-test-budget={COST_PER_CALL * 1.5}",
                                           "--agentwatch-json=out.json")
    result.assert_outcomes(passed=3)
    spent = {test["nodeid"]: test["calls"] for test in json.loads((pytester.path / "out.json").read_text())["tests"]}
    assert spent == {"<session>": 3, "test_suite.py": 1, "test_suite.py::test_c": 1}


def test_a_function_fixtures_spend_is_the_tests_and_limited_by_its_budget(pytester: pytest.Pytester) -> None:
    """Found 2026-12-05: calls in a test's function-scoped fixtures counted against its budget but were never blocked
    by it: its limits applied only while the test function itself ran."""
    _suite(pytester, """
        from agentwatch import CircuitBreakerException

        def try_call():
            try:
                call(1)
            except CircuitBreakerException:
                pass

        @pytest.fixture
        def agent():
            try_call()
            try_call()
            yield
            try_call()

        def test_uses_agent(agent):
            pass
    """)
    result = pytester.runpytest_subprocess(f"--agentwatch-test-budget={COST_PER_CALL / 2}",
                                           "--agentwatch-json=out.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test budget $0.003750 exceeded: spent $0.007500 in 1 LLM call(s), 1 blocked"])
    (test,) = json.loads((pytester.path / "out.json").read_text())["tests"]
    assert (test["nodeid"], test["calls"], test["blocked"]) == ("test_suite.py::test_uses_agent", 1, 2)


def test_a_fixture_stopped_by_the_tests_budget_is_one_error(pytester: pytest.Pytester) -> None:
    """Found 2026-12-06: a function-scoped fixture whose calls went over the test's budget (its last call blocked, so
    its set-up failed) was reported twice: the block at set-up and "test budget exceeded" at teardown, two errors
    for one test. Now its set-up's error says both."""
    _suite(pytester, """
        @pytest.fixture
        def warm_cache():
            call(3)
            yield

        @pytest.fixture
        def broken_after_spending():
            call(2)
            raise RuntimeError("fixture broke")

        def test_warm(warm_cache):
            pass

        def test_broken(broken_after_spending):
            pass
    """)
    result = pytester.runpytest_subprocess(f"--agentwatch-test-budget={COST_PER_CALL * 1.5}", "-p", "no:randomly",
                                           "-rA")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines_random([
        "ERROR test_suite.py::test_warm - AgentWatch: test budget $0.011250 exceeded*",
        "ERROR test_suite.py::test_broken - AgentWatch: test budget $0.011250 exceeded*",
        "AgentWatch: test budget $0.011250 exceeded: spent $0.015000 in 2 LLM call(s), 1 blocked",
        "AgentWatch: test budget $0.011250 exceeded: spent $0.015000 in 2 LLM call(s), 0 blocked",
    ])
    assert "CircuitBreakerException" in result.stdout.str()  # the block's own error is kept under the budget's
    assert "RuntimeError: fixture broke" in result.stdout.str()


def test_marker_limits(pytester: pytest.Pytester) -> None:
    _suite(pytester, """
        @pytest.mark.agentwatch(max_calls=2)
        def test_loop():
            call(5)

        @pytest.mark.agentwatch(budget=1.0, max_calls=5)
        def test_fine():
            call(2)
    """)
    result = pytester.runpytest_subprocess("--agentwatch")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*max_calls=2 exceeded*"])
    assert "CircuitBreakerException" in result.stdout.str()


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_marker_limits_hold_without_the_option(pytester: pytest.Pytester, workers: list[str]) -> None:
    """Found 2026-12-06: without --agentwatch a test's @pytest.mark.agentwatch(...) limits were not enforced (it ran its
    five calls and passed), where pytest-timeout's marker holds without --timeout."""
    _suite(pytester, """
        @pytest.mark.agentwatch(max_calls=2)
        def test_loop():
            call(5)

        @pytest.mark.agentwatch(budget=COST_PER_CALL * 1.5)
        def test_over_budget():
            call(3)

        def test_unmarked():
            call(5)
    """.replace("COST_PER_CALL", repr(COST_PER_CALL)))
    result = pytester.runpytest_subprocess(*workers)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*max_calls=2 exceeded*"])
    result.stdout.fnmatch_lines(["*test budget $0.011250 exceeded*"])


def test_a_marker_that_cannot_be_read_errors_that_test_only(pytester: pytest.Pytester) -> None:
    """Found 2026-12-05: budget="0.01" stopped the whole session with an INTERNALERROR; a positional budget or a
    misspelt keyword was ignored (the test ran unlimited); a negative budget reported a nonsense "exceeded"."""
    _suite(pytester, """
        @pytest.mark.agentwatch(budget="0.01")
        def test_text_budget():
            call(1)

        @pytest.mark.agentwatch(0.000001)
        def test_positional():
            call(1)

        @pytest.mark.agentwatch(budgt=0.000001)
        def test_misspelt():
            call(1)

        @pytest.mark.agentwatch(budget=-1)
        def test_negative():
            call(1)

        @pytest.mark.agentwatch(max_calls=1.5)
        def test_fractional_calls():
            call(1)

        @pytest.mark.agentwatch(budget=1.0, max_calls=2)
        def test_fine():
            call(2)
    """)
    result = pytester.runpytest_subprocess("--agentwatch", "--agentwatch-json=out.json", "-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=5)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_text_budget*",
        "@pytest.mark.agentwatch: budget must be a number of USD, got '0.01' (str)",
        "*ERROR at setup of test_positional*", "@pytest.mark.agentwatch: takes keyword arguments only*(1e-06,)",
        "*ERROR at setup of test_misspelt*", "@pytest.mark.agentwatch: unknown argument(s) budgt*",
        "*ERROR at setup of test_negative*", "@pytest.mark.agentwatch: budget must be *not negative, got -1",
        "*ERROR at setup of test_fractional_calls*", "@pytest.mark.agentwatch: max_calls must be a whole number*",
    ])
    assert json.loads((pytester.path / "out.json").read_text())["totals"]["calls"] == 2  # the errors spent nothing


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "two"])
@pytest.mark.parametrize("option", ["--agentwatch-budget", "--agentwatch-test-budget"])
def test_a_budget_option_that_is_no_budget_is_a_usage_error(pytester: pytest.Pytester, option: str,
                                                             value: str) -> None:
    """Found 2026-12-05: nan and inf stopped the run with an INTERNALERROR once the session started."""
    _suite(pytester, """
        def test_one():
            pass
    """)
    result = pytester.runpytest_subprocess(f"{option}={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*error: argument {option}: expected a number of USD*got '{value}'"])


def test_a_budget_ini_option_that_is_no_budget_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("""
        [pytest]
        agentwatch_budget = nan
    """)
    _suite(pytester, """
        def test_one():
            pass
    """)
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*agentwatch_budget must be a number of USD*got 'nan'"])


def test_session_budget_blocks_and_fails_the_run(pytester: pytest.Pytester) -> None:
    _suite(pytester, """
        from agentwatch import CircuitBreakerException

        def test_a():
            call(2)

        def test_b():
            with pytest.raises(CircuitBreakerException):
                call(1)
    """)
    result = pytester.runpytest_subprocess(f"--agentwatch-budget={COST_PER_CALL * 1.5}", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*session budget*EXCEEDED*"])


def test_the_json_report_goes_into_a_directory_made_for_it(pytester: pytest.Pytester) -> None:
    """Found 2026-12-05: into a directory that did not exist, the tests ran, then a raw traceback ended the run."""
    _suite(pytester, """
        def test_one():
            call(1)
    """)
    result = pytester.runpytest_subprocess("--agentwatch-json=no/such/dir/cost.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    assert json.loads((pytester.path / "no/such/dir/cost.json").read_text())["totals"]["calls"] == 1


@pytest.mark.parametrize("where", ["a-file/cost.json", "."])
def test_a_json_report_path_that_cannot_be_written_is_a_usage_error(pytester: pytest.Pytester, where: str) -> None:
    (pytester.path / "a-file").write_text("not a directory")
    _suite(pytester, """
        def test_one():
            pass
    """)
    result = pytester.runpytest_subprocess(f"--agentwatch-json={where}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --agentwatch-json={where}: *"])


def test_a_json_report_that_fails_to_be_written_is_said_and_fails_the_run(pytester: pytest.Pytester) -> None:
    _suite(pytester, """
        def test_one():
            call(1)
    """)
    result = pytester.runpytest_subprocess("--agentwatch-json=/proc/self/cost.json")  # no file can be made there
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["AgentWatch: the JSON report could not be written to /proc/self/cost.json: *"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_an_interrupted_run_over_the_session_budget_stays_interrupted(pytester: pytest.Pytester) -> None:
    """Found 2026-12-05: Ctrl-C (exit 2) after going over the session budget exited 1: the plugin overwrote any exit
    status with "tests failed"."""
    _suite(pytester, """
        def test_spend_then_ctrl_c():
            call(2)
            raise KeyboardInterrupt
    """)
    result = pytester.runpytest_subprocess(f"--agentwatch-budget={COST_PER_CALL * 1.5}")
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_ini_options(pytester: pytest.Pytester) -> None:
    pytester.makeini(f"""
        [pytest]
        agentwatch_test_budget = {COST_PER_CALL / 2}
    """)
    _suite(pytester, """
        def test_over():
            call(1)
    """)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)


def test_fixture_gives_the_tests_spans(pytester: pytest.Pytester) -> None:
    _suite(pytester, """
        def test_spans(agentwatch_spans):
            call(2)
            llm = [s for s in agentwatch_spans if s["kind"] == "llm"]
            assert len(llm) == 2
            assert all(s["model"] == "gpt-4o" and s["cost_usd"] > 0 for s in llm)
    """)
    pytester.runpytest_subprocess("--agentwatch").assert_outcomes(passed=1)


def test_own_init_in_tests_still_counts(pytester: pytest.Pytester) -> None:
    _suite(pytester, """
        import agentwatch

        def test_with_own_client():
            mem = agentwatch.InMemoryExporter()
            agentwatch.init(exporters=[mem], capture_messages=True)
            call(2)
            agentwatch.flush()
            assert len(mem.by_kind("llm")) == 2
            agentwatch.shutdown()
    """)
    result = pytester.runpytest_subprocess("--agentwatch", "--agentwatch-json=out.json")
    result.assert_outcomes(passed=1)
    data = json.loads((pytester.path / "out.json").read_text())
    assert data["totals"]["calls"] == 2


def test_xdist_workers_are_summed(pytester: pytest.Pytester) -> None:
    _suite(pytester, """
        import pytest

        @pytest.mark.parametrize("n", [1, 2, 3, 4])
        def test_calls(n):
            call(n)
    """)
    result = pytester.runpytest_subprocess("-n", "2", "--agentwatch", "--agentwatch-json=out.json")
    result.assert_outcomes(passed=4)
    data = json.loads((pytester.path / "out.json").read_text())
    assert data["totals"]["calls"] == 10
    assert data["totals"]["cost_usd"] == pytest.approx(10 * COST_PER_CALL)


#: For a suite run with a session budget: under xdist, wait until this worker's session monitor counts what the other
#: worker spent (the workers' ledger refreshes every 50 ms), so that its next call is checked against the run's
#: spend. xdist gives each of two workers two of the four tests, so each learns of the other's first call, whatever
#: the load (each first call is let through: the other's spend leaves room for it).
SESSION_SPEND_SHARED = textwrap.dedent("""
    import time as _time

    from agentwatch.instrumentation import get_current_agent_scopes

    def session_monitor():
        return next(scope.monitor for scope in get_current_agent_scopes()
                    if scope.monitor.scope_id == "pytest-session")

    def wait_for_the_other_workers_spend(config, budget):
        if not hasattr(config, "workerinput"):  # not an xdist worker (this run's: the environment may be another's)
            return
        deadline = _time.monotonic() + 60
        while session_monitor().store.spent_elsewhere <= 0:
            assert _time.monotonic() < deadline, "the other worker's spend did not reach this worker in 60 s"
            _time.sleep(0.01)
""")


def test_the_session_budget_is_the_runs_across_xdist_workers(pytester: pytest.Pytester) -> None:
    """Found 2026-12-05: each xdist worker had the whole session budget (with -n 2, twice the spend got through)."""
    budget = COST_PER_CALL * 1.5  # each worker alone would let two calls through
    _suite(pytester, SESSION_SPEND_SHARED + textwrap.dedent(f"""
        import pytest
        from agentwatch import CircuitBreakerException

        @pytest.mark.parametrize("n", range(4))
        def test_calls(n, pytestconfig):
            try:
                call(1)
            except CircuitBreakerException:
                pass
            wait_for_the_other_workers_spend(pytestconfig, {budget!r})
    """))
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly", f"--agentwatch-budget={budget}",
                                           "--agentwatch-json=out.json")
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    totals = json.loads((pytester.path / "out.json").read_text())["totals"]
    assert (totals["calls"], totals["blocked"]) == (2, 2)  # one call per worker, then nobody's


def test_an_xdist_workers_session_block_names_the_runs_budget_and_spend(pytester: pytest.Pytester) -> None:
    """Found 2026-12-06: a worker blocked by what the other worker spent raised "trace budget reached: $0 spent in this
    run, limit $0" (``e.threshold == e.current == 0``): its monitor's budget had been lowered to what the others left.
    The block now names the session budget and the run's spend."""
    budget = COST_PER_CALL * 1.5
    _suite(pytester, SESSION_SPEND_SHARED + textwrap.dedent(f"""
        import pytest
        from agentwatch import CircuitBreakerException

        def test_calls(pytestconfig):  # run by each worker (--dist each)
            if pytestconfig.workerinput["workerid"] == "gw0":
                call(2)  # $0.015: the first call leaves room for the second
                return
            deadline = _time.monotonic() + 60
            while session_monitor().store.spent_elsewhere < {COST_PER_CALL * 2 - 1e-9!r}:
                assert _time.monotonic() < deadline, "gw0's spend did not reach this worker in 60 s"
                _time.sleep(0.01)
            with pytest.raises(CircuitBreakerException) as caught:
                call(1)
            with open("block.txt", "w") as out:  # (a worker's output does not reach the run's)
                out.write(f"{{caught.value.threshold}} {{caught.value.current}} {{caught.value}}")
    """))
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "each", "-p", "no:randomly",
                                           f"--agentwatch-budget={budget}")
    result.assert_outcomes(passed=2)
    threshold, current, message = (pytester.path / "block.txt").read_text().split(" ", 2)
    assert (float(threshold), float(current)) == pytest.approx((budget, 2 * COST_PER_CALL))
    assert "$0.015 spent in this run, limit $0.01125" in message, message


@pytest.mark.parametrize("workers", [["-p", "no:xdist"], ["-n", "2"]], ids=["one-process", "xdist"])
def test_the_session_budget_is_the_whole_runs_not_an_hours(pytester: pytest.Pytester, workers: list[str]) -> None:
    """Found 2026-12-05: the session budget was a rolling hour (budget_per_hour), so in a run longer than an hour the
    first hour's spend stopped counting and calls went out again. Here each test runs an hour after the one before."""
    budget = COST_PER_CALL * 1.5
    _suite(pytester, SESSION_SPEND_SHARED + textwrap.dedent(f"""
        import itertools
        import time

        import pytest
        from agentwatch import CircuitBreakerException

        hours = itertools.count()

        @pytest.mark.parametrize("n", range(4))
        def test_calls(n, pytestconfig):
            later = next(hours) * 3700.0
            # Private, for want of a public way: a Monitor's clock is fixed when it is made (by the plugin, here).
            session_monitor()._clock = lambda: time.monotonic() + later
            try:
                call(1)
            except CircuitBreakerException:
                pass
            wait_for_the_other_workers_spend(pytestconfig, {budget!r})
    """))
    result = pytester.runpytest_subprocess(*workers, "-p", "no:randomly", f"--agentwatch-budget={budget}",
                                           "--agentwatch-json=out.json")
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    totals = json.loads((pytester.path / "out.json").read_text())["totals"]
    assert (totals["calls"], totals["blocked"]) == (2, 2)


def test_a_session_block_is_not_reported_as_the_tests_budget(pytester: pytest.Pytester) -> None:
    """Found 2026-12-05: a test within its own budget, blocked by the session's, failed with "test budget exceeded:
    spent $0.000000"."""
    _suite(pytester, """
        from agentwatch import CircuitBreakerException

        def test_a():
            call(1)

        def test_b():
            with pytest.raises(CircuitBreakerException):
                call(1)
    """)
    result = pytester.runpytest_subprocess(f"--agentwatch-budget={COST_PER_CALL / 2}",
                                           f"--agentwatch-test-budget={COST_PER_CALL * 10}", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the session's budget fails the run
    assert "test budget" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*session budget*EXCEEDED*"])


def test_the_kill_switch_is_reported_not_passed_as_ok(pytester: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Found 2026-12-05: with AGENTWATCH_ENABLED=0 in the environment, `--agentwatch-budget` enforced nothing and the
    report said "$0.000000 spent ... ok" while the tests' calls went out. The kill switch still wins, and says so."""
    _suite(pytester, """
        def test_calls():
            call(3)
    """)
    monkeypatch.setenv("AGENTWATCH_ENABLED", "0")
    result = pytester.runpytest_subprocess(f"--agentwatch-budget={COST_PER_CALL}", "--agentwatch-json=out.json")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "— ok" not in out
    result.stdout.fnmatch_lines(["AgentWatch is switched off (AGENTWATCH_ENABLED)*no budget or limit was enforced",
                                 f"session budget ${COST_PER_CALL:.6f}: NOT ENFORCED"])
    assert json.loads((pytester.path / "out.json").read_text())["budgets"]["enforced"] is False


def test_the_test_process_is_as_without_agentwatch(pytester: pytest.Pytester) -> None:
    """Found 2026-12-05: `pytest --agentwatch` ran gc.freeze() over every object alive at session start (tests that
    hunt leaks with gc.get_objects()/gc.get_referrers() failed) and replaced SIGTERM's handler and the sys and
    threading excepthooks."""
    pytester.makeconftest("""
        class Resource:
            pass

        REGISTRY = [Resource()]
    """)
    _suite(pytester, """
        import gc
        import json
        import signal
        import sys
        import threading

        import conftest

        def name(handler):
            handler = getattr(handler, "func", handler)  # pytest's threading hook is a partial
            return f"{getattr(handler, '__module__', None)}.{getattr(handler, '__qualname__', handler)}"

        def test_process(request):
            call(1)
            seen = {"frozen": gc.get_freeze_count(), "sigterm": name(signal.getsignal(signal.SIGTERM)),
                    "sys": name(sys.excepthook), "threading": name(threading.excepthook)}
            with open(request.config.getoption("--basetemp") + ".json", "w") as out:
                json.dump(seen, out)
            assert any(holder is conftest.REGISTRY for holder in gc.get_referrers(conftest.REGISTRY[0]))
            assert any(isinstance(thing, conftest.Resource) for thing in gc.get_objects())
    """)
    seen = {}
    for run, flags in (("without", ()), ("with", ("--agentwatch",))):
        result = pytester.runpytest_subprocess(*flags, f"--basetemp={pytester.path / run}")
        result.assert_outcomes(passed=1)
        seen[run] = json.loads((pytester.path / f"{run}.json").read_text())
    assert seen["with"] == seen["without"]
    assert seen["with"]["frozen"] == 0


def test_runs_without_xdist(pytester: pytest.Pytester) -> None:
    """With pytest-xdist absent (here: disabled), the xdist-only hook must not stop the run."""
    _suite(pytester, """
        def test_calls():
            call(2)
    """)
    result = pytester.runpytest_subprocess("-p", "no:xdist", "--agentwatch", "--agentwatch-json=out.json")
    result.assert_outcomes(passed=1)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    data = json.loads((pytester.path / "out.json").read_text())
    assert data["totals"]["calls"] == 2
    assert data["totals"]["cost_usd"] == pytest.approx(2 * COST_PER_CALL)
