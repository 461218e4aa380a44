"""A scope or event named with a long text (a trace named after the user's question, ``session.log(message)`` of a long
message) reaches the collector, its name cut to what the collector stores. Found 2026-12-06: the collector refuses a
span whose name is over 2,000 characters (or whose kind is over 64), so such spans were lost while ``flush()`` said
True, and the spans under a refused trace were left without their root."""

from __future__ import annotations

import httpx

import agentwatch
from agentwatch.server import ServerHandle


def test_long_names_are_cut_not_lost(collector: ServerHandle) -> None:
    agentwatch.init(proxy_url=collector.url)
    question = "why " * 800
    with agentwatch.trace(f"answer {question}") as run:
        with agentwatch.session("support") as session:
            session.log("Processed: " + "x" * 5000)
            agentwatch.event("e" * 3000, {"n": 1})
            with agentwatch.span("step", kind="k" * 100):
                pass
    assert agentwatch.flush()
    base = collector.url.rstrip("/")
    spans = httpx.get(f"{base}/api/traces/{run.span.trace_id}/spans", timeout=30).json()
    spans = spans if isinstance(spans, list) else spans["spans"]
    names = sorted(span["name"] for span in spans)
    assert len(spans) == 5, names
    assert f"answer {question}"[:2000] in names and "e" * 2000 in names and ("Processed: " + "x" * 5000)[:2000] in names
    assert {span["kind"] for span in spans} >= {"trace", "session", "event", "k" * 64}
