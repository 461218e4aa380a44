"""The pytest11 entry point. Does nothing unless ``--agentwatch`` or a budget is given, or a collected test carries
the ``agentwatch`` marker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._limits import MARKER_ARGUMENTS, usd, usd_option

__all__ = ["pytest_addoption", "pytest_configure"]

_REPORT_KEY = "agentwatch_report"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agentwatch", "LLM calls and cost per test (AgentWatch)")
    group.addoption("--agentwatch", action="store_true", default=None,
                    help="record LLM calls, tokens and cost per test and print a summary")
    group.addoption("--agentwatch-json", metavar="PATH", default=None, help="also write the summary as JSON")
    group.addoption("--agentwatch-budget", metavar="USD", type=usd_option, default=None,
                    help="session budget: once reached, LLM calls are blocked and the run fails")
    group.addoption("--agentwatch-test-budget", metavar="USD", type=usd_option, default=None,
                    help="per-test budget: a test that spends more fails")
    parser.addini("agentwatch", "enable AgentWatch's cost report", type="bool", default=False)
    parser.addini("agentwatch_budget", "session budget in USD", default="")
    parser.addini("agentwatch_test_budget", "per-test budget in USD", default="")


def _float_ini(config: pytest.Config, name: str) -> float | None:
    raw = config.getini(name)
    if raw in ("", None):
        return None
    value = usd(raw)
    if value is None:
        raise pytest.UsageError(f"{name} must be a number of USD (finite, not negative), got {raw!r}")
    return value


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"agentwatch({MARKER_ARGUMENTS}): per-test LLM limits (AgentWatch)")
    session_budget = config.getoption("agentwatch_budget")
    if session_budget is None:
        session_budget = _float_ini(config, "agentwatch_budget")
    test_budget = config.getoption("agentwatch_test_budget")
    if test_budget is None:
        test_budget = _float_ini(config, "agentwatch_test_budget")
    wanted = bool(config.getoption("agentwatch") or config.getini("agentwatch") or config.getoption("agentwatch_json")
                  or session_budget is not None or test_budget is not None)
    if not wanted:
        config.pluginmanager.register(_MarkedTestsSwitchOn(), "agentwatch_marked_tests")
        return
    from ._session import AgentWatchSession

    session = AgentWatchSession(config, session_budget, test_budget, _json_path(config))
    config.pluginmanager.register(session, _REPORT_KEY)


class _MarkedTestsSwitchOn:
    """A test's ``@pytest.mark.agentwatch(...)`` limits hold without ``--agentwatch``, as pytest-timeout's marker does
    without ``--timeout``: a run whose collected tests carry the marker is switched on once they are known (the
    session has started by then, so the active part is started by hand). Before, such a test ran unlimited."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        if config.pluginmanager.has_plugin(_REPORT_KEY) or config.option.collectonly:
            return
        if not any(item.get_closest_marker("agentwatch") is not None for item in items):
            return
        from ._session import AgentWatchSession

        active = AgentWatchSession(config, None, None, None)
        config.pluginmanager.register(active, _REPORT_KEY)
        active.pytest_sessionstart(session)


def _json_path(config: pytest.Config) -> Path | None:
    """Where the JSON report goes, its directory made now (as ``--junitxml``'s is): a path that cannot be written
    is a usage error before the tests run, not a traceback after them."""
    raw = config.getoption("agentwatch_json")
    if not raw:
        return None
    path = Path(raw).absolute()  # written at the end, wherever the tests left the working directory
    if path.is_dir():
        raise pytest.UsageError(f"--agentwatch-json={raw}: is a directory, not a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise pytest.UsageError(f"--agentwatch-json={raw}: its directory cannot be made: {error}") from None
    return path


@pytest.fixture
def agentwatch_spans(request: pytest.FixtureRequest) -> Iterator[list[dict[str, Any]]]:
    """The spans (``Span.to_dict()`` form) the current test produced so far; needs ``--agentwatch``."""
    session = request.config.pluginmanager.get_plugin(_REPORT_KEY)
    if session is None:
        raise pytest.UsageError("the agentwatch_spans fixture needs pytest --agentwatch")
    yield session.report.usage(request.node.nodeid).spans


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2))
