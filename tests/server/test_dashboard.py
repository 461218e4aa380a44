"""The dashboard in a real headless browser (Debian's chromium driven by Playwright), on real ingested data."""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agentwatch.server import ServerHandle
from tests.server.aw_helpers import SpanFactory, make_trace

CHROMIUM = os.environ.get("AGENTWATCH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
HOSTILE = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">"

# CI installs Debian's chromium and sets AGENTWATCH_REQUIRE_BROWSER=1, so a missing browser fails there
# instead of skipping; on a developer machine without chromium these tests are skipped.
_REQUIRED = os.environ.get("AGENTWATCH_REQUIRE_BROWSER") == "1"
if _REQUIRED:
    from playwright import sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not _REQUIRED and not os.path.exists(CHROMIUM), reason=f"no chromium at {CHROMIUM}")


def ingest(server: ServerHandle, spans: Any, path: str = "/api/ingest") -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("POST", path, body=json.dumps(spans), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status in (200, 202), response.read()


@pytest.fixture
def data(server: ServerHandle, make_span: SpanFactory) -> dict[str, list[dict[str, Any]]]:
    now = time.time_ns()
    traces = {
        "hostile": make_trace(make_span, calls=2, start=now - 60_000_000_000, name=f"evil {HOSTILE}",
                              agent="researcher", input=[{"role": "user", "content": HOSTILE}], output=HOSTILE),
        "failed": make_trace(make_span, calls=3, start=now - 120_000_000_000, name="failing run", agent="writer",
                             model="claude-sonnet-4-6", status="error"),
        "plain": make_trace(make_span, calls=1, start=now - 180_000_000_000, name="plain run", agent="planner"),
    }
    for spans in traces.values():
        ingest(server, spans)
    ingest(server, {"type": "transition", "event": "triggered", "from_state": "closed", "to_state": "open",
                    "scope": "agent", "scope_id": "writer", "reason": "budget_per_hour", "threshold": 5,
                    "current": 7.5, "timestamp_unix_nano": now - 1_000_000_000}, "/api/alerts/sdk-alert")
    return traces


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    opened.errors = errors
    try:
        yield opened
    finally:
        context.close()


def open_view(page: Any, server: ServerHandle, hash_: str, view: str) -> None:
    page.goto(f"{server.url}/{hash_}")
    page.wait_for_selector(f"#view[data-ready={view}]", timeout=15_000)


def wait_for_hash(page: Any, fragment: str, timeout: float = 15.0) -> None:
    """Polls ``page.url`` from Python: ``wait_for_function`` would need eval in the page once it has to
    retry, which the dashboard's Content-Security-Policy (rightly) forbids."""
    deadline = time.monotonic() + timeout
    while fragment not in page.url.partition("#")[2]:
        assert time.monotonic() < deadline, f"location.hash never contained {fragment!r}: {page.url}"
        page.wait_for_timeout(25)


def test_overview_shows_kpis_and_charts(page: Any, server: ServerHandle, data: dict) -> None:
    open_view(page, server, "#/overview", "overview")
    assert page.inner_text("#kpi-traces .value") == "3"
    assert page.inner_text("#kpi-calls .value") == "6"
    assert page.locator("#cost-over-time svg rect.bar").count() == 7
    assert "Researcher" in page.inner_text("#cost-by-agent")
    assert "claude-sonnet-4-6" in page.inner_text("#cost-by-model")
    assert page.locator("table.traces tbody tr").count() == 3
    assert page.errors == []


def test_trace_filters(page: Any, server: ServerHandle, data: dict) -> None:
    open_view(page, server, "#/traces", "traces")
    assert page.locator("table.traces tbody tr").count() == 3
    page.select_option("#filter-status", "error")
    page.click("#filter-apply")
    wait_for_hash(page, "status=error")
    page.wait_for_selector("#view[data-ready=traces] #trace-total:has-text('1 traces')")
    assert page.inner_text("table.traces tbody tr .trace-name") == "failing run"
    open_view(page, server, "#/traces", "traces")
    page.select_option("#filter-agent", "planner")
    page.click("#filter-apply")
    wait_for_hash(page, "agent_id=planner")
    page.wait_for_selector("#view[data-ready=traces] #trace-total:has-text('1 traces')")
    assert page.inner_text("table.traces tbody tr .trace-name") == "plain run"
    open_view(page, server, "#/traces", "traces")
    page.fill("#filter-search", "evil")
    page.press("#filter-search", "Enter")
    wait_for_hash(page, "search=evil")
    page.wait_for_selector("#view[data-ready=traces] #trace-total:has-text('1 traces')")
    # Filters that match nothing say so; "No traces yet" was said of a collector holding three (found 2026-12-06).
    open_view(page, server, "#/traces?search=nothing-like-it", "traces")
    assert page.inner_text("#view .empty") == "No trace matches these filters."
    assert page.errors == []


def test_a_view_reads_as_ready_only_once_its_render_has_landed(page: Any, server: ServerHandle, data: dict) -> None:
    """Moving from one traces filter to another keeps the old table on screen while the new one loads; if the
    old one still carried data-ready, whoever waits for it (a script, this suite) would type into a form about
    to be replaced: the search typed there was lost and the filter applied without it."""
    open_view(page, server, "#/traces?agent_id=planner", "traces")
    held: list[Any] = []
    page.route("**/api/traces?*", lambda route: held.append(route))
    page.goto(f"{server.url}/#/traces")
    deadline = time.monotonic() + 15
    while not held:
        assert time.monotonic() < deadline, "the traces view never asked for its traces"
        page.wait_for_timeout(10)
    assert page.locator("#view[data-ready]").count() == 0
    for route in held:
        route.continue_()
    page.unroute("**/api/traces?*")
    page.wait_for_selector("#view[data-ready=traces] #trace-total:has-text('3 traces')")
    page.fill("#filter-search", "evil")
    page.press("#filter-search", "Enter")
    wait_for_hash(page, "search=evil")
    page.wait_for_selector("#view[data-ready=traces] #trace-total:has-text('1 traces')")
    # Filters that match nothing say so; "No traces yet" was said of a collector holding three (found 2026-12-06).
    open_view(page, server, "#/traces?search=nothing-like-it", "traces")
    assert page.inner_text("#view .empty") == "No trace matches these filters."
    assert page.errors == []


def test_prompts_are_shown_as_text_never_run(page: Any, server: ServerHandle, data: dict) -> None:
    trace_id = data["hostile"][0]["trace_id"]
    open_view(page, server, "#/traces", "traces")
    # The hostile trace name is listed literally.
    assert page.inner_text(f"tr[data-trace-id='{trace_id}'] .trace-name") == f"evil {HOSTILE}"
    page.click(f"tr[data-trace-id='{trace_id}']")
    page.wait_for_selector("#view[data-ready=trace]")
    assert page.inner_text("#trace-title") == f"evil {HOSTILE}"
    page.click(f".span-row[data-span-id='{data['hostile'][1]['span_id']}']")
    assert HOSTILE in page.inner_text("#span-input")
    assert page.inner_text("#span-output") == HOSTILE
    assert page.locator("#view script").count() == 0 and page.locator("#view img").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert page.locator(".span-row").count() == 3
    assert "Art. 12" in page.inner_text("#compliance")
    # The agent's two calls to one model are one line, counted (each call is a node of its own: two edges).
    lines = page.locator("#graph li")
    assert [lines.nth(i).inner_text() for i in range(lines.count())] == ["Researcher calls gpt-4o-mini ×2"]
    assert page.errors == []


def test_sessions_with_any_id_open_from_the_list(page: Any, server: ServerHandle, make_span: SpanFactory) -> None:
    """Found 2026-12-06: a session named "." or ".." did not open (400, 404): the browser resolved the name in
    /api/sessions/.. as a step up the path."""
    names = ["..", ".", "a/../b", "a%2Fb", "q?x#y"]
    for name in names:
        ingest(server, make_trace(make_span, calls=1, name=f"run of {name}", attributes={"session.id": name}))
    for name in names:
        open_view(page, server, "#/sessions", "sessions")
        page.click(f"#session-list tr[data-session-id='{name}'] a")
        page.wait_for_selector("#view[data-ready=session]")
        assert page.inner_text("#session-title") == name
        assert page.inner_text("#session-traces tbody").startswith(f"run of {name}")
    assert page.errors == []


def test_breakers_and_alerts_views(page: Any, server: ServerHandle, data: dict) -> None:
    # A pause's figure is the seconds it has left, as the SDK measured them: shown to four decimals, not to 15
    # (found 2026-12-06: "50.451342261000185").
    ingest(server, {"type": "transition", "event": "paused", "from_state": "closed", "to_state": "paused",
                    "scope": "agent", "scope_id": "planner", "reason": "pause", "current": 50.451342261000185,
                    "timestamp_unix_nano": time.time_ns() - 500_000_000}, "/api/alerts/sdk-alert")
    # A small budget and spend keep their digits (found 2026-12-06: "0.0002" for $0.00015, "0" for $0.00004).
    ingest(server, {"type": "transition", "event": "triggered", "from_state": "closed", "to_state": "open",
                    "scope": "agent", "scope_id": "summarizer", "reason": "budget_per_hour", "threshold": 0.00015,
                    "current": 0.00004, "timestamp_unix_nano": time.time_ns() - 400_000_000}, "/api/alerts/sdk-alert")
    open_view(page, server, "#/breakers", "breakers")
    cells = page.locator("#breaker-status tbody tr:has-text('agent / summarizer') td")
    assert {"0.00015", "0.00004"} <= {cells.nth(i).inner_text() for i in range(cells.count())}
    row = page.inner_text("#breaker-status tbody tr:has-text('agent / writer')")
    assert "open" in row and "budget_per_hour" in row and "7.5" in row
    assert "50.4513" in page.inner_text("#breaker-status tbody tr:has-text('agent / planner')")
    assert "50.451342" not in page.inner_text("#view")
    assert "triggered" in page.inner_text("#breaker-history")
    open_view(page, server, "#/alerts", "alerts")
    page.fill("#new-rule input[name=name]", "Too expensive")
    page.select_option("#new-rule select[name=condition]", "cost_per_hour")
    page.fill("#new-rule input[name=threshold]", "5")
    page.fill("#new-rule input[name=webhook_url]", "http://127.0.0.1:9/hook")
    page.click("#new-rule button[type=submit]")
    page.wait_for_selector("#alert-rules tbody tr")
    assert "Too expensive" in page.inner_text("#alert-rules")
    page.click("#alert-rules button.toggle")
    page.wait_for_selector("#alert-rules button.toggle:has-text('off')")
    open_view(page, server, "#/reports", "reports")
    assert page.inner_text("#r-transitions .value") == "3"  # the two trips and the pause
    assert page.errors == []


def test_a_page_on_another_origin_cannot_write(page: Any, server: ServerHandle, make_span: SpanFactory) -> None:
    """A page served from another port of 127.0.0.1 (another origin) tries every write a browser allows without
    a CORS preflight; nothing may be stored."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    target = f"{server.url}/api/ingest"
    span = json.dumps(make_span(name="forged"))
    script = f"""
      const body = {json.dumps(span)};
      const sent = [];
      const attempts = [
        () => fetch({json.dumps(target)}, {{method: "POST", mode: "no-cors", body}}),
        () => fetch({json.dumps(target)}, {{method: "POST", mode: "no-cors", body: new Blob([body])}}),
        () => fetch({json.dumps(target)}, {{method: "POST", mode: "no-cors", body,
                                        headers: {{"Content-Type": "application/x-www-form-urlencoded"}}}}),
      ];
      Promise.allSettled(attempts.map(a => a())).then(results => {{
        document.title = "done " + results.map(r => r.status).join(",");
      }});
    """
    page_html = f"<!doctype html><title>attacker</title><script>{script}</script>".encode()

    class Attacker(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page_html)))
            self.end_headers()
            self.wfile.write(page_html)

        def log_message(self, *args: Any) -> None:
            pass

    attacker = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{attacker.server_address[1]}/")
        deadline = time.monotonic() + 15
        while not page.title().startswith("done") and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert page.title().startswith("done"), page.title()
    finally:
        attacker.shutdown()
        attacker.server_close()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/api/traces")
    assert json.loads(connection.getresponse().read())["total"] == 0


def test_api_docs_render_offline_under_the_csp(page: Any, server: ServerHandle) -> None:
    """/docs loads Swagger UI from the collector itself (no CDN) and the CSP lets it render every operation."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    operations = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/api/ingest" in text for text in operations), operations
    assert any("/api/traces/{trace_id}/graph" in text.replace("\u200b", "") for text in operations), operations
    assert all(url.startswith(server.url) for url in requested), requested
    assert not [error for error in page.errors if "Content Security Policy" in error], page.errors


