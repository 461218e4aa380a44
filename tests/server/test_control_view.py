"""Operator control through the dashboard in headless Chromium, by clicking: three running SDK programs are
killed, resumed, re-limited and given budget from the Breakers view, and the audit trail shows each action."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentwatch.server import ServerHandle
from tests.server.test_dashboard import browser, pytestmark  # noqa: F401 - fixture, skip rule
from tests.server.test_dashboard import page as page  # noqa: F401 - fixture
from tests.stubs.agent_process import PROGRAM, Agent
from tests.stubs.provider_server import StubProvider

AGENTS = ("researcher", "writer", "critic")


@pytest.fixture
def agents(tmp_path: Path, server: ServerHandle) -> Iterator[dict[str, Agent]]:
    program = tmp_path / "agent_loop.py"
    program.write_text(PROGRAM)
    with StubProvider() as provider:
        running = {name: Agent(name, program, server.url, provider.openai_base_url) for name in AGENTS}
        try:
            yield running
        finally:
            for agent in running.values():
                agent.process.kill()
                agent.process.wait(timeout=30)


def _open_breakers(page: Any, server: ServerHandle) -> None:
    page.goto(f"{server.url}/#/breakers")
    page.wait_for_selector("#operator-control")


def _row(page: Any, scope: str) -> Any:
    return page.locator(f'#control-scopes tr.control-row[data-scope="{scope}"]')


def _reload_until_row(page: Any, server: ServerHandle, scope: str) -> Any:
    # A scope is listed once a process has reported it in a poll (about every second).
    for _ in range(120):
        _open_breakers(page, server)
        if _row(page, scope).count():
            return _row(page, scope)
        page.wait_for_timeout(500)
    raise AssertionError(f"{scope} never listed")


def test_operator_controls_running_agents_from_the_breakers_view(page: Any, server: ServerHandle,
                                                                 agents: dict[str, Agent]) -> None:
    for agent in agents.values():
        agent.wait_for(ok=True)
    _open_breakers(page, server)

    # Kill needs a confirmation step; cancelling sends nothing.
    page.fill("#control-reason", "runaway fleet")
    _row(page, "global/*").locator("button.kill").click()
    page.locator("tr.kill-confirm button.cancel").click()
    page.wait_for_selector("tr.kill-confirm", state="detached")
    assert page.locator("#operator-audit").count() == 0
    _row(page, "global/*").locator("button.kill").click()
    page.locator("tr.kill-confirm button.confirm-kill").click()
    page.wait_for_selector("#control-message")
    assert "recorded as action #1" in page.inner_text("#control-message")
    for agent in agents.values():
        assert agent.wait_for(ok=False, reason="operator_kill")["scope"] == "global"

    _row(page, "global/*").locator("button.resume").click()
    page.wait_for_selector("#operator-audit tbody tr:nth-child(2)")
    for agent in agents.values():
        agent.wait_for(ok=True)

    # The limits editor lowers the researcher's budget: it trips at the new limit.
    row = _reload_until_row(page, server, "agent/researcher")
    row.locator("button.edit-limits").click()
    page.fill("tr.limits-editor input.limit-budget_per_hour", "0.0003")
    page.check("tr.limits-editor input.limit-block_on_threshold")
    page.click("tr.limits-editor button.save-limits")
    page.wait_for_selector("#operator-audit tbody tr:nth-child(3)")
    tripped = agents["researcher"].wait_for(ok=False)
    assert (tripped["reason"], tripped["threshold"]) == ("budget_per_hour", 0.0003)

    # Add budget on the blocked agent: it continues.
    _open_breakers(page, server)
    row = _row(page, "agent/researcher")
    row.locator("input.add-usd").fill("5")
    row.locator("button.add-budget").click()
    page.wait_for_selector("#operator-audit tbody tr:nth-child(4)")
    agents["researcher"].wait_for(ok=True)

    audit = page.locator("#operator-audit tbody tr")
    actions = [audit.nth(i).locator("td.action").inner_text() for i in range(audit.count())]
    assert actions == ["override", "limits_set", "resume", "kill"]
    assert audit.nth(3).locator("td.why").inner_text() == "runaway fleet"
    assert audit.nth(3).locator("td.actor").inner_text() == "local"
    assert "limits budget_per_hour=0.0003" in _row(page, "agent/researcher").locator("td.in-force").inner_text()
    assert page.errors == []


def test_process_reports_show_each_state_and_the_spend(page: Any, server: ServerHandle) -> None:
    """Found 2026-12-05: the states of a scope in several processes ran together ("CLOSEDOPEN"), and a process's
    spend was never shown (the SDK did not send it)."""
    reports = [("p1", "CLOSED", None, 0.0001), ("p2", "OPEN", "budget_per_hour", 0.0042)]
    for process, state, reason, spend in reports:
        answer = httpx.post(f"{server.url}/api/control", timeout=10, json={"process": process, "monitors": [
            {"scope": "global", "scope_id": "global", "state": state, "reason": reason, "budget_per_hour": 0.004,
             "spend_last_hour": spend}]})
        assert answer.status_code == 200
    _open_breakers(page, server)
    assert _row(page, "global/*").locator("td.states").inner_text() == "CLOSED OPEN"
    monitors = page.locator("#control-processes li.monitor")
    assert [monitors.nth(i).inner_text() for i in range(monitors.count())] == [
        "global/global CLOSED · $0.0001 of $0.0040 in the last hour",
        "global/global OPEN budget_per_hour · $0.0042 of $0.0040 in the last hour"]
    assert page.errors == []


def test_a_process_that_reports_some_of_its_monitors_shows_how_many_more(page: Any, server: ServerHandle) -> None:
    """A process with thousands of agent scopes reports its most telling monitors and counts the rest."""
    answer = httpx.post(f"{server.url}/api/control", timeout=10, json={"process": "crowded", "monitors": [
        {"scope": "global", "scope_id": "global", "state": "CLOSED"}], "monitors_omitted": 1302})
    assert answer.status_code == 200
    _open_breakers(page, server)
    more = page.locator("#control-processes li.more")
    assert more.inner_text() == "1302 more, not reported"
    assert page.errors == []
