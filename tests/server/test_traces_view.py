"""The Traces view's pager in headless Chromium: older pages stay put while traces arrive."""

from __future__ import annotations

import time
from typing import Any

from agentwatch.server import ServerHandle
from tests.server.aw_helpers import new_span_id, new_trace_id
from tests.server.test_dashboard import browser, ingest, open_view, pytestmark  # noqa: F401 - fixture, skip rule
from tests.server.test_dashboard import page as page  # noqa: F401 - fixture


def _roots(names: list[str], start: int) -> list[dict[str, Any]]:
    starts = [start + index * 1_000_000_000 for index in range(len(names))]
    return [{"trace_id": new_trace_id(), "span_id": new_span_id(), "name": name, "kind": "trace",
             "start_time_unix_nano": at, "end_time_unix_nano": at + 1} for name, at in zip(names, starts, strict=True)]


def _listed(page: Any) -> list[str]:
    return page.locator("table.traces tbody tr .trace-name").all_inner_texts()


def test_older_pages_stay_put_while_traces_arrive(page: Any, server: ServerHandle) -> None:
    """"Older →" went to offset=50: once five traces had arrived, the same page (reloaded, or re-rendered live)
    started five rows earlier and repeated the previous page's last five."""
    start = time.time_ns() - 3600 * 10**9
    ingest(server, _roots([f"t{index:03d}" for index in range(120)], start))
    newest_first = [f"t{index:03d}" for index in reversed(range(120))]
    open_view(page, server, "#/traces", "traces")
    assert _listed(page) == newest_first[:50]
    page.click("#page-older")
    page.wait_for_selector("#view[data-ready=traces] #page-range:has-text('51–100 of 120')")
    assert _listed(page) == newest_first[50:100]

    ingest(server, _roots([f"new{index}" for index in range(5)], time.time_ns() - 10**9))
    page.reload()
    page.wait_for_selector("#view[data-ready=traces] #page-range:has-text('51–100 of 125')")
    assert _listed(page) == newest_first[50:100]
    page.click("#page-older")
    page.wait_for_selector("#view[data-ready=traces] #page-range:has-text('101–120 of 125')")
    assert _listed(page) == newest_first[100:]
    assert page.locator("#page-older").is_disabled()
    page.click("#page-newer")  # back to where "Older →" was clicked
    page.wait_for_selector("#view[data-ready=traces] #page-range:has-text('51–100 of 125')")
    assert _listed(page) == newest_first[50:100]
    assert page.errors == []