def test_a_large_trace_says_what_is_truncated_and_lists_every_span(page: Any, server: ServerHandle) -> None:
    """12,003 spans (the view loads 10,000 at first): a chain 12,000 deep, and a parent cycle with a child."""
    trace_id, start = "feed" * 8, time.time_ns() - 3_600_000_000_000
    spans = [{"trace_id": trace_id, "span_id": "c1", "parent_span_id": "c2", "name": "cycle a", "kind": "chain",
              "start_time_unix_nano": start},
             {"trace_id": trace_id, "span_id": "c2", "parent_span_id": "c1", "name": "cycle b", "kind": "chain",
              "start_time_unix_nano": start + 1},
             {"trace_id": trace_id, "span_id": "c3", "parent_span_id": "c2", "name": "under the cycle",
              "kind": "llm", "start_time_unix_nano": start + 2}]
    spans += [{"trace_id": trace_id, "span_id": f"s{i}", "parent_span_id": f"s{i - 1}" if i else None,
               "name": "root" if i == 0 else f"step {i}", "kind": "chain", "start_time_unix_nano": start + 10 + i}
              for i in range(12_000)]
    for offset in range(0, len(spans), 5_000):
        ingest(server, spans[offset:offset + 5_000])
    page.goto(f"{server.url}/#/trace/{trace_id}")
    try:  # 10,000 rows take a while on a loaded machine
        page.wait_for_selector("#view[data-ready=trace]", timeout=90_000)
    except Exception:
        raise AssertionError(page.errors) from None
    notice = page.inner_text("#spans-truncated")
    assert "10,000 of 12,003" in notice.replace("\u202f", ",").replace(".", ","), notice
    assert page.get_attribute("#spans", "data-rows") == "10000"
    # The cycle's spans are among the first 10,000 (earliest first) and are listed, marked.
    assert page.locator("tr.span-row.cycle").count() == 1
    assert page.locator("tr.span-row[data-span-id='c3']").count() == 1
    page.click("#spans-all")
    page.wait_for_selector("#spans[data-rows='12003']", timeout=60_000)
    assert page.locator("#spans-truncated").count() == 0
    assert page.locator("tr.span-row[data-span-id='s11999']").count() == 1
    assert {page.get_attribute(f"tr.span-row[data-span-id='{s}']", "data-span-id") for s in ("c1", "c2")} == {
        "c1", "c2"}
    assert not page.errors, page.errors


