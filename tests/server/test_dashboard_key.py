"""The dashboard's API key prompt in headless Chromium, against a collector with ``API_KEY`` set: one prompt however
many requests were refused at once, and none after a cancel until the user asks for it."""

from __future__ import annotations

import dataclasses
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from agentwatch.server import ServerHandle, Settings, start_background
from tests.server.aw_helpers import SpanFactory, make_trace
from tests.server.test_dashboard import browser, pytestmark  # noqa: F401 - fixture, skip rule
from tests.server.test_dashboard import page as page  # noqa: F401 - fixture

KEY = "dashboard-key-3f9a"


@pytest.fixture
def keyed_server(settings: Settings, make_span: SpanFactory) -> Iterator[ServerHandle]:
    handle = start_background(settings=dataclasses.replace(settings, api_key=KEY), port=0)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=10)
        connection.request("POST", "/api/ingest", body=json.dumps(make_trace(make_span, calls=2)),
                           headers={"Content-Type": "application/json", "X-API-Key": KEY})
        assert connection.getresponse().status == 202
        yield handle
    finally:
        handle.stop()


class Prompts:
    """Answers every prompt the page opens with ``answer`` (None: cancel) and keeps their messages."""

    def __init__(self, page: Any, answer: str | None) -> None:
        self.answer = answer
        self.shown: list[str] = []
        page.on("dialog", self._on_dialog)

    def _on_dialog(self, dialog: Any) -> None:
        self.shown.append(dialog.message)
        if self.answer is None:
            dialog.dismiss()
        else:
            dialog.accept(self.answer)


def test_one_prompt_for_the_requests_refused_together(page: Any, keyed_server: ServerHandle) -> None:
    """The Overview sends five requests at once; each 401 used to open a prompt of its own."""
    prompts = Prompts(page, KEY)
    page.goto(f"{keyed_server.url}/#/overview")
    page.wait_for_selector("#view[data-ready=overview] #kpi-traces")
    assert page.inner_text("#kpi-traces .value") == "1"
    page.wait_for_timeout(500)  # a late 401 would prompt now
    assert len(prompts.shown) == 1, prompts.shown
    assert page.locator("#view .error-box").count() == 0


def test_a_cancelled_prompt_is_not_asked_again_until_the_user_asks(page: Any, keyed_server: ServerHandle) -> None:
    prompts = Prompts(page, None)
    page.goto(f"{keyed_server.url}/#/overview")
    page.wait_for_selector("#view[data-ready=overview] .error-box")
    for view in ("traces", "breakers", "overview"):  # every view's requests are refused, quietly
        page.goto(f"{keyed_server.url}/#/{view}")
        page.wait_for_selector(f"#view[data-ready={view}]")
    page.wait_for_timeout(500)
    assert len(prompts.shown) == 1, prompts.shown
    button = page.locator("#key-button")
    assert button.is_visible() and "enter api key" in button.inner_text().lower()
    assert "api key" in page.inner_text("#view .error-box").lower()

    prompts.answer = KEY  # the user asks for the prompt now, and answers it
    button.click()
    page.wait_for_selector("#view[data-ready=overview] #kpi-traces")
    assert page.inner_text("#kpi-traces .value") == "1"
    assert len(prompts.shown) == 2, prompts.shown
    assert "enter api key" not in button.inner_text().lower()


def test_live_updates_start_as_soon_as_the_key_is_entered(page: Any, keyed_server: ServerHandle) -> None:
    """Found 2026-12-05: after its first 401 the live stream waited 10 s before trying again, so the dashboard stayed
    without live updates for 10 s after the key was entered."""
    prompts = Prompts(page, KEY)
    page.goto(f"{keyed_server.url}/#/overview")
    page.wait_for_selector("#view[data-ready=overview] #kpi-traces")
    assert len(prompts.shown) == 1
    page.wait_for_selector("body[data-live=on]", timeout=4_000)
