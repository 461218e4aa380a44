"""Cursors of the traces list: where a page ended, so the next one starts there however many traces arrived since.

Offset paging newest first shifts under new data (a trace that arrives pushes every later page down by one: a
row is shown twice, or one is skipped when traces are purged). A cursor is the last row's position in the sort
order, ``(sort value, store's tie key)``; the next page is the rows strictly after it. It is opaque to clients
(base64url JSON) and names the sort it was made for.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

__all__ = ["Position", "encode_cursor", "decode_cursor"]

#: (sort value, tie key): the value of the sort column (a number or text) and the store's own key of the trace,
#: which orders traces with equal values as the list does.
Position = tuple[Any, int]
_TEXT_SORTS = frozenset({"name", "status"})


def encode_cursor(sort: str, order: str, position: Position) -> str:
    value, key = position
    text = json.dumps([sort, order, value, int(key)], separators=(",", ":"), ensure_ascii=True)
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, sort: str, order: str) -> Position:
    """The position a cursor holds; ValueError if it is not one this list made for ``sort`` and ``order``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_sort, made_order, value, key = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise ValueError("cursor: not a cursor of this list (use next_cursor as given)") from None
    if (made_sort, made_order) != (sort, order):
        raise ValueError(f"cursor: made for sort={made_sort} order={made_order}; pass the same sort and order")
    valid_key = isinstance(key, int) and not isinstance(key, bool) and 0 <= key < 2**64
    if sort in _TEXT_SORTS:
        valid_value = isinstance(value, str)
    else:
        valid_value = isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 2**63
    if not (valid_key and valid_value):
        raise ValueError("cursor: not a cursor of this list (use next_cursor as given)")
    return value, key
