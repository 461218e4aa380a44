"""Timestamps: the API speaks ISO 8601 (UTC) and accepts ISO or epoch numbers in any common unit."""

from __future__ import annotations

import datetime as _dt
import math
import re
import time

__all__ = ["iso", "parse_time", "month_range", "now_ns"]

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def now_ns() -> int:
    return time.time_ns()


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{rest // 1_000_000:03d}Z"


_NS_LIMIT = 2**63 - 1


def parse_time(value: str | None) -> int | None:
    """ISO 8601 (naive means UTC) or an epoch number; the unit of a number is read from its size."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ValueError(f"not a time: {value!r} (use ISO 8601 or epoch seconds/ms/ns)")
        magnitude = abs(number)
        if magnitude >= 1e17:
            ns = int(number)
        elif magnitude >= 1e14:
            ns = int(number * 1e3)
        elif magnitude >= 1e11:
            ns = int(number * 1e6)
        else:
            ns = int(number * 1e9)
        # The stores keep signed 64-bit nanoseconds; a bound beyond them means "no bound" on that side.
        return max(-_NS_LIMIT, min(_NS_LIMIT, ns))
    try:
        parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {value!r} (use ISO 8601 or epoch seconds/ms/ns)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    ns = int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000
    return max(-_NS_LIMIT, min(_NS_LIMIT, ns))


def month_range(month: str | None) -> tuple[str, int, int]:
    """``YYYY-MM`` (default: the current UTC month) to (label, start_ns, end_ns)."""
    if month:
        match = _MONTH.match(month.strip())
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise ValueError(f"month must look like 2025-01, got {month!r}")
        year, number = int(match.group(1)), int(match.group(2))
        # Nanosecond timestamps are signed 64-bit integers in the stores: 1970 through 2261.
        if not 1970 <= year <= 2261:
            raise ValueError(f"month must be between 1970-01 and 2261-12, got {month!r}")
    else:
        today = _dt.datetime.now(_dt.UTC)
        year, number = today.year, today.month
    start = _dt.datetime(year, number, 1, tzinfo=_dt.UTC)
    end = _dt.datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=_dt.UTC)
    return f"{year:04d}-{number:02d}", int(start.timestamp()) * 10**9, int(end.timestamp()) * 10**9
