"""Per-test usage aggregation, the terminal summary and the JSON report."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from agentwatch import Span

__all__ = ["TestUsage", "UsageReport"]


@dataclass
class TestUsage:
    nodeid: str
    calls: int = 0
    blocked: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float = 0.0
    spans: list[dict[str, Any]] = field(default_factory=list, repr=False)
    #: (scope id, reason) of each blocked call: the test's own limits, or the session's.
    blocks: list[tuple[str, str]] = field(default_factory=list, repr=False)

    def add(self, span: Span) -> None:
        self.spans.append(span.to_dict())
        if span.kind not in ("llm", "embedding"):
            return
        if span.status == "blocked":
            self.blocked += 1
            attributes = span.attributes
            self.blocks.append((str(attributes.get("breaker.scope_id")), str(attributes.get("breaker.reason"))))
            return
        self.calls += 1
        self.errors += span.status == "error"
        self.input_tokens += span.input_tokens
        self.output_tokens += span.output_tokens
        self.cached_input_tokens += span.cached_input_tokens
        self.cost_usd += span.cost_usd

    def merge(self, other: dict[str, Any]) -> None:
        for key in ("calls", "blocked", "errors", "input_tokens", "output_tokens", "cached_input_tokens",
                    "cost_usd"):
            setattr(self, key, getattr(self, key) + other.get(key, 0))

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("spans")
        data.pop("blocks")
        return data

    def blocked_by(self, scope_id: str, reason: str) -> int:
        return sum(block == (scope_id, reason) for block in self.blocks)


class UsageReport:
    """Usage per test id. A fixture wider than a test spends in its scope's id (a module's, a class's), the session's
    in ``<session>``, as does anything outside a test."""

    OUTSIDE = "<session>"

    def __init__(self) -> None:
        self.tests: dict[str, TestUsage] = {}
        self.current: str | None = None
        self._lock = threading.Lock()

    def usage(self, nodeid: str) -> TestUsage:
        with self._lock:
            usage = self.tests.get(nodeid)
            if usage is None:
                usage = self.tests[nodeid] = TestUsage(nodeid)
            return usage

    def record(self, span: Span) -> None:
        self.usage(self.current or self.OUTSIDE).add(span)

    def merge(self, tests: list[dict[str, Any]]) -> None:
        for data in tests:
            self.usage(data["nodeid"]).merge(data)

    def totals(self) -> TestUsage:
        total = TestUsage("<total>")
        for usage in self.tests.values():
            total.merge(usage.summary())
        return total

    def as_json(self, session_budget: float | None, test_budget: float | None, *,
                enforced: bool = True) -> dict[str, Any]:
        """``enforced``: False when AgentWatch was switched off, so nothing was recorded or limited."""
        tests = [usage.summary() for usage in self.tests.values() if usage.calls or usage.blocked]
        return {"tests": tests, "totals": self.totals().summary(),
                "budgets": {"session_usd": session_budget, "per_test_usd": test_budget, "enforced": enforced},
                "most_expensive": [usage.nodeid for usage in self.most_expensive()]}

    def most_expensive(self, count: int = 10) -> list[TestUsage]:
        """The ``count`` tests that spent most, costliest first. A test whose calls were all blocked spent nothing:
        the table shows it, with its blocked calls, and this list does not."""
        spent = [usage for usage in self.tests.values() if usage.cost_usd > 0]
        return sorted(spent, key=lambda usage: -usage.cost_usd)[:count]

    def lines(self) -> list[str]:
        active = [usage for usage in self.tests.values() if usage.calls or usage.blocked]
        total = self.totals()
        out = [f"{'test':<60} {'calls':>6} {'blocked':>7} {'in tok':>9} {'out tok':>9} {'cost USD':>11}"]
        for usage in sorted(active, key=lambda u: u.nodeid):
            out.append(f"{usage.nodeid[-60:]:<60} {usage.calls:>6} {usage.blocked:>7} {usage.input_tokens:>9} "
                       f"{usage.output_tokens:>9} {usage.cost_usd:>11.6f}")
        out.append(f"{'TOTAL':<60} {total.calls:>6} {total.blocked:>7} {total.input_tokens:>9} "
                   f"{total.output_tokens:>9} {total.cost_usd:>11.6f}")
        top = self.most_expensive()
        if top:
            out.append("")
            out.append("most expensive tests:")
            out.extend(f"  {usage.cost_usd:>11.6f}  {usage.nodeid}" for usage in top)
        return out
