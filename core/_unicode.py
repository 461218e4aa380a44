"""Span data that has no UTF-8 form, made sendable.

A ``str`` can hold lone surrogates: ``os.fsdecode``/``os.listdir``/``sys.argv``/``os.environ`` give them for bytes
that are not UTF-8 (a latin-1 file name), as does ``json.loads`` of a ``"\\ud800"`` escape. Every wire format
(JSON, OTLP protobuf, a UTF-8 file) refuses them, and one such string would cost the whole batch around it.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["without_lone_surrogates"]

_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"


def without_lone_surrogates(value: Any) -> Any:
    """``value`` with every surrogate in its strings (dict keys too, nested in dicts, lists and tuples) replaced by
    U+FFFD, as a UTF-8 decoder shows bytes it cannot read. Anything else is returned as it is (not copied)."""
    if isinstance(value, str):
        return _SURROGATE.sub(_REPLACEMENT, value)
    if isinstance(value, dict):
        return {without_lone_surrogates(key): without_lone_surrogates(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_lone_surrogates(item) for item in value]
    return value
