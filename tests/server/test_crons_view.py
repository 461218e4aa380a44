"""The Crons view in headless Chromium, with the browser setup (and skip rule) of test_dashboard.py."""

from __future__ import annotations

import time
from typing import Any

from agentwatch.server import ServerHandle
from tests.server.aw_helpers import SpanFactory
from tests.server.test_crons import cron_span
from tests.server.test_dashboard import browser, ingest, open_view, pytestmark  # noqa: F401 - fixture, skip rule
from tests.server.test_dashboard import page as page  # noqa: F401 - fixture

S = 1_000_000_000


def test_crons_view_shows_a_missed_run(page: Any, server: ServerHandle, make_span: SpanFactory) -> None:
    # One on-time run 20 minutes ago and none since: the runs after it are missed.
    now = time.time_ns()
    first = (now // (300 * S)) * 300 * S - 20 * 60 * S
    ingest(server, [cron_span(make_span, "nightly <b>etl</b>", first + 5 * S)])
    open_view(page, server, "#/crons", "crons")
    row = page.locator("#cron-list tbody tr")
    assert row.count() == 1
    assert page.inner_text("#cron-list .cron-name") == "nightly <b>etl</b>"  # shown as text, never as markup
    assert page.inner_text("#cron-list .cron-last") == "missed"
    history = page.locator("#cron-list .cron-history .badge")
    texts = [history.nth(index).inner_text() for index in range(history.count())]
    assert "missed" in texts and texts[-1] == "ok"  # newest first: the on-time run is the oldest
    assert page.inner_text("#cron-list .cron-next") != "–"
    page.click("nav a[data-view=crons]")
    assert page.locator("nav a.active").inner_text() == "Crons"
    assert page.errors == []


def test_crons_view_shows_a_job_without_a_schedule(page: Any, server: ServerHandle, make_span: SpanFactory) -> None:
    # agentwatch.cron("nightly-cleanup") as the SDK spec writes it: a run that succeeded, then one that failed.
    now = time.time_ns()
    ingest(server, [cron_span(make_span, "nightly-cleanup", now - 600 * S, schedule=None, grace=None),
                    cron_span(make_span, "nightly-cleanup", now - 60 * S, ok=False, schedule=None, grace=None)])
    open_view(page, server, "#/crons", "crons")
    assert page.locator("#cron-list tbody tr").count() == 1
    assert page.inner_text("#cron-list .cron-name") == "nightly-cleanup"
    assert page.inner_text("#cron-list .cron-schedule") == "no schedule"
    assert page.inner_text("#cron-list .cron-last") == "failed"
    assert page.inner_text("#cron-list .cron-next") == "– (no schedule)"
    history = page.locator("#cron-list .cron-history .badge")
    assert [history.nth(index).inner_text() for index in range(history.count())] == ["failed", "ok"]
    assert history.nth(0).get_attribute("title").startswith("started ")
    assert page.inner_text("#cron-list .cron-counts") == "1 / 1 / – / –"
    assert "undefined" not in page.inner_text("#cron-list") and "null" not in page.inner_text("#cron-list")
    assert page.errors == []
