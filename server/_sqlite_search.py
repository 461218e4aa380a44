"""Text search in the SQLite store, case-insensitive over all of Unicode as the ClickHouse store's.

SQLite's ``LIKE`` folds ASCII letters only (``résumé`` missed ``RÉSUMÉ``), and searching the JSON text of a trace's
agents and models matched its quotes, brackets and ``null``. So each trace row keeps ``search``: its name, id and
labels (agent keys, every name its agents had, models), lowercased and one after another, kept up to date by the
ingest; a search is an ``instr`` of the lowercased text in it (a scan, as ``LIKE '%x%'`` was, at the same speed).
Rows written before the column existed are matched by ``aw_search`` over their columns instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any, Final

from . import _json

__all__ = ["SEPARATOR", "fold", "labels_text", "add_labels", "stored_labels", "register_functions", "trace_search",
           "contains_sql"]

#: Between the fields of ``search``: the unit separator, which no name or label is expected to hold (a search that
#: holds it is answered field by field, by ``aw_search``).
SEPARATOR: Final = "\x1f"


def fold(text: str) -> str:
    """Text as the search compares it. ``lower`` (not ``casefold``): ClickHouse's positionCaseInsensitiveUTF8 maps
    letter by letter too (``straße`` does not find ``STRASSE`` on either store)."""
    return text.lower()


def labels_text(trace_id: str, labels: Iterable[str | None]) -> str:
    """The part of ``search`` after the name: the trace's id and its labels, each once."""
    seen: dict[str, None] = {fold(trace_id): None}
    for label in labels:
        if label:
            seen.setdefault(fold(label), None)
    return SEPARATOR.join(seen)


def add_labels(text: str, labels: Iterable[str | None]) -> str:
    """``labels_text`` with ``labels`` added (those it does not hold already)."""
    added = [folded for folded in dict.fromkeys(fold(label) for label in labels if label)
             if f"{SEPARATOR}{folded}{SEPARATOR}" not in f"{SEPARATOR}{text}{SEPARATOR}"]
    return SEPARATOR.join([text, *added]) if added else text


def stored_labels(search: str | None, name: str) -> str | None:
    """The labels part of a row's ``search`` (None: the row has none, or not for its name)."""
    prefix = fold(name) + SEPARATOR
    return search[len(prefix):] if search is not None and search.startswith(prefix) else None


def _contains(text: str | None, needle: str) -> bool:
    return text is not None and needle in fold(text)


def _search_columns(needle: str, name: str, trace_id: str, agents: str, models: str) -> bool:
    """A search over a row's own columns (a row without ``search``, or a needle holding the separator)."""
    if _contains(name, needle) or _contains(trace_id, needle):
        return True
    if any(_contains(key, needle) or _contains(agent_name, needle) for key, agent_name in _json.loads(agents)):
        return True
    return any(_contains(model, needle) for model in _json.loads(models))


def register_functions(connection: sqlite3.Connection) -> None:
    """The functions the store's statements call, on every connection it opens."""
    connection.create_function("aw_fold", 1, lambda text: None if text is None else fold(text), deterministic=True)
    connection.create_function("aw_contains", 2, lambda text, needle: _contains(text, needle), deterministic=True)
    connection.create_function("aw_search", 5, _search_columns, deterministic=True)


def trace_search(text: str) -> tuple[str, list[Any]]:
    """The condition on ``traces`` for a search of ``text`` (stripped already), and its parameters."""
    needle = fold(text)
    if SEPARATOR in needle:
        return "aw_search(?, name, trace_id, agents, models)", [needle]
    return ("CASE WHEN search IS NULL THEN aw_search(?, name, trace_id, agents, models)"
            " ELSE instr(search, ?) > 0 END"), [needle, needle]


def contains_sql(column: str, text: str) -> tuple[str, list[Any]]:
    """The condition that ``column`` holds ``text``, case-insensitively, and its parameters."""
    return f"aw_contains({column}, ?)", [fold(text)]
