"""The budgets and call limits a run gives: checked where they are given, so a wrong one is named, not guessed at."""

from __future__ import annotations

import argparse
import math
import numbers
from dataclasses import dataclass
from typing import Any

import pytest

__all__ = ["MARKER_ARGUMENTS", "TestLimits", "marker_limits", "usd", "usd_option"]

MARKER_ARGUMENTS = "budget=USD, max_calls=N"


@dataclass(frozen=True)
class TestLimits:
    """One test's own limits (None: none)."""

    budget: float | None
    max_calls: int | None


def usd(text: str) -> float | None:
    """A budget in USD read from text: a finite number, not negative; None if it is none."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def usd_option(text: str) -> float:
    """argparse's ``type`` for a budget option: a wrong value is pytest's usage error, naming the option."""
    value = usd(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a number of USD (finite, not negative), got {text!r}")
    return value


def _budget(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"budget must be a number of USD, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"budget must be a finite number of USD, not negative, got {value!r}")
    return float(value)


def _max_calls(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"max_calls must be a whole number of calls, got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"max_calls must not be negative, got {value!r}")
    return int(value)


def marker_limits(item: pytest.Item, default_budget: float | None) -> TestLimits:
    """The test's limits: its closest ``agentwatch`` marker's, else the per-test budget of the run. A marker that
    cannot be read fails the test's set-up with a message naming it (the other tests run)."""
    marker = item.get_closest_marker("agentwatch")
    if marker is None:
        return TestLimits(default_budget, None)
    try:
        if marker.args:
            raise TypeError(f"takes keyword arguments only ({MARKER_ARGUMENTS}), got {marker.args!r}")
        unknown = sorted(set(marker.kwargs) - {"budget", "max_calls"})
        if unknown:
            raise TypeError(f"unknown argument(s) {', '.join(unknown)}; it takes {MARKER_ARGUMENTS}")
        budget = _budget(marker.kwargs["budget"]) if "budget" in marker.kwargs else default_budget
        return TestLimits(budget, _max_calls(marker.kwargs.get("max_calls")))
    except (TypeError, ValueError) as error:
        problem = str(error)
    pytest.fail(f"@pytest.mark.agentwatch: {problem}", pytrace=False)  # outside the except: no chained traceback