def test_a_long_unbroken_name_wraps_instead_of_pushing_the_columns_off_the_page(page: Any, server: ServerHandle,
                                                                                make_span: SpanFactory) -> None:
    """Found 2026-12-06: a trace named with 600 characters and no space (a generated id, a URL) made its column as
    wide as the name: in the Traces list and the trace's span table every other column (status, cost, timeline)
    was off the right edge of the page."""
    spans = make_trace(make_span, calls=1, name="L" * 600)
    ingest(server, spans)
    width = page.viewport_size["width"]
    open_view(page, server, "#/traces", "traces")
    row = f"tr[data-trace-id='{spans[0]['trace_id']}']"
    for cell in ("td:nth-child(2)", "td.models"):
        box = page.locator(f"{row} {cell}").bounding_box()
        assert box is not None and box["x"] + box["width"] <= width, (cell, box, width)
    open_view(page, server, f"#/trace/{spans[0]['trace_id']}", "trace")
    box = page.locator(f".span-row[data-span-id='{spans[0]['span_id']}'] td.bar-cell").bounding_box()
    assert box is not None and box["x"] + box["width"] <= width, (box, width)
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_a_small_cost_keeps_its_first_digits(page: Any, server: ServerHandle, make_span: SpanFactory) -> None:
    """Found 2026-12-06 (server probe 13): a trace of two $0.000075 calls showed "$0.0001" (four decimals), a third
    less than its own calls, listed at "$0.000075" each beside it. Below $1 a cost shows four decimals unless they
    lose its first two significant digits."""
    now = time.time_ns()
    spans = make_trace(make_span, calls=2, start=now - 30_000_000_000, name="cheap run", agent="writer")
    for span in spans:
        span["cost_usd"] = 0.000075 if span["kind"] == "llm" else 0.0
    ingest(server, spans)
    ingest(server, make_trace(make_span, calls=1, start=now - 20_000_000_000, name="cent run", agent="writer",
                              cost_usd=0.0042))
    open_view(page, server, "#/traces", "traces")
    costs = {}
    for row in page.locator("#view tbody tr").all():
        costs[row.locator(".trace-name").inner_text()] = row.locator("td.num").nth(3).inner_text()
    assert costs == {"cheap run": "$0.00015", "cent run": "$0.0042"}, costs
    trace_id = spans[0]["trace_id"]
    page.click(f"tr[data-trace-id='{trace_id}']")
    page.wait_for_selector("#view[data-ready=trace]")
    assert "$0.00015" in page.inner_text("#view .kpis") and "$0.0001\n" not in page.inner_text("#view .kpis")
    assert page.errors == []
