"""Compact JSON for stored columns; orjson is used when installed (it is several times faster)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps", "loads"]

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]


def _dumps_std(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def dumps(value: Any) -> str:
    if _orjson is not None:
        try:
            return _orjson.dumps(value, default=str).decode("utf-8")
        except TypeError:
            # Integers beyond 64 bits and the like: the standard library copes with them.
            pass
    return _dumps_std(value)


def loads(text: str | bytes) -> Any:
    if _orjson is not None:
        try:
            return _orjson.loads(text)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(text)
