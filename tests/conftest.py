"""Shared fixtures: every test starts and ends without a running AgentWatch client.

In CI (``AGENTWATCH_REQUIRE_SERVICES=1``) no test may skip unless its reason is on ``ALLOWED_SKIPS``: a
skip there would hide a missing service or package, so the run fails instead (see ``pytest_sessionfinish``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import agentwatch

pytest_plugins = ["pytester"]

# The switches CI sets to turn "not installed" into a failure; they survive the per-test clean-up below.
REQUIRE_SWITCHES = ("AGENTWATCH_REQUIRE_SERVICES", "AGENTWATCH_REQUIRE_BROWSER")

# Skips that are legitimate even in CI, each matched as a substring of the skip reason, with why.
ALLOWED_SKIPS: dict[str, str] = {
    "POSIX": "signal and fork tests cannot run on Windows; CI is Linux, so these never skip there",
    "fork is POSIX-only": "as above",
}

_unexpected_skips: list[str] = []


def services_required() -> bool:
    return os.environ.get("AGENTWATCH_REQUIRE_SERVICES") == "1"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail") or not services_required():
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not any(allowed in reason for allowed in ALLOWED_SKIPS):
        _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped and services_required():
        _unexpected_skips.append(f"{report.nodeid} (whole module): {report.longrepr}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _unexpected_skips and not hasattr(session.config, "workerinput"):  # report once, on the controller
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", f"{len(_unexpected_skips)} skip(s) not on tests/conftest.py ALLOWED_SKIPS")
            for line in _unexpected_skips:
                reporter.write_line(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _no_client_between_tests(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
                             ) -> Iterator[None]:
    for name in [key for key in os.environ if key.startswith("AGENTWATCH_") and key not in REQUIRE_SWITCHES]:
        monkeypatch.delenv(name)
    # Each test its own spool: batches one test could not deliver must not reach a later test's collector
    # (ports are reused), nor the user's cache directory.
    monkeypatch.setenv("AGENTWATCH_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))
    agentwatch.shutdown()
    yield
    agentwatch.shutdown(timeout=2.0)


@pytest.fixture
def memory() -> Iterator[agentwatch.InMemoryExporter]:
    """An in-memory exporter; pass it as ``init(exporters=[memory])`` and call ``agentwatch.flush()``."""
    yield agentwatch.InMemoryExporter()


@pytest.fixture
def stub_provider() -> Iterator[object]:
    """A stub LLM provider on 127.0.0.1 speaking the OpenAI and Anthropic wire formats."""
    from tests.stubs.provider_server import StubProvider

    with StubProvider() as server:
        yield server
