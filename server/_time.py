"""Timestamps: the API speaks ISO 8601 (UTC) and accepts ISO or epoch numbers in any common unit."""

from __future__ import annotations

import datetime as _dt
import decimal
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
_NOT_A_TIME = "not a time: {!r} (use ISO 8601 or epoch seconds/ms/ns)"
# The fraction of an ISO time's seconds: read here to the nanosecond, as datetime keeps only microseconds.
_SECONDS_FRACTION = re.compile(r"(?<=\d\d:\d\d:\d\d)[.,](\d+)")
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_SECOND = _dt.timedelta(seconds=1)
_1E17, _1E14, _1E11 = decimal.Decimal(10**17), decimal.Decimal(10**14), decimal.Decimal(10**11)
_EXACT = decimal.Context(prec=100, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def _clamp(ns: int | decimal.Decimal) -> int:
    """Whole nanoseconds, rounded up: times are integers, so ``start >= t`` and ``start < t`` hold exactly when they
    hold for ``t`` rounded up; a bound given past nanoseconds is thus applied exactly."""
    # The stores keep signed 64-bit nanoseconds; a bound beyond them means "no bound" on that side. Clamped before
    # converting so that an exponent such as 1e999999 never becomes a huge integer.
    bounded = max(-_NS_LIMIT, min(_NS_LIMIT, ns))
    if isinstance(bounded, decimal.Decimal):
        return int(bounded.to_integral_value(rounding=decimal.ROUND_CEILING))
    return bounded


def _epoch_ns(text: str) -> int | None:
    """An epoch number in nanoseconds, its unit read from its size; None if ``text`` is not a number. Read as a
    decimal, never a float: a float holds today's epoch nanoseconds only to about 256 ns, and ``to`` of a span's own
    start must leave it out."""
    try:
        number = decimal.Decimal(text)
    except decimal.InvalidOperation:
        return None
    if not number.is_finite():
        raise ValueError(_NOT_A_TIME.format(text))
    # Every exponent a string can hold, and digits enough for any in-range value given in full: nothing rounds or
    # overflows before _clamp.
    with decimal.localcontext(_EXACT):
        magnitude = abs(number)
        if magnitude > _NS_LIMIT:  # beyond any stored time whatever its unit
            return _clamp(number)
        if magnitude >= _1E17:
            scale = 1
        elif magnitude >= _1E14:
            scale = 1_000
        elif magnitude >= _1E11:
            scale = 1_000_000
        else:
            scale = 1_000_000_000
        return _clamp(number * scale)


def parse_time(value: str | None) -> int | None:
    """ISO 8601 (naive means UTC) or an epoch number; the unit of a number is read from its size. Exact to the
    nanosecond: an integer is read as one, and an ISO time keeps every fractional digit up to nanoseconds."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    ns = _epoch_ns(text)
    if ns is not None:
        return ns
    text = text.replace("Z", "+00:00").replace("z", "+00:00")
    fraction = _SECONDS_FRACTION.search(text)
    if fraction is not None:
        text = text[:fraction.start()] + text[fraction.end():]
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(_NOT_A_TIME.format(value)) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    # Whole seconds by integer arithmetic (a float timestamp would round far from the epoch), then the fraction.
    whole = parsed.replace(microsecond=0)
    if fraction is None:
        sub_second = parsed.microsecond * 1000
    else:
        digits = fraction.group(1)
        sub_second = int(digits[:9].ljust(9, "0")) + (digits[9:].strip("0") != "")  # rounded up, as _clamp does
    return _clamp((whole - _EPOCH) // _SECOND * 1_000_000_000 + sub_second)


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
